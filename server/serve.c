/* server/serve.c: placeholder, being written. */
#include "deployd.h"
