/* metrics.c: the daemon's counters, rendered as Prometheus text for GET /metrics; thread-safe. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

/*
 * Label values come from the configuration (site names) and from fixed tables (provider
 * names, results), never from a request, so the number of series stays bounded. The
 * caps below are a second guard should a caller pass something else.
 */
#define METRICS_SITES_MAX	1024
#define METRICS_WEBHOOKS_MAX	8192

static const double metrics_buckets[] = {
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
};
#define METRICS_NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

struct metrics_site {
	char		*name;
	uint64_t	 deploys_ok;
	uint64_t	 deploys_failed;
	uint64_t	 buckets[METRICS_NBUCKETS];	/* not cumulative; summed when rendered */
	uint64_t	 duration_count;
	double		 duration_sum;
	int64_t		 live;				/* 0: nothing live yet */
	uint64_t	 missed;
	uint64_t	 poll_errors;
	uint64_t	 upkeeps_ok;
	uint64_t	 upkeeps_failed;
	int64_t		 cache_packs;		/* the cache as last surveyed; -1: not yet */
	int64_t		 cache_loose;
	int64_t		 cache_bytes;
};

struct metrics_webhook {
	size_t		 site;				/* index into sites */
	char		 provider[16];
	char		 result[24];
	uint64_t	 count;
};

/* Refusals of requests that name no configured site, by result: a fixed list of series. */
static const char *const metrics_refused_results[] = { "address_refused" };
#define METRICS_NREFUSED \
	(sizeof(metrics_refused_results) / sizeof(metrics_refused_results[0]))

static struct {
	pthread_mutex_t		 mu;
	uint64_t		 refused[METRICS_NREFUSED];
	struct metrics_site	*sites;
	size_t			 nsites;
	struct metrics_webhook	*hooks;
	size_t			 nhooks;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Call with the mutex held. NULL when the cap is reached. */
static struct metrics_site *
metrics_site(const char *name)
{
	size_t i;

	for (i = 0; i < M.nsites; i++)
		if (strcmp(M.sites[i].name, name) == 0)
			return &M.sites[i];
	if (M.nsites >= METRICS_SITES_MAX)
		return NULL;
	M.sites = util_xrealloc(M.sites, M.nsites + 1, sizeof(*M.sites));
	memset(&M.sites[M.nsites], 0, sizeof(M.sites[M.nsites]));
	M.sites[M.nsites].name = util_xstrdup(name);
	M.sites[M.nsites].cache_packs = -1;
	return &M.sites[M.nsites++];
}

/* Sites known from the start show zeros rather than no series at all. */
void
metrics_init(const struct config *cfg)
{
	size_t i;

	pthread_mutex_lock(&M.mu);
	for (i = 0; i < cfg->nsites; i++)
		metrics_site(cfg->sites[i].site.name);
	pthread_mutex_unlock(&M.mu);
}

void
metrics_free(void)
{
	size_t i;

	pthread_mutex_lock(&M.mu);
	for (i = 0; i < M.nsites; i++)
		free(M.sites[i].name);
	free(M.sites);
	free(M.hooks);
	M.sites = NULL;
	M.hooks = NULL;
	memset(M.refused, 0, sizeof(M.refused));
	M.nsites = M.nhooks = 0;
	pthread_mutex_unlock(&M.mu);
}

void
metrics_webhook(const char *site, const char *provider, const char *result)
{
	struct metrics_site *s;
	struct metrics_webhook *w;
	size_t i, si;

	if (provider == NULL || *provider == '\0')
		provider = "unknown";
	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) == NULL)
		goto out;
	si = (size_t)(s - M.sites);
	for (i = 0; i < M.nhooks; i++) {
		w = &M.hooks[i];
		if (w->site == si && strcmp(w->provider, provider) == 0 &&
		    strcmp(w->result, result) == 0) {
			w->count++;
			goto out;
		}
	}
	if (M.nhooks >= METRICS_WEBHOOKS_MAX)
		goto out;
	M.hooks = util_xrealloc(M.hooks, M.nhooks + 1, sizeof(*M.hooks));
	w = &M.hooks[M.nhooks++];
	memset(w, 0, sizeof(*w));
	w->site = si;
	util_strlcpy(w->provider, provider, sizeof(w->provider));
	util_strlcpy(w->result, result, sizeof(w->result));
	w->count = 1;
out:
	pthread_mutex_unlock(&M.mu);
}

