/* test_reuse.c: incremental releases: unchanged files reused by reflink, hard link or copy. */
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
			fixture_assert_file(dirfd, name, git_blob_rawcontent(blob),
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
	int pfd = fixture_open_path(f), fd;

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
	fixture_commit(f->repo, "main", s1, sizeof(s1) / sizeof(s1[0]), "s1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, expect);
	assert_int_equal(res.files_written, 11);
	assert_int_equal(res.files_reused, 0);
	assert_release_is(f, c, ro, NULL);
	util_strlcpy(prev, res.release, sizeof(prev));

	fixture_commit(f->repo, "main", s2, sizeof(s2) / sizeof(s2[0]), "s2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_release_is(f, c, ro, NULL);
	/* Unchanged: dir/sub/d.txt and link; every other entry changed, moved or is new. */
	assert_int_equal(res.files_reused, 2);
	assert_int_equal(res.files_written, 9);
	assert_sharing(f, prev, res.release, same2, differ2, ro);
	util_strlcpy(prev, res.release, sizeof(prev));

	fixture_commit(f->repo, "main", s3, sizeof(s3) / sizeof(s3[0]), "s3\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
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
	fixture_commit(f->repo, "main", v1, 1, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_CONFIG);
	assert_non_null(strstr(res.error, "reuse: reflink"));
	assert_non_null(strstr(res.error, "cannot make reflinks"));
	assert_non_null(strstr(res.error, f->path));
	assert_int_equal(fixture_count_releases(f, &tmps), 0);
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
	fixture_commit(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, want);
	assert_release_is(f, c, strcmp(want, "hardlink") == 0, NULL);
	util_strlcpy(prev, res.release, sizeof(prev));

	fixture_argv(&f->site.hooks.pre_activate, "true");
	fixture_commit(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.reuse, strcmp(want, "hardlink") == 0 ? "copy" : want);
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 0, NULL);
	assert_true(inode_of(f, prev, "about.html") != inode_of(f, res.release, "about.html"));
	fixture_clear_hooks(f);
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
	fixture_commit(f->repo, "main", v1, 7, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
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

	fixture_commit(f->repo, "main", v2, 7, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
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
	fixture_argv(&f->site.hooks.pre_activate, "echo built > build.out; echo x >> keep.txt");
	fixture_commit(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/keep.txt", "keep\nx\n", 7, 0644);
	close(pfd);

	util_strv_free(&f->site.hooks.pre_activate);
	fixture_commit(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 0);	/* keep.txt was changed by the hook */
	pfd = fixture_open_path(f);
	assert_false(fixture_exists(pfd, "current/build.out"));
	fixture_assert_link(pfd, "current/uploads", "../../shared/uploads");
	close(pfd);
	assert_release_is(f, c, 0, "uploads");

	/* Forget the stamp, as state written by an older deployd has none. */
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	st.releases[st.nreleases - 1].written_ns = 0;
	assert_int_equal(state_save(f->state_dir, "www", &st, &e), E_OK);
	state_free(&st);
	fixture_commit(f->repo, "main", v3, 2, "v3\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 0);
	assert_int_equal(res.files_written, 2);
	assert_release_is(f, c, 0, "uploads");
	assert_int_equal(state_load(f->state_dir, "www", &st, &e), E_OK);
	assert_true(st.releases[st.nreleases - 1].written_ns > 0);
	assert_string_equal(st.releases[st.nreleases - 1].reuse, "copy");
	assert_int_equal(st.releases[st.nreleases - 1].files_written, 2);
	state_free(&st);
	fixture_clear_hooks(f);
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
	fixture_commit(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(r1, res.release, sizeof(r1));
	f->site.reuse = REUSE_HARDLINK;
	fixture_commit(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(r2, res.release, sizeof(r2));
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 1, NULL);
	assert_true(inode_of(f, r1, "run.sh") != inode_of(f, r2, "run.sh"));
	fixture_commit(f->repo, "main", v3, 2, "v3\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 1);
	assert_release_is(f, c, 1, NULL);
	assert_true(inode_of(f, r2, "run.sh") == inode_of(f, res.release, "run.sh"));
	/* Back to copy: the read-only files are copied into writable ones. */
	f->site.reuse = REUSE_COPY;
	fixture_commit(f->repo, "main", v1, 2, "v1 again\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
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
	fixture_commit(f->repo, "main", v1, 2, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(cur, res.release, sizeof(cur));
	f->site.allow_external_symlinks = 0;
	fixture_commit(f->repo, "main", v2, 2, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_non_null(strstr(res.error, "points outside the release"));
	fixture_current(f, c, sizeof(c));
	assert_string_equal(c, cur);
}

/*
 * The threads that write a folder's files report the first failure with its path, and
 * fill_finish returns it: here a blob the repository does not have.
 */
static void
t_fill_error(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	struct release_walk w;
	struct fill_batch *b;
	struct fill *pool;
	struct error e = { 0 };
	unsigned char bogus[MANIFEST_OID];
	char c[SHA_HEX];
	int dfd;

	/* A real repository, so that the thread gets as far as looking the blob up. */
	fixture_commit(f->repo, "main", v1, 1, "v1\n", 0, c);
	if ((pool = fill_start(f->src, NULL)) == NULL)
		skip();		/* one core: the walk writes every file itself */
	memset(&w, 0, sizeof(w));
	w.e = &e;
	assert_int_equal(mkdirat(f->releases_fd, "r", 0755), 0);
	assert_true((dfd = openat(f->releases_fd, "r", O_RDONLY | O_DIRECTORY)) >= 0);
	memset(bogus, 0xab, sizeof(bogus));
	b = calloc(1, sizeof(*b));
	assert_non_null(b);
	fill_add(b, "dir/missing.txt", bogus, 0100644, 0644, 0644, NULL);
	assert_int_equal(fill_queue(pool, b, -1, dfd, &e), E_OK);
	close(dfd);
	assert_int_equal(fill_finish(pool, &w, E_OK), E_GIT);
	assert_non_null(strstr(e.msg, "reading dir/missing.txt"));
	assert_int_equal(w.nwritten, 0);
}

/*
 * The walk records what it makes itself (symlinks) while the threads record whole folders
 * into the same manifest: fill_record shares the threads' lock, so nothing is lost or torn.
 */
static void
t_fill_record(void **state)
{
	enum { BATCHES = 300, EACH = 60 };
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	struct manifest rec = { 0 };
	struct release_walk w;
	struct fill_batch *b;
	struct fill *pool;
	struct error e = { 0 };
	unsigned char oid[MANIFEST_OID];
	git_object *blob;
	struct stat sb;
	char c[SHA_HEX], name[32];
	size_t i, j;
	int dfd;

	fixture_commit(f->repo, "main", v1, 1, "v1\n", 0, c);
	assert_int_equal(git_revparse_single(&blob, f->repo, "main:index.html"), 0);
	memcpy(oid, git_object_id(blob)->id, MANIFEST_OID);
	git_object_free(blob);
	if ((pool = fill_start(f->src, &rec)) == NULL)
		skip();		/* one core: no threads to share the manifest with */
	memset(&w, 0, sizeof(w));
	w.e = &e;
	memset(&sb, 0, sizeof(sb));
	sb.st_mode = S_IFLNK | 0777;
	assert_int_equal(mkdirat(f->releases_fd, "r", 0755), 0);
	assert_true((dfd = openat(f->releases_fd, "r", O_RDONLY | O_DIRECTORY)) >= 0);
	for (i = 0; i < BATCHES; i++) {
		assert_non_null(b = calloc(1, sizeof(*b)));
		snprintf(name, sizeof(name), "f%04zu", i);
		fill_add(b, name, oid, 0100644, 0644, 0644, NULL);
		assert_int_equal(fill_queue(pool, b, -1, dfd, &e), E_OK);
		for (j = 0; j < EACH; j++) {
			snprintf(name, sizeof(name), "l%04zu-%02zu", i, j);
			fill_record(pool, &rec, name, oid, 0120000, &sb);
		}
	}
	close(dfd);
	assert_int_equal(fill_finish(pool, &w, E_OK), E_OK);
	assert_int_equal(w.nwritten, BATCHES);
	assert_int_equal(rec.n, BATCHES * (EACH + 1));
	for (i = 0; i < rec.n; i++)
		assert_non_null(rec.v[i].path);
	manifest_free(&rec);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_incr_copy),
		FIXTURE_TEST(t_incr_hardlink),
		FIXTURE_TEST(t_incr_reflink),
		FIXTURE_TEST(t_incr_auto),
		FIXTURE_TEST(t_incr_tampered_copy),
		FIXTURE_TEST(t_incr_tampered_hardlink),
		FIXTURE_TEST(t_incr_shared_and_hooks),
		FIXTURE_TEST(t_incr_symlink_rules),
		FIXTURE_TEST(t_incr_switch),
		FIXTURE_TEST(t_fill_error),
		FIXTURE_TEST(t_fill_record),
	};

	return FIXTURE_MAIN(tests);
}
