/* privsep.c: the daemon's side of the listener process: spawn, serve its records, hand over on reload, respawn. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

#define PRIVSEP_EXE		"/proc/self/exe"
#define PRIVSEP_READY_MS	30000	/* a new listener has this long to start serving */
#define PRIVSEP_QUIESCE_MS	5000	/* an old one, to stop accepting */
#define PRIVSEP_REAP_MS		2000	/* a listener that closed the channel, to exit */
#define PRIVSEP_BACKOFF_MIN	100	/* first respawn delay; doubles to the max */
#define PRIVSEP_BACKOFF_MAX	10000
#define PRIVSEP_STABLE_MS	30000	/* a listener up this long resets the backoff */
#define PRIVSEP_SEND_MS		2000	/* a listener that does not read its replies is killed */
#define PRIVSEP_FD_MIN		10	/* our copies stay clear of the child's fds 3 and 4 */
#define PRIVSEP_BURST		256	/* records served from one listener before the next */

enum privsep_state { CH_STARTING, CH_SERVING, CH_RETIRING };

/* One listener process. Only the loop thread frees one; others look it up by pid. */
struct privsep_child {
	pid_t		 pid;
	int		 fd;		/* our end of the channel; -1 once closed */
	int		 retire;	/* our end of its retire pipe; -1 once closed */
	int		 state;		/* enum privsep_state */
	int		 quiesced;
	int		 hello;		/* asked for the views: keep it told */
	int64_t		 started;	/* monotonic ms */
	int64_t		 closed;	/* monotonic ms the channel closed; 0: open */
	struct privsep_child *next;
};

static struct {
	pthread_mutex_t		 mu;	/* everything below */
	pthread_cond_t		 cv;	/* a child changed state or went away */
	const struct config	*cfg;
	int			 listen_fd;
	char			 unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct privsep_child	*children;
	pid_t			 current;	/* the listener to respawn if it dies; 0: none */
	int64_t			 respawn_at;	/* monotonic ms; 0: none due */
	int64_t			 backoff;
	int			 wake[2];
	pthread_t		 thread;
	int			 running;
	int			 started;	/* a first listener served: respawn from now on */
	int			 stopping;
	int			 abandon;	/* stop: forget listeners we cannot kill */
	struct sched_view	*views;		/* as last told; the loop thread's alone */
	size_t			 nviews;
	int			 views_dirty;	/* atomic: a site's view may have changed */
} P = { .mu = PTHREAD_MUTEX_INITIALIZER, .listen_fd = -1, .wake = { -1, -1 } };

static void
privsep_wake(void)
{
	char c = 0;

	if (P.wake[1] >= 0 && write(P.wake[1], &c, 1) < 0 && errno != EAGAIN)
		log_debug("privsep: wake: %s", strerror(errno));
}

/* Call with the mutex held. */
static struct privsep_child *
privsep_find(pid_t pid)
{
	struct privsep_child *ch;

	for (ch = P.children; ch != NULL; ch = ch->next)
		if (ch->pid == pid)
			return ch;
	return NULL;
}

/*
 * "deployd __listen CONFIG" with the listening socket as fd 3, its end of the channel
 * as fd 4 and the read end of its retire pipe as fd 5; nothing else is inherited. Call with the mutex held. Returns the pid, or 0.
 */
