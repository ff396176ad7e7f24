/* hooks/gitea.c: placeholder, being written. */
#include "deployd.h"
