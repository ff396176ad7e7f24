/* hooks/forgejo.c: placeholder, being written. */
#include "deployd.h"
