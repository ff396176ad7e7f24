/* fetch.c: bring a site's branch into its bare cache, in a child process with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "deployd.h"

/*
 * libgit2 1.5.1 leaks on some failing fetches (a reference in revparse during negotiation with a
 * damaged cache). The child exits right after, so under LeakSanitizer those allocations are
 * ignored rather than turned into a failed fetch.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FETCH_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FETCH_LSAN 1
#endif
#endif
#ifdef FETCH_LSAN
#include <sanitizer/lsan_interface.h>
#define fetch_lsan_disable()	__lsan_disable()
#define fetch_lsan_enable()	__lsan_enable()
#else
#define fetch_lsan_disable()	do { } while (0)
#define fetch_lsan_enable()	do { } while (0)
#endif

extern char **environ;

#define FETCH_OUT_MAX	1024	/* the child prints one short line */

static char fetch_exe[PATH_MAX] = "/proc/self/exe";
static int64_t fetch_timeout_ms = FETCH_TIMEOUT_MS;

/* Tests run from programs that are not deployd; they point this at a binary that is. */
void
fetch_set_exe(const char *path)
{
	util_strlcpy(fetch_exe, path != NULL ? path : "/proc/self/exe", sizeof(fetch_exe));
}

void
fetch_set_timeout_ms(int64_t ms)
{
	fetch_timeout_ms = ms > 0 ? ms : FETCH_TIMEOUT_MS;
}

char *
fetch_cache_path(const struct config *cfg, const struct site_config *site)
{
	return util_xasprintf("%s/%s/cache.git", cfg->state_dir, site->name);
}

/* A spawned child must not inherit the daemon's blocked signals or its handlers. */
static void
fetch_spawn_attr(posix_spawnattr_t *attr)
{
	static const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD,
	    SIGUSR1, SIGUSR2, SIGALRM };
	sigset_t none, dfl;
	size_t i;

	sigemptyset(&none);
	sigemptyset(&dfl);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&dfl, sigs[i]);
	posix_spawnattr_init(attr);
	/* Its own process group, so a timeout kills whatever the transport started (ssh). */
	posix_spawnattr_setpgroup(attr, 0);
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &dfl);
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
}

/* Reap pid, waiting at most until deadline (monotonic ms); then kill it and reap for sure. */
static int
fetch_reap(pid_t pid, int64_t deadline, int *status)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return E_OK;
		if (r < 0 && errno != EINTR)
			return E_SYS;
		if (util_mono_ms() >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while ((r = waitpid(pid, status, 0)) < 0 && errno == EINTR)
		;
	return E_TIMEOUT;
}

/* Parse the child's one line: "ok <40-hex>" or "error <message>". */
static int
fetch_parse_reply(char *out, int status, char tip[SHA_HEX], struct error *e)
{
	char clean[sizeof(e->msg)];
	char *nl;
	size_t i;

	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
	if (strncmp(out, "ok ", 3) == 0 && strlen(out + 3) == 40 && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0) {
		for (i = 0; i < 40; i++)
			if (strchr("0123456789abcdef", out[3 + i]) == NULL)
				break;
		if (i == 40) {
			util_strlcpy(tip, out + 3, SHA_HEX);
			return E_OK;
		}
	}
	if (strncmp(out, "error ", 6) == 0) {
		util_sanitize(out + 6, clean, sizeof(clean));
		return util_error(e, E_GIT, "%s", clean);
	}
	if (WIFSIGNALED(status))
		return util_error(e, E_GIT, "fetch helper %s killed by signal %d", fetch_exe,
		    WTERMSIG(status));
	util_sanitize(out, clean, sizeof(clean));
	return util_error(e, E_GIT, "fetch helper %s failed (exit status %d)%s%s", fetch_exe,
	    WIFEXITED(status) ? WEXITSTATUS(status) : -1, clean[0] ? ": " : "", clean);
}

/*
 * libgit2 1.5.1 has no server timeout and a stalled read fires no callback, so the fetch runs in
 * a child (this binary's "__fetch" subcommand) that we can kill at a deadline.
 */