/* A request refused before it reached a site (/healthz, /metrics, an unknown site). */
void
metrics_refused(const char *result)
{
	size_t i;

	pthread_mutex_lock(&M.mu);
	for (i = 0; i < METRICS_NREFUSED; i++)
		if (strcmp(metrics_refused_results[i], result) == 0)
			M.refused[i]++;
	pthread_mutex_unlock(&M.mu);
}

void
metrics_deploy(const char *site, int ok, int64_t duration_ms)
{
	struct metrics_site *s;
	double secs = duration_ms > 0 ? (double)duration_ms / 1000.0 : 0;
	size_t b;

	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) != NULL) {
		if (ok)
			s->deploys_ok++;
		else
			s->deploys_failed++;
		for (b = 0; b < METRICS_NBUCKETS && secs > metrics_buckets[b]; b++)
			;
		if (b < METRICS_NBUCKETS)
			s->buckets[b]++;
		s->duration_count++;
		s->duration_sum += secs;
	}
	pthread_mutex_unlock(&M.mu);
}

void
metrics_live(const char *site, int64_t unix_secs)
{
	struct metrics_site *s;

	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) != NULL)
		s->live = unix_secs;
	pthread_mutex_unlock(&M.mu);
}

void
metrics_webhook_missed(const char *site)
{
	struct metrics_site *s;

	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) != NULL)
		s->missed++;
	pthread_mutex_unlock(&M.mu);
}

void
metrics_poll_error(const char *site)
{
	struct metrics_site *s;

	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) != NULL)
		s->poll_errors++;
	pthread_mutex_unlock(&M.mu);
}

/* A cache surveyed after a deploy, and whether an upkeep ran (1), failed (-1) or not (0). */
void
metrics_cache(const char *site, int upkeep, int64_t packs, int64_t loose, int64_t bytes)
{
	struct metrics_site *s;

	pthread_mutex_lock(&M.mu);
	if ((s = metrics_site(site)) != NULL) {
		if (upkeep > 0)
			s->upkeeps_ok++;
		else if (upkeep < 0)
			s->upkeeps_failed++;
		s->cache_packs = packs;
		s->cache_loose = loose;
		s->cache_bytes = bytes;
	}
	pthread_mutex_unlock(&M.mu);
}

/* Label values escaped as the exposition format wants: backslash, quote, newline. */
static void
metrics_label(FILE *f, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void
metrics_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One line "name{site="..."[,extra]} value"; extra is a pre-formatted label list or NULL. */
static void
metrics_site_line(FILE *f, const char *name, const char *site, const char *extra,
    const char *value)
{
	fprintf(f, "%s{site=\"", name);
	metrics_label(f, site);
	fprintf(f, "\"%s%s} %s\n", extra != NULL ? "," : "", extra != NULL ? extra : "", value);
}

/* A counter's two series for one site, result="success" and result="failure". */
static void
metrics_results(FILE *f, const char *name, const char *site, uint64_t ok, uint64_t failed)
{
	char v[32];

	snprintf(v, sizeof(v), "%llu", (unsigned long long)ok);
	metrics_site_line(f, name, site, "result=\"success\"", v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)failed);
	metrics_site_line(f, name, site, "result=\"failure\"", v);
}

/* The repository caches: upkeeps, and what the last survey after a deploy found. */
static void
metrics_render_cache(FILE *f)
{
	static const struct {
		const char	*name;
		const char	*help;
		size_t		 off;
	} gauges[] = {
		{ "deployd_cache_packs", "Pack files in the site's repository cache.",
		    offsetof(struct metrics_site, cache_packs) },
		{ "deployd_cache_loose_objects", "Loose objects in the site's repository cache.",
		    offsetof(struct metrics_site, cache_loose) },
		{ "deployd_cache_bytes", "Bytes of objects in the site's repository cache.",
		    offsetof(struct metrics_site, cache_bytes) },
	};
	char v[64];
	size_t i, g;

	metrics_head(f, "deployd_cache_upkeeps_total", "counter",
	    "Repacks of the site's repository cache, by result.");
	for (i = 0; i < M.nsites; i++)
		metrics_results(f, "deployd_cache_upkeeps_total", M.sites[i].name,
		    M.sites[i].upkeeps_ok, M.sites[i].upkeeps_failed);
	for (g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
		metrics_head(f, gauges[g].name, "gauge", gauges[g].help);
		for (i = 0; i < M.nsites; i++) {
			int64_t n = *(const int64_t *)(const void *)((const char *)&M.sites[i] +
			    gauges[g].off);

			if (M.sites[i].cache_packs < 0)
				continue;
			snprintf(v, sizeof(v), "%lld", (long long)n);
			metrics_site_line(f, gauges[g].name, M.sites[i].name, NULL, v);
		}
	}
}

