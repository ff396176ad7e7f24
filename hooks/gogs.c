/* hooks/gogs.c: placeholder, being written. */
#include "deployd.h"
