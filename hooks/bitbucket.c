/* hooks/bitbucket.c: placeholder, being written. */
#include "deployd.h"
