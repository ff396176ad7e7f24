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
#define LISTENER_REPLY_MS	10000	/* a daemon that does not answer in this is gone */

static struct {
	pthread_mutex_t	mu;		/* one request and its reply at a time */
	int		fd;		/* the channel to the daemon */
	int		sig;		/* signalfd for SIGTERM and SIGINT */
	uint32_t	seq;
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

/*
 * Send one record and wait for its reply (PS_COUNT has none): http.c's way to the daemon
 * (an http_ask_fn). Threads take turns: the channel carries one exchange at a time. Any
 * failure breaks the channel for good (a late reply would otherwise answer the next
 * question); the listener then exits and is respawned.
 */
static int
listener_ask(void *arg, const struct privsep_msg *m, struct privsep_reply *a, char **text)
{
	struct privsep_msg out;
	int rc = E_SYS;
	ssize_t n;

	(void)arg;
	if (text != NULL)
		*text = NULL;
	memset(a, 0, sizeof(*a));
	a->answer = PS_UNAVAILABLE;
	out = *m;
	pthread_mutex_lock(&L.mu);
	if (L.broken)
		goto out;
	out.seq = ++L.seq;
	if (send(L.fd, &out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out))
		goto fail;
	/* A count needs no answer: a webhook is not kept waiting for it. */
	if (out.type == PS_COUNT) {
		rc = E_OK;
		goto out;
	}
	while ((n = recv(L.fd, a, sizeof(*a), 0)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(*a) || a->seq != out.seq)
		goto fail;
	if (a->len > 0 && (text == NULL || listener_read_text(a->len, text) != E_OK))
		goto fail;
	rc = E_OK;
	goto out;
fail:
	L.broken = 1;
	a->answer = PS_UNAVAILABLE;
	log_error("webhook listener: the channel to the daemon failed; exiting");
out:
	pthread_mutex_unlock(&L.mu);
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
	config_free(cfg);
	if (L.sig >= 0)
		close(L.sig);
	close(LISTENER_CHANNEL_FD);
	close(LISTENER_RETIRE_FD);
	return rc;
}