static pid_t
privsep_spawn(const char *file)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct privsep_child *ch;
	char a0[] = "deployd", a1[] = "__listen", *a2 = util_xstrdup(file);
	char *argv[] = { a0, a1, a2, NULL };
	extern char **environ;
	struct timeval tv = { PRIVSEP_SEND_MS / 1000, 0 };
	sigset_t mask, dfl;
	int sv[2], rp[2], theirs, pipe_r, rc;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		log_error("webhook listener: socketpair: %s", strerror(errno));
		free(a2);
		return 0;
	}
	if (pipe2(rp, O_CLOEXEC) != 0) {
		log_error("webhook listener: pipe: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(a2);
		return 0;
	}
	theirs = fcntl(sv[1], F_DUPFD_CLOEXEC, PRIVSEP_FD_MIN);
	pipe_r = fcntl(rp[0], F_DUPFD_CLOEXEC, PRIVSEP_FD_MIN);
	close(sv[1]);
	close(rp[0]);
	if (theirs < 0 || pipe_r < 0) {
		log_error("webhook listener: dup: %s", strerror(errno));
		if (theirs >= 0)
			close(theirs);
		if (pipe_r >= 0)
			close(pipe_r);
		close(sv[0]);
		close(rp[1]);
		free(a2);
		return 0;
	}
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, P.listen_fd, 3);
	posix_spawn_file_actions_adddup2(&fa, theirs, 4);
	posix_spawn_file_actions_adddup2(&fa, pipe_r, 5);
	posix_spawn_file_actions_addclosefrom_np(&fa, 6);
	/* The listener waits for SIGTERM with sigwait: it starts with it blocked. */
	posix_spawnattr_init(&attr);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &mask);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&pid, PRIVSEP_EXE, &fa, &attr, argv, environ);
	free(a2);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(theirs);
	close(pipe_r);
	if (rc != 0) {
		log_error("webhook listener: cannot start %s: %s", PRIVSEP_EXE, strerror(rc));
		close(sv[0]);
		close(rp[1]);
		return 0;
	}
	ch = util_xcalloc(1, sizeof(*ch));
	ch->pid = pid;
	ch->fd = sv[0];
	ch->retire = rp[1];
	ch->state = CH_STARTING;
	ch->started = util_mono_ms();
	ch->next = P.children;
	P.children = ch;
	log_debug("webhook listener started, pid %ld", (long)pid);
	privsep_wake();
	return pid;
}

/*
 * Call with the mutex held. SIGTERM asks a listener to finish and exit, SIGKILL ends it.
 * One started before the engine gave up root runs as listener_user, which the engine
 * may no longer signal: closing its retire pipe asks the same as SIGTERM, and shutting
 * its channel down leaves it nothing to serve. It cannot outlive the engine either way
 * (PR_SET_PDEATHSIG). Returns -1 when the signal was refused.
 */
static int
privsep_kill(struct privsep_child *ch, int sig)
{
	if (ch->retire >= 0)
		close(ch->retire);
	ch->retire = -1;
	if (kill(ch->pid, sig) == 0 || errno != EPERM)
		return 0;
	if (sig == SIGKILL && ch->fd >= 0)
		shutdown(ch->fd, SHUT_RDWR);
	return -1;
}

/* Send a reply, and the metrics text after it in records of at most PRIVSEP_CHUNK. */
static int
privsep_send(int fd, const struct privsep_reply *a, const char *text)
{
	size_t off, n;

	if (send(fd, a, sizeof(*a), MSG_NOSIGNAL) != (ssize_t)sizeof(*a))
		return E_SYS;
	for (off = 0; text != NULL && off < a->len; off += n) {
		n = a->len - off < PRIVSEP_CHUNK ? a->len - off : PRIVSEP_CHUNK;
		if (send(fd, text + off, n, MSG_NOSIGNAL) != (ssize_t)n)
			return E_SYS;
	}
	return E_OK;
}

static int
privsep_send_view(int fd, const struct sched_view *sv, int local)
{
	struct privsep_view v;

	memset(&v, 0, sizeof(v));
	v.kind = PS_K_VIEW;
	v.local = (uint32_t)local;
	v.paused = (uint32_t)sv->paused;
	v.busy = (uint32_t)sv->busy;
	v.waiting = (uint32_t)sv->waiting;
	util_strlcpy(v.site, sv->site, sizeof(v.site));
	util_strlcpy(v.live, sv->live, sizeof(v.live));
	return send(fd, &v, sizeof(v), MSG_NOSIGNAL) == (ssize_t)sizeof(v) ? E_OK : E_SYS;
}

static int
privsep_send_digest(int fd, const char *site, const uint64_t *hash, size_t n)
{
	struct privsep_digest d;
	size_t off, k;

	for (off = 0; off == 0 || off < n; off += k) {
		k = n - off < PRIVSEP_DIGEST_MAX ? n - off : PRIVSEP_DIGEST_MAX;
		memset(&d, 0, sizeof(d));
		d.kind = PS_K_DIGEST;
		d.n = (uint32_t)k;
		util_strlcpy(d.site, site, sizeof(d.site));
		memcpy(d.hash, hash + off, k * sizeof(*hash));
		if (send(fd, &d, sizeof(d), MSG_NOSIGNAL) != (ssize_t)sizeof(d))
			return E_SYS;
		if (k == 0)
			break;
	}
	return E_OK;
}

