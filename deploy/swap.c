/* deploy/swap.c: placeholder, being written. */
#include "deployd.h"
