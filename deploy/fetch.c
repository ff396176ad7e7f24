/* fetch.c: bring a site's branch or tag into its bare cache, in a child process with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deploy/deploy.h"

extern char **environ;

#define FETCH_OUT_MAX	1024	/* the child prints one short line */

/* What the helper is asked to do. */
enum fetch_mode {
	FETCH_UPDATE,		/* fetch into the cache, cloning afresh if it is damaged */
	FETCH_LS_REMOTE,	/* only ask the remote for its tip */
	FETCH_FRESH,		/* clone afresh: the cache is known to be damaged */
	FETCH_UPKEEP,		/* repack the cache (upkeep.c) */
};

static char fetch_exe[PATH_MAX] = "/proc/self/exe";
static int64_t fetch_timeout_override;

/* Tests run from programs that are not deployd; they point this at a binary that is. */
void
fetch_set_exe(const char *path)
{
	util_strlcpy(fetch_exe, path != NULL ? path : "/proc/self/exe", sizeof(fetch_exe));
	fetch_stop_helper();	/* the next poll starts the new binary */
}

void
fetch_set_timeout_ms(int64_t ms)
{
	fetch_timeout_override = ms > 0 ? ms : 0;
}

static int64_t
fetch_timeout_ms(const struct site *site)
{
	if (fetch_timeout_override > 0)
		return fetch_timeout_override;
	return site->fetch_timeout_ms > 0 ? site->fetch_timeout_ms : FETCH_TIMEOUT_MS;
}