int
fetch_site(const struct config *cfg, const struct site_config *site, char tip[SHA_HEX],
    struct error *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char out[FETCH_OUT_MAX + 1];
	char *dir, *cache, *refspec, *argv[6];
	size_t outlen = 0;
	int64_t deadline;
	int p[2], status = 0, rc, timed_out = 0;
	pid_t pid;

	tip[0] = '\0';
	if (site->branch == NULL)
		return util_error(e, E_CONFIG, "site %s: deploying tags is not supported yet",
		    site->name);
	dir = util_xasprintf("%s/%s", cfg->state_dir, site->name);
	if (util_mkdir_p(dir, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", dir);
		free(dir);
		return rc;
	}
	free(dir);
	if (pipe2(p, O_CLOEXEC) != 0)
		return util_error_sys(e, "pipe");
	cache = fetch_cache_path(cfg, site);
	refspec = util_xasprintf("+refs/heads/%s:refs/heads/%s", site->branch, site->branch);
	/*
	 * Credentials (ssh_key, known_hosts, token_file, ca_file) are for a later issue: they will
	 * travel to the child as further arguments or an inherited descriptor, never in argv
	 * as secrets.
	 */
	argv[0] = fetch_exe;
	argv[1] = (char *)(uintptr_t)"__fetch";
	argv[2] = cache;
	argv[3] = site->repo;
	argv[4] = refspec;
	argv[5] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	fetch_spawn_attr(&attr);
	rc = posix_spawn(&pid, fetch_exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	free(cache);
	free(refspec);
	if (rc != 0) {
		close(p[0]);
		errno = rc;
		return util_error_sys(e, "starting fetch helper %s", fetch_exe);
	}

	deadline = util_mono_ms() + fetch_timeout_ms;
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int64_t left = deadline - util_mono_ms();
		ssize_t n;
		int r;

		if (left <= 0) {
			timed_out = 1;
			break;
		}
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = util_error_sys(e, "poll");
			break;
		}
		if (r == 0)
			continue;
		if (outlen < FETCH_OUT_MAX)
			n = read(p[0], out + outlen, FETCH_OUT_MAX - outlen);
		else {
			char sink[256];	/* more than one line: drain it, keep the first */

			n = read(p[0], sink, sizeof(sink));
			if (n > 0)
				continue;
		}
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		outlen += (size_t)n;
	}
	close(p[0]);
	out[outlen] = '\0';
	/* After EOF the child only has to exit; it gets the rest of the deadline to do so. */
	if (rc != E_OK || timed_out || fetch_reap(pid, deadline, &status) == E_TIMEOUT) {
		if (rc != E_OK) {
			fetch_reap(pid, 0, &status);
			return rc;
		}
		if (timed_out)
			fetch_reap(pid, 0, &status);
		return util_error(e, E_TIMEOUT, "fetch timed out after %lld s",
		    (long long)((fetch_timeout_ms + 999) / 1000));
	}
	return fetch_parse_reply(out, status, tip, e);
}

/* ---- the child ---- */

/*
 * Errors that point at a damaged cache rather than at the remote or the network: worth one
 * fresh clone. Repository, OS and indexer errors are left out: a missing local source or a bad
 * pack from the server would otherwise throw away a good cache on every poll.
 */
static const int fetch_cache_error_classes[] = {
	GIT_ERROR_ODB, GIT_ERROR_OBJECT, GIT_ERROR_ZLIB, GIT_ERROR_REFERENCE,
};

static int
fetch_cache_error(void)
{
	const git_error *ge = git_error_last();
	size_t i;

	if (ge == NULL)
		return 0;
	for (i = 0; i < sizeof(fetch_cache_error_classes) / sizeof(int); i++)
		if (ge->klass == fetch_cache_error_classes[i])
			return 1;
	return 0;
}

