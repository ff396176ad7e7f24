/* fetch.c: bring a site's branch or tag into its bare cache, in a child process with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <sodium.h>

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

/* What the helper is asked to do. */
enum fetch_mode {
	FETCH_UPDATE,		/* fetch into the cache, cloning afresh if it is damaged */
	FETCH_LS_REMOTE,	/* only ask the remote for its tip */
	FETCH_FRESH,		/* clone afresh: the cache is known to be damaged */
};

static char fetch_exe[PATH_MAX] = "/proc/self/exe";
static int64_t fetch_timeout_override;

/* Tests run from programs that are not deployd; they point this at a binary that is. */
void
fetch_set_exe(const char *path)
{
	util_strlcpy(fetch_exe, path != NULL ? path : "/proc/self/exe", sizeof(fetch_exe));
}

void
fetch_set_timeout_ms(int64_t ms)
{
	fetch_timeout_override = ms > 0 ? ms : 0;
}

static int64_t
fetch_timeout_ms(const struct site_config *site)
{
	if (fetch_timeout_override > 0)
		return fetch_timeout_override;
	return site->fetch_timeout_ms > 0 ? site->fetch_timeout_ms : FETCH_TIMEOUT_MS;
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

static int
fetch_is_hex40(const char *s)
{
	size_t i;

	for (i = 0; i < 40; i++)
		if (s[i] == '\0' || strchr("0123456789abcdef", s[i]) == NULL)
			return 0;
	return 1;
}

/* Parse the child's one line: "ok <40-hex> <ref>" or "error <message>". */
static int
fetch_parse_reply(char *out, int status, struct fetch_result *fr, struct error *e)
{
	char clean[sizeof(e->msg)];
	const char *ref;
	char *nl;
	size_t i;

	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
	if (strncmp(out, "ok ", 3) == 0 && fetch_is_hex40(out + 3) && out[43] == ' ' &&
	    WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		ref = out + 44;
		/* Ref names have no spaces or control characters; anything else is not ours. */
		for (i = 0; ref[i] != '\0'; i++)
			if ((unsigned char)ref[i] <= ' ' || ref[i] == 0x7f)
				break;
		if (ref[i] == '\0' && i > 5 && i < sizeof(fr->ref)) {
			memcpy(fr->tip, out + 3, 40);
			fr->tip[40] = '\0';
			util_strlcpy(fr->ref, ref, sizeof(fr->ref));
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
 * The helper's command line. Credentials travel as the paths of the files that hold them,
 * never as the secrets themselves: the child reads them at each fetch, so rotating a key or a
 * token needs no restart.
 */
static void
fetch_argv(const struct config *cfg, const struct site_config *site, enum fetch_mode mode,
    struct strv *av)
{
	const struct {
		const char	*flag;
		const char	*value;
	} opts[] = {
		{ "--branch", site->branch },
		{ "--tags", site->tags },
		{ "--ssh-key", site->ssh_key },
		{ "--known-hosts", site->known_hosts },
		{ "--token-file", site->token_file },
		{ "--token-user", site->token_user },
		{ "--ca-file", site->ca_file },
	};
	char *cache = fetch_cache_path(cfg, site);
	size_t i;

	util_strv_push(av, fetch_exe);
	util_strv_push(av, "__fetch");
	if (mode == FETCH_LS_REMOTE)
		util_strv_push(av, "--ls-remote");
	if (mode == FETCH_FRESH)
		util_strv_push(av, "--fresh");
	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (opts[i].value == NULL)
			continue;
		util_strv_push(av, opts[i].flag);
		util_strv_push(av, opts[i].value);
	}
	util_strv_push(av, "--");
	util_strv_push(av, cache);
	util_strv_push(av, site->repo);
	free(cache);
}

/*
 * The child's stdout is a stream of lines: "progress OBJECTS TOTAL BYTES" while it downloads,
 * then one reply line. Progress goes to fn; the first other line is kept as the reply.
 */
struct fetch_reader {
	char		 buf[FETCH_OUT_MAX + 1];
	size_t		 len;
	char		 reply[FETCH_OUT_MAX + 1];
	int		 have_reply;
	int		 skipping;	/* the current line overflowed buf: drop it */
	fetch_progress_fn fn;
	void		*arg;
};

static void
fetch_reader_line(struct fetch_reader *rd, char *line)
{
	struct deploy_progress p = { 0 };
	long long objs, total, bytes;

	if (strncmp(line, "progress ", 9) == 0) {
		if (rd->fn != NULL && sscanf(line + 9, "%lld %lld %lld", &objs, &total,
		    &bytes) == 3 && objs >= 0 && total >= 0 && bytes >= 0) {
			p.objects = objs;
			p.objects_total = total;
			p.bytes = bytes;
			rd->fn(rd->arg, &p);
		}
		return;
	}
	if (!rd->have_reply) {
		util_strlcpy(rd->reply, line, sizeof(rd->reply));
		rd->have_reply = 1;
	}
}

static void
fetch_reader_feed(struct fetch_reader *rd, const char *data, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (data[i] == '\n') {
			rd->buf[rd->len] = '\0';
			if (!rd->skipping)
				fetch_reader_line(rd, rd->buf);
			rd->len = 0;
			rd->skipping = 0;
		} else if (rd->len < FETCH_OUT_MAX)
			rd->buf[rd->len++] = data[i];
		else
			rd->skipping = 1;
	}
}

/*
 * libgit2 1.5.1 has no server timeout and a stalled read fires no callback, so the fetch runs in
 * a child (this binary's "__fetch" subcommand) that we can kill at a deadline. Per-site
 * settings libgit2 keeps process-wide (the CA file) stay per site that way, too.
 */
static int
fetch_run(const struct config *cfg, const struct site_config *site, enum fetch_mode mode,
    fetch_progress_fn fn, void *arg, struct fetch_result *fr, struct error *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct strv av = { 0 };
	struct fetch_reader *rd;
	char *dir;
	int64_t deadline, limit = fetch_timeout_ms(site);
	int p[2], status = 0, rc, timed_out = 0;
	pid_t pid;

	memset(fr, 0, sizeof(*fr));
	dir = util_xasprintf("%s/%s", cfg->state_dir, site->name);
	if (util_mkdir_p(dir, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", dir);
		free(dir);
		return rc;
	}
	free(dir);
	if (pipe2(p, O_CLOEXEC) != 0)
		return util_error_sys(e, "pipe");
	fetch_argv(cfg, site, mode, &av);

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	fetch_spawn_attr(&attr);
	rc = posix_spawn(&pid, fetch_exe, &fa, &attr, av.v, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	util_strv_free(&av);
	if (rc != 0) {
		close(p[0]);
		errno = rc;
		return util_error_sys(e, "starting fetch helper %s", fetch_exe);
	}

	rd = util_xcalloc(1, sizeof(*rd));
	rd->fn = fn;
	rd->arg = arg;
	deadline = util_mono_ms() + limit;
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int64_t left = deadline - util_mono_ms();
		char chunk[4096];
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
		n = read(p[0], chunk, sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		fetch_reader_feed(rd, chunk, (size_t)n);
	}
	close(p[0]);
	/* A reply cut off by the child's death has no newline: it still explains. */
	if (!rd->have_reply && rd->len > 0 && !rd->skipping) {
		rd->buf[rd->len] = '\0';
		fetch_reader_line(rd, rd->buf);
	}
	/* After EOF the child only has to exit; it gets the rest of the deadline to do so. */
	if (rc != E_OK || timed_out || fetch_reap(pid, deadline, &status) == E_TIMEOUT) {
		free(rd);
		if (rc != E_OK) {
			fetch_reap(pid, 0, &status);
			return rc;
		}
		if (timed_out)
			fetch_reap(pid, 0, &status);
		return util_error(e, E_TIMEOUT, "%s timed out after %lld s",
		    mode == FETCH_LS_REMOTE ? "checking the remote" : "fetch",
		    (long long)((limit + 999) / 1000));
	}
	rc = fetch_parse_reply(rd->reply, status, fr, e);
	free(rd);
	return rc;
}

/*
 * Polls ask the remote for its tip every minute or so, for every site. Starting a helper for
 * each costs ~10 ms of CPU (this binary's libraries load and initialise), which for a thousand
 * sites would be a quarter of a core. So each worker thread keeps one helper running
 * (`__fetch --serve`) and hands it ls-remote requests, one at a time, each under a deadline:
 * a helper that misses one is killed and the next poll starts another.
 */
struct fetch_helper {
	pid_t		 pid;
	int		 in;		/* its stdin: requests */
	int		 out;		/* its stdout: one reply line each */
};
static __thread struct fetch_helper fetch_helper_self = { 0, -1, -1 };

static void
fetch_helper_close(struct fetch_helper *h, int kill_it)
{
	int status;

	if (h->in >= 0)
		close(h->in);
	if (h->out >= 0)
		close(h->out);
	h->in = h->out = -1;
	if (h->pid > 0) {
		if (kill_it) {
			kill(-h->pid, SIGKILL);
			kill(h->pid, SIGKILL);
		}
		fetch_reap(h->pid, util_mono_ms() + 1000, &status);
	}
	h->pid = 0;
}

static int
fetch_helper_start(struct fetch_helper *h, struct error *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char a1[] = "__fetch", a2[] = "--serve";
	char *av[] = { fetch_exe, a1, a2, NULL };
	int req[2], rep[2], rc;

	if (pipe2(req, O_CLOEXEC) != 0)
		return util_error_sys(e, "pipe");
	if (pipe2(rep, O_CLOEXEC) != 0) {
		close(req[0]);
		close(req[1]);
		return util_error_sys(e, "pipe");
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, req[0], 0);
	posix_spawn_file_actions_adddup2(&fa, rep[1], 1);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	fetch_spawn_attr(&attr);
	rc = posix_spawn(&h->pid, fetch_exe, &fa, &attr, av, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(req[0]);
	close(rep[1]);
	h->in = req[1];
	h->out = rep[0];
	if (rc != 0) {
		h->pid = 0;
		fetch_helper_close(h, 0);
		errno = rc;
		return util_error_sys(e, "starting fetch helper %s", fetch_exe);
	}
	return E_OK;
}

/* One request: the helper's arguments after "__fetch", each ending in NUL, then an empty one. */
static int
fetch_helper_ask(struct fetch_helper *h, const struct strv *av, int64_t deadline,
    struct fetch_reader *rd, struct error *e)
{
	char *req = NULL;
	size_t len = 0, i, n;
	int rc = E_OK;

	for (i = 2; i < av->n; i++) {
		n = strlen(av->v[i]) + 1;
		req = util_xrealloc(req, len + n + 1, 1);
		memcpy(req + len, av->v[i], n);
		len += n;
	}
	req = util_xrealloc(req, len + 1, 1);
	req[len++] = '\0';
	if (util_write_all(h->in, req, len) != E_OK)
		rc = util_error_sys(e, "writing to the fetch helper");
	free(req);
	while (rc == E_OK && !rd->have_reply) {
		struct pollfd pfd = { .fd = h->out, .events = POLLIN };
		int64_t left = deadline - util_mono_ms();
		char chunk[1024];
		ssize_t got;
		int r;

		if (left <= 0)
			return E_TIMEOUT;
		if ((r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left)) < 0 &&
		    errno != EINTR)
			return util_error_sys(e, "poll");
		if (r <= 0)
			continue;
		if ((got = read(h->out, chunk, sizeof(chunk))) < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return util_error(e, E_GIT, "the fetch helper %s stopped", fetch_exe);
		fetch_reader_feed(rd, chunk, (size_t)got);
	}
	return rc;
}

/* ls-remote through this thread's helper, started if need be. */
static int
fetch_ls_remote_served(const struct config *cfg, const struct site_config *site,
    struct fetch_result *fr, struct error *e)
{
	struct fetch_helper *h = &fetch_helper_self;
	struct fetch_reader *rd;
	struct strv av = { 0 };
	int64_t limit = fetch_timeout_ms(site), deadline = util_mono_ms() + limit;
	int rc = E_OK, attempt, fresh;

	memset(fr, 0, sizeof(*fr));
	fetch_argv(cfg, site, FETCH_LS_REMOTE, &av);
	rd = util_xcalloc(1, sizeof(*rd));
	/* A helper that died since the last poll (OOM killer, a hand) gets one replacement. */
	for (attempt = 0; attempt < 2; attempt++) {
		fresh = h->pid <= 0;
		if (fresh && (rc = fetch_helper_start(h, e)) != E_OK)
			break;
		rc = fetch_helper_ask(h, &av, deadline, rd, e);
		if (rc == E_OK || rc == E_TIMEOUT || fresh)
			break;
		fetch_helper_close(h, 1);
		memset(rd, 0, sizeof(*rd));
	}
	util_strv_free(&av);
	if (rc == E_OK)
		rc = fetch_parse_reply(rd->reply, 0, fr, e);
	else {
		fetch_helper_close(h, 1);
		if (rc == E_TIMEOUT)
			util_error(e, E_TIMEOUT, "checking the remote timed out after %lld s",
			    (long long)((limit + 999) / 1000));
	}
	free(rd);
	return rc;
}

/* Fetch the tracked branch, or the highest matching tag, into the cache. */
int
fetch_site(const struct config *cfg, const struct site_config *site, struct fetch_result *fr,
    fetch_progress_fn fn, void *arg, struct error *e)
{
	return fetch_run(cfg, site, FETCH_UPDATE, fn, arg, fr, e);
}

/* Clone the site afresh, replacing a cache found damaged after a fetch said it was fine. */
int
fetch_site_fresh(const struct config *cfg, const struct site_config *site,
    struct fetch_result *fr, struct error *e)
{
	return fetch_run(cfg, site, FETCH_FRESH, NULL, NULL, fr, e);
}

/* Ask the remote what it would deploy now, without downloading anything (ls-remote). */
int
fetch_remote_tip(const struct config *cfg, const struct site_config *site,
    struct fetch_result *fr, struct error *e)
{
	/* A CA file is a process-wide libgit2 setting: such sites keep a helper each time. */
	if (site->ca_file == NULL)
		return fetch_ls_remote_served(cfg, site, fr, e);
	return fetch_run(cfg, site, FETCH_LS_REMOTE, NULL, NULL, fr, e);
}

/* ---- the child ---- */

/* What the child was asked to do (its command line). */
struct fetch_opts {
	int		 serve;
	int		 ls_remote;
	int		 fresh;
	const char	*branch;
	const char	*tags;
	const char	*ssh_key;
	const char	*known_hosts;
	const char	*token_file;
	const char	*token_user;
	const char	*ca_file;
	const char	*cache;
	const char	*url;
};

/* One connection's callbacks' state: to whom, and why they refused, if they did. */
struct fetch_conn {
	const struct fetch_opts *o;
	const char	*url;
	char		 shown[512];	/* url without user:password@ */
	int		 ssh;
	char		 host[256];
	int		 port;
	int		 cred_calls;
	char		 why[1024];
};

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

/*
 * Is url an SSH URL (ssh://, ssh+git://, git+ssh:// or scp-like user@host:path), and to which
 * host and port? The port is not in what libgit2 tells the certificate callback.
 */
int
fetch_url_ssh(const char *url, char *host, size_t hlen, int *port)
{
	static const char *const schemes[] = { "ssh://", "ssh+git://", "git+ssh://" };
	const char *p = NULL, *end, *at, *colon, *slash;
	size_t i;

	*port = 22;
	host[0] = '\0';
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && p == NULL; i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			p = url + strlen(schemes[i]);
	if (p == NULL) {
		if (strstr(url, "://") != NULL || url[0] == '/' || url[0] == '.')
			return 0;
		/* scp-like: a colon before any slash. */
		colon = strchr(url, ':');
		slash = strchr(url, '/');
		if (colon == NULL || colon == url || (slash != NULL && slash < colon))
			return 0;
		if (url[0] == '[' && (end = strchr(url, ']')) != NULL && end[1] == ':') {
			snprintf(host, hlen, "%.*s", (int)(end - url - 1), url + 1);
			return 1;
		}
		at = memchr(url, '@', (size_t)(colon - url));
		p = at != NULL ? at + 1 : url;
		snprintf(host, hlen, "%.*s", (int)(colon - p), p);
		return 1;
	}
	end = p + strcspn(p, "/");
	for (at = end; at > p && at[-1] != '@'; at--)
		;
	p = at;
	if (*p == '[' && (colon = memchr(p, ']', (size_t)(end - p))) != NULL) {
		snprintf(host, hlen, "%.*s", (int)(colon - p - 1), p + 1);
		colon++;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		snprintf(host, hlen, "%.*s", (int)((colon != NULL ? colon : end) - p), p);
	}
	if (colon != NULL && colon < end && *colon == ':' && colon + 1 < end) {
		char *num_end;
		long v;

		errno = 0;
		v = strtol(colon + 1, &num_end, 10);
		/* A port that is not a number up to the path keeps the default; ssh will say why. */
		if (errno == 0 && num_end == end && v > 0 && v <= 65535)
			*port = (int)v;
	}
	return 1;
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

/* A connection failed: the callback's own reason if it refused, else libgit2's. */
static void
fetch_conn_fail(const struct fetch_conn *c, const char *doing)
{
	if (c->why[0] != '\0')
		fetch_child_fail("%s", c->why);
	else
		fetch_child_fail("%s %s: %s", doing, c->shown, fetch_git_msg());
}

/*
 * Credentials: the deploy key for SSH, the token for HTTPS, read from their files now. A
 * second call for the same connection means the first was refused: fail at once instead of
 * letting libgit2 ask forever.
 */
static int
fetch_cred_cb(git_credential **out, const char *url, const char *user_from_url,
    unsigned int allowed, void *payload)
{
	struct fetch_conn *c = payload;
	struct error e = { 0 };
	unsigned char *tok = NULL;
	size_t toklen = 0;
	int rc;

	(void)url;
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user_from_url != NULL ?
		    user_from_url : "git");
	if (c->cred_calls++ > 0) {
		snprintf(c->why, sizeof(c->why), "authentication failed for %s%s", c->shown,
		    c->ssh ? " (is the deploy key authorized on the server?)" :
		    " (is the token valid and allowed to read the repository?)");
		git_error_set_str(GIT_ERROR_NET, c->why);
		return GIT_EAUTH;
	}
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		if (c->o->ssh_key == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for an SSH key, but ssh_key "
			    "is not set", c->shown);
			return GIT_EAUTH;
		}
		/* Checked at every fetch: a key rotated in with loose permissions is refused. */
		if (config_check_secret_file(c->o->ssh_key, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "ssh_key %s", e.msg);
			return GIT_EAUTH;
		}
		return git_credential_ssh_key_new(out, user_from_url != NULL ? user_from_url :
		    "git", NULL, c->o->ssh_key, NULL);
	}
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
		if (c->o->token_file == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for credentials, but "
			    "token_file is not set", c->shown);
			return GIT_EAUTH;
		}
		if (config_read_secret(c->o->token_file, &tok, &toklen, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "token_file %s", e.msg);
			return GIT_EAUTH;
		}
		/* config_read_secret's buffer is larger than any secret it returns. */
		tok[toklen] = '\0';
		rc = git_credential_userpass_plaintext_new(out, c->o->token_user != NULL ?
		    c->o->token_user : "x-access-token", (const char *)tok);
		config_free_secret(tok, toklen);
		return rc;
	}
	snprintf(c->why, sizeof(c->why), "%s asks for a kind of authentication deployd does "
	    "not offer", c->shown);
	return GIT_EAUTH;
}

/*
 * libgit2 1.5.1 reports SSH host keys with valid = 0 and, without this callback, accepts any.
 * Host keys are checked against the pinned known_hosts file, never trusted on first use. TLS
 * certificates were checked by libgit2 against the CA store (and ca_file).
 */
static int
fetch_cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
	struct fetch_conn *c = payload;
	git_cert_hostkey *hk;
	struct error e = { 0 };

	if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2) {
		hk = (git_cert_hostkey *)cert;
		if (c->o->known_hosts == NULL) {
			snprintf(c->why, sizeof(c->why), "%s is an SSH remote but known_hosts "
			    "is not set; deployd never trusts a host key on first use", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (!(hk->type & GIT_CERT_SSH_RAW) || hk->hostkey == NULL) {
			snprintf(c->why, sizeof(c->why), "%s: the SSH library gave no host key "
			    "to check", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (knownhosts_check(c->o->known_hosts, host != NULL ? host : c->host,
		    c->port, (const unsigned char *)hk->hostkey, hk->hostkey_len, &e) != E_OK) {
			util_strlcpy(c->why, e.msg, sizeof(c->why));
			return GIT_ECERTIFICATE;
		}
		return 0;
	}
	if (!valid) {
		snprintf(c->why, sizeof(c->why), "TLS certificate of %s is not trusted%s",
		    host != NULL ? host : c->shown, c->o->ca_file != NULL ?
		    " (not even with ca_file)" : " (set ca_file for a private CA)");
		return GIT_ECERTIFICATE;
	}
	return 0;
}

/*
 * The parent shows how the download goes (deploy --wait, the events stream): a line at most
 * every 100 ms, and the last one when every object has arrived.
 */
static int
fetch_progress_cb(const git_indexer_progress *st, void *payload)
{
	static int64_t last;
	int64_t now = util_mono_ms();

	(void)payload;
	if (now - last < 100 && st->received_objects != st->total_objects)
		return 0;
	last = now;
	printf("progress %u %u %zu\n", st->received_objects, st->total_objects,
	    st->received_bytes);
	fflush(stdout);
	return 0;
}

static void
fetch_conn_init(struct fetch_conn *c, const struct fetch_opts *o, const char *url,
    git_remote_callbacks *cbs)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->url = url;
	fetch_redact_url(url, c->shown, sizeof(c->shown));
	c->ssh = fetch_url_ssh(url, c->host, sizeof(c->host), &c->port);
	git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs->credentials = fetch_cred_cb;
	cbs->certificate_check = fetch_cert_cb;
	cbs->transfer_progress = fetch_progress_cb;
	cbs->payload = c;
}

/* Open the bare cache, or create it; a cache that does not even open is re-created. */
static int
fetch_open_cache(const char *dir, const char *url, git_repository **repo)
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
	seed_local(*repo, url);
	return 0;
}

/* Did an earlier fetch bring ref into the cache? Then a remote without it has deleted it. */
static int
fetch_cache_has(git_repository *repo, const char *cache, const char *ref)
{
	git_repository *own = NULL;
	git_reference *r = NULL;
	int found;

	if (repo == NULL && git_repository_open_ext(&own, cache,
	    GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL) != 0)
		return 0;
	found = git_reference_lookup(&r, repo != NULL ? repo : own, ref) == 0;
	git_reference_free(r);
	git_repository_free(own);
	return found;
}

/*
 * From the remote's advertisement, the ref to deploy (refs/heads/<branch>, or the
 * highest-versioned refs/tags/<glob match>), its id, and the commit it peels to if the
 * remote said (an annotated tag's "^{}" line). 0, or -1 with the reason set.
 */
static int
fetch_pick(const struct fetch_opts *o, git_repository *repo, const struct fetch_conn *c,
    const git_remote_head **heads, size_t n, char *ref, size_t reflen, git_oid *id,
    git_oid *peeled)
{
	const char **names;
	char want[FETCH_REF_MAX];
	size_t i, nn = 0, len;
	int best;

	if (o->branch != NULL) {
		snprintf(ref, reflen, "refs/heads/%s", o->branch);
		for (i = 0; i < n; i++) {
			if (strcmp(heads[i]->name, ref) == 0) {
				git_oid_cpy(id, &heads[i]->oid);
				git_oid_cpy(peeled, &heads[i]->oid);
				return 0;
			}
		}
		if (fetch_cache_has(repo, o->cache, ref))
			fetch_child_fail("branch '%s' no longer exists on %s; current release "
			    "kept", o->branch, c->shown);
		else
			fetch_child_fail("branch '%s' not found on %s", o->branch, c->shown);
		return -1;
	}
	names = util_xcalloc(n + 1, sizeof(*names));
	for (i = 0; i < n; i++) {
		len = strlen(heads[i]->name);
		if (strncmp(heads[i]->name, "refs/tags/", 10) == 0 && len < FETCH_REF_MAX &&
		    (len < 3 || strcmp(heads[i]->name + len - 3, "^{}") != 0))
			names[nn++] = heads[i]->name + 10;
	}
	best = tags_pick(o->tags, names, nn);
	if (best < 0) {
		free(names);
		fetch_child_fail("no tag matching '%s' on %s", o->tags, c->shown);
		return -1;
	}
	snprintf(ref, reflen, "refs/tags/%s", names[best]);
	free(names);
	snprintf(want, sizeof(want), "%s^{}", ref);
	for (i = 0; i < n; i++)
		if (strcmp(heads[i]->name, ref) == 0)
			git_oid_cpy(id, &heads[i]->oid);
	git_oid_cpy(peeled, id);
	for (i = 0; i < n; i++)
		if (strcmp(heads[i]->name, want) == 0)
			git_oid_cpy(peeled, &heads[i]->oid);
	return 0;
}

/* Connect for fetching and read the advertisement. -1: failed, reason set. */
static int
fetch_connect(git_remote *remote, struct fetch_conn *c, const git_remote_callbacks *cbs,
    const git_remote_head ***heads, size_t *n)
{
	git_proxy_options proxy;
	int grc;

	git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
	fetch_lsan_disable();
	grc = git_remote_connect(remote, GIT_DIRECTION_FETCH, cbs, &proxy, NULL);
	fetch_lsan_enable();
	if (grc != 0) {
		fetch_conn_fail(c, "connecting to");
		return -1;
	}
	if (git_remote_ls(heads, n, remote) != 0) {
		fetch_conn_fail(c, "listing refs of");
		return -1;
	}
	return 0;
}

/* "ls-remote": what would be deployed now, by the commit the remote advertises. */
static int
fetch_ls_remote(const struct fetch_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetch_conn c;
	git_remote *remote = NULL;
	git_oid id;
	size_t n;
	int rc = -1;

	fetch_conn_init(&c, o, o->url, &cbs);
	if (git_remote_create_detached(&remote, o->url) != 0) {
		fetch_conn_fail(&c, "checking");
		return -1;
	}
	if (fetch_connect(remote, &c, &cbs, &heads, &n) == 0 &&
	    fetch_pick(o, NULL, &c, heads, n, ref, reflen, &id, tip) == 0)
		rc = 0;
	git_remote_disconnect(remote);
	git_remote_free(remote);
	return rc;
}

/*
 * An anonymous remote without url.<base>.insteadOf rewriting: the configured URL is the one
 * fetched. (libgit2 1.5.1 also leaks PCRE2 match data while applying insteadOf.)
 */
static int
fetch_remote_new(git_repository *repo, const char *url, git_remote **remote)
{
	git_remote_create_options ropts;

	git_remote_create_options_init(&ropts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ropts.repository = repo;
	ropts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
	    GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	return git_remote_create_with_opts(remote, url, &ropts);
}

/* Download what refspecs name over the open connection, then update the refs. 0 or -1. */
static int
fetch_download(git_remote *remote, const git_strarray *refspecs,
    const git_remote_callbacks *cbs)
{
	git_fetch_options fopts;
	int grc;

	git_fetch_options_init(&fopts, GIT_FETCH_OPTIONS_VERSION);
	fopts.callbacks = *cbs;
	fopts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fopts.update_fetchhead = 0;
	fetch_lsan_disable();
	grc = git_remote_download(remote, refspecs, &fopts);
	fetch_lsan_enable();
	git_remote_disconnect(remote);
	if (grc != 0 || git_remote_update_tips(remote, cbs, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE,
	    "deployd fetch") != 0)
		return -1;
	return 0;
}

/* One attempt at fetching every branch and tag of url into repo; then commit must be there. */
static int
fetch_module_once(git_repository *repo, const struct fetch_opts *o, const char *url,
    const struct git_oid *commit, struct error *e)
{
	static const char *const specs[] = { "+refs/heads/*:refs/heads/*",
	    "+refs/tags/*:refs/tags/*" };
	git_strarray refspecs = { (char **)(uintptr_t)specs, 2 };
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetch_conn c;
	git_remote *remote = NULL;
	git_commit *cm = NULL;
	size_t n;
	int rc = E_OK;

	fetch_conn_init(&c, o, url, &cbs);
	if (fetch_remote_new(repo, url, &remote) != 0) {
		rc = util_error_git(e, "submodule %s", c.shown);
		goto out;
	}
	if (fetch_connect(remote, &c, &cbs, &heads, &n) != 0) {
		rc = util_error(e, E_GIT, "submodule: %s", fetch_child_err);
		goto out;
	}
	if (fetch_download(remote, &refspecs, &cbs) != 0) {
		rc = c.why[0] != '\0' ? util_error(e, E_GIT, "submodule: %s", c.why) :
		    util_error_git(e, "fetching submodule %s", c.shown);
		goto out;
	}
	if (git_commit_lookup(&cm, repo, commit) != 0)
		rc = util_error(e, E_NOTFOUND, "submodule %s: commit %s is not on any branch or "
		    "tag there", c.shown, git_oid_tostr_s(commit));
out:
	git_commit_free(cm);
	git_remote_free(remote);
	return rc;
}

/*
 * One submodule: make its pinned commit present in its own bare cache (dir), fetching every
 * branch and tag of url with the site's credentials. A commit already there is immutable. A
 * cache that still lacks it after a fetch may be damaged (its refs claim what its objects
 * lack, so the server sends nothing): it gets one fresh start.
 */
static int
fetch_module(const char *url, const char *dir, const struct git_oid *commit, void *arg,
    struct error *e)
{
	const struct fetch_opts *o = arg;
	git_repository *repo = NULL;
	git_commit *cm = NULL;
	char *parent, *slash;
	int rc, attempt, fresh = 0;

	parent = util_xstrdup(dir);
	if ((slash = strrchr(parent, '/')) != NULL)
		*slash = '\0';
	if (util_mkdir_p(parent, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", parent);
		free(parent);
		return rc;
	}
	free(parent);
	for (attempt = 0; attempt < 2; attempt++) {
		if (repo == NULL && git_repository_open_ext(&repo, dir,
		    GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL) != 0) {
			util_rm_rf_at(AT_FDCWD, dir);
			fresh = 1;
			if (git_repository_init(&repo, dir, 1) != 0)
				return util_error_git(e, "creating submodule cache %s", dir);
		}
		if (git_commit_lookup(&cm, repo, commit) == 0) {
			rc = E_OK;
			break;
		}
		rc = fetch_module_once(repo, o, url, commit, e);
		if (rc == E_OK || fresh)
			break;
		fprintf(stderr, "deployd: submodule cache %s: %s; cloning afresh\n", dir, e->msg);
		git_repository_free(repo);
		repo = NULL;
		util_rm_rf_at(AT_FDCWD, dir);
	}
	git_commit_free(cm);
	git_repository_free(repo);
	return rc;
}

/* One fetch into repo: connect, pick the ref, download it, peel it. -1: failed, *cache_err set. */
static int
fetch_once(git_repository *repo, const struct fetch_opts *o, git_oid *tip, char *ref,
    size_t reflen, int *cache_err)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetch_conn c;
	struct stat st;
	char spec[2 * FETCH_REF_MAX + 2];
	char *specs[1] = { spec };
	git_strarray refspecs = { specs, 1 };
	git_remote *remote = NULL;
	git_object *obj = NULL, *peeled = NULL;
	git_oid id, adv_peeled;
	struct error se = { 0 };
	size_t n;
	int rc = -1;

	*cache_err = 0;
	fetch_conn_init(&c, o, o->url, &cbs);
	/* libgit2 calls a missing local path an "unsupported URL protocol"; say what it is. */
	if (o->url[0] == '/' && stat(o->url, &st) != 0) {
		fetch_child_fail("repository %s: %s", c.shown, strerror(errno));
		return -1;
	}
	if (fetch_remote_new(repo, o->url, &remote) != 0) {
		fetch_conn_fail(&c, "fetching");
		goto out;
	}
	if (fetch_connect(remote, &c, &cbs, &heads, &n) != 0 ||
	    fetch_pick(o, repo, &c, heads, n, ref, reflen, &id, &adv_peeled) != 0)
		goto out;
	snprintf(spec, sizeof(spec), "+%s:%s", ref, ref);
	if (fetch_download(remote, &refspecs, &cbs) != 0) {
		*cache_err = fetch_cache_error();
		fetch_conn_fail(&c, "fetching");
		goto out;
	}
	/* An annotated tag peels to its commit; a branch tip must be one. */
	if (git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY) != 0 ||
	    git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) != 0) {
		*cache_err = 1;
		fetch_child_fail("%s of %s: %s is not a commit in the cache: %s", ref, c.shown,
		    git_oid_tostr_s(&id), fetch_git_msg());
		goto out;
	}
	git_oid_cpy(tip, git_object_id(peeled));
	if (submodule_fetch_all(repo, o->cache, tip, o->url, fetch_module,
	    (void *)(uintptr_t)o, &se) != E_OK) {
		fetch_child_fail("%s", se.msg);
		goto out;
	}
	rc = 0;
out:
	git_object_free(peeled);
	git_object_free(obj);
	git_remote_free(remote);
	return rc;
}

