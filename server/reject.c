/* reject.c: the listener's log of refused requests: a line each up to a burst per address, then a summary. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/deployd.h"

#define REJECT_BURST		5	/* refusals logged one by one, per address and window */
#define REJECT_WINDOW_MS	10000
#define REJECT_ADDRS		64

/* Refusals per client address, so a flood of bad requests cannot drown the journal. */
struct reject_window {
	char		addr[CONN_ADDR_MAX];
	int64_t		start;		/* monotonic ms; 0: free slot */
	unsigned	count;
};

static struct {
	pthread_mutex_t		mu;
	struct reject_window	w[REJECT_ADDRS];
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Call with the mutex held: write the summary of a window that had suppressed lines. */
static void
reject_flush(struct reject_window *r)
{
	if (r->count > REJECT_BURST)
		log_warn("%u rejected from %s in %d s (the first %d logged)", r->count, r->addr,
		    REJECT_WINDOW_MS / 1000, REJECT_BURST);
	r->start = 0;
	r->count = 0;
}

/* Log a refusal, one line each up to a burst per address, then only as a summary. */
void
reject_log(const char *addr, const char *fmt, ...)
{
	struct reject_window *r = NULL, *oldest = &R.w[0];
	int64_t now = util_mono_ms();
	char line[768];
	va_list ap;
	size_t i;
	int show;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&R.mu);
	for (i = 0; i < REJECT_ADDRS && r == NULL; i++) {
		if (R.w[i].start != 0 && strcmp(R.w[i].addr, addr) == 0)
			r = &R.w[i];
		else if (R.w[i].start == 0 || R.w[i].start < oldest->start)
			oldest = &R.w[i];
	}
	if (r == NULL) {
		/* A new address takes a free slot, or ends the oldest window early. */
		r = oldest;
		if (r->start != 0)
			reject_flush(r);
		util_strlcpy(r->addr, addr, sizeof(r->addr));
		r->start = now;
	}
	show = ++r->count <= REJECT_BURST;
	pthread_mutex_unlock(&R.mu);
	if (show)
		log_warn("%s addr=%s", line, addr);
}

/* End the windows that are over: their summaries are due even if no refusal follows. */
void
reject_tick(int64_t now)
{
	size_t i;

	pthread_mutex_lock(&R.mu);
	for (i = 0; i < REJECT_ADDRS; i++)
		if (R.w[i].start != 0 && now - R.w[i].start >= REJECT_WINDOW_MS)
			reject_flush(&R.w[i]);
	pthread_mutex_unlock(&R.mu);
}
