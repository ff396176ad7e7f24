/* server/sched.c: placeholder, being written. */
#include "deployd.h"
