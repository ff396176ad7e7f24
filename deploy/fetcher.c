/* fetcher.c: the fetch helper process (`deployd __fetch`): arguments, answers, --serve. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <sodium.h>

#include "deploy/deploy.h"

/* Options first, then "-- CACHE URL". 0, or -1 with the usage error set. */
static int
fetcher_args(int argc, char **argv, struct fetcher_opts *o)
{
	const struct {
		const char	 *flag;
		const char	**dst;
	} opts[] = {
		{ "--branch", &o->branch },
		{ "--tags", &o->tags },
		{ "--ssh-key", &o->ssh_key },
		{ "--known-hosts", &o->known_hosts },
		{ "--token-file", &o->token_file },
		{ "--token-user", &o->token_user },
		{ "--ca-file", &o->ca_file },
		{ "--keep", &o->keep },
		{ "--grace", &o->grace },
	};
	size_t j;
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--ls-remote") == 0) {
			o->ls_remote = 1;
			continue;
		}
		if (strcmp(argv[i], "--serve") == 0 && argc == 3) {
			o->serve = 1;
			return 0;
		}
		if (strcmp(argv[i], "--fresh") == 0) {
			o->fresh = 1;
			continue;
		}
		if (strcmp(argv[i], "--upkeep") == 0) {
			o->upkeep = 1;
			continue;
		}
		for (j = 0; j < sizeof(opts) / sizeof(opts[0]); j++)
			if (strcmp(argv[i], opts[j].flag) == 0 && i + 1 < argc)
				break;
		if (j == sizeof(opts) / sizeof(opts[0]))
			return -1;
		*opts[j].dst = argv[++i];
	}
	if (i + 3 != argc || (o->branch == NULL) == (o->tags == NULL))
		return -1;
	o->cache = argv[i + 1];
	o->url = argv[i + 2];
	return 0;
}

/* What one request does; 0 or -1 with remote_error() set. */
static int
fetcher_run(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	struct error e = { 0 };
	struct stat st;
	char host[256], shown[512];
	int rc = -1, port;

	ref[0] = '\0';
	remote_fail_clear();
	cred_redact_url(o->url, shown, sizeof(shown));
	/* Upkeep works on the cache alone: the remote may be down meanwhile. */
	if (o->upkeep) {
		uint64_t grace = 0;

		if (o->grace == NULL || util_parse_uint(o->grace, INT64_MAX, &grace) != E_OK)
			remote_fail("usage: --upkeep needs --grace SECONDS");
		else if ((rc = upkeep_repack(o->cache, o->keep, (int64_t)grace, tip)) == 0)
			util_strlcpy(ref, "upkeep", reflen);
	} else if (cred_url_ssh(o->url, host, sizeof(host), &port) && o->known_hosts == NULL)
		remote_fail("%s is an SSH remote but known_hosts is not set; deployd never "
		    "trusts a host key on first use (ssh-keyscan -p %d %s > FILE)", shown, port,
		    host);
	else if (o->url[0] == '/' && stat(o->url, &st) != 0)
		/* libgit2 calls a missing local path an "unsupported URL protocol". */
		remote_fail("repository %s: %s", shown, strerror(errno));
	else if (o->ca_file != NULL && cred_ca(o->ca_file, &e) != E_OK)
		remote_fail("%s", e.msg);
	else if (o->ls_remote)
		rc = remote_ls(o, tip, ref, reflen);
	else if (o->fresh)
		rc = remote_fetch_fresh(o, tip, ref, reflen);
	else
		rc = remote_fetch(o, tip, ref, reflen);
	return rc;
}

static void
fetcher_reply(int rc, const git_oid *tip, const char *ref)
{
	if (rc == 0)
		printf("ok %s %s\n", git_oid_tostr_s(tip), ref);
	else
		printf("error %s\n", remote_error()[0] != '\0' ? remote_error() : "fetch failed");
	fflush(stdout);
}

/*
 * `__fetch --serve`: answer ls-remote requests from stdin until it closes. A request is the
 * one-shot helper's arguments (after "__fetch"), each ending in NUL, then an empty one; the
 * answer is the same one line. Only ls-remote without a CA file is served: other requests
 * change process-wide state.
 */
static int
fetcher_serve(char *exe)
{
	struct fetcher_opts o;
	struct strv args = { 0 };
	char *field = NULL, ref[FETCH_REF_MAX];
	size_t cap = 0;
	ssize_t n;
	git_oid tip;
	int rc;

	memset(&tip, 0, sizeof(tip));
	util_strv_push(&args, exe);
	util_strv_push(&args, "__fetch");
	while ((n = getdelim(&field, &cap, '\0', stdin)) > 0) {
		if (n > 1 || field[0] != '\0') {
			util_strv_push(&args, field);
			continue;
		}
		if (fetcher_args((int)args.n, args.v, &o) != 0 || !o.ls_remote ||
		    o.ca_file != NULL || o.serve) {
			remote_fail("usage: a served request is ls-remote without a CA file");
			rc = -1;
		} else
			rc = fetcher_run(&o, &tip, ref, sizeof(ref));
		fetcher_reply(rc, &tip, ref);
		while (args.n > 2)
			free(args.v[--args.n]);
		args.v[args.n] = NULL;
	}
	free(field);
	util_strv_free(&args);
	git_libgit2_shutdown();
	return 0;
}

/*
 * "deployd __fetch [--ls-remote | --fresh | --upkeep --grace S --keep IDS] (--branch B | --tags GLOB) [--ssh-key F]
 * [--known-hosts F] [--token-file F] [--token-user U] [--ca-file F] -- CACHE URL": prints
 * "ok <commit> <ref>" or "error <message>"; exits 0 or 1.
 */
int
fetcher_main(int argc, char **argv)
{
	struct fetcher_opts o;
	char ref[FETCH_REF_MAX];
	git_oid tip;
	int rc;

	/* A fetch must not outlive a daemon killed with SIGKILL: it would race the next one. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	if (fetcher_args(argc, argv, &o) != 0) {
		printf("error usage: deployd __fetch [--ls-remote | --fresh | --upkeep] "
		    "(--branch B | --tags GLOB) "
		    "[--ssh-key F] [--known-hosts F] [--token-file F] [--token-user U] "
		    "[--ca-file F] -- CACHE URL\n");
		fflush(stdout);
		return 1;
	}
	if (sodium_init() < 0) {
		printf("error libsodium failed to initialise\n");
		fflush(stdout);
		return 1;
	}
	if (repo_init() != E_OK) {
		printf("error libgit2 failed to initialise\n");
		fflush(stdout);
		return 1;
	}
	/* The source may be a local repository owned by another user: it is trusted config. */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	if (o.serve)
		return fetcher_serve(argv[0]);
	rc = fetcher_run(&o, &tip, ref, sizeof(ref));
	fetcher_reply(rc, &tip, ref);
	git_libgit2_shutdown();
	return rc != 0 || ferror(stdout) ? 1 : 0;
}
