/* hooks/gitlab.c: placeholder, being written. */
#include "deployd.h"
