/* test_release.c: release naming, writing, pruning, the swap and the lock. */
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
#include <pthread.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"
#include "tests/unit/fixture.h"

/* ---- naming ---- */

static void
t_name(void **state)
{
	char buf[RELEASE_NAME_MAX], c12[13];
	int64_t secs;

	(void)state;
	assert_int_equal(release_name(0, C1, buf, sizeof(buf)), E_OK);
	assert_string_equal(buf, "19700101T000000Z-0123456789ab");
	assert_int_equal(release_name(1795646609, C1, buf, sizeof(buf)), E_OK);
	assert_string_equal(buf, "20261125T224329Z-0123456789ab");
	assert_int_equal(release_parse_name(buf, &secs, c12), E_OK);
	assert_int_equal(secs, 1795646609);
	assert_string_equal(c12, "0123456789ab");
	assert_int_equal(release_parse_name("20240229T120000Z-ffffffffffff", &secs, NULL), E_OK);
	assert_int_equal(secs, 1709208000);

	assert_int_equal(release_name(0, "0123456789a", buf, sizeof(buf)), E_INVAL);
	assert_int_equal(release_name(0, "0123456789aX", buf, sizeof(buf)), E_INVAL);
	assert_int_equal(release_name(0, "0123456789AB", buf, sizeof(buf)), E_INVAL);
	assert_int_equal(release_name(0, NULL, buf, sizeof(buf)), E_INVAL);
	assert_int_equal(release_name(0, C1, buf, 29), E_INVAL);	/* no room for the NUL */
	assert_int_equal(release_name(0, C1, buf, 30), E_OK);
}

static void
t_parse_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"20261125T224329Z-0123456789a",
		"20261125T224329Z-0123456789abc",
		"20261325T224329Z-0123456789ab",	/* month 13 */
		"20260230T000000Z-0123456789ab",	/* 30 February */
		"20230229T000000Z-0123456789ab",	/* not a leap year */
		"20261100T000000Z-0123456789ab",	/* day 0 */
		"20261125T244329Z-0123456789ab",
		"20261125T226029Z-0123456789ab",
		"20261125T224360Z-0123456789ab",
		"20261125t224329Z-0123456789ab",
		"20261125T224329z-0123456789ab",
		"20261125T224329Z_0123456789ab",
		"20261125T224329Z-0123456789AB",
		"20261125T224329Z-0123456789ag",
		"2026112aT224329Z-0123456789ab",
		".tmp-20261125T224329Z-0123456789ab",
		"20261125T224329Z-0123456789ab/",
		"current",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (release_parse_name(bad[i], NULL, NULL) != E_INVAL)
			fail_msg("accepted bad release name '%s'", bad[i]);
	}
}

/* ---- writing ---- */

