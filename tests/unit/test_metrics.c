/* test_metrics.c: unit tests for the daemon's Prometheus counters and their text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/deployd.h"

static void
assert_line(const char *text, const char *line)
{
	char *want = util_xasprintf("\n%s\n", line);

	if (strstr(text, want) == NULL)
		fail_msg("metrics lack the line \"%s\" in:\n%s", line, text);
	free(want);
}

static void
t_metrics(void **state)
{
	struct site_config sites[2];
	struct config cfg;
	char *text;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(sites, 0, sizeof(sites));
	sites[0].site.name = (char *)(uintptr_t)"www";
	sites[1].site.name = (char *)(uintptr_t)"docs";
	cfg.sites = sites;
	cfg.nsites = 2;
	metrics_init(&cfg);
	metrics_webhook("www", "github", "queued");
	metrics_webhook("www", "github", "queued");
	metrics_webhook("www", NULL, "too_large");
	metrics_webhook("docs", "gitlab", "unauthorized");
	metrics_deploy("www", 1, 1500);
	metrics_deploy("www", 0, 700000);
	metrics_live("www", 1764064800);
	metrics_webhook_missed("docs");
	metrics_poll_error("docs");
	metrics_poll_error("docs");
	metrics_live("a\"b\\c\nd", 1);

	text = metrics_render();
	assert_non_null(text);
	assert_line(text, "# TYPE deployd_webhooks_total counter");
	assert_line(text, "deployd_webhooks_total{site=\"www\",provider=\"github\",result=\"queued\"} 2");
	assert_line(text, "deployd_webhooks_total{site=\"www\",provider=\"unknown\",result=\"too_large\"} 1");
	assert_line(text, "deployd_webhooks_total{site=\"docs\",provider=\"gitlab\",result=\"unauthorized\"} 1");
	assert_line(text, "deployd_deploys_total{site=\"www\",result=\"success\"} 1");
	assert_line(text, "deployd_deploys_total{site=\"www\",result=\"failure\"} 1");
	assert_line(text, "deployd_deploys_total{site=\"docs\",result=\"success\"} 0");
	assert_line(text, "# TYPE deployd_deploy_duration_seconds histogram");
	assert_line(text, "deployd_deploy_duration_seconds_bucket{site=\"www\",le=\"1\"} 0");
	assert_line(text, "deployd_deploy_duration_seconds_bucket{site=\"www\",le=\"2.5\"} 1");
	assert_line(text, "deployd_deploy_duration_seconds_bucket{site=\"www\",le=\"600\"} 1");
	assert_line(text, "deployd_deploy_duration_seconds_bucket{site=\"www\",le=\"+Inf\"} 2");
	assert_line(text, "deployd_deploy_duration_seconds_sum{site=\"www\"} 701.500");
	assert_line(text, "deployd_deploy_duration_seconds_count{site=\"www\"} 2");
	assert_line(text, "deployd_live_release_timestamp_seconds{site=\"www\"} 1764064800");
	assert_null(strstr(text, "deployd_live_release_timestamp_seconds{site=\"docs\"}"));
	assert_line(text, "deployd_webhooks_missed_total{site=\"docs\"} 1");
	assert_line(text, "deployd_poll_errors_total{site=\"docs\"} 2");
	assert_line(text, "deployd_live_release_timestamp_seconds{site=\"a\\\"b\\\\c\\nd\"} 1");
	free(text);
	metrics_free();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_metrics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
