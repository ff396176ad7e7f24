/* deploy/fetch.c: placeholder, being written. */
#include "deployd.h"