/*
 * Clone afresh beside the cache and swap it in only on success, so a failing re-clone never
 * leaves less than there was.
 */
static int
fetch_reclone(const struct fetch_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	char *fresh = util_xasprintf("%s.new", o->cache);
	int cache_err, rc = -1;

	if (util_rm_rf_at(AT_FDCWD, fresh) != E_OK)
		fetch_child_fail("removing %s: %s", fresh, strerror(errno));
	else if (git_repository_init(&repo, fresh, 1) != 0)
		fetch_child_fail("creating cache %s: %s", fresh, fetch_git_msg());
	else if (fetch_once(repo, o, tip, ref, reflen, &cache_err) == 0) {
		git_repository_free(repo);
		repo = NULL;
		if (util_rm_rf_at(AT_FDCWD, o->cache) != E_OK || rename(fresh, o->cache) != 0)
			fetch_child_fail("replacing cache %s: %s", o->cache, strerror(errno));
		else
			rc = 0;
	}
	git_repository_free(repo);
	if (rc != 0)
		util_rm_rf_at(AT_FDCWD, fresh);
	free(fresh);
	return rc;
}

/* The submodule caches beside cache (state_dir/<site>/modules), for a fresh start. */
static void
fetch_drop_modules(const char *cache)
{
	const char *slash = strrchr(cache, '/');
	char *dir = slash != NULL ? util_xasprintf("%.*s/modules", (int)(slash - cache), cache) :
	    util_xstrdup("modules");

	util_rm_rf_at(AT_FDCWD, dir);
	free(dir);
}

