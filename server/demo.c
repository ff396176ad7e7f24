/* server/demo.c: placeholder, being written. */
#include "deployd.h"
