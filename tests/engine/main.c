/* main.c: deployd-engine, the engine without the daemon: deploys a repository's branch into a directory. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "deploy/deploy.h"

/*
 * It links the floor and the engine only (Makefile.am), so that it links at all proves
 * that the engine calls nothing of the daemon. The fetch helper is this program re-run.
 */
static void
usage(void)
{
	fprintf(stderr, "usage: deployd-engine deploy|prepare|activate|discard|recover "
	    "-r REPO -b BRANCH -p PATH -s STATE_DIR\n"
	    "\t[--rev REV] [--release NAME] [--pre-activate 'ARGV'] [--post-activate 'ARGV']\n");
}

/* A hook's argv from one string, split at spaces (the tests need no quoting). */
static void
argv_of(struct strv *sv, char *s)
{
	char *tok, *save = NULL;

	for (tok = strtok_r(s, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
		util_strv_push(sv, tok);
}

static int
run_deploy(const struct site *s, const char *rel, struct deploy_request *q,
    struct deploy_result *r, struct error *e)
{
	(void)rel;
	(void)e;
	return engine_deploy(s, q, r, NULL, NULL);
}

static int
run_prepare(const struct site *s, const char *rel, struct deploy_request *q,
    struct deploy_result *r, struct error *e)
{
	(void)rel;
	(void)e;
	return engine_prepare(s, q, r, NULL, NULL);
}

static int
run_activate(const struct site *s, const char *rel, struct deploy_request *q,
    struct deploy_result *r, struct error *e)
{
	(void)e;
	return engine_activate(s, rel, q, r, NULL, NULL);
}

static int
run_discard(const struct site *s, const char *rel, struct deploy_request *q,
    struct deploy_result *r, struct error *e)
{
	(void)q;
	(void)r;
	return engine_discard(s, rel, e);
}

static int
run_recover(const struct site *s, const char *rel, struct deploy_request *q,
    struct deploy_result *r, struct error *e)
{
	(void)rel;
	(void)q;
	(void)r;
	return recover_site(s, e);
}

static const struct {
	const char	*name;
	int		(*fn)(const struct site *, const char *, struct deploy_request *,
			    struct deploy_result *, struct error *);
} cmds[] = {
	{ "deploy", run_deploy },
	{ "prepare", run_prepare },
	{ "activate", run_activate },
	{ "discard", run_discard },
	{ "recover", run_recover },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "branch", required_argument, NULL, 'b' },
		{ "path", required_argument, NULL, 'p' },
		{ "state", required_argument, NULL, 's' },
		{ "rev", required_argument, NULL, 'R' },
		{ "release", required_argument, NULL, 'n' },
		{ "pre-activate", required_argument, NULL, 'P' },
		{ "post-activate", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	struct deploy_request req;
	struct deploy_result res;
	struct site site;
	struct error e = { 0 };
	const char *release = NULL;
	size_t i, cmd = sizeof(cmds) / sizeof(cmds[0]);
	int ch, rc;

	if (argc >= 2 && strcmp(argv[1], "__fetch") == 0)
		return fetcher_main(argc, argv);
	for (i = 0; argc >= 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmds[i].name, argv[1]) == 0)
			cmd = i;
	if (cmd == sizeof(cmds) / sizeof(cmds[0])) {
		usage();
		return 2;
	}
	memset(&site, 0, sizeof(site));
	memset(&req, 0, sizeof(req));
	site.name = (char *)(uintptr_t)"engine";
	site.keep = 5;
	site.reuse = REUSE_AUTO;
	site.hooks.timeout_ms = HOOKRUN_TIMEOUT_MS;
	req.trigger = TRIG_MANUAL;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "r:b:p:s:", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': site.repo = optarg; break;
		case 'b': site.branch = optarg; break;
		case 'p': site.path = optarg; break;
		case 's': site.state_dir = optarg; break;
		case 'R': util_strlcpy(req.rev, optarg, sizeof(req.rev)); break;
		case 'n': release = optarg; break;
		case 'P': argv_of(&site.hooks.pre_activate, optarg); break;
		case 'A': argv_of(&site.hooks.post_activate, optarg); break;
		default: usage(); return 2;
		}
	}
	if (optind != argc || site.repo == NULL || site.branch == NULL || site.path == NULL ||
	    site.state_dir == NULL) {
		usage();
		return 2;
	}
	if (sodium_init() < 0 || engine_init() != E_OK)
		return 1;
	log_init(LOG_LVL_INFO, 0);
	memset(&res, 0, sizeof(res));
	if ((rc = cmds[cmd].fn(&site, release, &req, &res, &e)) != E_OK && res.error[0] == '\0')
		util_strlcpy(res.error, e.msg, sizeof(res.error));
	engine_shutdown();
	util_strv_free(&site.hooks.pre_activate);
	util_strv_free(&site.hooks.post_activate);
	if (rc != E_OK) {
		fprintf(stderr, "deployd-engine: %s\n", res.error);
		return 1;
	}
	/* One line a script can read: the commit and the release, and what became of it. */
	if (res.commit[0] != '\0')
		printf("%s %s %s\n", res.commit, res.release, res.changed ? "live" :
		    res.prepared ? "prepared" : "unchanged");
	return 0;
}