/* Where the system's CA bundle lives (Debian, then Fedora); ca_file is trusted in addition. */
static const char *const fetch_system_ca[] = {
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
};

static int
fetch_copy_into(int dst, const char *path)
{
	char buf[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(dst, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(fd);
	return n < 0 ? -1 : 0;
}

/*
 * libgit2 (mbedTLS) replaces its CA store with what GIT_OPT_SET_SSL_CERT_LOCATIONS names, so
 * ca_file and the system bundle go together into one in-memory file. This child is this one
 * site's, so the setting affects no other site.
 */
static int
fetch_child_ca(const char *ca_file)
{
	char path[64];
	size_t i;
	int fd;

	if ((fd = memfd_create("deployd-ca", 0)) < 0) {
		fetch_child_fail("ca_file %s: memfd_create: %s", ca_file, strerror(errno));
		return -1;
	}
	if (fetch_copy_into(fd, ca_file) != 0 || write(fd, "\n", 1) != 1) {
		fetch_child_fail("ca_file %s: %s", ca_file, strerror(errno));
		close(fd);
		return -1;
	}
	for (i = 0; i < sizeof(fetch_system_ca) / sizeof(fetch_system_ca[0]); i++)
		if (fetch_copy_into(fd, fetch_system_ca[i]) == 0)
			break;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, path, NULL) != 0) {
		fetch_child_fail("ca_file %s: %s", ca_file, fetch_git_msg());
		close(fd);
		return -1;
	}
	/* The descriptor stays open for the child's short life: the path names it. */
	return 0;
}

