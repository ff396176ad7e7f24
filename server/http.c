/* server/http.c: placeholder, being written. */
#include "deployd.h"
