/* health.c: after a swap, the site's web server is asked whether the new release works (health_check). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "deploy/deploy.h"

/* The body says nothing the status does not; it is read and dropped. */
static size_t
health_discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One request: its HTTP status, or 0 with curl's reason in why. */
static long
health_ask(const struct site_health *h, char *why, size_t whylen)
{
	char err[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;
	CURL *c;

	if ((c = curl_easy_init()) == NULL) {
		util_strlcpy(why, "cannot start a request", whylen);
		return 0;
	}
	curl_easy_setopt(c, CURLOPT_URL, h->url);
	/* curl's resolver timeouts would otherwise use signals, in a threaded daemon. */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	/* A redirect is an answer to judge, not one to follow: expect: 301 can ask for it. */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	/* The check asks this node's own web server; a proxy from the environment would not. */
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "deployd/" PACKAGE_VERSION " (health check)");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, health_discard);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	if ((rc = curl_easy_perform(c)) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		util_strlcpy(why, err[0] != '\0' ? err : curl_easy_strerror(rc), whylen);
	curl_easy_cleanup(c);
	return status;
}

static void
health_sleep(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/*
 * Ask h->url until it answers h->expect, at most 1 + h->retries times. On success note says
 * what it answered; on failure the error says what the last request got.
 */
int
health_check(const char *site, const struct site_health *h, char *note, size_t notelen,
    struct error *e)
{
	int64_t t0 = util_mono_ms(), attempts = h->retries + 1, i;
	char shown[512], why[CURL_ERROR_SIZE + 64], clean[sizeof(why)] = "";
	long got;

	/* A URL may carry a password (user:pass@host): it is never logged. */
	cred_redact_url(h->url, shown, sizeof(shown));
	for (i = 1; i <= attempts; i++) {
		why[0] = '\0';
		if ((got = health_ask(h, why, sizeof(why))) == h->expect) {
			snprintf(note, notelen, "health check %s answered %ld (attempt %lld of "
			    "%lld, %lld ms)", shown, got, (long long)i, (long long)attempts,
			    (long long)(util_mono_ms() - t0));
			log_info("site=%s %s", site, note);
			return E_OK;
		}
		if (got != 0)
			snprintf(why, sizeof(why), "answered %ld, expected %lld", got,
			    (long long)h->expect);
		util_sanitize(why, clean, sizeof(clean));
		log_warn("site=%s health check %s: %s (attempt %lld of %lld)", site, shown,
		    clean, (long long)i, (long long)attempts);
		if (i < attempts)
			health_sleep(h->interval_ms);
	}
	return util_error(e, E_HEALTH, "health check %s: %s (%lld attempt%s)", shown, clean,
	    (long long)attempts, attempts == 1 ? "" : "s");
}
