/* test_engine.c: the engine's entry points: whole deploys, and prepare, activate and discard. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"
#include "tests/unit/fixture.h"

static void
t_engine_deploy(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n"), TX("cgi/run", "#!/bin/sh\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TL("home.html", "index.html") };
	struct fixture *f = *state;
	struct deploy_request req = { 0 };
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	struct fixture_phases ph = { { 0 }, 0 };
	char c1[SHA_HEX], c2[SHA_HEX], cur[RELEASE_NAME_MAX], first[RELEASE_NAME_MAX];
	char abbrev[8];
	int pfd, tmps;

	fixture_commit(f->repo, "main", v1, 2, "First commit\n\nWith a body.\n", 0, c1);
	req.trigger = TRIG_WEBHOOK;
	util_strlcpy(req.provider, "github", sizeof(req.provider));
	util_strlcpy(req.delivery, "d-1", sizeof(req.delivery));
	assert_int_equal(engine_deploy(&f->site, &req, &res, fixture_on_phase, &ph), E_OK);
	assert_int_equal(res.rc, E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	assert_int_equal(ph.n, 3);
	assert_int_equal(ph.seen[0], PHASE_FETCHING);
	assert_int_equal(ph.seen[1], PHASE_WRITING);
	assert_int_equal(ph.seen[2], PHASE_ACTIVATING);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	assert_int_equal(strncmp(cur + 17, c1, 12), 0);
	util_strlcpy(first, cur, sizeof(first));
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "v1\n", 3, 0644);
	fixture_assert_file(pfd, "current/cgi/run", "#!/bin/sh\n", 10, 0755);
	assert_false(fixture_exists(pfd, ".current.tmp"));
	assert_true(fixture_exists(pfd, ".deployd.lock"));
	close(pfd);

	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.applied, c1);
	assert_string_equal(st.desired, c1);
	assert_string_equal(st.attempted, c1);
	assert_string_equal(st.release, cur);
	assert_string_equal(st.subject, "First commit");
	assert_string_equal(st.author, "Test Author <t@example.org>");
	assert_int_equal(st.trigger, TRIG_WEBHOOK);
	assert_int_equal(st.nreleases, 1);
	assert_int_equal(st.nhistory, 1);
	assert_int_equal(st.history[0].ok, 1);
	assert_int_equal(st.history[0].id, 1);
	assert_string_equal(st.history[0].provider, "github");
	assert_string_equal(st.history[0].delivery, "d-1");
	assert_string_equal(st.history[0].release, cur);
	state_free(&st);

	/* The same tip again: nothing to do, and no history record. */
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.release, first);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_int_equal(st.nhistory, 1);
	state_free(&st);

	/* A new commit goes live; the old release stays for rollback. */
	fixture_commit(f->repo, "main", v2, 2, "Second\n", 0, c2);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c2);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	fixture_assert_link(pfd, "current/home.html", "index.html");
	assert_false(fixture_exists(pfd, "current/cgi"));
	close(pfd);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	assert_int_equal(tmps, 0);

	/* Pin the first commit by an abbreviated id. */
	util_strlcpy(abbrev, c1, sizeof(abbrev));
	assert_int_equal(fixture_deploy(f, abbrev, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	fixture_current(f, cur, sizeof(cur));
	assert_string_not_equal(cur, first);	/* a new release of the same commit */
	assert_int_equal(strncmp(cur + 17, c1, 12), 0);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.desired, c2);
	assert_string_equal(st.applied, c1);
	assert_int_equal(st.nhistory, 3);
	assert_int_equal(st.history[2].id, 3);
	state_free(&st);

	/* Revisions that are not usable commits. */
	assert_int_equal(fixture_deploy(f, "ffffffffff", &res), E_NOTFOUND);
	assert_non_null(strstr(res.error, "ffffffffff"));
	assert_int_equal(fixture_deploy(f, "xyz!", &res), E_INVAL);
	fixture_current(f, first, sizeof(first));
	assert_string_equal(first, cur);
}

