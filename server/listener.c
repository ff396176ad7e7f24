/* listener.c: the webhook listener process ("deployd __listen"): load, confine, serve, and ask the daemon for http.c. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

#define LISTENER_LISTEN_FD	3
#define LISTENER_CHANNEL_FD	4
#define LISTENER_RETIRE_FD	5	/* the daemon closes its end: stop, as on its SIGTERM */
#define LISTENER_REPLY_MS	10000	/* a question not answered in this gets 503 */

/* A question waiting for its reply, on the asking thread's stack. */
struct listener_wait {
	const struct privsep_msg *m;
	int		 done;
	struct privsep_reply a;
	char		*text;
	pthread_cond_t	 cv;
	struct listener_wait *next;
};

static struct {
	pthread_mutex_t	mu;		/* waits, and the view's order of answers */
	struct listener_wait *waits;
	int		fd;		/* the channel to the daemon */
	int		sig;		/* signalfd for SIGTERM and SIGINT */
	uint32_t	seq;		/* atomic */
	pthread_t	reader;
	int		reading;
	volatile sig_atomic_t broken;	/* the channel failed: exit, the daemon respawns us */
} L = { .mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .sig = -1 };

/* Read the metrics text that follows a reply: len bytes in records. */
static int
listener_read_text(uint32_t len, char **text)
{
	char *buf;
	size_t got = 0;
	ssize_t n;

	if (len > PRIVSEP_METRICS_MAX)
		return E_INVAL;
	buf = util_xmalloc((size_t)len + 1);
	while (got < len) {
		n = recv(L.fd, buf + got, len - got < PRIVSEP_CHUNK ? len - got : PRIVSEP_CHUNK,
		    0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return E_SYS;
		}
		got += (size_t)n;
	}
	buf[len] = '\0';
	*text = buf;
	return E_OK;
}

/* Call with the mutex held: take the question a reply answers off the list. */
static struct listener_wait *
listener_take(uint32_t seq, const struct listener_wait *w0)
{
	struct listener_wait **pp, *w;

	for (pp = &L.waits; (w = *pp) != NULL; pp = &w->next)
		if ((w0 != NULL && w == w0) || (w0 == NULL && w->m != NULL && w->a.seq == seq)) {
			*pp = w->next;
			return w;
		}
	return NULL;
}

/* The channel is done: every question still waiting gets "unavailable". */
static void
listener_break(void)
{
	struct listener_wait *w;

	pthread_mutex_lock(&L.mu);
	if (!L.broken)
		log_error("webhook listener: the channel to the daemon failed; exiting");
	L.broken = 1;
	while ((w = L.waits) != NULL) {
		L.waits = w->next;
		if (w->m->type == PS_PUSH)
			view_answered(w->m, 0);
		w->done = 1;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&L.mu);
}

/* One reply: its question, by sequence number, learns its answer (and its text). */
static int
listener_reply(const struct privsep_reply *r)
{
	struct listener_wait *w;
	char *text = NULL;

	if (r->len > 0 && listener_read_text(r->len, &text) != E_OK)
		return E_SYS;
	pthread_mutex_lock(&L.mu);
	if ((w = listener_take(r->seq, NULL)) != NULL) {
		/* In the order of the daemon's records, so that a later view wins. */
		if (w->m->type == PS_PUSH)
			view_answered(w->m, r->answer);
		w->a = *r;
		w->text = text;
		text = NULL;
		w->done = 1;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&L.mu);
	free(text);
	return E_OK;
}

/* The one thread that reads the daemon's records: replies, views and digests. */
static void *
listener_read(void *arg)
{
	union {
		uint32_t		kind;
		struct privsep_reply	r;
		struct privsep_view	v;
		struct privsep_digest	d;
	} u;
	ssize_t n;

	(void)arg;
	while (!L.broken) {
		n = recv(L.fd, &u, sizeof(u), MSG_TRUNC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n >= (ssize_t)sizeof(u.r) && u.kind == PS_K_REPLY) {
			if (listener_reply(&u.r) != E_OK)
				break;
		} else if (n == (ssize_t)sizeof(u.v) && u.kind == PS_K_VIEW) {
			u.v.site[sizeof(u.v.site) - 1] = '\0';
			u.v.live[sizeof(u.v.live) - 1] = '\0';
			view_update(&u.v);
		} else if (n == (ssize_t)sizeof(u.d) && u.kind == PS_K_DIGEST) {
			u.d.site[sizeof(u.d.site) - 1] = '\0';
			view_digest(&u.d);
		} else {
			break;
		}
	}
	listener_break();
	return NULL;
}

/* Call with the mutex held: wait for w's reply until the deadline. */
static void
listener_await(struct listener_wait *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += LISTENER_REPLY_MS / 1000;
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &L.mu, &ts) != 0 && !w->done) {
			/* Too late: the reply, if it ever comes, finds nobody. */
			if (listener_take(0, w) != NULL && w->m->type == PS_PUSH)
				view_answered(w->m, 0);
			w->a.answer = PS_UNAVAILABLE;
			break;
		}
}

