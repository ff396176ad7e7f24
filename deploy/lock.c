/* deploy/lock.c: placeholder, being written. */
#include "deployd.h"
