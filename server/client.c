/* server/client.c: placeholder, being written. */
#include "deployd.h"
