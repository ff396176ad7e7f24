/* test_push.c: the daemon's answers to the listener's pushes, against a running scheduler and a real repository. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <git2.h>

#include "server/deployd.h"
#include "tests/unit/fixture.h"

/* One site, the fixture's, under a scheduler with one worker. */
static void
push_start(struct fixture *f, struct config *cfg, struct site_config *sc)
{
	memset(cfg, 0, sizeof(*cfg));
	memset(sc, 0, sizeof(*sc));
	sc->site = f->site;
	sc->providers = PROV_ALL;
	cfg->state_dir = f->state_dir;
	cfg->max_parallel_deploys = 1;
	cfg->sites = sc;
	cfg->nsites = 1;
	metrics_init(cfg);
	privsep_msg_init(cfg);
	assert_int_equal(sched_init(cfg, NULL), E_OK);
	assert_int_equal(sched_start(), E_OK);
}

static void
push_stop(void)
{
	sched_stop();
	sched_free();
	privsep_msg_free();
	metrics_free();
}

/* Wait for commit to be live with nothing under way; returns the job that left it so. */
static int64_t
push_wait_live(const char *commit)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int64_t job = 0;
	int i;

	for (i = 0; i < 1500; i++) {
		if (sched_is_live("www", commit, &job))
			return job;
		nanosleep(&ts, NULL);
	}
	fail_msg("%.12s did not go live in 30 s", commit);
	return 0;
}

static uint32_t
push_send(uint32_t type, const char *delivery, const char *after)
{
	struct privsep_msg m;
	struct privsep_reply a;
	char *text = NULL;

	memset(&m, 0, sizeof(m));
	m.type = type;
	util_strlcpy(m.site, "www", sizeof(m.site));
	util_strlcpy(m.provider, "github", sizeof(m.provider));
	util_strlcpy(m.delivery, delivery, sizeof(m.delivery));
	util_strlcpy(m.ref, "refs/heads/main", sizeof(m.ref));
	util_strlcpy(m.after, after, sizeof(m.after));
	assert_int_equal(privsep_msg_handle(&m, &a, &text), E_OK);
	assert_null(text);
	return a.answer;
}

static int
push_in_digest(const char *delivery)
{
	uint64_t hash[256], h = view_hash("github", delivery);
	size_t n, i;

	n = privsep_msg_digest("www", hash, sizeof(hash) / sizeof(hash[0]));
	for (i = 0; i < n; i++)
		if (hash[i] == h)
			return 1;
	return 0;
}

/*
 * The scheduler runs once per process, so one test walks through both: a delivery the
 * daemon answered "queued" is a duplicate once live; and one the listener answered
 * "queued" (a deploy was waiting) whose record the daemon read only after that deploy had
 * made the commit live joined that deploy, so its redelivery is a duplicate too. CI once
 * saw the second answered "commit already live".
 */
static void
t_push(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct config cfg;
	struct site_config sc;
	char c1[SHA_HEX], c2[SHA_HEX];

	fixture_commit(f->repo, "main", v1, 1, "v1\n", 0, c1);
	push_start(f, &cfg, &sc);
	assert_true(push_wait_live(c1) > 0);	/* the start-up deploy */

	fixture_commit(f->repo, "main", v2, 1, "v2\n", 0, c2);
	assert_int_equal(push_send(PS_PUSH, "new-1", c2), PS_QUEUED);
	assert_true(push_in_digest("new-1"));
	push_wait_live(c2);
	assert_int_equal(push_send(PS_PUSH, "new-1", c2), PS_DUPLICATE);

	assert_int_equal(push_send(PS_TOLD, "late-1", c2), PS_LIVE);
	assert_true(push_in_digest("late-1"));
	assert_int_equal(push_send(PS_PUSH, "late-1", c2), PS_DUPLICATE);

	/* A push of the live commit nobody answered "queued" is only ignored, every time. */
	assert_int_equal(push_send(PS_PUSH, "fresh-1", c2), PS_LIVE);
	assert_false(push_in_digest("fresh-1"));
	assert_int_equal(push_send(PS_PUSH, "fresh-1", c2), PS_LIVE);
	push_stop();
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_push),
	};

	return fixture_run(argc, argv, "push", tests, sizeof(tests) / sizeof(tests[0]));
}
