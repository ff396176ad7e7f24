/* test_release.c: release naming, writing, pruning, and whole deploys from a real repository. */
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

#define C1 "0123456789abcdef0123456789abcdef01234567"

/* A file of a test commit: mode 0 means a regular file. */
struct tfile {
	const char	*path;
	const char	*data;
	size_t		 len;
	git_filemode_t	 mode;
};

#define TF(p, d) { p, d, sizeof(d) - 1, GIT_FILEMODE_BLOB }
#define TX(p, d) { p, d, sizeof(d) - 1, GIT_FILEMODE_BLOB_EXECUTABLE }
#define TL(p, d) { p, d, sizeof(d) - 1, GIT_FILEMODE_LINK }

struct fixture {
	char		 dir[128];
	char		 src[160];	/* bare source repository */
	git_repository	*repo;
	int		 releases_fd;
	struct site	 site;
	char		 state_dir[160];
	char		 path[160];
};

static int
setup(void **state)
{
	struct fixture *f = util_xcalloc(1, sizeof(*f));
	char rel[256];

	const char *tmp = getenv("TMPDIR");

	snprintf(f->dir, sizeof(f->dir), "%s/deployd-test-release-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->src, sizeof(f->src), "%s/src.git", f->dir);
	assert_int_equal(git_repository_init(&f->repo, f->src, 1), 0);
	snprintf(rel, sizeof(rel), "%s/releases", f->dir);
	assert_int_equal(mkdir(rel, 0755), 0);
	f->releases_fd = open(rel, O_RDONLY | O_DIRECTORY);
	assert_true(f->releases_fd >= 0);

	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->dir);
	snprintf(f->path, sizeof(f->path), "%s/site/www", f->dir);
	f->site.state_dir = f->state_dir;
	f->site.name = (char *)(uintptr_t)"www";
	f->site.repo = f->src;
	f->site.branch = (char *)(uintptr_t)"main";
	f->site.path = f->path;
	f->site.keep = 3;
	/* Files as git has their modes; the reuse modes have tests of their own. */
	f->site.reuse = REUSE_COPY;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	fetch_set_exe(getenv("DEPLOYD_BIN"));
	fetch_set_timeout_ms(0);
	close(f->releases_fd);
	git_repository_free(f->repo);
	util_rm_rf_at(AT_FDCWD, f->dir);
	free(f);
	return 0;
}

/* Commit files on refs/heads/<branch>: on top of its tip, or as a new root when force is set. */
static void
commit_files(git_repository *repo, const char *branch, const struct tfile *files, size_t n,
    const char *msg, int force, char out[SHA_HEX])
{
	git_index *idx;
	git_index_entry ie;
	git_oid tree_id, id, parent_id;
	git_tree *tree;
	git_signature *sig;
	git_commit *parent = NULL;
	const git_commit *parents[1];
	git_reference *ref = NULL;
	char refname[128];
	size_t i;

	assert_int_equal(git_index_new(&idx), 0);
	for (i = 0; i < n; i++) {
		memset(&ie, 0, sizeof(ie));
		ie.path = files[i].path;
		ie.mode = files[i].mode;
		if (files[i].mode == GIT_FILEMODE_COMMIT)
			assert_int_equal(git_oid_fromstr(&ie.id, files[i].len == 40 ?
			    files[i].data : C1), 0);
		else
			assert_int_equal(git_blob_create_from_buffer(&ie.id, repo,
			    files[i].data, files[i].len), 0);
		assert_int_equal(git_index_add(idx, &ie), 0);
	}
	assert_int_equal(git_index_write_tree_to(&tree_id, idx, repo), 0);
	git_index_free(idx);
	assert_int_equal(git_tree_lookup(&tree, repo, &tree_id), 0);
	assert_int_equal(git_signature_new(&sig, "Test Author", "t@example.org", 1795646609, 0),
	    0);
	snprintf(refname, sizeof(refname), "refs/heads/%s", branch);
	if (!force && git_reference_name_to_id(&parent_id, repo, refname) == 0)
		assert_int_equal(git_commit_lookup(&parent, repo, &parent_id), 0);
	parents[0] = parent;
	assert_int_equal(git_commit_create(&id, repo, NULL, sig, sig, NULL, msg, tree,
	    parent ? 1 : 0, parents), 0);
	assert_int_equal(git_reference_create(&ref, repo, refname, &id, 1, "test"), 0);
	git_reference_free(ref);
	git_commit_free(parent);
	git_signature_free(sig);
	git_tree_free(tree);
	git_oid_tostr(out, SHA_HEX, &id);
}

/* A commit whose tree has one entry with a name libgit2 would never build itself. */
static void
commit_raw_entry(git_repository *repo, const char *mode, const char *name, char out[SHA_HEX])
{
	unsigned char buf[256];
	git_odb *odb;
	git_oid blob, tree_id, id;
	git_tree *tree;
	git_signature *sig;
	size_t n;

	assert_int_equal(git_blob_create_from_buffer(&blob, repo, "x\n", 2), 0);
	n = (size_t)snprintf((char *)buf, sizeof(buf), "%s %s", mode, name) + 1;
	memcpy(buf + n, blob.id, 20);
	assert_int_equal(git_repository_odb(&odb, repo), 0);
	assert_int_equal(git_odb_write(&tree_id, odb, buf, n + 20, GIT_OBJECT_TREE), 0);
	git_odb_free(odb);
	assert_int_equal(git_tree_lookup(&tree, repo, &tree_id), 0);
	assert_int_equal(git_signature_now(&sig, "T", "t@example.org"), 0);
	assert_int_equal(git_commit_create(&id, repo, NULL, sig, sig, NULL, "raw\n", tree, 0,
	    NULL), 0);
	git_signature_free(sig);
	git_tree_free(tree);
	git_oid_tostr(out, SHA_HEX, &id);
}

static void
assert_file(int dirfd, const char *path, const char *data, size_t len, mode_t mode)
{
	char buf[4096];
	struct stat st;
	ssize_t n;
	int fd;

	assert_int_equal(fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, mode);
	assert_int_equal((size_t)st.st_size, len);
	assert_true((fd = openat(dirfd, path, O_RDONLY)) >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_int_equal((size_t)n, len);
	assert_memory_equal(buf, data, len);
}

static void
assert_link(int dirfd, const char *path, const char *target)
{
	char buf[256];
	ssize_t n = readlinkat(dirfd, path, buf, sizeof(buf) - 1);

	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, target);
}