/*
 * http.c's way to the daemon (an http_ask_fn), from any of its threads at once. A push the
 * view can answer is answered here and only told to the daemon; counts are told too. A
 * question is sent with its sequence number, and the reader thread hands its reply to it:
 * nobody waits for anyone else's answer.
 */
static int
listener_ask(void *arg, const struct privsep_msg *m, struct privsep_reply *a, char **text)
{
	struct listener_wait w;
	struct privsep_msg out;
	pthread_condattr_t ca;
	uint32_t answer;
	int rc = E_OK;

	(void)arg;
	if (text != NULL)
		*text = NULL;
	memset(a, 0, sizeof(*a));
	a->answer = PS_UNAVAILABLE;
	if (L.broken)
		return E_SYS;
	out = *m;
	if (m->type == PS_PUSH && (answer = view_answer(m)) != 0) {
		a->answer = answer;
		out.type = answer == PS_QUEUED ? PS_TOLD : PS_ANSWERED;
		if (out.type == PS_ANSWERED)
			util_strlcpy(out.result, "ignored", sizeof(out.result));
	}
	out.seq = __atomic_add_fetch(&L.seq, 1, __ATOMIC_RELAXED);
	if (out.type == PS_COUNT || out.type == PS_ANSWERED || out.type == PS_TOLD ||
	    out.type == PS_HELLO) {
		if (send(L.fd, &out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out)) {
			listener_break();
			return E_SYS;
		}
		return E_OK;
	}
	memset(&w, 0, sizeof(w));
	w.m = &out;
	w.a.seq = out.seq;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&L.mu);
	w.next = L.waits;
	L.waits = &w;
	if (out.type == PS_PUSH)
		view_asking(out.site);
	pthread_mutex_unlock(&L.mu);
	if (send(L.fd, &out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out))
		listener_break();
	pthread_mutex_lock(&L.mu);
	listener_await(&w);
	pthread_mutex_unlock(&L.mu);
	pthread_cond_destroy(&w.cv);
	*a = w.a;
	if (w.a.answer == PS_UNAVAILABLE && !w.done)
		rc = E_TIMEOUT;
	if (L.broken && !w.done)
		rc = E_SYS;
	if (text != NULL)
		*text = w.text;
	else
		free(w.text);
	return rc;
}

static int
listener_tell(uint32_t type)
{
	struct privsep_msg m;
	struct privsep_reply a;

	memset(&m, 0, sizeof(m));
	m.type = type;
	return listener_ask(NULL, &m, &a, NULL);
}

/* The same confinement for the listener and for its self-test. */
static int
listener_confine(const struct config *cfg, struct error *e)
{
	const char *env = getenv("DEPLOYD_SANDBOX_NO_SECCOMP");
	struct sandbox_opts o;
	pid_t parent = getppid();
	int rc;

	memset(&o, 0, sizeof(o));
	o.user = cfg->listener_user;
	o.no_seccomp = env != NULL && strcmp(env, "1") == 0;
	o.pdeathsig = SIGKILL;
	if ((rc = sandbox_apply(&o, e)) != E_OK)
		return rc;
	/* The daemon may have died before the signal was armed again. */
	if (getppid() != parent)
		return util_error(e, E_STOPPED, "the daemon is gone");
	return E_OK;
}

static int
listener_load(const char *file, struct config **cfg)
{
	struct strv errors = { NULL, 0 };
	size_t i;

	if (config_load(file, cfg, &errors) != E_OK) {
		for (i = 0; i < errors.n; i++)
			log_error("webhook listener: %s", errors.v[i]);
		util_strv_free(&errors);
		return E_CONFIG;
	}
	return E_OK;
}

/*
 * "deployd __listen --selftest-open PATH [--no-confine] CONFIG": confine exactly as the
 * listener does (or not), then try to open PATH for reading. Prints "open: ok" or
 * "open: E<name> (message)"; for tests/integration/privsep.sh.
 */
static int
listener_selftest(int argc, char **argv)
{
	struct config *cfg;
	struct error e;
	const char *path = argv[3];
	int confine = 1, fd, err;

	if (argc == 6 && strcmp(argv[4], "--no-confine") == 0)
		confine = 0;
	else if (argc != 5)
		return 2;
	log_init(LOG_LVL_WARN, 0);
	if (listener_load(argv[argc - 1], &cfg) != E_OK)
		return 2;
	if (confine && listener_confine(cfg, &e) != E_OK) {
		fprintf(stderr, "confine: %s\n", e.msg);
		config_free(cfg);
		return 1;
	}
	config_free(cfg);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	err = errno;
	if (fd >= 0) {
		printf("open: ok\n");
		close(fd);
	} else {
		printf("open: %s (%s)\n", err == EACCES ? "EACCES" : err == EPERM ? "EPERM" :
		    "other", strerror(err));
	}
	fflush(stdout);
	return 0;
}

