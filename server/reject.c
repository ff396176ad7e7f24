/* reject.c: the listener's log of refused requests: a line each up to a burst per address, then a summary; refused addresses once a minute. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/deployd.h"

#define REJECT_BURST		5	/* refusals logged one by one, per address and window */
#define REJECT_WINDOW_MS	10000
#define REJECT_ADDRS		64
#define REJECT_REFUSED_MS	60000	/* a refused address is logged at most this often */
#define REJECT_REFUSED_ADDRS	256

/* Refusals per client address, so a flood of bad requests cannot drown the journal. */
struct reject_window {
	char		addr[CONN_ADDR_MAX];
	int64_t		start;		/* monotonic ms; 0: free slot */
	unsigned	count;
};

/*
 * Addresses that allow_from refuses: the first refusal is logged, the rest are counted
 * and summarised once a minute for as long as they go on. The table is fixed, so a flood
 * from many addresses cannot grow it: once it is full, further addresses share one count.
 */
struct reject_refused {
	char		addr[CONN_ADDR_MAX];
	int64_t		start;		/* monotonic ms; 0: free slot */
	unsigned	count;		/* refusals since start, not yet logged */
};

static struct {
	pthread_mutex_t		mu;
	struct reject_window	w[REJECT_ADDRS];
	struct reject_refused	refused[REJECT_REFUSED_ADDRS];
	struct reject_refused	others;		/* addresses that found the table full */
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

/*
 * Log a request refused for its address (allow_from): the first from an address at once,
 * then at most one summary a minute while refusals from it go on.
 */
void
reject_address(const char *addr, const char *fmt, ...)
{
	struct reject_refused *r = NULL, *free_slot = NULL;
	char line[768];
	va_list ap;
	size_t i;

	pthread_mutex_lock(&R.mu);
	for (i = 0; i < REJECT_REFUSED_ADDRS && r == NULL; i++) {
		if (R.refused[i].start != 0 && strcmp(R.refused[i].addr, addr) == 0)
			r = &R.refused[i];
		else if (R.refused[i].start == 0 && free_slot == NULL)
			free_slot = &R.refused[i];
	}
	if (r == NULL && free_slot == NULL)
		r = &R.others;
	if (r != NULL) {
		/* Known, or no room: counted for the summary, not logged. */
		if (r->start == 0)
			r->start = util_mono_ms();
		r->count++;
		pthread_mutex_unlock(&R.mu);
		return;
	}
	util_strlcpy(free_slot->addr, addr, sizeof(free_slot->addr));
	free_slot->start = util_mono_ms();
	free_slot->count = 0;
	pthread_mutex_unlock(&R.mu);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_warn("%s addr=%s (further refusals from this address are summarised once a"
	    " minute)", line, addr);
}

/* Call with the mutex held: summarise a refused address's minute; forget it if it was quiet. */
static void
reject_refused_flush(struct reject_refused *r, int64_t now, int others)
{
	long long secs = (now - r->start + 999) / 1000;

	if (r->count == 0) {
		r->start = 0;
		return;
	}
	if (others)
		log_warn("refused %u requests from addresses not tracked one by one (over %d)"
		    " in the last %lld s", r->count, REJECT_REFUSED_ADDRS, secs);
	else
		log_warn("refused %u more requests from %s in the last %lld s", r->count,
		    r->addr, secs);
	r->count = 0;
	r->start = others ? 0 : now;
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
	for (i = 0; i < REJECT_REFUSED_ADDRS; i++)
		if (R.refused[i].start != 0 && now - R.refused[i].start >= REJECT_REFUSED_MS)
			reject_refused_flush(&R.refused[i], now, 0);
	if (R.others.start != 0 && now - R.others.start >= REJECT_REFUSED_MS)
		reject_refused_flush(&R.others, now, 1);
	pthread_mutex_unlock(&R.mu);
}

/* The listener exits: write the summaries still pending, so no refusal goes untold. */
void
reject_stop(void)
{
	int64_t now = util_mono_ms();
	size_t i;

	pthread_mutex_lock(&R.mu);
	for (i = 0; i < REJECT_ADDRS; i++)
		if (R.w[i].start != 0)
			reject_flush(&R.w[i]);
	for (i = 0; i < REJECT_REFUSED_ADDRS; i++) {
		if (R.refused[i].start != 0)
			reject_refused_flush(&R.refused[i], now, 0);
		R.refused[i].start = 0;
	}
	if (R.others.start != 0)
		reject_refused_flush(&R.others, now, 1);
	pthread_mutex_unlock(&R.mu);
}
