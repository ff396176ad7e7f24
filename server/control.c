/* server/control.c: placeholder, being written. */
#include "deployd.h"