static void
t_engine_prune_and_force_push(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct tfile tf = TF("index.html", "x\n");
	char c[SHA_HEX], data[8];
	int i, tmps, pfd;

	for (i = 0; i < 5; i++) {
		snprintf(data, sizeof(data), "%d\n", i);
		tf.data = data;
		tf.len = strlen(data);
		fixture_commit(f->repo, "main", &tf, 1, "step\n", 0, c);
		assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
		assert_int_equal(res.changed, 1);
	}
	assert_int_equal(fixture_count_releases(f, &tmps), 3);	/* keep: 3 */

	/* A force-push to an unrelated root commit. */
	tf.data = "forced\n";
	tf.len = 7;
	fixture_commit(f->repo, "main", &tf, 1, "rewritten\n", 1, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "forced\n", 7, 0644);
	close(pfd);
}

/* A first deploy of 2,000 files must be quick: the budget is generous for sanitizer builds. */
static void
t_engine_many_files(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct tfile *files = util_xcalloc(2000, sizeof(*files));
	char (*paths)[32] = util_xcalloc(2000, 32);
	char data[64];
	char c[SHA_HEX];
	int i, pfd;

	for (i = 0; i < 2000; i++) {
		snprintf(paths[i], 32, "d%02d/e%d/f%04d.html", i % 40, i % 7, i);
		files[i].path = paths[i];
		files[i].data = paths[i];	/* 2,000 distinct blobs */
		files[i].len = strlen(paths[i]);
		files[i].mode = GIT_FILEMODE_BLOB;
	}
	fixture_commit(f->repo, "main", files, 2000, "many\n", 0, c);
	util_strlcpy(data, paths[1999], sizeof(data));
	free(paths);
	free(files);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	print_message("# 2000-file first deploy: %lld ms\n", (long long)res.duration_ms);
	assert_true(res.duration_ms < 30000);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/d39/e4/f1999.html", data, strlen(data), 0644);
	close(pfd);
}

/* ---- two phases: prepare, then activate or discard ---- */

/* Prepare writes a complete release that is not live; activate makes it live. */
static void
t_prepare_activate(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct fixture_phases ph = { { 0 }, 0 };
	struct deploy_request req = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	char cur[RELEASE_NAME_MAX], path[512];
	int pfd, tmps;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(res.prepared, 1);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.commit, c2);
	assert_int_equal(strncmp(res.release + 17, c2, 12), 0);
	util_strlcpy(prep, res.release, sizeof(prep));
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);		/* not live */
	pfd = fixture_open_path(f);
	snprintf(path, sizeof(path), "releases/%s/new.html", prep);
	fixture_assert_file(pfd, path, "new\n", 4, 0644);
	fixture_assert_file(pfd, "current/index.html", "v1\n", 3, 0644);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	assert_int_equal(tmps, 0);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, prep);
	assert_string_equal(st.prepared.commit, c2);
	assert_string_equal(st.prepared.subject, "two");
	assert_string_equal(st.prepared.ref, "refs/heads/main");
	assert_true(st.prepared.written_ns > 0);
	assert_string_equal(st.applied, c1);	/* what is live did not move */
	assert_int_equal(st.nhistory, 1);	/* a prepare is not a deploy */
	state_free(&st);

	req.trigger = TRIG_MANUAL;
	assert_int_equal(engine_activate(&f->site, prep, &req, &res, fixture_on_phase, &ph),
	    E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.release, prep);
	assert_string_equal(res.commit, c2);
	assert_int_equal(ph.n, 1);
	assert_int_equal(ph.seen[0], PHASE_ACTIVATING);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, prep);
	fixture_assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	fixture_state(f, &st);
	assert_string_equal(st.applied, c2);
	assert_string_equal(st.release, prep);
	assert_string_equal(st.subject, "two");
	assert_string_equal(st.prepared.name, "");
	assert_int_equal(st.nreleases, 2);
	assert_true(st.releases[1].written_ns > 0);	/* the next deploy may reuse from it */
	assert_int_equal(st.nhistory, 2);
	assert_int_equal(st.history[1].ok, 1);
	assert_string_equal(st.history[1].release, prep);
	state_free(&st);
	/* Activated once: nothing is prepared any more. */
	assert_int_equal(fixture_activate(f, NULL, NULL, &res), E_NOTFOUND);
}