static int
exists_at(int dirfd, const char *path)
{
	struct stat st;

	return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void
make_dir_at(int dirfd, const char *name)
{
	assert_int_equal(mkdirat(dirfd, name, 0755), 0);
}

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

	commit_files(f->repo, "main", files, sizeof(files) / sizeof(files[0]), "first\n", 0,
	    commit);
	old = umask(077);	/* release modes must not depend on the daemon's umask */
	assert_int_equal(release_write(f->src, commit, f->releases_fd, ".tmp-x", &nfiles, &e),
	    E_OK);
	umask(old);
	assert_int_equal(nfiles, 7);
	assert_true((d = openat(f->releases_fd, ".tmp-x", O_RDONLY | O_DIRECTORY)) >= 0);
	assert_int_equal(fstat(d, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_file(d, "index.html", "<h1>hello</h1>\n", 15, 0644);
	assert_file(d, "bin/run.sh", "#!/bin/sh\necho run\n", 19, 0755);
	assert_file(d, "bin/data.bin", bin, sizeof(bin), 0644);
	assert_file(d, "a/b/c/deep.txt", "deep\n", 5, 0644);
	assert_file(d, "empty.txt", "", 0, 0644);
	assert_link(d, "link", "index.html");
	assert_link(d, "a/up", "../index.html");
	assert_int_equal(fstatat(d, "a/b", &st, 0), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_false(exists_at(d, ".git"));
	close(d);

	/* The target exists already, a bad id, and a commit the cache does not have. */
	assert_int_not_equal(release_write(f->src, commit, f->releases_fd, ".tmp-x", NULL, &e),
	    E_OK);
	assert_non_null(strstr(e.msg, "File exists"));
	assert_int_equal(release_write(f->src, "nothex", f->releases_fd, ".tmp-y", NULL, &e),
	    E_INVAL);
	assert_int_equal(release_write(f->src, C1, f->releases_fd, ".tmp-y", NULL, &e), E_GIT);
	assert_false(exists_at(f->releases_fd, ".tmp-y"));
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
		commit_raw_entry(f->repo, cases[i].mode, cases[i].name, commit);
		assert_int_not_equal(release_write(f->src, commit, f->releases_fd, tmp, NULL,
		    &e), E_OK);
		assert_non_null(strstr(e.msg, cases[i].msg));
	}
	/* Nothing escaped the release directory. */
	assert_false(exists_at(f->releases_fd, "x"));
	assert_false(exists_at(f->releases_fd, "../x"));

	commit_files(f->repo, "main", lfs, 2, "lfs\n", 0, commit);
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

	make_dir_at(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab");
	make_dir_at(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab/deep");
	assert_true((fd = openat(f->releases_fd,
	    ".tmp-20261125T224329Z-0123456789ab/deep/f", O_WRONLY | O_CREAT, 0444)) >= 0);
	close(fd);
	assert_true((fd = openat(f->releases_fd, ".tmp-file", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	make_dir_at(f->releases_fd, "20261125T224329Z-0123456789ab");
	make_dir_at(f->releases_fd, "keep-me");

	assert_int_equal(release_cleanup_tmp(f->releases_fd), 2);
	assert_false(exists_at(f->releases_fd, ".tmp-20261125T224329Z-0123456789ab"));
	assert_false(exists_at(f->releases_fd, ".tmp-file"));
	assert_true(exists_at(f->releases_fd, "20261125T224329Z-0123456789ab"));
	assert_true(exists_at(f->releases_fd, "keep-me"));
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
		make_dir_at(f->releases_fd, r.name);
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
		if (exists_at(f->releases_fd, names[i])) {
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
	assert_int_equal(release_prune(f->releases_fd, &st, 3, names[5], &e), E_OK);
	assert_left(f, &st, names, 6, "345");
	assert_int_equal(st.nreleases, 3);
	/* keep 1 still keeps current and the release before it. */
	assert_int_equal(release_prune(f->releases_fd, &st, 1, names[5], &e), E_OK);
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
	assert_int_equal(release_prune(f->releases_fd, &st, 2, names[6], &e), E_OK);
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
	assert_int_equal(release_prune(f->releases_fd, &st, 3, names[1], &e), E_OK);
	assert_left(f, &st, names, 5, "014");
	assert_int_equal(release_prune(f->releases_fd, &st, 2, names[1], &e), E_OK);
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
	make_dir_at(f->releases_fd, "20200101T000000Z-ffffffffffff");	/* a failed deploy's */
	make_dir_at(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee");	/* current, unrecorded */
	make_dir_at(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee/sub");
	make_dir_at(f->releases_fd, "notes");				/* not ours */
	make_dir_at(f->releases_fd, ".tmp-20200101T000002Z-dddddddddddd");
	assert_int_equal(release_prune(f->releases_fd, &st, 5,
	    "20200101T000001Z-eeeeeeeeeeee", &e), E_OK);
	assert_false(exists_at(f->releases_fd, "20200101T000000Z-ffffffffffff"));
	assert_true(exists_at(f->releases_fd, "20200101T000001Z-eeeeeeeeeeee/sub"));
	assert_true(exists_at(f->releases_fd, "notes"));
	assert_true(exists_at(f->releases_fd, ".tmp-20200101T000002Z-dddddddddddd"));
	assert_left(f, &st, names, 2, "01");
	state_free(&st);
}

static void
t_list(void **state)
{
	struct fixture *f = *state;
	struct strv v = { 0 };
	struct error e = { 0 };

	make_dir_at(f->releases_fd, "20261125T224329Z-0123456789ab");
	make_dir_at(f->releases_fd, "20251125T224329Z-0123456789ab");
	make_dir_at(f->releases_fd, ".tmp-20271125T224329Z-0123456789ab");
	make_dir_at(f->releases_fd, "other");
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
	assert_link(pfd, "current", "releases/20261125T224329Z-0123456789ab");
	assert_false(exists_at(pfd, ".current.tmp"));
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_OK);
	assert_string_equal(cur, "20261125T224329Z-0123456789ab");
	assert_int_equal(swap_current(pfd, "../evil", &e), E_INVAL);
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	assert_int_equal(symlinkat("/etc", pfd, "current"), 0);
	assert_int_equal(swap_read_current(pfd, cur, sizeof(cur)), E_INVAL);
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	make_dir_at(pfd, "current");
	assert_int_equal(swap_current(pfd, "20261125T224329Z-0123456789ab", &e), E_INVAL);
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

/* ---- whole deploys ---- */

struct phases {
	int	seen[8];
	int	n;
};

static void
on_phase(void *arg, enum phase phase, const char *commit,
    const struct deploy_progress *progress)
{
	struct phases *p = arg;

	(void)commit;
	if (progress != NULL)
		return;		/* progress within a phase, not a new one */
	if (p->n < 8)
		p->seen[p->n++] = (int)phase;
}

static int
deploy(struct fixture *f, const char *rev, struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = TRIG_MANUAL;
	if (rev != NULL)
		util_strlcpy(req.rev, rev, sizeof(req.rev));
	return engine_deploy(&f->site, &req, res, NULL, NULL);
}

static int
open_path(struct fixture *f)
{
	int fd = open(f->path, O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	return fd;
}

static void
current_of(struct fixture *f, char *buf, size_t len)
{
	int pfd = open_path(f);

	assert_int_equal(swap_read_current(pfd, buf, len), E_OK);
	close(pfd);
}

static size_t
count_releases(struct fixture *f, int *tmps)
{
	char rel[256];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	*tmps = 0;
	snprintf(rel, sizeof(rel), "%s/releases", f->path);
	assert_non_null(d = opendir(rel));
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5) == 0)
			(*tmps)++;
		else if (release_parse_name(de->d_name, NULL, NULL) == E_OK)
			n++;
	}
	closedir(d);
	return n;
}

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
	struct phases ph = { { 0 }, 0 };
	char c1[SHA_HEX], c2[SHA_HEX], cur[RELEASE_NAME_MAX], first[RELEASE_NAME_MAX];
	char abbrev[8];
	int pfd, tmps;

	commit_files(f->repo, "main", v1, 2, "First commit\n\nWith a body.\n", 0, c1);
	req.trigger = TRIG_WEBHOOK;
	util_strlcpy(req.provider, "github", sizeof(req.provider));
	util_strlcpy(req.delivery, "d-1", sizeof(req.delivery));
	assert_int_equal(engine_deploy(&f->site, &req, &res, on_phase, &ph), E_OK);
	assert_int_equal(res.rc, E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	assert_int_equal(ph.n, 3);
	assert_int_equal(ph.seen[0], PHASE_FETCHING);
	assert_int_equal(ph.seen[1], PHASE_WRITING);
	assert_int_equal(ph.seen[2], PHASE_ACTIVATING);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	assert_int_equal(strncmp(cur + 17, c1, 12), 0);
	util_strlcpy(first, cur, sizeof(first));
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "v1\n", 3, 0644);
	assert_file(pfd, "current/cgi/run", "#!/bin/sh\n", 10, 0755);
	assert_false(exists_at(pfd, ".current.tmp"));
	assert_true(exists_at(pfd, ".deployd.lock"));
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
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.release, first);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_int_equal(st.nhistory, 1);
	state_free(&st);

	/* A new commit goes live; the old release stays for rollback. */
	commit_files(f->repo, "main", v2, 2, "Second\n", 0, c2);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c2);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, res.release);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	assert_link(pfd, "current/home.html", "index.html");
	assert_false(exists_at(pfd, "current/cgi"));
	close(pfd);
	assert_int_equal(count_releases(f, &tmps), 2);
	assert_int_equal(tmps, 0);

	/* Pin the first commit by an abbreviated id. */
	util_strlcpy(abbrev, c1, sizeof(abbrev));
	assert_int_equal(deploy(f, abbrev, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	current_of(f, cur, sizeof(cur));
	assert_string_not_equal(cur, first);	/* a new release of the same commit */
	assert_int_equal(strncmp(cur + 17, c1, 12), 0);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.desired, c2);
	assert_string_equal(st.applied, c1);
	assert_int_equal(st.nhistory, 3);
	assert_int_equal(st.history[2].id, 3);
	state_free(&st);

	/* Revisions that are not usable commits. */
	assert_int_equal(deploy(f, "ffffffffff", &res), E_NOTFOUND);
	assert_non_null(strstr(res.error, "ffffffffff"));
	assert_int_equal(deploy(f, "xyz!", &res), E_INVAL);
	current_of(f, first, sizeof(first));
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
		commit_files(f->repo, "main", &tf, 1, "step\n", 0, c);
		assert_int_equal(deploy(f, NULL, &res), E_OK);
		assert_int_equal(res.changed, 1);
	}
	assert_int_equal(count_releases(f, &tmps), 3);	/* keep: 3 */

	/* A force-push to an unrelated root commit. */
	tf.data = "forced\n";
	tf.len = 7;
	commit_files(f->repo, "main", &tf, 1, "rewritten\n", 1, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "forced\n", 7, 0644);
	close(pfd);
}

static void
t_engine_failures(void **state)
{
	const struct tfile ok[] = { TF("index.html", "ok\n") };
	const struct tfile lfs[] = { TF(".gitattributes", "*.bin filter=lfs\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c[SHA_HEX], cur[RELEASE_NAME_MAX], after[RELEASE_NAME_MAX];
	int tmps;

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	current_of(f, cur, sizeof(cur));

	/* A tree deployd refuses: the failure leaves current and the disk as they were. */
	commit_files(f->repo, "main", lfs, 1, "lfs\n", 0, c);
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "LFS"));
	assert_int_equal(res.changed, 0);
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.attempted, c);
	assert_string_not_equal(st.applied, c);
	assert_non_null(strstr(st.last_error, "LFS"));
	assert_true(st.last_error_at > 0);
	assert_int_equal(st.nhistory, 2);
	assert_int_equal(st.history[1].ok, 0);
	assert_non_null(strstr(st.history[1].error, "LFS"));
	state_free(&st);

	/* A branch the remote does not have. */
	f->site.branch = (char *)(uintptr_t)"nope";
	assert_int_equal(deploy(f, NULL, &res), E_GIT);
	assert_non_null(strstr(res.error, "branch 'nope' not found on"));
	f->site.branch = (char *)(uintptr_t)"main";

	/* A remote that is not there. */
	f->site.repo = (char *)(uintptr_t)"/nonexistent/repo.git";
	assert_int_equal(deploy(f, NULL, &res), E_GIT);
	assert_non_null(strstr(res.error, "/nonexistent/repo.git: No such file or directory"));
	f->site.repo = f->src;
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);

	/* Another holder of the site lock. */
	{
		char lock[256];
		int fd;

		snprintf(lock, sizeof(lock), "%s/.deployd.lock", f->path);
		assert_int_equal(lock_acquire(lock, 0, &fd, &e), E_OK);
		assert_int_equal(deploy(f, NULL, &res), E_BUSY);
		lock_release(fd);
	}
}

static void
t_engine_bad_layout(void **state)
{
	const struct tfile ok[] = { TF("index.html", "ok\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c[SHA_HEX], p[200];
	int pfd, fd;

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(util_mkdir_p(f->path, 0755), E_OK);
	pfd = open_path(f);
	make_dir_at(pfd, "current");
	assert_true((fd = openat(pfd, "current/keep", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "current is a directory, not a symlink; move it away"));
	assert_true(exists_at(pfd, "current/keep"));
	assert_false(exists_at(pfd, "releases"));

	assert_int_equal(util_rm_rf_at(pfd, "current"), E_OK);
	assert_true((fd = openat(pfd, "releases", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "releases is not a directory"));
	assert_false(exists_at(pfd, "current"));
	close(pfd);
	snprintf(p, sizeof(p), "%s/www/state.json", f->state_dir);
	assert_int_not_equal(access(p, F_OK), 0);	/* nothing recorded, nothing fetched */
}

static void
t_engine_corrupt_cache(void **state)
{
	const struct tfile ok[] = { TF("index.html", "ok\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c[SHA_HEX], p[200];
	FILE *fp;

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/HEAD", f->state_dir);
	assert_non_null(fp = fopen(p, "w"));
	fputs("garbage\n", fp);
	fclose(fp);
	commit_files(f->repo, "main", ok, 1, "again\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c);
}

static void
t_engine_file_url(void **state)
{
	const struct tfile ok[] = { TF("index.html", "via file://\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c[SHA_HEX], url[256];
	int pfd;

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	snprintf(url, sizeof(url), "file://%s", f->src);
	f->site.repo = url;
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	f->site.repo = f->src;
	assert_string_equal(res.commit, c);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "via file://\n", 12, 0644);
	close(pfd);
}

/* Objects gone from a cache whose refs remain: the fetch notices and clones afresh. */
static void
t_engine_cache_lost_objects(void **state)
{
	const struct tfile ok[] = { TF("index.html", "ok\n") };
	const struct tfile ok2[] = { TF("index.html", "ok2\n"), TF("new.html", "new\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c[SHA_HEX], p[256];
	int pfd;

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	assert_int_equal(mkdir(p, 0755), 0);
	commit_files(f->repo, "main", ok2, 2, "again\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c);
	pfd = open_path(f);
	assert_file(pfd, "current/new.html", "new\n", 4, 0644);
	close(pfd);
	snprintf(p, sizeof(p), "%s/www/cache.git.new", f->state_dir);
	assert_false(exists_at(AT_FDCWD, p));
}

static void
t_engine_timeout(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	char script[256];
	int64_t t0;
	FILE *fp;
	int st;

	snprintf(script, sizeof(script), "%s/hang.sh", f->dir);
	assert_non_null(fp = fopen(script, "w"));
	fputs("#!/bin/sh\nsleep 30\n", fp);
	fclose(fp);
	assert_int_equal(chmod(script, 0755), 0);
	fetch_set_exe(script);
	fetch_set_timeout_ms(300);
	t0 = util_mono_ms();
	assert_int_equal(deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 < 5000);
	assert_non_null(strstr(res.error, "fetch timed out after 1 s"));
	/* The child was reaped: no zombie is left for anyone. */
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);

	/* The site's own fetch_timeout is the deadline when no test override is set. */
	fetch_set_timeout_ms(0);
	f->site.fetch_timeout_ms = 1500;
	t0 = util_mono_ms();
	assert_int_equal(deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 >= 1400);
	assert_true(util_mono_ms() - t0 < 6000);
	assert_non_null(strstr(res.error, "fetch timed out after 2 s"));
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	f->site.fetch_timeout_ms = 0;
}

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
	assert_false(exists_at(AT_FDCWD, f->path));

	commit_files(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(live, res.release, sizeof(live));
	pfd = open_path(f);

	/* Missing current, a half-written release and a half-made link. */
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	make_dir_at(pfd, "releases/.tmp-20300101T000000Z-0123456789ab");
	make_dir_at(pfd, "releases/.tmp-20300101T000000Z-0123456789ab/x");
	assert_int_equal(symlinkat("releases/nothing", pfd, ".current.tmp"), 0);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
	assert_false(exists_at(pfd, "releases/.tmp-20300101T000000Z-0123456789ab"));
	assert_false(exists_at(pfd, ".current.tmp"));

	/* Dangling current. */
	assert_int_equal(unlinkat(pfd, "current", 0), 0);
	assert_int_equal(symlinkat("releases/20300101T000000Z-0123456789ab", pfd, "current"),
	    0);
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, live);

	/* A good current is left alone. */
	assert_int_equal(recover_site(&f->site, &e), E_OK);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, live);
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
	commit_files(f->repo, "main", files, 2000, "many\n", 0, c);
	util_strlcpy(data, paths[1999], sizeof(data));
	free(paths);
	free(files);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	print_message("# 2000-file first deploy: %lld ms\n", (long long)res.duration_ms);
	assert_true(res.duration_ms < 30000);
	pfd = open_path(f);
	assert_file(pfd, "current/d39/e4/f1999.html", data, strlen(data), 0644);
	close(pfd);
}

/* ---- hooks and shared paths ---- */

static void
set_argv(struct strv *sv, const char *script)
{
	util_strv_free(sv);
	util_strv_push(sv, "/bin/sh");
	util_strv_push(sv, "-c");
	util_strv_push(sv, script);
}

static void
clear_hooks(struct fixture *f)
{
	util_strv_free(&f->site.hooks.pre_activate);
	util_strv_free(&f->site.hooks.post_activate);
	util_strv_free(&f->site.hooks.on_failure);
	util_strv_free(&f->site.shared);
}

/* The whole of a small file, NUL-terminated; "" if it does not exist. */
static void
slurp(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	buf[0] = '\0';
	if ((fd = open(path, O_RDONLY)) < 0)
		return;
	n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
}

static int
deploy_trig(struct fixture *f, enum trigger trig, struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = trig;
	return engine_deploy(&f->site, &req, res, NULL, NULL);
}

/* pre_activate and post_activate: cwd, exactly the documented environment, output kept. */
static void
t_engine_hooks(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct deploy_request req = { 0 };
	struct phases ph = { { 0 }, 0 };
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], want[2048], got[2048], path[512], script[512];
	int pfd;

	snprintf(script, sizeof(script), "tr '\\000' '\\n' </proc/$$/environ | sort >built.env; "
	    "pwd -P >built.cwd; echo building in \"$DEPLOYD_RELEASE\"; echo oops >&2");
	set_argv(&f->site.hooks.pre_activate, script);
	snprintf(script, sizeof(script), "tr '\\000' '\\n' </proc/$$/environ | sort >%s/post.env; "
	    "readlink %s/current >%s/post.cur; echo reloaded", f->dir, f->path, f->dir);
	set_argv(&f->site.hooks.post_activate, script);

	commit_files(f->repo, "main", v1, 1, "one\n", 0, c1);
	req.trigger = TRIG_WEBHOOK;
	assert_int_equal(engine_deploy(&f->site, &req, &res, on_phase, &ph), E_OK);
	assert_int_equal(res.changed, 1);
	/* fetch, write, pre_activate, activate, post_activate */
	assert_int_equal(ph.n, 5);
	assert_int_equal(ph.seen[2], PHASE_HOOK);
	assert_int_equal(ph.seen[3], PHASE_ACTIVATING);
	assert_int_equal(ph.seen[4], PHASE_HOOK);

	/* What pre_activate wrote is part of the release. */
	snprintf(path, sizeof(path), "%s/current/built.env", f->path);
	slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "DEPLOYD_COMMIT=%s\nDEPLOYD_PREVIOUS_COMMIT=\n"
	    "DEPLOYD_REF=refs/heads/main\nDEPLOYD_RELEASE=%s/releases/%s\nDEPLOYD_SITE=www\n"
	    "PATH=/usr/local/bin:/usr/bin:/bin\n", c1, f->path, res.release);
	assert_string_equal(got, want);
	snprintf(path, sizeof(path), "%s/current/built.cwd", f->path);
	slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "%s/releases/%s\n", f->path, res.release);
	assert_string_equal(got, want);
	/* post_activate runs after the swap. */
	snprintf(path, sizeof(path), "%s/post.cur", f->dir);
	slurp(path, got, sizeof(got));
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
	commit_files(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	snprintf(path, sizeof(path), "%s/post.env", f->dir);
	slurp(path, got, sizeof(got));
	snprintf(want, sizeof(want), "DEPLOYD_PREVIOUS_COMMIT=%s\n", c1);
	assert_non_null(strstr(got, want));
	assert_null(strstr(got, "DEPLOYD_ERROR"));
	assert_null(strstr(got, "HOME="));
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	clear_hooks(f);
}

/* A failing or hanging pre_activate leaves current and the disk as they were. */
static void
t_engine_pre_activate_fails(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c1[SHA_HEX], c2[SHA_HEX], cur[RELEASE_NAME_MAX], after[RELEASE_NAME_MAX];
	char got[2048], path[512], script[512];
	int64_t t0;
	int tmps, stat_;
	pid_t gc;

	commit_files(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	current_of(f, cur, sizeof(cur));

	set_argv(&f->site.hooks.pre_activate, "echo build broke; exit 3");
	snprintf(script, sizeof(script), "printf '%%s|%%s' \"$DEPLOYD_ERROR\" "
	    "\"$DEPLOYD_COMMIT\" >%s/failure.txt", f->dir);
	set_argv(&f->site.hooks.on_failure, script);
	commit_files(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "pre_activate hook failed (exit status 3)");
	assert_int_equal(res.changed, 0);
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	snprintf(path, sizeof(path), "%s/failure.txt", f->dir);
	slurp(path, got, sizeof(got));
	snprintf(script, sizeof(script), "pre_activate hook failed (exit status 3)|%s", c2);
	assert_string_equal(got, script);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.applied, c1);
	assert_string_equal(st.last_error, "pre_activate hook failed (exit status 3)");
	assert_int_equal(st.history[st.nhistory - 1].ok, 0);
	assert_string_equal(st.history[st.nhistory - 1].release, "");
	assert_non_null(strstr(st.history[st.nhistory - 1].output, "build broke"));
	state_free(&st);

	/* A poll failing the same way does not notify again. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_INVAL);
	assert_int_not_equal(access(path, F_OK), 0);

	/* A hook that hangs, with a child of its own, is killed with its group at the timeout. */
	snprintf(script, sizeof(script), "sleep 60 & echo $! >%s/gc.pid; sleep 60", f->dir);
	set_argv(&f->site.hooks.pre_activate, script);
	f->site.hooks.timeout_ms = 500;
	t0 = util_mono_ms();
	assert_int_equal(deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 < 10000);
	assert_string_equal(res.error, "pre_activate hook timed out after 1 s");
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	snprintf(path, sizeof(path), "%s/gc.pid", f->dir);
	slurp(path, got, sizeof(got));
	gc = (pid_t)atoi(got);
	assert_true(gc > 0);
	/* The grandchild was in the hook's group; it is gone (perhaps a zombie of init). */
	{
		char proc[64], st_line[512];

		snprintf(proc, sizeof(proc), "/proc/%d/stat", (int)gc);
		slurp(proc, st_line, sizeof(st_line));
		assert_true(st_line[0] == '\0' || strstr(st_line, ") Z ") != NULL);
	}
	fetch_stop_helper();	/* this thread's poll helper is a child too */
	assert_int_equal(waitpid(-1, &stat_, WNOHANG), -1);

	/* A command that does not exist. */
	util_strv_free(&f->site.hooks.pre_activate);
	util_strv_push(&f->site.hooks.pre_activate, "/nonexistent/build");
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.error,
	    "pre_activate hook /nonexistent/build: No such file or directory");
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	f->site.hooks.timeout_ms = 0;
	clear_hooks(f);
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

	commit_files(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(r1, res.release, sizeof(r1));

	/* Without rollback: the new release stays live, the deploy counts as failed. */
	set_argv(&f->site.hooks.post_activate, "echo reload failed >&2; exit 1");
	commit_files(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "post_activate hook failed (exit status 1)");
	assert_int_equal(res.changed, 1);
	current_of(f, cur, sizeof(cur));
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
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.last_error, "post_activate hook failed (exit status 1)");
	state_free(&st);

	/* With rollback: back to the release before, which is r2 now. */
	f->site.rollback_on_failure = 1;
	commit_files(f->repo, "main", v3, 1, "three\n", 0, c3);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.release, r2);
	assert_non_null(strstr(res.error, "post_activate hook failed (exit status 1); "
	    "rolled back to "));
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, r2);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
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
	assert_int_equal(count_releases(f, &tmps), 3);

	/* The bad commit is not deployed again by a poll or a plain deploy. */
	clear_hooks(f);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal(deploy_trig(f, TRIG_WEBHOOK, &res), E_OK);
	assert_int_equal(res.changed, 0);
	current_of(f, cur, sizeof(cur));
	assert_string_equal(cur, r2);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(st.last_error, "rolled back to"));
	state_free(&st);
	/* ...but deploy --rev does, on purpose. */
	assert_int_equal(deploy(f, c3, &res), E_OK);
	assert_int_equal(res.changed, 1);

	/* The very first deploy has nothing to roll back to. */
	f->site.rollback_on_failure = 0;
}

/* Shared paths: linked relative to the release, created if missing, refused if in the repo. */
static void
t_engine_shared(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n"), TF("a/keep.txt", "k\n") };
	const struct tfile bad[] = { TF("index.html", "v2\n"), TF("uploads/x", "x\n") };
	const struct tfile bad2[] = { TF("index.html", "v3\n"), TF("a/b", "file\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c[SHA_HEX], cur[RELEASE_NAME_MAX], after[RELEASE_NAME_MAX], p[512];
	struct stat sb;
	int pfd, fd, tmps;

	util_strv_push(&f->site.shared, "uploads");
	util_strv_push(&f->site.shared, ".env");
	util_strv_push(&f->site.shared, "a/b/c");
	/* The admin made .env; deployd must not touch it. */
	snprintf(p, sizeof(p), "%s/shared", f->path);
	assert_int_equal(util_mkdir_p(p, 0755), E_OK);
	snprintf(p, sizeof(p), "%s/shared/.env", f->path);
	assert_true((fd = open(p, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(write(fd, "KEY=1\n", 6), 6);
	close(fd);

	commit_files(f->repo, "main", v1, 2, "one\n", 0, c);
	set_argv(&f->site.hooks.pre_activate, "test -d uploads/ && test -f .env && "
	    "test -d a/b/c && echo hi > uploads/from-hook");
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	pfd = open_path(f);
	assert_link(pfd, "current/uploads", "../../shared/uploads");
	assert_link(pfd, "current/.env", "../../shared/.env");
	assert_link(pfd, "current/a/b/c", "../../../../shared/a/b/c");
	assert_int_equal(fstatat(pfd, "current/a/b", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0755);
	assert_file(pfd, "current/a/keep.txt", "k\n", 2, 0644);
	assert_file(pfd, "shared/.env", "KEY=1\n", 6, 0600);
	assert_file(pfd, "shared/uploads/from-hook", "hi\n", 3, 0644);
	assert_int_equal(fstatat(pfd, "shared/a/b/c", &sb, 0), 0);
	assert_true(S_ISDIR(sb.st_mode));
	/* Through the links, from the web server's side. */
	assert_file(pfd, "current/uploads/from-hook", "hi\n", 3, 0644);
	close(pfd);
	current_of(f, cur, sizeof(cur));

	/* A repository that has a shared path itself. */
	commit_files(f->repo, "main", bad, 2, "bad\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "repository contains shared path 'uploads'");
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	commit_files(f->repo, "main", bad2, 2, "bad2\n", 1, c);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error,
	    "repository contains 'a/b', which is in the way of shared path 'a/b/c'");
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	pfd = open_path(f);
	assert_file(pfd, "shared/uploads/from-hook", "hi\n", 3, 0644);
	close(pfd);
	clear_hooks(f);
}

/* ---- polls, tags ---- */

/* Route the fetch helper through a script that logs its arguments. */
static void
log_fetches(struct fixture *f, char *logpath, size_t len)
{
	char script[256], self[512];
	const char *bin = getenv("DEPLOYD_BIN");
	ssize_t n;
	FILE *fp;

	if (bin == NULL || *bin == '\0') {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		assert_true(n > 0);
		self[n] = '\0';
		bin = self;
	}
	snprintf(logpath, len, "%s/fetches.log", f->dir);
	snprintf(script, sizeof(script), "%s/fetch-wrapper.sh", f->dir);
	assert_non_null(fp = fopen(script, "w"));
	fprintf(fp, "#!/bin/sh\necho \"$*\" >>%s\nexec %s \"$@\"\n", logpath, bin);
	fclose(fp);
	assert_int_equal(chmod(script, 0755), 0);
	fetch_set_exe(script);
}

static int
count_lines(const char *path, const char *needle, int with)
{
	char line[1024];
	FILE *fp = fopen(path, "r");
	int n = 0;

	if (fp == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL)
		if ((strstr(line, needle) != NULL) == with)
			n++;
	fclose(fp);
	return n;
}

/* A poll asks the remote for its tip first, and fetches only when it moved. */
static void
t_engine_poll_check(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	git_reference *ref;
	char c1[SHA_HEX], c2[SHA_HEX], log[256], cur[RELEASE_NAME_MAX], after[RELEASE_NAME_MAX];

	commit_files(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	log_fetches(f, log, sizeof(log));
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.commit, c1);
	/* Polls ask a long-lived helper (__fetch --serve); a fetch starts a helper of its own. */
	assert_int_equal(count_lines(log, "--serve", 1), 1);
	assert_int_equal(count_lines(log, "--serve", 0), 0);	/* no fetch */

	commit_files(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c2);
	assert_int_equal(count_lines(log, "--serve", 1), 1);	/* the same helper asked */
	assert_int_equal(count_lines(log, "--serve", 0), 1);
	assert_int_equal(count_lines(log, "--branch main -- ", 1), 1);
	current_of(f, cur, sizeof(cur));

	/* The tracked branch is deleted on the remote: current stays, and status says so. */
	assert_int_equal(git_reference_lookup(&ref, f->repo, "refs/heads/main"), 0);
	assert_int_equal(git_reference_delete(ref), 0);
	git_reference_free(ref);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_GIT);
	snprintf(log, sizeof(log), "branch 'main' no longer exists on %s; current release kept",
	    f->src);
	assert_string_equal(res.error, log);
	assert_int_equal(deploy_trig(f, TRIG_WEBHOOK, &res), E_GIT);
	assert_string_equal(res.error, log);
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_string_equal(st.last_error, log);
	assert_string_equal(st.applied, c2);
	state_free(&st);
}

/* Create a lightweight or an annotated tag on a commit. */
static void
tag(git_repository *repo, const char *name, const char *commit, int annotated)
{
	git_object *obj;
	git_signature *sig;
	git_oid oid;

	assert_int_equal(git_revparse_single(&obj, repo, commit), 0);
	if (annotated) {
		assert_int_equal(git_signature_new(&sig, "T", "t@example.org", 1795646609, 0), 0);
		assert_int_equal(git_tag_create(&oid, repo, name, obj, sig, "release\n", 1), 0);
		git_signature_free(sig);
	} else
		assert_int_equal(git_tag_create_lightweight(&oid, repo, name, obj, 1), 0);
	git_object_free(obj);
}

/* tags: "v*": the highest version goes live, annotated tags peel to their commit. */
static void
t_engine_tags(void **state)
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n") };
	const struct tfile v3[] = { TF("index.html", "v3\n") };
	struct fixture *f = *state;
	struct deploy_result res;
	char c1[SHA_HEX], c2[SHA_HEX], c3[SHA_HEX], path[512], got[2048], log[256];
	int pfd, before, tmps;

	commit_files(f->repo, "main", v1, 1, "one\n", 0, c1);
	commit_files(f->repo, "main", v2, 1, "two\n", 0, c2);
	commit_files(f->repo, "main", v3, 1, "three\n", 0, c3);
	f->site.branch = NULL;
	f->site.tags = (char *)(uintptr_t)"v*";

	assert_int_equal(deploy(f, NULL, &res), E_GIT);
	snprintf(got, sizeof(got), "no tag matching 'v*' on %s", f->src);
	assert_string_equal(res.error, got);

	tag(f->repo, "v1.9", c1, 0);
	tag(f->repo, "v1.10", c2, 1);	/* annotated, and the highest version */
	tag(f->repo, "release-9", c3, 0);	/* does not match */
	snprintf(path, sizeof(path), "tr '\\000' '\\n' </proc/$$/environ | grep REF "
	    ">%s/ref.txt", f->dir);
	set_argv(&f->site.hooks.pre_activate, path);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.commit, c2);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	snprintf(path, sizeof(path), "%s/ref.txt", f->dir);
	slurp(path, got, sizeof(got));
	assert_string_equal(got, "DEPLOYD_REF=refs/tags/v1.10\n");

	/* A poll with no new tag fetches nothing and deploys nothing. */
	log_fetches(f, log, sizeof(log));
	before = (int)count_releases(f, &tmps);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal((int)count_releases(f, &tmps), before);
	assert_int_equal(count_lines(log, "--serve", 0), 0);

	/* A higher tag on an older commit still wins: versions, not dates, decide. */
	tag(f->repo, "v2.0", c1, 1);
	assert_int_equal(deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	slurp(path, got, sizeof(got));
	assert_string_equal(got, "DEPLOYD_REF=refs/tags/v2.0\n");
	assert_int_equal(count_lines(log, "--tags v* ", 1), 1);
	clear_hooks(f);
	f->site.tags = NULL;
	f->site.branch = (char *)(uintptr_t)"main";
}

/* ---- submodules ---- */

/* A bare repository beside the source, with one commit on main. */
static git_repository *
side_repo(struct fixture *f, const char *name)
{
	git_repository *repo;
	char path[256];

	snprintf(path, sizeof(path), "%s/%s.git", f->dir, name);
	assert_int_equal(git_repository_init(&repo, path, 1), 0);
	return repo;
}

/* Submodules (and theirs) are checked out into the release from their own caches. */
static void
t_engine_submodules(void **state)
{
	struct fixture *f = *state;
	struct deploy_result res;
	git_repository *lib = side_repo(f, "lib"), *deep = side_repo(f, "deep");
	char d1[SHA_HEX], l1[SHA_HEX], l2[SHA_HEX], c[SHA_HEX], cur[RELEASE_NAME_MAX];
	char after[RELEASE_NAME_MAX], p[512];
	struct stat sb;
	int pfd, tmps;

	{
		const struct tfile dv[] = { TF("deep.txt", "deep\n") };

		commit_files(deep, "main", dv, 1, "deep\n", 0, d1);
	}
	{
		const struct tfile lv[] = {
			TF(".gitmodules",
			    "[submodule \"deep\"]\n\tpath = deep\n\turl = ../deep.git\n"),
			TF("lib.txt", "lib 1\n"),
			{ "deep", d1, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(lib, "main", lv, 3, "lib 1\n", 0, l1);
	}
	{
		const struct tfile sv[] = {
			TF(".gitmodules", "# vendored\n[submodule \"vendor/lib\"]\n"
			    "\tpath = vendor/lib\n\turl = ../lib.git\n[core]\n\tx = y\n"),
			TF("index.html", "site\n"),
			{ "vendor/lib", l1, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(f->repo, "main", sv, 3, "with lib\n", 0, c);
	}
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	pfd = open_path(f);
	assert_file(pfd, "current/index.html", "site\n", 5, 0644);
	assert_file(pfd, "current/vendor/lib/lib.txt", "lib 1\n", 6, 0644);
	assert_file(pfd, "current/vendor/lib/deep/deep.txt", "deep\n", 5, 0644);
	assert_false(exists_at(pfd, "current/vendor/lib/.git"));
	close(pfd);
	snprintf(p, sizeof(p), "%s/www/modules/vendor%%2flib.git", f->state_dir);
	assert_int_equal(stat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/www/modules/vendor%%2flib%%2fdeep.git", f->state_dir);
	assert_int_equal(stat(p, &sb), 0);

	/* The submodule moves on; the superproject pins the new commit. */
	{
		const struct tfile lv[] = {
			TF(".gitmodules",
			    "[submodule \"deep\"]\n\tpath = deep\n\turl = ../deep.git\n"),
			TF("lib.txt", "lib 2\n"),
			{ "deep", d1, 40, GIT_FILEMODE_COMMIT },
		};
		const struct tfile sv[] = {
			TF(".gitmodules", "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n"
			    "\turl = ../lib.git\n"),
			TF("index.html", "site\n"),
			{ "vendor/lib", l2, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(lib, "main", lv, 3, "lib 2\n", 0, l2);
		commit_files(f->repo, "main", sv, 3, "bump lib\n", 0, c);
	}
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	pfd = open_path(f);
	assert_file(pfd, "current/vendor/lib/lib.txt", "lib 2\n", 6, 0644);
	close(pfd);
	current_of(f, cur, sizeof(cur));

	/* A gitlink that .gitmodules does not describe. */
	{
		const struct tfile sv[] = {
			TF("index.html", "site\n"),
			{ "orphan", l2, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(f->repo, "main", sv, 2, "orphan\n", 0, c);
	}
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.error, "submodule at 'orphan' has no url in .gitmodules");
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);

	/* A pinned commit the submodule's remote does not have. */
	{
		const struct tfile sv[] = {
			TF(".gitmodules",
			    "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n"),
			{ "lib", C1, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(f->repo, "main", sv, 2, "bad pin\n", 0, c);
	}
	assert_int_not_equal(deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "commit " C1 " is not on any branch or tag there"));
	current_of(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(count_releases(f, &tmps), 2);
	assert_int_equal(tmps, 0);

	/* A damaged submodule cache is noticed when writing, and everything is fetched again. */
	{
		const struct tfile sv[] = {
			TF(".gitmodules", "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n"
			    "\turl = ../lib.git\n"),
			TF("index.html", "site again\n"),
			{ "vendor/lib", l2, 40, GIT_FILEMODE_COMMIT },
		};

		commit_files(f->repo, "main", sv, 3, "again\n", 0, c);
	}
	snprintf(p, sizeof(p), "%s/www/modules/vendor%%2flib.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	pfd = open_path(f);
	assert_file(pfd, "current/vendor/lib/lib.txt", "lib 2\n", 6, 0644);
	assert_file(pfd, "current/index.html", "site again\n", 11, 0644);
	close(pfd);
	git_repository_free(lib);
	git_repository_free(deep);
}

/* ---- incremental releases: reuse of unchanged files ---- */

/* Every entry of tree is in dirfd as git has it (read-only files for hard links), and no more. */
static void
assert_tree_at(git_repository *repo, const git_tree *tree, int dirfd, int readonly,
    const char *skip)
{
	size_t i, n = git_tree_entrycount(tree), seen = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	for (i = 0; i < n; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i);
		const char *name = git_tree_entry_name(te);
		git_filemode_t mode = git_tree_entry_filemode(te);
		git_tree *sub;
		git_blob *blob;
		struct stat sb;
		char target[256];
		ssize_t len;

		assert_int_equal(fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW), 0);
		switch (mode) {
		case GIT_FILEMODE_TREE:
			assert_true(S_ISDIR(sb.st_mode));
			assert_int_equal(git_tree_lookup(&sub, repo, git_tree_entry_id(te)), 0);
			assert_true((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY)) >= 0);
			assert_tree_at(repo, sub, fd, readonly, NULL);
			close(fd);
			git_tree_free(sub);
			break;
		case GIT_FILEMODE_LINK:
			assert_int_equal(git_blob_lookup(&blob, repo, git_tree_entry_id(te)), 0);
			assert_true(S_ISLNK(sb.st_mode));
			len = readlinkat(dirfd, name, target, sizeof(target));
			assert_int_equal((size_t)len, (size_t)git_blob_rawsize(blob));
			assert_memory_equal(target, git_blob_rawcontent(blob), (size_t)len);
			git_blob_free(blob);
			break;
		default:
			assert_int_equal(git_blob_lookup(&blob, repo, git_tree_entry_id(te)), 0);
			assert_file(dirfd, name, git_blob_rawcontent(blob),
			    (size_t)git_blob_rawsize(blob), (mode == GIT_FILEMODE_BLOB ? 0644 :
			    0755) & (readonly ? 0555 : 0777));
			git_blob_free(blob);
			break;
		}
	}
	/* Nothing more than the tree, but for the one shared link named skip. */
	assert_true((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY)) >= 0);
	assert_non_null(d = fdopendir(fd));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    (skip == NULL || strcmp(de->d_name, skip) != 0))
			seen++;
	closedir(d);
	assert_int_equal(seen, n);
}

/* current holds exactly commit's tree. */
static void
assert_release_is(struct fixture *f, const char *commit, int readonly, const char *skip)
{
	git_commit *c;
	git_tree *tree;
	git_oid oid;
	int pfd = open_path(f), fd;

	assert_int_equal(git_oid_fromstr(&oid, commit), 0);
	assert_int_equal(git_commit_lookup(&c, f->repo, &oid), 0);
	assert_int_equal(git_commit_tree(&tree, c), 0);
	assert_true((fd = openat(pfd, "current", O_RDONLY | O_DIRECTORY)) >= 0);
	assert_tree_at(f->repo, tree, fd, readonly, skip);
	close(fd);
	close(pfd);
	git_tree_free(tree);
	git_commit_free(c);
}

/* The inode of releases/<rel>/<path>, not following a last symlink. */
static ino_t
inode_of(struct fixture *f, const char *rel, const char *path)
{
	char p[512];
	struct stat sb;

	snprintf(p, sizeof(p), "%s/releases/%s/%s", f->path, rel, path);
	assert_int_equal(lstat(p, &sb), 0);
	return sb.st_ino;
}

/* Which paths of the new release share their inode with the previous one's, and which do not. */
static void
assert_sharing(struct fixture *f, const char *prev, const char *cur, const char *const *same,
    const char *const *differ, int share)
{
	for (; same != NULL && *same != NULL; same++)
		if ((inode_of(f, prev, *same) == inode_of(f, cur, *same)) != share)
			fail_msg("%s: shared=%d, expected %d", *same, !share, share);
	for (; differ != NULL && *differ != NULL; differ++)
		if (inode_of(f, prev, *differ) == inode_of(f, cur, *differ))
			fail_msg("%s: shares its inode with the previous release", *differ);
}

/*
 * A sequence of commits: adds, edits, deletes, renames, mode changes, file <-> symlink,
 * file <-> directory, and an untouched subtree. After each deploy the release is the commit's
 * tree exactly, and the unchanged files are shared (hard links) or separate copies.
 */
static void
incr_sequence(struct fixture *f, int reuse, const char *expect)
{
	const struct tfile s1[] = {
		TF("a.txt", "alpha\n"), TF("b.txt", "beta\n"), TX("run.sh", "#!/bin/sh\n"),
		TF("dir/c.txt", "gamma\n"), TF("dir/sub/d.txt", "delta\n"),
		TL("link", "a.txt"), TF("m.txt", "mode\n"), TF("l2", "plain\n"),
		TL("s3", "b.txt"), TF("x", "file x\n"), TF("y/z.txt", "zed\n"),
	};
	const struct tfile s2[] = {
		TF("a.txt", "alpha, edited\n"), TF("run.sh", "#!/bin/sh\n"),
		TF("dir/c2.txt", "gamma\n"), TF("dir/sub/d.txt", "delta\n"),
		TL("link", "a.txt"), TX("m.txt", "mode\n"), TL("l2", "a.txt"),
		TF("s3", "now a file\n"), TF("x/inner.txt", "inside x\n"), TF("y", "file y\n"),
		TF("new.txt", "new\n"),
	};
	const struct tfile s3[] = {
		TF("a.txt", "alpha, edited\n"), TX("run.sh", "#!/bin/sh\n"),
		TF("dir/c2.txt", "gamma\n"), TF("dir/sub/d.txt", "delta\n"),
		TF("dir/sub/e.txt", "epsilon\n"), TL("link", "new.txt"), TX("m.txt", "mode\n"),
		TF("x", "file x\n"), TF("y", "file y\n"), TF("new.txt", "new\n"),
	};
	static const char *const same2[] = { "dir/sub/d.txt", NULL };
	static const char *const differ2[] = { "a.txt", "run.sh", "m.txt", "l2", "s3", "y",
	    NULL };
	static const char *const same3[] = { "a.txt", "dir/c2.txt", "dir/sub/d.txt", "m.txt",
	    "y", "new.txt", NULL };
	static const char *const differ3[] = { "run.sh", "link", "x", NULL };
	struct deploy_result res;
	char c[SHA_HEX], prev[RELEASE_NAME_MAX];
	int ro = strcmp(expect, "hardlink") == 0;

	f->site.reuse = reuse;
	commit_files(f->repo, "main", s1, sizeof(s1) / sizeof(s1[0]), "s1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, expect);
	assert_int_equal(res.files_written, 11);
	assert_int_equal(res.files_reused, 0);
	assert_release_is(f, c, ro, NULL);
	util_strlcpy(prev, res.release, sizeof(prev));

	commit_files(f->repo, "main", s2, sizeof(s2) / sizeof(s2[0]), "s2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_release_is(f, c, ro, NULL);
	/* Unchanged: dir/sub/d.txt and link; every other entry changed, moved or is new. */
	assert_int_equal(res.files_reused, 2);
	assert_int_equal(res.files_written, 9);
	assert_sharing(f, prev, res.release, same2, differ2, ro);
	util_strlcpy(prev, res.release, sizeof(prev));

	commit_files(f->repo, "main", s3, sizeof(s3) / sizeof(s3[0]), "s3\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_release_is(f, c, ro, NULL);
	assert_int_equal(res.files_reused, 6);
	assert_int_equal(res.files_written, 4);
	assert_sharing(f, prev, res.release, same3, differ3, ro);
}

static void
t_incr_copy(void **state)
{
	incr_sequence(*state, REUSE_COPY, "copy");
}

static void
t_incr_hardlink(void **state)
{
	incr_sequence(*state, REUSE_HARDLINK, "hardlink");
}

/* Whether the file system of dir can reflink (FICLONE), tried as release.c tries it. */
static int
can_reflink(const char *dir)
{
	char a[256], b[256];
	int fa, fb, ok;

	snprintf(a, sizeof(a), "%s/reflink-a", dir);
	snprintf(b, sizeof(b), "%s/reflink-b", dir);
	assert_true((fa = open(a, O_RDWR | O_CREAT | O_EXCL, 0600)) >= 0);
	assert_int_equal(write(fa, "x\n", 2), 2);
	assert_true((fb = open(b, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	ok = ioctl(fb, FICLONE, fa) == 0;
	close(fa);
	close(fb);
	unlink(a);
	unlink(b);
	return ok;
}

/* reflink where the file system has them; elsewhere a clear failure that leaves nothing. */
static void
t_incr_reflink(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	struct deploy_result res;
	char c[SHA_HEX];
	int tmps;

	if (can_reflink(f->dir)) {
		print_message("# %s can reflink: running the sequence\n", f->dir);
		incr_sequence(f, REUSE_REFLINK, "reflink");
		return;
	}
	print_message("# %s cannot reflink: reuse: reflink must fail\n", f->dir);
	f->site.reuse = REUSE_REFLINK;
	commit_files(f->repo, "main", v1, 1, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_CONFIG);
	assert_non_null(strstr(res.error, "reuse: reflink"));
	assert_non_null(strstr(res.error, "cannot make reflinks"));
	assert_non_null(strstr(res.error, f->path));
	assert_int_equal(count_releases(f, &tmps), 0);
	assert_int_equal(tmps, 0);
}

/* auto: hard links on this file system, but copies for a site with a pre_activate hook. */
static void
t_incr_auto(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TF("about.html", "about\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TF("about.html", "about\n") };
	struct deploy_result res;
	char c[SHA_HEX], prev[RELEASE_NAME_MAX];
	const char *want = can_reflink(f->dir) ? "reflink" : "hardlink";

	f->site.reuse = REUSE_AUTO;
	commit_files(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, want);
	assert_release_is(f, c, strcmp(want, "hardlink") == 0, NULL);
	util_strlcpy(prev, res.release, sizeof(prev));

	set_argv(&f->site.hooks.pre_activate, "true");
	commit_files(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, strcmp(want, "hardlink") == 0 ? "copy" : want);
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 0, NULL);
	assert_true(inode_of(f, prev, "about.html") != inode_of(f, res.release, "about.html"));
	clear_hooks(f);
}

/* Change current/<path> in place, keeping its size, as a build hook or an admin might. */
static void
edit_in_place(struct fixture *f, const char *path, const char *data, int forge_mtime)
{
	char p[512];
	struct stat sb;
	struct timespec ts[2];
	int fd;

	snprintf(p, sizeof(p), "%s/current/%s", f->path, path);
	assert_int_equal(stat(p, &sb), 0);
	/* Root writes a read-only file anyway: the worst case. */
	assert_true((fd = open(p, O_WRONLY)) >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
	if (forge_mtime) {
		ts[0] = sb.st_atim;
		ts[1] = sb.st_mtim;
		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
}

/*
 * Files of the previous release that changed after it was written (an in-place edit, a mode
 * change, a file swapped for a symlink or a FIFO) are written from their blobs, not reused.
 */
static void
incr_tampered(struct fixture *f, int reuse)
{
	const struct tfile v1[] = {
		TF("a.txt", "alpha\n"), TF("b.txt", "beta\n"), TF("c.txt", "gamma\n"),
		TF("d.txt", "delta\n"), TF("e.txt", "epsilon\n"), TF("f.txt", "zeta\n"),
		TF("index.html", "v1\n"),
	};
	const struct tfile v2[] = {
		TF("a.txt", "alpha\n"), TF("b.txt", "beta\n"), TF("c.txt", "gamma\n"),
		TF("d.txt", "delta\n"), TF("e.txt", "epsilon\n"), TF("f.txt", "zeta\n"),
		TF("index.html", "v2\n"),
	};
	struct deploy_result res;
	char c[SHA_HEX], prev[RELEASE_NAME_MAX], p[512];
	int ro = reuse == REUSE_HARDLINK;

	f->site.reuse = reuse;
	commit_files(f->repo, "main", v1, 7, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(prev, res.release, sizeof(prev));
	edit_in_place(f, "a.txt", "ALPHA\n", 0);
	if (!ro)
		edit_in_place(f, "b.txt", "BETA\n", 1);	/* the ctime still tells */
	snprintf(p, sizeof(p), "%s/current/c.txt", f->path);
	assert_int_equal(chmod(p, 0666), 0);
	snprintf(p, sizeof(p), "%s/current/d.txt", f->path);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("/etc/hostname", p), 0);
	snprintf(p, sizeof(p), "%s/current/e.txt", f->path);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkfifo(p, 0644), 0);

	commit_files(f->repo, "main", v2, 7, "v2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_release_is(f, c, ro, NULL);
	/* Only f.txt, untouched, is reused; b.txt too when its edit could not hide (hard links). */
	assert_int_equal(res.files_reused, ro ? 2 : 1);
	assert_true(inode_of(f, prev, "f.txt") != inode_of(f, res.release, "f.txt") || ro);
	assert_true(inode_of(f, prev, "a.txt") != inode_of(f, res.release, "a.txt"));
	assert_true(inode_of(f, prev, "c.txt") != inode_of(f, res.release, "c.txt"));
}

static void
t_incr_tampered_copy(void **state)
{
	incr_tampered(*state, REUSE_COPY);
}

static void
t_incr_tampered_hardlink(void **state)
{
	incr_tampered(*state, REUSE_HARDLINK);
}

/*
 * What deployd adds (shared links) is never taken for content, a pre_activate hook's output in
 * the previous release is not carried over, and a release whose stamp is unknown (written by
 * an older deployd) is not reused from.
 */
static void
t_incr_shared_and_hooks(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TF("keep.txt", "keep\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TF("keep.txt", "keep\n") };
	const struct tfile v3[] = { TF("index.html", "v3\n"), TF("keep.txt", "keep\n") };
	struct deploy_result res;
	struct site_state st;
	struct error e = { 0 };
	char c[SHA_HEX];
	int pfd;

	f->site.reuse = REUSE_COPY;
	util_strv_push(&f->site.shared, "uploads");
	set_argv(&f->site.hooks.pre_activate, "echo built > build.out; echo x >> keep.txt");
	commit_files(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	pfd = open_path(f);
	assert_file(pfd, "current/keep.txt", "keep\nx\n", 7, 0644);
	close(pfd);

	util_strv_free(&f->site.hooks.pre_activate);
	commit_files(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 0);	/* keep.txt was changed by the hook */
	pfd = open_path(f);
	assert_false(exists_at(pfd, "current/build.out"));
	assert_link(pfd, "current/uploads", "../../shared/uploads");
	close(pfd);
	assert_release_is(f, c, 0, "uploads");

	/* Forget the stamp, as state written by an older deployd has none. */
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	st.releases[st.nreleases - 1].written_ns = 0;
	assert_int_equal(state_save(f->state_dir, "www", &st, &e), E_OK);
	state_free(&st);
	commit_files(f->repo, "main", v3, 2, "v3\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 0);
	assert_int_equal(res.files_written, 2);
	assert_release_is(f, c, 0, "uploads");
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_true(st.releases[st.nreleases - 1].written_ns > 0);
	assert_string_equal(st.releases[st.nreleases - 1].reuse, "copy");
	assert_int_equal(st.releases[st.nreleases - 1].files_written, 2);
	state_free(&st);
	clear_hooks(f);
}

/*
 * A site that moves from copy to hardlink: the writable files of the copy release are copied
 * read-only once (reused, but not linked to writable files), and linked from then on.
 */
static void
t_incr_switch(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TX("run.sh", "#!/bin/sh\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TX("run.sh", "#!/bin/sh\n") };
	const struct tfile v3[] = { TF("index.html", "v3\n"), TX("run.sh", "#!/bin/sh\n") };
	struct deploy_result res;
	char c[SHA_HEX], r1[RELEASE_NAME_MAX], r2[RELEASE_NAME_MAX];

	f->site.reuse = REUSE_COPY;
	commit_files(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(r1, res.release, sizeof(r1));
	f->site.reuse = REUSE_HARDLINK;
	commit_files(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(r2, res.release, sizeof(r2));
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 1, NULL);
	assert_true(inode_of(f, r1, "run.sh") != inode_of(f, r2, "run.sh"));
	commit_files(f->repo, "main", v3, 2, "v3\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 1, NULL);
	assert_true(inode_of(f, r2, "run.sh") == inode_of(f, res.release, "run.sh"));
	/* Back to copy: the read-only files are copied into writable ones. */
	f->site.reuse = REUSE_COPY;
	commit_files(f->repo, "main", v1, 2, "v1 again\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 0, NULL);
}

/* A symlink reused from the previous release still obeys allow_external_symlinks. */
static void
t_incr_symlink_rules(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TL("out", "/etc/hostname") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TL("out", "/etc/hostname") };
	struct deploy_result res;
	char c[SHA_HEX], cur[RELEASE_NAME_MAX];

	f->site.reuse = REUSE_COPY;
	f->site.allow_external_symlinks = 1;
	commit_files(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_OK);
	util_strlcpy(cur, res.release, sizeof(cur));
	f->site.allow_external_symlinks = 0;
	commit_files(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(deploy(f, NULL, &res), E_INVAL);
	assert_non_null(strstr(res.error, "points outside the release"));
	current_of(f, c, sizeof(c));
	assert_string_equal(c, cur);
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
		if (release_link_escapes(cases[i].path, cases[i].target) != cases[i].escapes)
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
		cmocka_unit_test_setup_teardown(t_write, setup, teardown),
		cmocka_unit_test_setup_teardown(t_write_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(t_cleanup_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(t_prune_keep, setup, teardown),
		cmocka_unit_test_setup_teardown(t_prune_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(t_prune_current_not_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(t_prune_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(t_list, setup, teardown),
		cmocka_unit_test_setup_teardown(t_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(t_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_deploy, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_prune_and_force_push, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_bad_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_corrupt_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_file_url, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_cache_lost_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(t_recover_site, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_many_files, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_hooks, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_pre_activate_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_post_activate_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_poll_check, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_tags, setup, teardown),
		cmocka_unit_test_setup_teardown(t_engine_submodules, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_hardlink, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_reflink, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_auto, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_tampered_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_tampered_hardlink, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_shared_and_hooks, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_symlink_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(t_incr_switch, setup, teardown),
	};
	int rc;

	/* This program is its own fetch helper: fetch_site runs /proc/self/exe __fetch .... */
	if (argc > 1 && strcmp(argv[1], "__fetch") == 0)
		return fetcher_main(argc, argv);
	log_init(getenv("TEST_VERBOSE") != NULL ? LOG_LVL_DEBUG : LOG_LVL_WARN, 0);
	/* DEPLOYD_BIN=.../deployd fetches through the real binary's __fetch instead. */
	fetch_set_exe(getenv("DEPLOYD_BIN"));
	engine_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	engine_shutdown();
	return rc;
}