/*
 * Wait for the daemon's SIGTERM, for the daemon to close the retire pipe, or for the
 * channel to break. The pipe is how a daemon that gave up root stops a listener that
 * still runs as listener_user: it may no longer signal it. Signals from anyone else are
 * ignored: systemd signals the whole cgroup and a terminal the whole process group, and
 * the daemon must stop its listener itself, after the webhooks it let in.
 */
static void
listener_wait(void)
{
	struct signalfd_siginfo si;
	struct pollfd pfd[2] = { { L.sig, POLLIN, 0 }, { LISTENER_RETIRE_FD, POLLIN, 0 } };
	pid_t parent = getppid();

	while (!L.broken) {
		if (poll(pfd, 2, 1000) <= 0)
			continue;
		if (pfd[1].revents != 0)
			return;
		if (pfd[0].revents == 0 || read(L.sig, &si, sizeof(si)) != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_code == SI_USER && (pid_t)si.ssi_pid == parent)
			return;
		log_debug("webhook listener: signal %u from pid %lu ignored; the daemon stops"
		    " the listener", si.ssi_signo, (unsigned long)si.ssi_pid);
	}
}

/*
 * The listener: "deployd __listen CONFIG", with the daemon's listening socket as fd 3
 * and the channel as fd 4. It reads the webhook secrets and the TLS key, confines
 * itself, and only then serves. On SIGTERM it stops accepting, tells the daemon,
 * finishes the requests in flight and exits.
 */
int
listener_main(int argc, char **argv)
{
	struct config *cfg = NULL;
	struct error e;
	struct timeval tv = { LISTENER_REPLY_MS / 1000, 0 };
	sigset_t set;
	int rc = 1;

	/* Never outlive the daemon: a stray listener would keep the port. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	if (argc >= 4 && strcmp(argv[2], "--selftest-open") == 0)
		return listener_selftest(argc, argv);
	if (argc != 3 || fcntl(LISTENER_LISTEN_FD, F_GETFD) < 0 ||
	    fcntl(LISTENER_CHANNEL_FD, F_GETFD) < 0 || fcntl(LISTENER_RETIRE_FD, F_GETFD) < 0) {
		fprintf(stderr, "deployd __listen is started by deployd serve only\n");
		return 2;
	}
	fcntl(LISTENER_LISTEN_FD, F_SETFD, FD_CLOEXEC);
	fcntl(LISTENER_CHANNEL_FD, F_SETFD, FD_CLOEXEC);
	fcntl(LISTENER_RETIRE_FD, F_SETFD, FD_CLOEXEC);
	log_init(LOG_LVL_INFO, getenv("JOURNAL_STREAM") != NULL);
	if (listener_load(argv[2], &cfg) != E_OK)
		return 2;
	log_init(cfg->log_level, getenv("JOURNAL_STREAM") != NULL);
	L.fd = LISTENER_CHANNEL_FD;
	setsockopt(L.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(L.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Blocked since the spawn; SIGHUP stays blocked (the daemon reloads, not us). */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGHUP);
	/* Made before the confinement, whose seccomp filter has no signalfd4. */
	if ((L.sig = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		log_error("webhook listener: signalfd: %s", strerror(errno));
		goto out;
	}
	if (http_load(cfg, &e) != E_OK) {
		log_error("webhook listener: %s", e.msg);
		goto out;
	}
	if (listener_confine(cfg, &e) != E_OK) {
		log_error("webhook listener: %s", e.msg);
		http_stop();
		goto out;
	}
	/*
	 * The reader starts once confined (seccomp binds the threads made after it). Until
	 * the views it asks for come, every push is asked about.
	 */
	view_init(cfg);
	if (pthread_create(&L.reader, NULL, listener_read, NULL) != 0) {
		log_error("webhook listener: cannot start the reader thread");
		http_stop();
		goto out;
	}
	L.reading = 1;
	listener_tell(PS_HELLO);
	if (http_start(LISTENER_LISTEN_FD, listener_ask, NULL, &e) != E_OK) {
		log_error("webhook listener: %s", e.msg);
		goto out;
	}
	if (listener_tell(PS_READY) == E_OK) {
		listener_wait();
		http_quiesce();
		listener_tell(PS_QUIESCED);
		if (http_drain(cfg->limits.request_timeout_ms + 1000) > 0)
			log_warn("webhook listener: requests still in flight at exit");
		rc = L.broken ? 1 : 0;
	}
	http_stop();
out:
	if (L.reading) {
		/* The reader sees the channel end; it is not a failure now. */
		L.broken = 1;
		shutdown(LISTENER_CHANNEL_FD, SHUT_RDWR);
		pthread_join(L.reader, NULL);
	}
	view_free();
	config_free(cfg);
	if (L.sig >= 0)
		close(L.sig);
	close(LISTENER_CHANNEL_FD);
	close(LISTENER_RETIRE_FD);
	return rc;
}
