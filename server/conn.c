/* conn.c: the listener's connections, each with a deadline for its whole request, and the sweeper that enforces it. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "server/deployd.h"

#define CONN_SWEEP_MS	100

/*
 * One TCP (or Unix) connection. libmicrohttpd only knows an inactivity timeout, so a
 * client that sends a byte a second would stay forever; the sweeper thread shuts down
 * the socket of any connection whose request is not complete by its deadline.
 */
struct conn {
	int		 fd;
	int64_t		 deadline;	/* monotonic ms */
	int		 cut;
	char		 addr[CONN_ADDR_MAX];
	struct conn	*prev, *next;
};

static struct {
	pthread_mutex_t	 mu;		/* everything below */
	pthread_cond_t	 cv;		/* wakes the sweeper to stop */
	int64_t		 timeout_ms;	/* request_timeout */
	struct conn	*conns;
	pthread_t	 sweeper;
	int		 sweeping;
	int		 stopping;
} C = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Before the first connection: every request gets timeout_ms. */
void
conn_init(int64_t timeout_ms)
{
	pthread_mutex_lock(&C.mu);
	C.timeout_ms = timeout_ms;
	C.conns = NULL;
	C.stopping = 0;
	pthread_mutex_unlock(&C.mu);
}

/* A connection was accepted: its first request is due within the timeout. */
struct conn *
conn_open(int fd, const char *addr)
{
	struct conn *hc = util_xcalloc(1, sizeof(*hc));

	hc->fd = fd;
	util_strlcpy(hc->addr, addr, sizeof(hc->addr));
	pthread_mutex_lock(&C.mu);
	hc->deadline = util_mono_ms() + C.timeout_ms;
	hc->next = C.conns;
	if (C.conns != NULL)
		C.conns->prev = hc;
	C.conns = hc;
	pthread_mutex_unlock(&C.mu);
	return hc;
}

/* A request was answered: the next one on a kept-alive connection gets a deadline of its own. */
void
conn_rearm(struct conn *hc)
{
	pthread_mutex_lock(&C.mu);
	hc->deadline = util_mono_ms() + C.timeout_ms;
	pthread_mutex_unlock(&C.mu);
}

/* Unlinked before libmicrohttpd closes the fd, so the sweeper never touches a reused one. */
void
conn_close(struct conn *hc)
{
	pthread_mutex_lock(&C.mu);
	if (hc->prev != NULL)
		hc->prev->next = hc->next;
	else
		C.conns = hc->next;
	if (hc->next != NULL)
		hc->next->prev = hc->prev;
	pthread_mutex_unlock(&C.mu);
	free(hc);
}

/*
 * Cut connections past their deadline: shutdown() makes libmicrohttpd see the end of
 * the stream and close the connection itself, from its own thread. The sweeper is also
 * the listener's clock for the reject log's summaries.
 */
static void *
conn_sweep(void *arg)
{
	char cut[16][CONN_ADDR_MAX];
	struct conn *hc;
	struct timespec ts;
	int64_t now, wake;
	size_t i, ncut;

	(void)arg;
	pthread_mutex_lock(&C.mu);
	while (!C.stopping) {
		now = util_mono_ms();
		ncut = 0;
		for (hc = C.conns; hc != NULL; hc = hc->next) {
			if (hc->cut || now < hc->deadline)
				continue;
			shutdown(hc->fd, SHUT_RDWR);
			hc->cut = 1;
			if (ncut < sizeof(cut) / sizeof(cut[0]))
				util_strlcpy(cut[ncut++], hc->addr, sizeof(cut[0]));
		}
		/* The reject log has a mutex of its own: log without holding ours. */
		pthread_mutex_unlock(&C.mu);
		reject_tick(now);
		for (i = 0; i < ncut; i++)
			reject_log(cut[i], "request not complete within request_timeout;"
			    " connection closed");
		pthread_mutex_lock(&C.mu);
		if (ncut > 0 || C.stopping)
			continue;
		wake = now + CONN_SWEEP_MS;
		ts.tv_sec = wake / 1000;
		ts.tv_nsec = (wake % 1000) * 1000000;
		pthread_cond_timedwait(&C.cv, &C.mu, &ts);
	}
	pthread_mutex_unlock(&C.mu);
	return NULL;
}

int
conn_start(struct error *e)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&C.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&C.sweeper, NULL, conn_sweep, NULL) != 0) {
		pthread_cond_destroy(&C.cv);
		return util_error(e, E_SYS, "cannot start the listener's timer thread");
	}
	C.sweeping = 1;
	return E_OK;
}

/* Wait, at most timeout_ms, until every connection closed; returns the connections left. */
int
conn_drain(int64_t timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms;
	struct timespec ts = { 0, 20 * 1000000 };
	struct conn *hc;
	int left;

	for (;;) {
		left = 0;
		pthread_mutex_lock(&C.mu);
		for (hc = C.conns; hc != NULL; hc = hc->next)
			left++;
		pthread_mutex_unlock(&C.mu);
		if (left == 0 || util_mono_ms() >= deadline)
			return left;
		nanosleep(&ts, NULL);
	}
}

void
conn_stop(void)
{
	if (!C.sweeping)
		return;
	pthread_mutex_lock(&C.mu);
	C.stopping = 1;
	pthread_cond_signal(&C.cv);
	pthread_mutex_unlock(&C.mu);
	pthread_join(C.sweeper, NULL);
	C.sweeping = 0;
	pthread_cond_destroy(&C.cv);
}
