/* hooks/github.c: placeholder, being written. */
#include "deployd.h"