/* A URL for messages, without any user:password@ part. */
static void
fetch_redact_url(const char *url, char *buf, size_t len)
{
	const char *scheme = strstr(url, "://"), *at, *slash;

	if (scheme != NULL && (at = strchr(scheme + 3, '@')) != NULL &&
	    ((slash = strchr(scheme + 3, '/')) == NULL || at < slash))
		snprintf(buf, len, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
	else
		util_strlcpy(buf, url, len);
}

/* The child's one error line, kept until the last attempt so the parent sees only that. */
static char fetch_child_err[1024];

static void
fetch_child_fail(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(fetch_child_err, sizeof(fetch_child_err), fmt, ap);
	va_end(ap);
	for (p = fetch_child_err; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static const char *
fetch_git_msg(void)
{
	const git_error *ge = git_error_last();

	return ge != NULL && ge->message != NULL ? ge->message : "unknown git error";
}

/* Open the bare cache, or create it; a cache that does not even open is re-created. */
static int
fetch_open_cache(const char *dir, git_repository **repo)
{
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (git_repository_open_ext(repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH |
		    GIT_REPOSITORY_OPEN_BARE, NULL) == 0)
			return 0;
		fprintf(stderr, "deployd: cache %s is broken (%s); cloning afresh\n", dir,
		    fetch_git_msg());
		if (util_rm_rf_at(AT_FDCWD, dir) != E_OK) {
			fetch_child_fail("removing broken cache %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	if (git_repository_init(repo, dir, 1) != 0) {
		fetch_child_fail("creating cache %s: %s", dir, fetch_git_msg());
		return -1;
	}
	return 0;
}

/* One fetch into repo; fills tip from the remote's advertisement. -1: failed, *cache_err set. */
static int
fetch_once(git_repository *repo, const char *url, const char *refspec, git_oid *tip,
    int *cache_err)
{
	git_remote_create_options ropts;
	git_fetch_options opts;
	struct stat st;
	char *specs[1] = { (char *)(uintptr_t)refspec };
	git_strarray refspecs = { specs, 1 };
	const git_remote_head **heads;
	git_remote *remote = NULL;
	git_commit *c = NULL;
	char shown[512], branch[256];
	const char *src_end = strchr(refspec, ':');
	size_t n, i, srclen;
	int rc = -1, grc;

	*cache_err = 0;
	fetch_redact_url(url, shown, sizeof(shown));
	/* refspec is "+refs/heads/B:refs/heads/B"; its source is what the remote must have. */
	srclen = src_end != NULL ? (size_t)(src_end - refspec - 1) : 0;
	snprintf(branch, sizeof(branch), "%.*s", (int)(srclen > 11 ? srclen - 11 : 0),
	    refspec + 12);
	/* libgit2 calls a missing local path an "unsupported URL protocol"; say what it is. */
	if (url[0] == '/' && stat(url, &st) != 0) {
		fetch_child_fail("repository %s: %s", shown, strerror(errno));
		return -1;
	}
	git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
	opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	opts.update_fetchhead = 0;
	/* Credentials and certificate_check callbacks go into opts.callbacks (later issue). */

	/*
	 * An anonymous remote without url.<base>.insteadOf rewriting: the configured URL is the
	 * one fetched. (libgit2 1.5.1 also leaks PCRE2 match data while applying insteadOf.)
	 */
	git_remote_create_options_init(&ropts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ropts.repository = repo;
	ropts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
	    GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, url, &ropts) != 0) {
		fetch_child_fail("fetching %s: %s", shown, fetch_git_msg());
		goto out;
	}
	fetch_lsan_disable();
	grc = git_remote_fetch(remote, &refspecs, &opts, "deployd fetch");
	fetch_lsan_enable();
	if (grc != 0) {
		*cache_err = fetch_cache_error();
		fetch_child_fail("fetching %s: %s", shown, fetch_git_msg());
		goto out;
	}
	if (git_remote_ls(&heads, &n, remote) != 0) {
		fetch_child_fail("listing refs of %s: %s", shown, fetch_git_msg());
		goto out;
	}
	for (i = 0; i < n; i++)
		if (strlen(heads[i]->name) == srclen &&
		    strncmp(heads[i]->name, refspec + 1, srclen) == 0)
			break;
	if (i == n) {
		fetch_child_fail("branch '%s' not found on %s", branch, shown);
		goto out;
	}
	git_oid_cpy(tip, &heads[i]->oid);
	if (git_commit_lookup(&c, repo, tip) != 0) {
		*cache_err = 1;
		fetch_child_fail("branch '%s' of %s: tip %s is not a commit in the cache: %s",
		    branch, shown, git_oid_tostr_s(tip), fetch_git_msg());
		goto out;
	}
	rc = 0;
out:
	git_commit_free(c);
	git_remote_free(remote);
	return rc;
}

/*
 * Clone afresh beside the cache and swap it in only on success, so a failing re-clone never
 * leaves less than there was.
 */
static int
fetch_reclone(const char *dir, const char *url, const char *refspec, git_oid *tip)
{
	git_repository *repo = NULL;
	char *fresh = util_xasprintf("%s.new", dir);
	int cache_err, rc = -1;

	if (util_rm_rf_at(AT_FDCWD, fresh) != E_OK)
		fetch_child_fail("removing %s: %s", fresh, strerror(errno));
	else if (git_repository_init(&repo, fresh, 1) != 0)
		fetch_child_fail("creating cache %s: %s", fresh, fetch_git_msg());
	else if (fetch_once(repo, url, refspec, tip, &cache_err) == 0) {
		git_repository_free(repo);
		repo = NULL;
		if (util_rm_rf_at(AT_FDCWD, dir) != E_OK || rename(fresh, dir) != 0)
			fetch_child_fail("replacing cache %s: %s", dir, strerror(errno));
		else
			rc = 0;
	}
	git_repository_free(repo);
	if (rc != 0)
		util_rm_rf_at(AT_FDCWD, fresh);
	free(fresh);
	return rc;
}

/* "deployd __fetch CACHE URL REFSPEC": prints "ok <tip>" or "error <message>"; exit 0 or 1. */
int
fetch_child_main(int argc, char **argv)
{
	git_repository *repo = NULL;
	git_oid tip;
	int cache_err = 0, rc = 1;

	if (argc != 5 || strcmp(argv[1], "__fetch") != 0 ||
	    strncmp(argv[4], "+refs/heads/", 12) != 0 || strchr(argv[4], ':') == NULL) {
		printf("error usage: deployd __fetch CACHE URL +refs/heads/B:refs/heads/B\n");
		fflush(stdout);
		return 1;
	}
	git_libgit2_init();
	/* The source may be a local repository owned by another user: it is trusted config. */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	if (fetch_open_cache(argv[2], &repo) == 0) {
		if (fetch_once(repo, argv[3], argv[4], &tip, &cache_err) == 0)
			rc = 0;
		git_repository_free(repo);
		if (rc != 0 && cache_err) {
			fprintf(stderr, "deployd: fetch into %s failed in the cache (%s); "
			    "cloning afresh\n", argv[2], fetch_child_err);
			if (fetch_reclone(argv[2], argv[3], argv[4], &tip) == 0)
				rc = 0;
		}
	}
	if (rc == 0)
		printf("ok %s\n", git_oid_tostr_s(&tip));
	if (rc != 0)
		printf("error %s\n", fetch_child_err[0] ? fetch_child_err : "fetch failed");
	git_libgit2_shutdown();
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
