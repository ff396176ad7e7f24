/* hooks/provider.c: placeholder, being written. */
#include "deployd.h"
