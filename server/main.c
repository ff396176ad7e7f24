/* main.c: the deployd command line: one table of subcommands, and the only place that exits. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <curl/curl.h>

#include "server/deployd.h"

struct cmd {
	const char	*name;
	int		(*fn)(struct cli *);
	const char	*usage;
	const char	*help;
	int		 min_args, max_args;
};

static int	cmd_serve(struct cli *);
static int	cmd_check(struct cli *);
static int	cmd_demo_entry(struct cli *);

static const struct cmd cmds[] = {
	{ "serve", cmd_serve, "serve [-c FILE]",
	    "run the daemon in the foreground", 0, 0 },
	{ "check", cmd_check, "check [-c FILE]",
	    "validate the configuration and exit", 0, 0 },
	{ "status", cmd_status, "status [SITE] [--fleet] [--json] [-c FILE | -s SOCKET]",
	    "show every site, or one, as a table or JSON; --fleet: every node's", 0, 1 },
	{ "deploy", cmd_deploy, "deploy SITE [--rev REV] [--wait]",
	    "deploy the tip now, or pin commit REV (pauses automatic deploys)", 1, 1 },
	{ "rollback", cmd_rollback, "rollback SITE [RELEASE]",
	    "back to the previous good release, or RELEASE; pauses automatic deploys", 1, 2 },
	{ "releases", cmd_releases, "releases SITE [--json]",
	    "list a site's releases, marking current, bad and pinned", 1, 1 },
	{ "pause", cmd_pause, "pause SITE",
	    "stop automatic deploys of a site", 1, 1 },
	{ "resume", cmd_pause, "resume SITE",
	    "restart automatic deploys, skipping commits marked bad", 1, 1 },
	{ "reload", cmd_reload, "reload",
	    "re-read the configuration (same as SIGHUP); errors keep the old one", 0, 0 },
	{ "demo", cmd_demo_entry, "demo [--fleet] [--dir DIR]",
	    "run a self-contained local demo; --fleet: etcd and three nodes", 0, 0 },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void
usage(FILE *fp)
{
	size_t i;

	fprintf(fp, "usage: deployd COMMAND [options]\n\ncommands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(fp, "  %-46s %s\n", cmds[i].usage, cmds[i].help);
	fprintf(fp, "\noptions:\n"
	    "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
	    "  -s, --socket PATH   control socket (default: control_socket from the config)\n"
	    "      --json          machine-readable output\n"
	    "      --wait          wait for the deploy to finish; exit 1 if it failed\n"
	    "      --rev REV       deploy: the commit to pin (4 to 40 hex digits)\n"
	    "      --dir DIR       demo: where to create the demo (default: a new temporary dir)\n"
	    "      --fleet         status: every node of the fleet; demo: a fleet of three\n"
	    "  -h, --help          this help, or a command's help after the command\n"
	    "  -V, --version       print the version\n"
	    "\nexit status: 0 ok, 1 operation failed, 2 usage or configuration error\n");
}

static int
cmd_serve(struct cli *cli)
{
	return serve_main(cli->config);
}

static int
cmd_check(struct cli *cli)
{
	struct strv errors = { NULL, 0 };
	struct config *c;
	size_t i;
	int n;

	if (config_load(cli->config, &c, &errors) != E_OK) {
		for (i = 0; i < errors.n; i++)
			fprintf(stderr, "%s\n", errors.v[i]);
		util_strv_free(&errors);
		return 2;
	}
	config_warnings(c, stderr);
	/* Started as root, the engine runs as `user`: can that user reach what it needs? */
	if ((n = privdrop_check(c, stderr)) != 0) {
		if (n < 0)
			fprintf(stderr, "%s: cannot test what user %s can reach\n", c->file,
			    c->user);
		config_free(c);
		return 2;
	}
	/* Fleet mode: does the store answer? A warning only: etcd may be down for now. */
	if (c->fleet.etcd.n > 0 && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {
		fleet_probe(c, stdout, stderr);
		curl_global_cleanup();
	}
	config_free(c);
	printf("configuration OK\n");
	return 0;
}

static int
cmd_demo_entry(struct cli *cli)
{
	return demo_main(cli);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "wait", no_argument, NULL, 'w' },
		{ "rev", required_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, 'd' },
		{ "fleet", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct cli cli;
	const struct cmd *cmd = NULL;
	int ch, help = 0, nargs;
	size_t i;

	/* The fetch helper is deployd re-executing itself; it has its own arguments. */
	if (argc >= 2 && strcmp(argv[1], "__fetch") == 0)
		return fetcher_main(argc, argv);
	/* So is the webhook listener process. */
	if (argc >= 2 && strcmp(argv[1], "__listen") == 0)
		return listener_main(argc, argv);

	memset(&cli, 0, sizeof(cli));
	cli.config = DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "+c:s:hV", longopts, NULL)) != -1 ||
	    optind < argc) {
		if (ch == -1) {
			/* A non-option: the command first, then its arguments. */
			if (cli.cmd == NULL)
				cli.cmd = argv[optind];
			else if (cli.nargs < 4)
				cli.args[cli.nargs++] = argv[optind];
			else {
				fprintf(stderr, "deployd: too many arguments\n");
				return 2;
			}
			optind++;
			continue;
		}
		switch (ch) {
		case 'c': cli.config = optarg; cli.config_given = 1; break;
		case 's': cli.socket = optarg; break;
		case 'j': cli.json = 1; break;
		case 'w': cli.wait = 1; break;
		case 'r': cli.rev = optarg; break;
		case 'd': cli.dir = optarg; break;
		case 'f': cli.fleet = 1; break;
		case 'h': help = 1; break;
		case 'V': printf("deployd %s\n", DEPLOYD_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (cli.cmd == NULL) {
		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	for (i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, cli.cmd) == 0)
			cmd = &cmds[i];
	if (cmd == NULL) {
		fprintf(stderr, "deployd: unknown command '%s'; try deployd --help\n", cli.cmd);
		return 2;
	}
	if (help) {
		printf("usage: deployd %s\n  %s\n", cmd->usage, cmd->help);
		return 0;
	}
	nargs = cli.nargs;
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "usage: deployd %s\n", cmd->usage);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "deployd: libsodium failed to initialise\n");
		return 1;
	}
	return cmd->fn(&cli);
}