/*
 * Every site's view and remembered deliveries, for a listener that asked (PS_HELLO). In
 * fleet mode a push is the fleet's to judge: the views say "ask".
 */
static int
privsep_hello(struct privsep_child *ch)
{
	struct sched_view *sv;
	uint64_t hash[256];
	size_t n, i;
	int rc = E_OK;

	n = sched_views(NULL, 0);
	sv = util_xcalloc(n > 0 ? n : 1, sizeof(*sv));
	if ((i = sched_views(sv, n)) < n)
		n = i;
	for (i = 0; i < n && rc == E_OK; i++) {
		rc = privsep_send_view(ch->fd, &sv[i], !fleet_on());
		if (rc == E_OK)
			rc = privsep_send_digest(ch->fd, sv[i].site, hash,
			    privsep_msg_digest(sv[i].site, hash, sizeof(hash) / sizeof(hash[0])));
	}
	free(sv);
	ch->hello = 1;
	return rc;
}

/* The listeners to tell, with the mutex taken only to list them. */
static size_t
privsep_told(int *fds, size_t max)
{
	struct privsep_child *ch;
	size_t n = 0;

	pthread_mutex_lock(&P.mu);
	for (ch = P.children; ch != NULL && n < max; ch = ch->next)
		if (ch->fd >= 0 && ch->hello)
			fds[n++] = ch->fd;
	pthread_mutex_unlock(&P.mu);
	return n;
}

/*
 * The scheduler moved: send every listener the views that changed. A listener that cannot
 * take them is stopped like one that does not read its replies; a new one asks afresh.
 */
static void
privsep_flush_views(void)
{
	struct sched_view *sv;
	int fds[16];
	size_t n, i, k, nfd;

	if (!__atomic_exchange_n(&P.views_dirty, 0, __ATOMIC_ACQ_REL))
		return;
	n = sched_views(NULL, 0);
	sv = util_xcalloc(n > 0 ? n : 1, sizeof(*sv));
	if ((i = sched_views(sv, n)) < n)
		n = i;
	nfd = privsep_told(fds, sizeof(fds) / sizeof(fds[0]));
	for (i = 0; i < n; i++) {
		if (i < P.nviews && memcmp(&sv[i], &P.views[i], sizeof(sv[i])) == 0)
			continue;
		for (k = 0; k < nfd; k++)
			if (privsep_send_view(fds[k], &sv[i], !fleet_on()) != E_OK)
				shutdown(fds[k], SHUT_RDWR);
	}
	free(P.views);
	P.views = sv;
	P.nviews = n;
}

/* Told by the scheduler, under its mutex: only mark and wake. */
static void
privsep_moved(void)
{
	__atomic_store_n(&P.views_dirty, 1, __ATOMIC_RELEASE);
	privsep_wake();
}

/* A deploy was queued for a delivery: every listener asks about it from now on. */
static void
privsep_tell_seen(const struct privsep_msg *m)
{
	uint64_t h = view_hash(m->provider, m->delivery);
	int fds[16];
	size_t nfd, k;

	nfd = privsep_told(fds, sizeof(fds) / sizeof(fds[0]));
	for (k = 0; k < nfd; k++)
		if (privsep_send_digest(fds[k], m->site, &h, 1) != E_OK)
			shutdown(fds[k], SHUT_RDWR);
}

/*
 * One record from a listener. Returns 1 when one was served, 0 when none waits, or E_SYS
 * (E_INVAL) when the channel is done.
 */
