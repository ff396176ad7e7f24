/* test_activate.c: a deploy's second half: the swap, post_activate and rollback_on_failure. */
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

/* pre_activate and post_activate: cwd, exactly the documented environment, output kept. */
static void
t_engine_hooks(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct deploy_request req = { 0 };
	struct fixture_phases ph = { { 0 }, 0 };
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], want[2048], got[2048], path[512], script[512];
	int pfd;

	snprintf(script, sizeof(script), "tr '\\000' '\\n' </proc/$$/environ | sort >built.env; "
	    "pwd -P >built.cwd; echo building in \"$DEPLOYD_RELEASE\"; echo oops >&2");
	fixture_argv(&f->site.hooks.pre_activate, script);
	snprintf(script, sizeof(script), "tr '\\000' '\\n' </proc/$$/environ | sort >%s/post.env; "
	    "readlink %s/current >%s/post.cur; echo reloaded", f->dir, f->path, f->dir);
	fixture_argv(&f->site.hooks.post_activate, script);

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	req.trigger = TRIG_WEBHOOK;
	assert_int_equal(engine_deploy(&f->site, &req, &res, fixture_on_phase, &ph), E_OK);
	assert_int_equal(res.changed, 1);
	/* fetch, write, pre_activate, activate, post_activate */
	assert_int_equal(ph.n, 5);
	assert_int_equal(ph.seen[2], PHASE_HOOK);
	assert_int_equal(ph.seen[3], PHASE_ACTIVATING);
	assert_int_equal(ph.seen[4], PHASE_HOOK);

	/* What pre_activate wrote is part of the release. */
	snprintf(path, sizeof(path), "%s/current/built.env", f->path);
	fixture_slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "DEPLOYD_COMMIT=%s\nDEPLOYD_PREVIOUS_COMMIT=\n"
	    "DEPLOYD_REF=refs/heads/main\nDEPLOYD_RELEASE=%s/releases/%s\nDEPLOYD_SITE=www\n"
	    "PATH=/usr/local/bin:/usr/bin:/bin\n", c1, f->path, res.release);
	assert_string_equal(got, want);
	snprintf(path, sizeof(path), "%s/current/built.cwd", f->path);
	fixture_slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "%s/releases/%s\n", f->path, res.release);
	assert_string_equal(got, want);
	/* post_activate runs after the swap. */
	snprintf(path, sizeof(path), "%s/post.cur", f->dir);
	fixture_slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "releases/%s\n", res.release);
	assert_string_equal(got, want);

	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_int_equal(st.nhistory, 1);
	assert_int_equal(st.history[0].ok, 1);
	assert_non_null(strstr(st.history[0].output, "[pre_activate]\nbuilding in /"));
	assert_non_null(strstr(st.history[0].output, "oops\n"));
	assert_non_null(strstr(st.history[0].output, "[post_activate]\nreloaded\n"));
	state_free(&st);

	/* The second deploy names the first commit as the previous one. */
	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	snprintf(path, sizeof(path), "%s/post.env", f->dir);
	fixture_slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "DEPLOYD_PREVIOUS_COMMIT=%s\n", c1);
	assert_non_null(strstr(got, want));
	assert_null(strstr(got, "DEPLOYD_ERROR"));
	assert_null(strstr(got, "HOME="));
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	fixture_clear_hooks(f);
}

/* post_activate fails: a failed deploy; with rollback_on_failure, current goes back. */
static void
t_engine_post_activate_fails(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	const struct tfile v3[] = { TF("index.html", "v3\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], c3[SHA_HEX], r1[RELEASE_NAME_MAX];
	char r2[RELEASE_NAME_MAX], cur[RELEASE_NAME_MAX];
	int tmps, pfd;
	size_t i;

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(r1, res.release, sizeof(r1));

	/* Without rollback: the new release stays live, the deploy counts as failed. */
	fixture_argv(&f->site.hooks.post_activate, "echo reload failed >&2; exit 1");
	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "post_activate hook failed (exit status 1)");
	assert_int_equal(res.changed, 1);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	util_strlcpy(r2, cur, sizeof(r2));
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.applied, c2);
	assert_string_equal(st.release, r2);
	assert_string_equal(st.last_error, "post_activate hook failed (exit status 1)");
	assert_int_equal(st.history[st.nhistory - 1].ok, 0);
	assert_string_equal(st.history[st.nhistory - 1].release, r2);
	assert_non_null(strstr(st.history[st.nhistory - 1].output, "reload failed"));
	state_free(&st);
	/* A poll finds that commit live; the failure still stands. */
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.last_error, "post_activate hook failed (exit status 1)");
	state_free(&st);

	/* With rollback: back to the release before, which is r2 now. */
	f->site.rollback_on_failure = 1;
	fixture_commit(f->repo, "main", v3, 1, "three\n", 0, c3);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.release, r2);
	assert_non_null(strstr(res.error, "post_activate hook failed (exit status 1); "
	    "rolled back to "));
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, r2);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.applied, c2);
	assert_string_equal(st.release, r2);
	assert_string_equal(st.attempted, c3);
	assert_non_null(strstr(st.last_error, "rolled back to"));
	for (i = 0; i < st.nreleases; i++)
		if (strncmp(st.releases[i].name + 17, c3, 12) == 0)
			break;
	assert_true(i < st.nreleases);
	assert_int_equal(st.releases[i].bad, 1);	/* kept, for debugging */
	state_free(&st);
	assert_int_equal(fixture_count_releases(f, &tmps), 3);

	/* The bad commit is not deployed again by a poll or a plain deploy. */
	fixture_clear_hooks(f);
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal(fixture_deploy_trig(f, TRIG_WEBHOOK, &res), E_OK);
	assert_int_equal(res.changed, 0);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, r2);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(st.last_error, "rolled back to"));
	state_free(&st);
	/* ...but deploy --rev does, on purpose. */
	assert_int_equal(fixture_deploy(f, c3, &res), E_OK);
	assert_int_equal(res.changed, 1);

	/* The very first deploy has nothing to roll back to. */
	f->site.rollback_on_failure = 0;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_engine_hooks),
		FIXTURE_TEST(t_engine_post_activate_fails),
	};

	return FIXTURE_MAIN(tests);
}
