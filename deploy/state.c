/* deploy/state.c: placeholder, being written. */
#include "deployd.h"
