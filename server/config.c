/* server/config.c: placeholder, being written. */
#include "deployd.h"
