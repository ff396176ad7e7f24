/* deploy/release.c: placeholder, being written. */
#include "deployd.h"