/* Discard removes the prepared release like a failed one; `current` never moves. */
static void
t_prepare_discard(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	char cur[RELEASE_NAME_MAX], path[512];
	int pfd, tmps;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	util_strlcpy(prep, res.release, sizeof(prep));
	assert_int_equal(engine_discard(&f->site, "20990101T000000Z-0123456789ab", &e),
	    E_NOTFOUND);
	assert_int_equal(engine_discard(&f->site, prep, &e), E_OK);
	pfd = fixture_open_path(f);
	snprintf(path, sizeof(path), "releases/%s", prep);
	assert_false(fixture_exists(pfd, path));
	close(pfd);
	assert_int_equal(fixture_count_releases(f, &tmps), 1);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, "");
	assert_string_equal(st.applied, c1);
	assert_string_equal(st.last_error, "");	/* not a failure */
	assert_int_equal(st.nhistory, 1);
	state_free(&st);
	assert_int_equal(engine_discard(&f->site, NULL, &e), E_NOTFOUND);
	assert_int_equal(fixture_activate(f, prep, NULL, &res), E_NOTFOUND);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
}

/* Activation checks what it is asked for and leaves everything alone when it refuses. */
static void
t_activate_refusals(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	char cur[RELEASE_NAME_MAX], path[512];
	int pfd;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_activate(f, NULL, NULL, &res), E_NOTFOUND);
	assert_non_null(strstr(res.error, "not prepared"));
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	util_strlcpy(prep, res.release, sizeof(prep));
	/* another name, another commit */
	assert_int_equal(fixture_activate(f, live, NULL, &res), E_NOTFOUND);
	assert_int_equal(fixture_activate(f, NULL, c1, &res), E_INVAL);
	assert_non_null(strstr(res.error, "not"));
	/* the prepared release removed by hand */
	pfd = fixture_open_path(f);
	snprintf(path, sizeof(path), "releases/%s", prep);
	assert_int_equal(util_rm_rf_at(pfd, path), E_OK);
	close(pfd);
	assert_int_equal(fixture_activate(f, NULL, c2, &res), E_NOTFOUND);
	assert_non_null(strstr(res.error, "gone"));
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	fixture_state(f, &st);
	assert_string_equal(st.applied, c1);
	assert_string_equal(st.last_error, "");
	assert_int_equal(st.nhistory, 1);
	state_free(&st);
}

/*
 * A prepared release outlives the process that prepared it: recovery at start-up keeps it,
 * and a later process activates it. A deploy of its commit takes it rather than writing the
 * tree again.
 */
static void
t_prepare_restart_activate(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	char cur[RELEASE_NAME_MAX];
	int tmps;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	util_strlcpy(prep, res.release, sizeof(prep));
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, prep);
	state_free(&st);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	/* the same commit prepared again: the same release, nothing written */
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_string_equal(res.release, prep);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	/* a deploy of that commit takes the prepared release */
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.release, prep);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, prep);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, "");
	assert_string_equal(st.applied, c2);
	state_free(&st);
	/* nothing prepared, the tip live: prepare has nothing to do */
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(res.prepared, 0);
	assert_string_equal(res.release, prep);
}

/* A newer prepare replaces the older prepared release, which is removed. */
static void
t_prepare_newer(void **state)
{
	const struct tfile v3[] = { TF("index.html", "v3\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	char c1[SHA_HEX], c2[SHA_HEX], c3[SHA_HEX], live[RELEASE_NAME_MAX];
	char old[RELEASE_NAME_MAX], cur[RELEASE_NAME_MAX], path[512];
	int pfd, tmps;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	util_strlcpy(old, res.release, sizeof(old));
	fixture_commit(f->repo, "main", v3, 1, "three\n", 0, c3);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_string_equal(res.commit, c3);
	assert_string_not_equal(res.release, old);
	pfd = fixture_open_path(f);
	snprintf(path, sizeof(path), "releases/%s", old);
	assert_false(fixture_exists(pfd, path));
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.commit, c3);
	state_free(&st);
	/* the older one cannot be activated; the newer can */
	assert_int_equal(fixture_activate(f, old, NULL, &res), E_NOTFOUND);
	assert_int_equal(fixture_activate(f, NULL, c3, &res), E_OK);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	fixture_assert_file(pfd, "current/index.html", "v3\n", 3, 0644);
	close(pfd);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_engine_deploy),
		FIXTURE_TEST(t_engine_prune_and_force_push),
		FIXTURE_TEST(t_engine_many_files),
		FIXTURE_TEST(t_prepare_activate),
		FIXTURE_TEST(t_prepare_discard),
		FIXTURE_TEST(t_activate_refusals),
		FIXTURE_TEST(t_prepare_restart_activate),
		FIXTURE_TEST(t_prepare_newer),
	};

	return FIXTURE_MAIN(tests);
}