char *
fetch_cache_path(const struct site *site)
{
	return util_xasprintf("%s/%s/cache.git", site->state_dir, site->name);
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

/*
 * Reap pid, waiting at most until deadline (monotonic ms); then kill it and reap for sure.
 * The helper has usually closed its output and is exiting: the first naps are short, so
 * neither a deploy nor a poll waits a whole 10 ms nap for an exit that took 0.1 ms.
 */
static int
fetch_reap(pid_t pid, int64_t deadline, int *status)
{
	struct timespec ts = { 0, 100 * 1000 };
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
		if ((ts.tv_nsec *= 2) > 10 * 1000 * 1000)
			ts.tv_nsec = 10 * 1000 * 1000;
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
fetch_argv(const struct site *site, enum fetch_mode mode, const char *const *extra,
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
	char *cache = fetch_cache_path(site);
	size_t i;

	util_strv_push(av, fetch_exe);
	util_strv_push(av, "__fetch");
	if (mode == FETCH_LS_REMOTE)
		util_strv_push(av, "--ls-remote");
	if (mode == FETCH_FRESH)
		util_strv_push(av, "--fresh");
	if (mode == FETCH_UPKEEP)
		util_strv_push(av, "--upkeep");
	for (i = 0; extra != NULL && extra[i] != NULL; i++)
		util_strv_push(av, extra[i]);
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
	struct upkeep_stats up;
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
	if (strncmp(line, "upkeep ", 7) == 0) {
		long long v[7] = { 0 };

		if (sscanf(line + 7, "%lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
		    &v[3], &v[4], &v[5], &v[6]) >= 6) {
			rd->up.packs = v[0];
			rd->up.loose = v[1];
			rd->up.bytes = v[2];
			rd->up.packs_gone = v[3];
			rd->up.loose_gone = v[4];
			rd->up.objects = v[5];
			rd->up.full = v[6];
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
fetch_run(const struct site *site, enum fetch_mode mode, const char *const *extra,
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
	dir = util_xasprintf("%s/%s", site->state_dir, site->name);
	if (util_mkdir_p(dir, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", dir);
		free(dir);
		return rc;
	}
	free(dir);
	if (pipe2(p, O_CLOEXEC) != 0)
		return util_error_sys(e, "pipe");
	fetch_argv(site, mode, extra, &av);

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
		    mode == FETCH_LS_REMOTE ? "checking the remote" :
		    mode == FETCH_UPKEEP ? "cache upkeep" : "fetch",
		    (long long)((limit + 999) / 1000));
	}
	rc = fetch_parse_reply(rd->reply, status, fr, e);
	fr->up = rd->up;
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

/* The calling thread's poll helper exits (a worker thread ends, tests clean up). */
void
fetch_stop_helper(void)
{
	/* Its stdin closes and it exits by itself; it is killed only if it does not. */
	fetch_helper_close(&fetch_helper_self, 0);
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
fetch_ls_remote_served(const struct site *site,
    struct fetch_result *fr, struct error *e)
{
	struct fetch_helper *h = &fetch_helper_self;
	struct fetch_reader *rd;
	struct strv av = { 0 };
	int64_t limit = fetch_timeout_ms(site), deadline = util_mono_ms() + limit;
	int rc = E_OK, attempt, fresh;

	memset(fr, 0, sizeof(*fr));
	fetch_argv(site, FETCH_LS_REMOTE, NULL, &av);
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

/*
 * The last tip each site's remote named (a fetch or an ls-remote), and when: a flood of
 * webhooks coalesced into the deploy after the running one need not ask the remote again
 * what it said a moment ago (fetch_recent_tip).
 */
struct fetch_tip {
	char		 site[512];	/* fetch_tip_key: a reload may change what it tracks */
	struct fetch_result fr;
	int64_t		 at;	/* monotonic ms */
};
static struct {
	pthread_mutex_t	 mu;
	struct fetch_tip *v;
	size_t		 n;
} T = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
fetch_tip_key(const struct site *site, char *key, size_t len)
{
	snprintf(key, len, "%s %s %s %s", site->name, site->repo,
	    site->branch != NULL ? "branch" : "tags",
	    site->branch != NULL ? site->branch : site->tags != NULL ? site->tags : "");
}

/* What the remote said, or (fr NULL) that asking it failed: then nothing is trusted. */
static void
fetch_note_tip(const struct site *site, const struct fetch_result *fr)
{
	char key[sizeof(T.v->site)];
	size_t i;

	fetch_tip_key(site, key, sizeof(key));
	pthread_mutex_lock(&T.mu);
	for (i = 0; i < T.n && strcmp(T.v[i].site, key) != 0; i++)
		;
	if (i == T.n && fr != NULL) {
		T.v = util_xrealloc(T.v, T.n + 1, sizeof(*T.v));
		util_strlcpy(T.v[T.n++].site, key, sizeof(T.v[i].site));
	}
	if (i < T.n) {
		if (fr != NULL)
			T.v[i].fr = *fr;
		T.v[i].at = fr != NULL ? util_mono_ms() : INT64_MIN / 2;
	}
	pthread_mutex_unlock(&T.mu);
}

/* The tip the site's remote named less than max_age_ms ago, if any: 1 and *fr filled. */
int
fetch_recent_tip(const struct site *site, int64_t max_age_ms, struct fetch_result *fr)
{
	int64_t now = util_mono_ms();
	char key[sizeof(T.v->site)];
	size_t i;
	int found = 0;

	fetch_tip_key(site, key, sizeof(key));
	pthread_mutex_lock(&T.mu);
	for (i = 0; i < T.n && !found; i++)
		if (strcmp(T.v[i].site, key) == 0 && now - T.v[i].at < max_age_ms) {
			util_strlcpy(fr->tip, T.v[i].fr.tip, sizeof(fr->tip));
			util_strlcpy(fr->ref, T.v[i].fr.ref, sizeof(fr->ref));
			found = 1;
		}
	pthread_mutex_unlock(&T.mu);
	return found;
}

/* Fetch the tracked branch, or the highest matching tag, into the cache. */
int
fetch_site(const struct site *site, struct fetch_result *fr,
    fetch_progress_fn fn, void *arg, struct error *e)
{
	int rc;

	rc = fetch_run(site, FETCH_UPDATE, NULL, fn, arg, fr, e);
	fetch_note_tip(site, rc == E_OK ? fr : NULL);
	return rc;
}

/* Clone the site afresh, replacing a cache found damaged after a fetch said it was fine. */
int
fetch_site_fresh(const struct site *site,
    struct fetch_result *fr, struct error *e)
{
	return fetch_run(site, FETCH_FRESH, NULL, NULL, NULL, fr, e);
}

/* Ask the remote what it would deploy now, without downloading anything (ls-remote). */
int
fetch_remote_tip(const struct site *site,
    struct fetch_result *fr, struct error *e)
{
	int rc;

	/* A CA file is a process-wide libgit2 setting: such sites keep a helper each time. */
	if (site->ca_file == NULL)
		rc = fetch_ls_remote_served(site, fr, e);
	else
		rc = fetch_run(site, FETCH_LS_REMOTE, NULL, NULL, NULL, fr, e);
	fetch_note_tip(site, rc == E_OK ? fr : NULL);
	return rc;
}

/* Repack the site's cache in a helper (upkeep.c), keeping the commits in keep. */
int
fetch_upkeep(const struct site *site, const char *keep, int64_t grace_s,
    struct fetch_result *fr, struct error *e)
{
	char grace[32];
	const char *extra[] = { "--grace", grace, "--keep", keep, NULL };

	snprintf(grace, sizeof(grace), "%lld", (long long)grace_s);
	return fetch_run(site, FETCH_UPKEEP, extra, NULL, NULL, fr, e);
}