/* Options first, then "-- CACHE URL". 0, or -1 with the usage error set. */
static int
fetch_child_args(int argc, char **argv, struct fetch_opts *o)
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

/* What one request does; 0 or -1 with fetch_child_err set. */
static int
fetch_child_run(const struct fetch_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	char host[256], shown[512];
	int cache_err = 0, rc = -1, port;

	ref[0] = '\0';
	fetch_child_err[0] = '\0';
	fetch_redact_url(o->url, shown, sizeof(shown));
	if (fetch_url_ssh(o->url, host, sizeof(host), &port) && o->known_hosts == NULL)
		fetch_child_fail("%s is an SSH remote but known_hosts is not set; deployd never "
		    "trusts a host key on first use (ssh-keyscan -p %d %s > FILE)", shown, port,
		    host);
	else if (o->ca_file != NULL && fetch_child_ca(o->ca_file) != 0)
		;
	else if (o->ls_remote) {
		if (fetch_ls_remote(o, tip, ref, reflen) == 0)
			rc = 0;
	} else if (o->fresh) {
		fprintf(stderr, "deployd: cloning %s afresh\n", o->cache);
		fetch_drop_modules(o->cache);
		if (fetch_reclone(o, tip, ref, reflen) == 0)
			rc = 0;
	} else if (fetch_open_cache(o->cache, o->url, &repo) == 0) {
		if (fetch_once(repo, o, tip, ref, reflen, &cache_err) == 0)
			rc = 0;
		seed_drop(repo);
		git_repository_free(repo);
		if (rc != 0 && cache_err) {
			fprintf(stderr, "deployd: fetch into %s failed in the cache (%s); "
			    "cloning afresh\n", o->cache, fetch_child_err);
			if (fetch_reclone(o, tip, ref, reflen) == 0)
				rc = 0;
		}
	}
	return rc;
}