static void
metrics_render_sites(FILE *f)
{
	struct metrics_site *s;
	char v[64], le[48];
	uint64_t cum;
	size_t i, b;

	metrics_head(f, "deployd_deploys_total", "counter", "Deploys by site and result.");
	for (i = 0; i < M.nsites; i++)
		metrics_results(f, "deployd_deploys_total", M.sites[i].name,
		    M.sites[i].deploys_ok, M.sites[i].deploys_failed);
	metrics_head(f, "deployd_deploy_duration_seconds", "histogram",
	    "How long deploys took, from request to live or failed.");
	for (i = 0; i < M.nsites; i++) {
		s = &M.sites[i];
		for (b = 0, cum = 0; b < METRICS_NBUCKETS; b++) {
			cum += s->buckets[b];
			snprintf(le, sizeof(le), "le=\"%g\"", metrics_buckets[b]);
			snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
			metrics_site_line(f, "deployd_deploy_duration_seconds_bucket", s->name,
			    le, v);
		}
		snprintf(v, sizeof(v), "%llu", (unsigned long long)s->duration_count);
		metrics_site_line(f, "deployd_deploy_duration_seconds_bucket", s->name,
		    "le=\"+Inf\"", v);
		snprintf(v, sizeof(v), "%.3f", s->duration_sum);
		metrics_site_line(f, "deployd_deploy_duration_seconds_sum", s->name, NULL, v);
		snprintf(v, sizeof(v), "%llu", (unsigned long long)s->duration_count);
		metrics_site_line(f, "deployd_deploy_duration_seconds_count", s->name, NULL, v);
	}
	metrics_head(f, "deployd_live_release_timestamp_seconds", "gauge",
	    "When the live release was activated (unix seconds).");
	for (i = 0; i < M.nsites; i++) {
		if (M.sites[i].live <= 0)
			continue;
		snprintf(v, sizeof(v), "%lld", (long long)M.sites[i].live);
		metrics_site_line(f, "deployd_live_release_timestamp_seconds", M.sites[i].name,
		    NULL, v);
	}
	metrics_head(f, "deployd_webhooks_missed_total", "counter",
	    "Polls that found a new tip no webhook had announced.");
	for (i = 0; i < M.nsites; i++) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)M.sites[i].missed);
		metrics_site_line(f, "deployd_webhooks_missed_total", M.sites[i].name, NULL, v);
	}
	metrics_head(f, "deployd_poll_errors_total", "counter",
	    "Polls of the remote that failed.");
	for (i = 0; i < M.nsites; i++) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)M.sites[i].poll_errors);
		metrics_site_line(f, "deployd_poll_errors_total", M.sites[i].name, NULL, v);
	}
	metrics_render_cache(f);
}

/* The whole exposition, malloc'd; the caller frees it. */
char *
metrics_render(void)
{
	struct metrics_webhook *w;
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	pthread_mutex_lock(&M.mu);
	metrics_head(f, "deployd_webhooks_total", "counter",
	    "Webhook deliveries by site, provider and result.");
	for (i = 0; i < M.nhooks; i++) {
		w = &M.hooks[i];
		fputs("deployd_webhooks_total{site=\"", f);
		metrics_label(f, M.sites[w->site].name);
		fputs("\",provider=\"", f);
		metrics_label(f, w->provider);
		fputs("\",result=\"", f);
		metrics_label(f, w->result);
		fprintf(f, "\"} %llu\n", (unsigned long long)w->count);
	}
	metrics_head(f, "deployd_requests_refused_total", "counter",
	    "Requests naming no configured site that were refused, by result.");
	for (i = 0; i < METRICS_NREFUSED; i++)
		fprintf(f, "deployd_requests_refused_total{result=\"%s\"} %llu\n",
		    metrics_refused_results[i], (unsigned long long)M.refused[i]);
	metrics_render_sites(f);
	pthread_mutex_unlock(&M.mu);
	fleet_view_metrics(f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
