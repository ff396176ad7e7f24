/* test_recover.c: start-up repair: leftovers, a missing or dangling current, prepared releases. */
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
t_recover_site(void **state)
{
	const struct tfile ok[] = { TF("index.html", "ok\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct error e = { 0 };
	char c[SHA_HEX], live[RELEASE_NAME_MAX], cur[RELEASE_NAME_MAX];
	int pfd;

	/* A site never deployed is fine. */
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	assert_false(fixture_exists(AT_FDCWD, f->path));

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(live, res.release, sizeof(live));
	pfd = fixture_open_path(f);

	/* Missing current, a half-written release and a half-made link. */
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	fixture_mkdir(pfd, "releases/.tmp-20300101T000000Z-0123456789ab");
	fixture_mkdir(pfd, "releases/.tmp-20300101T000000Z-0123456789ab/x");
	assert_int_equal(symlinkat("releases/nothing", pfd, ".current.tmp"), 0);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	assert_false(fixture_exists(pfd, "releases/.tmp-20300101T000000Z-0123456789ab"));
	assert_false(fixture_exists(pfd, ".current.tmp"));

	/* Dangling current. */
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	assert_int_equal(symlinkat("releases/20300101T000000Z-0123456789ab", pfd, "current"),
	    0);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);

	/* A good current is left alone. */
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	close(pfd);
}

/*
 * A prepared release is neither a leftover nor live: recovery keeps it, never points a
 * missing `current` at it, and forgets it only when it is gone from disk.
 */
static void
t_recover_prepared(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	char cur[RELEASE_NAME_MAX], path[512];
	int pfd;

	/* Never activated: only a prepared release, and no current to repair from it. */
	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(res.prepared, 1);
	util_strlcpy(prep, res.release, sizeof(prep));
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	pfd = fixture_open_path(f);
	assert_false(fixture_exists(pfd, "current"));
	snprintf(path, sizeof(path), "releases/%s/index.html", prep);
	assert_true(fixture_exists(pfd, path));
	assert_int_equal(engine_discard(&f->site, NULL, &e), E_OK);

	/* With a live release: a missing current goes back to it, not to the newer prepared one. */
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(live, res.release, sizeof(live));
	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(res.prepared, 1);
	util_strlcpy(prep, res.release, sizeof(prep));
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, prep);
	state_free(&st);

	/* Removed by hand: the record goes too, and nothing else moves. */
	snprintf(path, sizeof(path), "releases/%s", prep);
	assert_int_equal(util_rm_rf_at(pfd, path), E_OK);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_state(f, &st);
	assert_string_equal(st.prepared.name, "");
	assert_string_equal(st.applied, c1);
	state_free(&st);
	fixture_current(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	close(pfd);
}

/*
 * A crash between activation's swap and its state save: `current` names the prepared
 * release. Recovery adopts it as live, with what the prepared record knew.
 */
static void
t_recover_adopts_prepared(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], live[RELEASE_NAME_MAX], prep[RELEASE_NAME_MAX];
	int64_t written_ns;
	int pfd;

	fixture_two_commits(f, c1, c2, live);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(res.prepared, 1);
	util_strlcpy(prep, res.release, sizeof(prep));
	fixture_state(f, &st);
	written_ns = st.prepared.written_ns;
	state_free(&st);
	pfd = fixture_open_path(f);
	assert_int_equal(swap_current(pfd, prep, &e), E_OK);	/* and then the crash */
	close(pfd);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	fixture_state(f, &st);
	assert_string_equal(st.applied, c2);
	assert_string_equal(st.release, prep);
	assert_string_equal(st.prepared.name, "");
	assert_int_equal(st.nreleases, 2);
	assert_string_equal(st.releases[1].name, prep);
	assert_string_equal(st.releases[1].commit, c2);
	assert_int_equal(st.releases[1].written_ns, written_ns);
	state_free(&st);
}

/* keep holds after such a crash too: adopting the new live release prunes, as activating would. */
static void
t_recover_adopt_prunes(void **state)
{
	const struct tfile v3[] = { TF("index.html", "v3\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], c3[SHA_HEX], first[RELEASE_NAME_MAX];
	char path[512];
	int pfd, tmps;

	f->site.keep = 2;
	fixture_two_commits(f, c1, c2, first);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	fixture_commit(f->repo, "main", v3, 1, "three\n", 0, c3);
	assert_int_equal(fixture_prepare(f, &res), E_OK);
	assert_int_equal(fixture_count_releases(f, &tmps), 3);
	pfd = fixture_open_path(f);
	assert_int_equal(swap_current(pfd, res.release, &e), E_OK);	/* and then the crash */
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	snprintf(path, sizeof(path), "releases/%s", first);
	assert_false(fixture_exists(pfd, path));
	close(pfd);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_recover_site),
		FIXTURE_TEST(t_recover_prepared),
		FIXTURE_TEST(t_recover_adopts_prepared),
		FIXTURE_TEST(t_recover_adopt_prunes),
	};

	return FIXTURE_MAIN(tests);
}
