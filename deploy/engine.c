/* deploy/engine.c: placeholder, being written. */
#include "deployd.h"
