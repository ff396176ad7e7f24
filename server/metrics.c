/* server/metrics.c: placeholder, being written. */
#include "deployd.h"