static void
t_write(void **state)
{
	static const char bin[] = { 0, 1, 2, 0, (char)255, 10 };
	const struct tfile files[] = {
		TF("index.html", "<h1>hello</h1>\n"),
		TX("bin/run.sh", "#!/bin/sh\necho run\n"),
		{ "bin/data.bin", bin, sizeof(bin), GIT_FILEMODE_BLOB },
		TF("a/b/c/deep.txt", "deep\n"),
		TF("empty.txt", ""),
		TL("link", "index.html"),
		TL("a/up", "../index.html"),
	};
	struct fixture *f = *state;
	struct error e = { 0 };
	char commit[SHA_HEX];
	struct stat st;
	size_t nfiles = 0;
	mode_t old;
	int d;

	fixture_commit(f->repo, "main", files, sizeof(files) / sizeof(files[0]), "first\n", 0,
	    commit);
	old = umask(077);	/* release modes must not depend on the daemon's umask */
	assert_int_equal(release_write(f->src, commit, f->releases_fd, ".tmp-x", &nfiles, &e),
	    E_OK);
	umask(old);
	assert_int_equal(nfiles, 7);
	assert_true((d = openat(f->releases_fd, ".tmp-x", O_RDONLY | O_DIRECTORY)) >= 0);
	assert_int_equal(fstat(d, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	fixture_assert_file(d, "index.html", "<h1>hello</h1>\n", 15, 0644);
	fixture_assert_file(d, "bin/run.sh", "#!/bin/sh\necho run\n", 19, 0755);
	fixture_assert_file(d, "bin/data.bin", bin, sizeof(bin), 0644);
	fixture_assert_file(d, "a/b/c/deep.txt", "deep\n", 5, 0644);
	fixture_assert_file(d, "empty.txt", "", 0, 0644);
	fixture_assert_link(d, "link", "index.html");
	fixture_assert_link(d, "a/up", "../index.html");
	assert_int_equal(fstatat(d, "a/b", &st, 0), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_false(fixture_exists(d, ".git"));
	close(d);

	/* The target exists already, a bad id, and a commit the cache does not have. */
	assert_int_not_equal(release_write(f->src, commit, f->releases_fd, ".tmp-x", NULL, &e),
	    E_OK);
	assert_non_null(strstr(e.msg, "File exists"));
	assert_int_equal(release_write(f->src, "nothex", f->releases_fd, ".tmp-y", NULL, &e),
	    E_INVAL);
	assert_int_equal(release_write(f->src, C1, f->releases_fd, ".tmp-y", NULL, &e), E_GIT);
	assert_false(fixture_exists(f->releases_fd, ".tmp-y"));
}

/* subdir: the subtree at the release's root; its id names the content; a missing one refused. */
static void
t_write_subdir(void **state)
{
	const struct tfile files[] = {
		TF("README.md", "not served\n"),
		TF("public/index.html", "<h1>sub</h1>\n"),
		TL("public/css/link", "../index.html"),
		TL("public/out", "../README.md"),
		TF("public.txt", "a file next to it\n"),
	};
	struct release_opts o = { 0 };
	struct release_stats st;
	struct fixture *f = *state;
	struct error e = { 0 };
	char commit[SHA_HEX], id[SHA_HEX], id2[SHA_HEX];
	git_tree *tree;
	git_commit *c;
	git_oid oid;
	int d;

	fixture_commit(f->repo, "main", files, sizeof(files) / sizeof(files[0]), "sub\n", 0,
	    commit);
	o.reuse = REUSE_COPY;
	o.subdir = "public";
	/* A link out of the subtree is refused, though it stays inside the repository. */
	assert_int_equal(release_write_incr(f->src, commit, f->releases_fd, ".tmp-s", &o, &st,
	    &e), E_INVAL);
	assert_non_null(strstr(e.msg, "out: symlink to '../README.md' points outside"));
	o.allow_external = 1;
	assert_int_equal(release_write_incr(f->src, commit, f->releases_fd, ".tmp-t", &o, &st,
	    &e), E_OK);
	assert_int_equal(st.nfiles, 3);
	assert_true((d = openat(f->releases_fd, ".tmp-t", O_RDONLY | O_DIRECTORY)) >= 0);
	fixture_assert_file(d, "index.html", "<h1>sub</h1>\n", 13, 0644);
	fixture_assert_link(d, "css/link", "../index.html");
	assert_false(fixture_exists(d, "README.md"));
	assert_false(fixture_exists(d, "public"));
	close(d);

	/* The id is the subtree's, as git names it. */
	assert_int_equal(release_subtree_id(f->src, commit, "public", id, &e), E_OK);
	assert_int_equal(git_oid_fromstr(&oid, commit), 0);
	assert_int_equal(git_commit_lookup(&c, f->repo, &oid), 0);
	assert_int_equal(git_commit_tree(&tree, c), 0);
	assert_string_equal(id, git_oid_tostr_s(git_tree_entry_id(git_tree_entry_byname(tree,
	    "public"))));
	assert_int_equal(release_subtree_id(f->src, commit, NULL, id2, &e), E_OK);
	assert_string_equal(id2, git_oid_tostr_s(git_tree_id(tree)));
	git_tree_free(tree);
	git_commit_free(c);

	/* Missing, or a file: E_INVAL with the reason, and nothing written. */
	assert_int_equal(release_subtree_id(f->src, commit, "dist", id, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "has no dist/"));
	o.subdir = "public.txt";
	assert_int_equal(release_write_incr(f->src, commit, f->releases_fd, ".tmp-u", &o, &st,
	    &e), E_INVAL);
	assert_non_null(strstr(e.msg, "public.txt in commit"));
	assert_non_null(strstr(e.msg, "is not a directory"));
	assert_false(fixture_exists(f->releases_fd, ".tmp-u"));
}

static void
t_write_refuses(void **state)
{
	static const struct { const char *mode, *name, *msg; } cases[] = {
		{ "40000", "..", "refusing" },
		{ "100644", "..", "refusing" },
		{ "40000", ".git", "refusing" },
		{ "40000", ".GIT", "refusing" },
	};
	const struct tfile lfs[] = {
		TF("index.html", "hi\n"),
		TF("assets/.gitattributes", "*.psd filter=lfs diff=lfs merge=lfs -text\n"),
	};
	struct fixture *f = *state;
	struct error e = { 0 };
	char commit[SHA_HEX], tmp[32];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(tmp, sizeof(tmp), ".tmp-%zu", i);
		fixture_commit_raw(f->repo, cases[i].mode, cases[i].name, commit);
		assert_int_not_equal(release_write(f->src, commit, f->releases_fd, tmp, NULL,
		    &e), E_OK);
		assert_non_null(strstr(e.msg, cases[i].msg));
	}
	/* Nothing escaped the release directory. */
	assert_false(fixture_exists(f->releases_fd, "x"));
	assert_false(fixture_exists(f->releases_fd, "../x"));

	fixture_commit(f->repo, "main", lfs, 2, "lfs\n", 0, commit);
	assert_int_equal(release_write(f->src, commit, f->releases_fd, ".tmp-lfs", NULL, &e),
	    E_INVAL);
	assert_non_null(strstr(e.msg, "assets/.gitattributes"));
	assert_non_null(strstr(e.msg, "LFS"));
}

static void
t_cleanup_tmp(void **state)
{
	struct fixture *f = *state;
	int fd;

	fixture_mkdir(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab");
	fixture_mkdir(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab/deep");
	assert_true((fd = openat(f->releases_fd,
	    ".tmp-20261125T224329Z-0123456789ab/deep/f", O_WRONLY | O_CREAT, 0444)) >= 0);
	close(fd);
	assert_true((fd = openat(f->releases_fd, ".tmp-file", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	fixture_mkdir(f->releases_fd, "20261125T224329Z-0123456789ab");
	fixture_mkdir(f->releases_fd, "keep-me");

	assert_int_equal(release_cleanup_tmp(f->releases_fd), 2);
	assert_false(fixture_exists(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab"));
	assert_false(fixture_exists(f->releases_fd, ".tmp-file"));
	assert_true(fixture_exists(f->releases_fd, "20261125T224329Z-0123456789ab"));
	assert_true(fixture_exists(f->releases_fd, "keep-me"));
	assert_int_equal(release_cleanup_tmp(f->releases_fd), 0);
}

/* ---- pruning ---- */

/* n recorded releases r[0..n-1], oldest first, each with a directory; bad marks from a string. */
static void
make_releases(struct fixture *f, struct site_state *st, int n, const char *bad,
    char names[][RELEASE_NAME_MAX])
{
	struct release_rec r;
	int i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < n; i++) {
		memset(&r, 0, sizeof(r));
		memset(r.commit, "0123456789abcdef"[i], 40);
		assert_int_equal(release_name(1795646609 + i * 60, r.commit, r.name,
		    sizeof(r.name)), E_OK);
		r.activated_at = 1795646609 + i * 60;
		r.bad = bad != NULL && strchr(bad, '0' + i) != NULL;
		state_add_release(st, &r);
		fixture_mkdir(f->releases_fd, r.name);
		util_strlcpy(names[i], r.name, RELEASE_NAME_MAX);
	}
}

static int
recorded(const struct site_state *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, name) == 0)
			return 1;
	return 0;
}

/* Which of names[0..n-1] are still on disk, as a string of indexes; recorded ones match. */
static void
assert_left(struct fixture *f, const struct site_state *st, char names[][RELEASE_NAME_MAX],
    int n, const char *want)
{
	char got[16];
	int i, k = 0;

	for (i = 0; i < n; i++) {
		if (fixture_exists(f->releases_fd, names[i])) {
			got[k++] = (char)('0' + i);
			assert_true(recorded(st, names[i]));
		} else
			assert_false(recorded(st, names[i]));
	}
	got[k] = '\0';
	assert_string_equal(got, want);
}

static void
t_prune_keep(void **state)
{
	struct fixture *f = *state;
	char names[6][RELEASE_NAME_MAX];
	struct site_state st;
	struct error e = { 0 };

	make_releases(f, &st, 6, NULL, names);
	assert_int_equal(prune_releases(f->releases_fd, &st, 3, names[5], &e), E_OK);
	assert_left(f, &st, names, 6, "345");
	assert_int_equal(st.nreleases, 3);
	/* keep 1 still keeps current and the release before it. */
	assert_int_equal(prune_releases(f->releases_fd, &st, 1, names[5], &e), E_OK);
	assert_left(f, &st, names, 6, "45");
	state_free(&st);
}

static void
t_prune_bad(void **state)
{
	struct fixture *f = *state;
	char names[7][RELEASE_NAME_MAX];
	struct site_state st;
	struct error e = { 0 };

	/* 2 and 5 are bad: they stay, and do not count; 4 is the good one before current 6. */
	make_releases(f, &st, 7, "25", names);
	assert_int_equal(prune_releases(f->releases_fd, &st, 2, names[6], &e), E_OK);
	assert_left(f, &st, names, 7, "2456");
	state_free(&st);
}

static void
t_prune_current_not_newest(void **state)
{
	struct fixture *f = *state;
	char names[5][RELEASE_NAME_MAX];
	struct site_state st;
	struct error e = { 0 };

	/* current is release 1 (say, pinned): it and release 0 before it fill keep 3 but one. */
	make_releases(f, &st, 5, NULL, names);
	assert_int_equal(prune_releases(f->releases_fd, &st, 3, names[1], &e), E_OK);
	assert_left(f, &st, names, 5, "014");
	assert_int_equal(prune_releases(f->releases_fd, &st, 2, names[1], &e), E_OK);
	assert_left(f, &st, names, 5, "01");
	state_free(&st);
}

static void
t_prune_leftovers(void **state)
{
	struct fixture *f = *state;
	char names[2][RELEASE_NAME_MAX];
	struct site_state st;
	struct error e = { 0 };

	make_releases(f, &st, 2, NULL, names);
	fixture_mkdir(f->releases_fd, "20200101T000000Z-ffffffffffff");	/* a failed deploy's */
	fixture_mkdir(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee");	/* current, unrecorded */
	fixture_mkdir(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee/sub");
	fixture_mkdir(f->releases_fd, "notes");				/* not ours */
	fixture_mkdir(f->releases_fd, ".tmp-20200101T000002Z-dddddddddddd");
	assert_int_equal(prune_releases(f->releases_fd, &st, 5,
	    "20200101T000001Z-eeeeeeeeeeee", &e), E_OK);
	assert_false(fixture_exists(f->releases_fd, "20200101T000000Z-ffffffffffff"));
	assert_true(fixture_exists(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee/sub"));
	assert_true(fixture_exists(f->releases_fd, "notes"));
	assert_true(fixture_exists(f->releases_fd, ".tmp-20200101T000002Z-dddddddddddd"));
	assert_left(f, &st, names, 2, "01");
	state_free(&st);
}

/* A prepared release is waiting to go live: prune keeps it, however old it is. */
static void
t_prune_prepared(void **state)
{
	struct fixture *f = *state;
	char names[4][RELEASE_NAME_MAX];
	struct site_state st;
	struct error e = { 0 };

	make_releases(f, &st, 4, NULL, names);
	fixture_mkdir(f->releases_fd, "20200101T000000Z-ffffffffffff");
	util_strlcpy(st.prepared.name, "20200101T000000Z-ffffffffffff", RELEASE_NAME_MAX);
	fixture_mkdir(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee");	/* a leftover */
	assert_int_equal(prune_releases(f->releases_fd, &st, 2, names[3], &e), E_OK);
	assert_true(fixture_exists(f->releases_fd, "20200101T000000Z-ffffffffffff"));
	assert_false(fixture_exists(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee"));
	assert_left(f, &st, names, 4, "23");
	state_free(&st);
}

static void
t_list(void **state)
{
	struct fixture *f = *state;
	struct strv v = { 0 };
	struct error e = { 0 };

	fixture_mkdir(f->releases_fd, "20261125T224329Z-0123456789ab");
	fixture_mkdir(f->releases_fd, "20251125T224329Z-0123456789ab");
	fixture_mkdir(f->releases_fd, ".tmp-20271125T224329Z-0123456789ab");
	fixture_mkdir(f->releases_fd, "other");
	assert_int_equal(release_list(f->releases_fd, &v, &e), E_OK);
	assert_int_equal(v.n, 2);
	assert_string_equal(v.v[0], "20251125T224329Z-0123456789ab");
	assert_string_equal(v.v[1], "20261125T224329Z-0123456789ab");
	util_strv_free(&v);
}

/* ---- swap ---- */

static void
t_swap(void **state)
{
	struct fixture *f = *state;
	struct error e = { 0 };
	char cur[RELEASE_NAME_MAX];
	int pfd;

	assert_true((pfd = open(f->dir, O_RDONLY | O_DIRECTORY)) >= 0);
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_NOTFOUND);
	assert_int_equal(symlinkat("releases/old", pfd, ".current.tmp"), 0);	/* leftover */
	assert_int_equal(swap_current(pfd, "20261125T224329Z-0123456789ab", &e), E_OK);
	fixture_assert_link(pfd, "current", "releases/20261125T224329Z-0123456789ab");
	assert_false(fixture_exists(pfd, ".current.tmp"));
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_OK);
	assert_string_equal(cur, "20261125T224329Z-0123456789ab");
	assert_int_equal(swap_current(pfd, "../evil", &e), E_INVAL);
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	assert_int_equal(symlinkat("/etc", pfd, "current"), 0);
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_INVAL);
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	fixture_mkdir(pfd, "current");
	assert_int_equal(swap_current(pfd, "20261125T224329Z-0123456789ab", &e), E_INVAL);
	assert_non_null(strstr(e.msg, "current is a directory"));
	close(pfd);
}

/* What a reader saw of the site halfway through a swap's wait. */
struct swap_peek {
	int	 pfd;
	int	 staged;	/* .current.tmp was there */
	char	 cur[RELEASE_NAME_MAX];
};

static void *
swap_peek(void *arg)
{
	struct swap_peek *p = arg;

	usleep(100 * 1000);
	p->staged = fixture_exists(p->pfd, ".current.tmp");
	swap_read_current(p->pfd, p->cur, sizeof(p->cur));
	return NULL;
}

/* A swap at an instant: staged first, current untouched until the instant, then renamed. */
static void
t_swap_at(void **state)
{
	struct fixture *f = *state;
	struct error e = { 0 };
	struct swap_peek peek = { 0 };
	char cur[RELEASE_NAME_MAX];
	pthread_t t;
	int64_t t0, t1, swapped;
	int pfd;

	assert_true((pfd = open(f->dir, O_RDONLY | O_DIRECTORY)) >= 0);
	assert_int_equal(swap_current(pfd, "20261125T224329Z-000000000001", &e), E_OK);
	peek.pfd = pfd;
	assert_int_equal(pthread_create(&t, NULL, swap_peek, &peek), 0);
	t0 = util_now_ms();
	assert_int_equal(activate_swap("t", pfd, "20261125T224329Z-000000000002", t0 + 300,
	    &swapped, &e), E_OK);
	/*
	 * After the rename it keeps still for the others' instants before the fsync; the swap's
	 * time is the rename's.
	 */
	t1 = util_now_ms();
	assert_true(t1 >= t0 + 320);
	assert_true(swapped >= t0 + 300 && swapped <= t1);
	pthread_join(t, NULL);
	assert_true(peek.staged);
	assert_string_equal(peek.cur, "20261125T224329Z-000000000001");
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_OK);
	assert_string_equal(cur, "20261125T224329Z-000000000002");
	assert_false(fixture_exists(pfd, ".current.tmp"));

	/* An instant already past: at once. */
	t0 = util_now_ms();
	assert_int_equal(activate_swap("t", pfd, "20261125T224329Z-000000000003", t0 - 1000,
	    &swapped, &e), E_OK);
	assert_true(util_now_ms() - t0 < 1000);
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_OK);
	assert_string_equal(cur, "20261125T224329Z-000000000003");

	/* A swap that cannot be staged fails before the wait, and leaves current alone. */
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	fixture_mkdir(pfd, "current");
	t0 = util_now_ms();
	assert_int_equal(activate_swap("t", pfd, "20261125T224329Z-000000000004", t0 + 3000,
	    &swapped, &e), E_INVAL);
	assert_true(util_now_ms() - t0 < 3000);
	assert_non_null(strstr(e.msg, "current is a directory"));
	close(pfd);
}

static void
t_lock(void **state)
{
	struct fixture *f = *state;
	struct error e = { 0 };
	char path[160];
	int a, b;

	snprintf(path, sizeof(path), "%s/.deployd.lock", f->dir);
	assert_int_equal(lock_acquire(path, 0, &a, &e), E_OK);
	assert_int_equal(lock_acquire(path, 0, &b, &e), E_BUSY);
	assert_int_equal(b, -1);
	assert_non_null(strstr(e.msg, "locked"));
	lock_release(a);
	assert_int_equal(lock_acquire(path, 0, &b, &e), E_OK);
	lock_release(b);
}

/* Which symlink targets leave the release: the check behind allow_external_symlinks. */
static void
t_link_escapes(void **st)
{
	static const struct { const char *path, *target; int escapes; } cases[] = {
		{ "link", "index.html", 0 }, { "link", "./a/b", 0 },
		{ "a/link", "../index.html", 0 }, { "a/b/link", "../../x", 0 },
		{ "a/link", "../../etc/passwd", 1 }, { "link", "..", 1 },
		{ "link", "/etc/passwd", 1 }, { "a/b/link", "../c/../../..", 1 },
		{ "a/link", "b/../../x", 0 }, { "a/link", "b/../../../x", 1 },
		{ "link", ".", 0 }, { "a/link", "..//x", 0 }, { "link", "x/../..", 1 },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (util_link_escapes(cases[i].path, cases[i].target) != cases[i].escapes)
			fail_msg("%s -> %s: expected escapes=%d", cases[i].path, cases[i].target,
			    cases[i].escapes);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_link_escapes),
		cmocka_unit_test(t_name),
		cmocka_unit_test(t_parse_bad),
		FIXTURE_TEST(t_write_subdir),
		FIXTURE_TEST(t_write),
		FIXTURE_TEST(t_write_refuses),
		FIXTURE_TEST(t_cleanup_tmp),
		FIXTURE_TEST(t_prune_keep),
		FIXTURE_TEST(t_prune_bad),
		FIXTURE_TEST(t_prune_current_not_newest),
		FIXTURE_TEST(t_prune_leftovers),
		FIXTURE_TEST(t_prune_prepared),
		FIXTURE_TEST(t_list),
		FIXTURE_TEST(t_swap),
		FIXTURE_TEST(t_swap_at),
		FIXTURE_TEST(t_lock),
	};

	return FIXTURE_MAIN(tests);
}