static int
privsep_serve(struct privsep_child *ch)
{
	struct privsep_msg m;
	struct privsep_reply a;
	char *text = NULL;
	ssize_t n;
	int rc;

	n = recv(ch->fd, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return E_SYS;
	if (n != (ssize_t)sizeof(m)) {
		log_error("webhook listener pid %ld sent a malformed record; stopping it",
		    (long)ch->pid);
		return E_INVAL;
	}
	if (m.type == PS_HELLO)
		return privsep_hello(ch) == E_OK ? 1 : E_SYS;
	if (m.type == PS_READY || m.type == PS_QUIESCED) {
		memset(&a, 0, sizeof(a));
		a.kind = PS_K_REPLY;
		a.seq = m.seq;
		pthread_mutex_lock(&P.mu);
		if (m.type == PS_READY && ch->state == CH_STARTING)
			ch->state = CH_SERVING;
		if (m.type == PS_QUIESCED)
			ch->quiesced = 1;
		pthread_cond_broadcast(&P.cv);
		pthread_mutex_unlock(&P.mu);
	} else if (privsep_msg_handle(&m, &a, &text) != E_OK) {
		log_error("webhook listener pid %ld sent an invalid record; stopping it",
		    (long)ch->pid);
		return E_INVAL;
	}
	/* Told "queued": remembered, whether its deploy still waits or has made it live. */
	if (m.type == PS_TOLD && (a.answer == PS_QUEUED || a.answer == PS_LIVE) &&
	    m.delivery[0] != '\0')
		privsep_tell_seen(&m);
	if (m.type == PS_COUNT || m.type == PS_ANSWERED || m.type == PS_TOLD)
		return 1;
	rc = privsep_send(ch->fd, &a, text);
	free(text);
	if (rc == E_OK && m.type == PS_PUSH && a.answer == PS_QUEUED && m.delivery[0] != '\0')
		privsep_tell_seen(&m);
	return rc == E_OK ? 1 : rc;
}

static void
privsep_describe(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

/* Call with the mutex held: a listener is gone; respawn it if it was the current one. */
static void
privsep_reaped(struct privsep_child *ch, int status)
{
	struct privsep_child **pp;
	char how[96];
	int64_t now = util_mono_ms();

	privsep_describe(status, how, sizeof(how));
	if (ch->pid == P.current && P.started && !P.stopping) {
		if (now - ch->started >= PRIVSEP_STABLE_MS)
			P.backoff = PRIVSEP_BACKOFF_MIN;
		log_error("webhook listener pid %ld %s; restarting it in %lld ms",
		    (long)ch->pid, how, (long long)P.backoff);
		P.respawn_at = now + P.backoff;
		P.backoff = P.backoff * 2 > PRIVSEP_BACKOFF_MAX ? PRIVSEP_BACKOFF_MAX :
		    P.backoff * 2;
		P.current = 0;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_debug("webhook listener pid %ld exited", (long)ch->pid);
	} else {
		log_warn("webhook listener pid %ld %s", (long)ch->pid, how);
	}
	if (ch->fd >= 0)
		close(ch->fd);
	if (ch->retire >= 0)
		close(ch->retire);
	for (pp = &P.children; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	free(ch);
	pthread_cond_broadcast(&P.cv);
}

/* Call with the mutex held: reap listeners whose channel closed; kill the slow ones. */
static void
privsep_reap(void)
{
	struct privsep_child *ch, *next;
	int status;
	pid_t r;

	for (ch = P.children; ch != NULL; ch = next) {
		next = ch->next;
		if (ch->closed == 0)
			continue;
		while ((r = waitpid(ch->pid, &status, WNOHANG)) < 0 && errno == EINTR)
			;
		if (r == ch->pid || (r < 0 && errno == ECHILD)) {
			privsep_reaped(ch, r == ch->pid ? status : 0);
			continue;
		}
		/* A listener that closes the channel and lives on is not a listener. */
		if (util_mono_ms() - ch->closed > PRIVSEP_REAP_MS)
			privsep_kill(ch, SIGKILL);
	}
}

/* Call with the mutex held. */
static void
privsep_close(struct privsep_child *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
	ch->closed = util_mono_ms();
	privsep_kill(ch, SIGTERM);
}

/* The one thread that reads every listener's records, reaps and respawns them. */
static void *
privsep_loop(void *arg)
{
	struct pollfd pfd[16];
	struct privsep_child *ch, *who[16];
	int64_t now, wait;
	char buf[64];
	size_t n, i, k;
	int timeout, rc = 0;

	(void)arg;
	pthread_mutex_lock(&P.mu);
	for (;;) {
		privsep_reap();
		now = util_mono_ms();
		if (P.respawn_at != 0 && now >= P.respawn_at && !P.stopping) {
			P.respawn_at = 0;
			if ((P.current = privsep_spawn(P.cfg->file)) == 0)
				P.respawn_at = now + PRIVSEP_BACKOFF_MAX;
		}
		if (P.stopping && (P.children == NULL || P.abandon))
			break;
		pfd[0].fd = P.wake[0];
		pfd[0].events = POLLIN;
		n = 1;
		wait = 1000;
		for (ch = P.children; ch != NULL; ch = ch->next) {
			if (ch->fd < 0) {
				wait = 50;
				continue;
			}
			if (n < sizeof(pfd) / sizeof(pfd[0])) {
				pfd[n].fd = ch->fd;
				pfd[n].events = POLLIN;
				who[n++] = ch;
			}
		}
		if (P.respawn_at != 0 && P.respawn_at - now < wait)
			wait = P.respawn_at - now;
		timeout = wait < 0 ? 0 : (int)wait;
		pthread_mutex_unlock(&P.mu);
		poll(pfd, n, timeout);
		if (pfd[0].revents & POLLIN)
			while (read(P.wake[0], buf, sizeof(buf)) > 0)
				;
		/*
		 * Records are served without the mutex; only this thread frees children. A
		 * burst is served in one go: the listener does not wait for most of them.
		 */
		for (i = 1; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			for (k = 0; k < PRIVSEP_BURST && (rc = privsep_serve(who[i])) == 1; k++)
				;
			if (rc < 0) {
				pthread_mutex_lock(&P.mu);
				privsep_close(who[i]);
				pthread_mutex_unlock(&P.mu);
			}
		}
		privsep_flush_views();
		pthread_mutex_lock(&P.mu);
	}
	pthread_mutex_unlock(&P.mu);
	return NULL;
}

/*
 * Call with the mutex held: wait until the listener pid serves (E_OK), has gone away
 * (E_SYS) or has not said a word by the deadline (E_TIMEOUT).
 */
static int
privsep_wait_serving(pid_t pid, int64_t timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms, left;
	struct privsep_child *ch;
	struct timespec ts;

	for (;;) {
		if ((ch = privsep_find(pid)) == NULL || ch->closed != 0)
			return E_SYS;
		if (ch->state == CH_SERVING)
			return E_OK;
		if ((left = deadline - util_mono_ms()) <= 0)
			return E_TIMEOUT;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&P.cv, &P.mu, &ts);
	}
}

/* Call with the mutex held: until pid quiesced or went away, at most timeout_ms. */
static void
privsep_wait_quiesced(pid_t pid, int64_t timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms, left;
	struct privsep_child *ch;
	struct timespec ts;

	while ((ch = privsep_find(pid)) != NULL && !ch->quiesced && ch->closed == 0 &&
	    (left = deadline - util_mono_ms()) > 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(left / 1000) + 1;
		pthread_cond_timedwait(&P.cv, &P.mu, &ts);
	}
}

/*
 * Bind the listening socket, start the loop and the first listener, and wait until it
 * serves: a listener that cannot start (say, an unreadable secret) stops the daemon,
 * as it always did.
 */
int
privsep_start(const struct config *cfg, struct error *e)
{
	pthread_condattr_t ca;
	pid_t pid;
	int fd, rc;

	privsep_msg_init(cfg);
	if ((fd = bind_listen(cfg->listen, P.unix_path, sizeof(P.unix_path), e)) < 0)
		return fd;
	P.listen_fd = fcntl(fd, F_DUPFD_CLOEXEC, PRIVSEP_FD_MIN);
	close(fd);
	if (P.listen_fd < 0 || pipe2(P.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = util_error_sys(e, "webhook listener");
		privsep_stop();
		return rc;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&P.cv, &ca);
	pthread_condattr_destroy(&ca);
	P.backoff = PRIVSEP_BACKOFF_MIN;
	P.stopping = 0;
	sched_set_moved(privsep_moved);
	pthread_mutex_lock(&P.mu);
	P.cfg = cfg;
	if ((pid = privsep_spawn(cfg->file)) == 0) {
		pthread_mutex_unlock(&P.mu);
		privsep_stop();
		return util_error(e, E_SYS, "cannot start the webhook listener process");
	}
	P.current = pid;
	if (pthread_create(&P.thread, NULL, privsep_loop, NULL) != 0) {
		pthread_mutex_unlock(&P.mu);
		privsep_stop();
		return util_error(e, E_SYS, "cannot start the listener supervisor thread");
	}
	P.running = 1;
	rc = privsep_wait_serving(pid, PRIVSEP_READY_MS);
	P.started = rc == E_OK;
	pthread_mutex_unlock(&P.mu);
	if (rc != E_OK) {
		privsep_stop();
		return util_error(e, E_CONFIG, "the webhook listener on %s did not start%s",
		    cfg->listen, rc == E_TIMEOUT ? " in time" : " (see the errors above)");
	}
	log_info("webhook listener on %s (process %ld)%s", cfg->listen, (long)pid,
	    cfg->tls_cert != NULL ? " (TLS)" : "");
	return E_OK;
}

/*
 * A reload starts a listener with the new configuration on the same socket; once it
 * serves, the old one stops accepting and finishes its requests. If the new one cannot
 * start, the old one goes on with the old sites and secrets. Connections are never
 * refused meanwhile: the socket stays open, and both accept from it for a moment.
 */
int
privsep_reload(const struct config *cfg)
{
	struct privsep_child *ch;
	pid_t pid, old;
	int rc;

	if (!P.running)
		return E_OK;
	privsep_msg_init(cfg);
	privsep_moved();
	pthread_mutex_lock(&P.mu);
	P.cfg = cfg;
	if ((pid = privsep_spawn(cfg->file)) == 0) {
		pthread_mutex_unlock(&P.mu);
		log_error("reload: the listener keeps the old sites and secrets");
		return E_SYS;
	}
	if ((rc = privsep_wait_serving(pid, PRIVSEP_READY_MS)) != E_OK) {
		if ((ch = privsep_find(pid)) != NULL) {
			ch->state = CH_RETIRING;
			privsep_kill(ch, SIGKILL);
		}
		pthread_mutex_unlock(&P.mu);
		log_error("reload: the new webhook listener did not start; the listener keeps"
		    " the old sites and secrets");
		return rc;
	}
	old = P.current;
	P.current = pid;
	P.respawn_at = 0;
	if (old != 0 && (ch = privsep_find(old)) != NULL) {
		ch->state = CH_RETIRING;
		privsep_kill(ch, SIGTERM);
		privsep_wait_quiesced(old, PRIVSEP_QUIESCE_MS);
	}
	pthread_mutex_unlock(&P.mu);
	log_info("webhook listener reloaded (process %ld)", (long)pid);
	return E_OK;
}

/* Every listener finishes its requests and exits; then the socket goes. */
void
privsep_stop(void)
{
	struct privsep_child *ch;
	int64_t deadline;
	struct timespec ts = { 0, 50 * 1000000 };
	int grace;

	sched_set_moved(NULL);
	if (!P.running) {
		/* Only a listener spawned before the supervisor thread failed to start. */
		while ((ch = P.children) != NULL) {
			P.children = ch->next;
			kill(ch->pid, SIGKILL);
			waitpid(ch->pid, NULL, 0);
			close(ch->fd);
			if (ch->retire >= 0)
				close(ch->retire);
			free(ch);
		}
	} else {
		grace = P.cfg != NULL ? (int)P.cfg->limits.request_timeout_ms + 2000 : 5000;
		pthread_mutex_lock(&P.mu);
		P.stopping = 1;
		P.current = 0;
		for (ch = P.children; ch != NULL; ch = ch->next)
			privsep_kill(ch, SIGTERM);
		privsep_wake();
		pthread_mutex_unlock(&P.mu);
		deadline = util_mono_ms() + grace;
		for (;;) {
			pthread_mutex_lock(&P.mu);
			if (P.children == NULL || util_mono_ms() >= deadline) {
				for (ch = P.children; ch != NULL; ch = ch->next)
					if (privsep_kill(ch, SIGKILL) != 0)
						P.abandon = 1;
				privsep_wake();
				pthread_mutex_unlock(&P.mu);
				break;
			}
			pthread_mutex_unlock(&P.mu);
			nanosleep(&ts, NULL);
		}
		pthread_join(P.thread, NULL);
		/* Listeners we could not kill die with us (PR_SET_PDEATHSIG). */
		while ((ch = P.children) != NULL) {
			P.children = ch->next;
			if (ch->fd >= 0)
				close(ch->fd);
			if (ch->retire >= 0)
				close(ch->retire);
			free(ch);
		}
		P.abandon = 0;
		P.running = 0;
		P.started = 0;
		pthread_cond_destroy(&P.cv);
	}
	if (P.listen_fd >= 0)
		close(P.listen_fd);
	P.listen_fd = -1;
	if (P.unix_path[0] != '\0')
		unlink(P.unix_path);
	P.unix_path[0] = '\0';
	if (P.wake[0] >= 0) {
		close(P.wake[0]);
		close(P.wake[1]);
	}
	P.wake[0] = P.wake[1] = -1;
	P.cfg = NULL;
	free(P.views);
	P.views = NULL;
	P.nviews = 0;
	privsep_msg_free();
}