static void
fetch_child_reply(int rc, const git_oid *tip, const char *ref)
{
	if (rc == 0)
		printf("ok %s %s\n", git_oid_tostr_s(tip), ref);
	else
		printf("error %s\n", fetch_child_err[0] ? fetch_child_err : "fetch failed");
	fflush(stdout);
}

/*
 * `__fetch --serve`: answer ls-remote requests from stdin until it closes. A request is the
 * one-shot helper's arguments (after "__fetch"), each ending in NUL, then an empty one; the
 * answer is the same one line. Only ls-remote without a CA file is served: other requests
 * change process-wide state.
 */
static int
fetch_child_serve(char *exe)
{
	struct fetch_opts o;
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
		if (fetch_child_args((int)args.n, args.v, &o) != 0 || !o.ls_remote ||
		    o.ca_file != NULL || o.serve) {
			fetch_child_fail("usage: a served request is ls-remote without a CA file");
			rc = -1;
		} else
			rc = fetch_child_run(&o, &tip, ref, sizeof(ref));
		fetch_child_reply(rc, &tip, ref);
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
 * "deployd __fetch [--ls-remote | --fresh] (--branch B | --tags GLOB) [--ssh-key F]
 * [--known-hosts F] [--token-file F] [--token-user U] [--ca-file F] -- CACHE URL": prints
 * "ok <commit> <ref>" or "error <message>"; exits 0 or 1.
 */
int
fetch_child_main(int argc, char **argv)
{
	struct fetch_opts o;
	char ref[FETCH_REF_MAX];
	git_oid tip;
	int rc;

	/* A fetch must not outlive a daemon killed with SIGKILL: it would race the next one. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	if (fetch_child_args(argc, argv, &o) != 0) {
		printf("error usage: deployd __fetch [--ls-remote | --fresh] "
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
	git_libgit2_init();
	/* The source may be a local repository owned by another user: it is trusted config. */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	if (o.serve)
		return fetch_child_serve(argv[0]);
	rc = fetch_child_run(&o, &tip, ref, sizeof(ref));
	fetch_child_reply(rc, &tip, ref);
	git_libgit2_shutdown();
	return rc != 0 || ferror(stdout) ? 1 : 0;
}
