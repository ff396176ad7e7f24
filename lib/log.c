/* log.c: one-line log records on stderr, with journald priority prefixes under systemd. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/lib.h"

static int log_level = LOG_LVL_INFO;
static int log_journald;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

/* journald reads "<N>" at the start of a stderr line as the syslog priority. */
static const struct {
	const char *name;
	int	    syslog_prio;
} log_levels[] = {
	[LOG_LVL_ERROR] = { "error", 3 },
	[LOG_LVL_WARN] = { "warn", 4 },
	[LOG_LVL_INFO] = { "info", 6 },
	[LOG_LVL_DEBUG] = { "debug", 7 },
};

void
log_init(int level, int journald)
{
	log_level = level;
	log_journald = journald;
}

void
log_set_level(int level)
{
	log_level = level;
}

void
log_msg(int level, const char *fmt, ...)
{
	char line[2048], stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&log_mutex);
	if (log_journald) {
		fprintf(stderr, "<%d>%s\n", log_levels[level].syslog_prio, line);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000,
		    log_levels[level].name, line);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_mutex);
}
