/* main.c: the deployd command line: one table of subcommands, and the only place that exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deployd.h"

int
main(int argc, char **argv)
{
	(void)argc; (void)argv;
	printf("deployd %s\n", DEPLOYD_VERSION);
	return 0;
}
