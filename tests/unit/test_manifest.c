/* test_manifest.c: release manifests: round trip, damage of every kind, and their use by reuse. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <openssl/sha.h>

#include "deploy/deploy.h"
#include "tests/unit/fixture.h"

#define NAME	"20261206T061741Z-0123456789ab"
#define NS	((int64_t)1796537861123456789)

/* Three entries, added out of order, with shared prefixes and a deep path. */
static void
sample(struct manifest *m)
{
	static const char *const paths[] = { "b/c/d.txt", "a.txt", "b/c.txt" };
	unsigned char oid[MANIFEST_OID];
	struct stat sb;
	size_t i;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < 3; i++) {
		memset(&sb, 0, sizeof(sb));
		memset(oid, (int)(0x10 + i), sizeof(oid));
		sb.st_mode = S_IFREG | (i == 1 ? 0755 : 0444);
		sb.st_size = (off_t)(1000 * i + 7);
		sb.st_ino = (ino_t)(4000000000u + i);
		sb.st_mtim.tv_sec = 1796537861;
		sb.st_mtim.tv_nsec = (long)(999999999 - i);
		sb.st_ctim.tv_sec = 1796537862 + (time_t)i;
		sb.st_ctim.tv_nsec = 5;
		manifest_add(m, paths[i], oid, i == 1 ? 0100755 : 0100644, &sb);
	}
}

static void
encoded(unsigned char **buf, size_t *len)
{
	struct manifest m;

	sample(&m);
	assert_int_equal(manifest_encode(&m, NAME, C1, NS, buf, len), E_OK);
	manifest_free(&m);
}

/* Replace the trailing hash, as a careful forger (or an older writer) would have it. */
static void
rehash(unsigned char *buf, size_t len)
{
	SHA256(buf, len - SHA256_DIGEST_LENGTH, buf + len - SHA256_DIGEST_LENGTH);
}

static void
t_round_trip(void **state)
{
	struct manifest m;
	struct error e = { 0 };
	const struct manifest_entry *me;
	unsigned char *buf;
	size_t len;

	(void)state;
	encoded(&buf, &len);
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_OK);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.v[0].path, "a.txt");
	/* Path order: '/' before any other byte, so b/c/'s file comes before b/c.txt. */
	assert_string_equal(m.v[1].path, "b/c/d.txt");
	assert_string_equal(m.v[2].path, "b/c.txt");
	assert_non_null(me = manifest_find(&m, "a.txt"));
	assert_int_equal(me->gitmode, 0100755);
	assert_int_equal(me->mode, S_IFREG | 0755);
	assert_int_equal(me->size, 1007);
	assert_int_equal(me->ino, 4000000001u);
	assert_int_equal(me->mtime_ns, (int64_t)1796537861 * 1000000000 + 999999998);
	assert_int_equal(me->ctime_ns, (int64_t)1796537863 * 1000000000 + 5);
	assert_int_equal(me->oid[0], 0x11);
	assert_non_null(me = manifest_find(&m, "b/c/d.txt"));
	assert_int_equal(me->ino, 4000000000u);
	assert_null(manifest_find(&m, "b"));
	assert_null(manifest_find(&m, "b/c"));
	assert_null(manifest_find(&m, "z"));
	manifest_free(&m);
	free(buf);
}

/* Any one byte changed, anywhere, and the manifest is not taken. */
static void
t_corrupt(void **state)
{
	struct manifest m;
	struct error e = { 0 };
	unsigned char *buf;
	size_t len, i;

	(void)state;
	encoded(&buf, &len);
	for (i = 0; i < len; i++) {
		buf[i] ^= 0x20;
		assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_STALE);
		assert_int_equal(m.n, 0);
		buf[i] ^= 0x20;
	}
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_OK);
	manifest_free(&m);
	free(buf);
}

/* Every prefix of it, as a crash or a full disk could leave. */
static void
t_truncated(void **state)
{
	struct manifest m;
	struct error e = { 0 };
	unsigned char *buf;
	size_t len, i;

	(void)state;
	encoded(&buf, &len);
	for (i = 0; i < len; i++) {
		assert_int_equal(manifest_decode(buf, i, NAME, C1, NS, &m, &e), E_STALE);
		assert_int_equal(m.n, 0);
	}
	free(buf);
}

/* Another release's, a rewritten release's, another version's, or a lying one's. */
static void
t_other(void **state)
{
	struct manifest m;
	struct error e = { 0 };
	unsigned char *buf;
	size_t len, magic = strlen("deployd-manifest\n");

	(void)state;
	encoded(&buf, &len);
	assert_int_equal(manifest_decode(buf, len, "20261206T061742Z-0123456789ab", C1, NS, &m,
	    &e), E_STALE);
	assert_non_null(strstr(e.msg, "another release"));
	assert_int_equal(manifest_decode(buf, len, NAME,
	    "1123456789abcdef0123456789abcdef01234567", NS, &m, &e), E_STALE);
	/* The same name written again (a deploy of the same commit in the same second). */
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS + 1, &m, &e), E_STALE);

	buf[magic] = 0;	/* an older version's, hashed as it would have been */
	rehash(buf, len);
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_STALE);
	assert_non_null(strstr(e.msg, "version 0"));
	buf[magic] = MANIFEST_VERSION;
	buf[magic + 1] = 4;	/* four entries claimed, three there */
	rehash(buf, len);
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_STALE);
	assert_int_equal(m.n, 0);
	buf[magic + 1] = 2;	/* two claimed: the third is left over */
	rehash(buf, len);
	assert_int_equal(manifest_decode(buf, len, NAME, C1, NS, &m, &e), E_STALE);
	free(buf);
}

/* Paths out of order (a bsearch would then miss) or repeated are refused, either side. */
static void
t_order(void **state)
{
	struct manifest m = { 0 };
	unsigned char oid[MANIFEST_OID] = { 0 }, *buf;
	struct stat sb;
	size_t len;

	(void)state;
	memset(&sb, 0, sizeof(sb));
	sb.st_mode = S_IFREG | 0444;
	manifest_add(&m, "same", oid, 0100644, &sb);
	manifest_add(&m, "same", oid, 0100644, &sb);
	assert_int_equal(manifest_encode(&m, NAME, C1, NS, &buf, &len), E_INVAL);
	manifest_free(&m);
}

/* The engine writes one per release, reads it back, and prunes those of gone releases. */
static void
t_saved_and_pruned(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TF("a/b.txt", "b\n"),
	    TL("l", "index.html") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TF("a/b.txt", "b\n"),
	    TL("l", "index.html") };
	struct deploy_result res;
	struct site_state st;
	struct manifest m;
	struct error e = { 0 };
	char c[SHA_HEX], p[512], first[RELEASE_NAME_MAX];
	const struct release_rec *rec;
	const struct manifest_entry *me;
	struct stat sb;
	int fd;

	f->site.reuse = REUSE_HARDLINK;
	f->site.keep = 1;
	assert_int_equal(manifest_load(f->state_dir, "www", NAME, C1, NS, &m, &e), E_NOTFOUND);
	fixture_commit(f->repo, "main", v1, 3, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(first, res.release, sizeof(first));
	fixture_state(f, &st);
	rec = &st.releases[st.nreleases - 1];
	assert_int_equal(manifest_load(f->state_dir, "www", rec->name, rec->commit,
	    rec->written_ns, &m, &e), E_OK);
	assert_int_equal(m.n, 4);	/* three files, and the folder a */
	assert_non_null(me = manifest_find(&m, "a"));
	assert_int_equal(me->gitmode, MANIFEST_GITMODE_TREE);
	assert_int_equal(me->size, 1);
	assert_non_null(me = manifest_find(&m, "a/b.txt"));
	snprintf(p, sizeof(p), "%s/current/a/b.txt", f->path);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(me->ino, sb.st_ino);
	assert_int_equal(me->mode, sb.st_mode);
	assert_int_equal(me->size, 2);
	assert_non_null(me = manifest_find(&m, "l"));
	assert_int_equal(me->gitmode, 0120000);
	manifest_free(&m);
	state_free(&st);

	/* Leftovers: a torn write and a manifest of a release that is gone. */
	snprintf(p, sizeof(p), "%s/www/manifests/%s.tmp", f->state_dir, first);
	assert_true((fd = open(p, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/www/manifests/20200101T000000Z-0123456789ab", f->state_dir);
	assert_true((fd = open(p, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);
	fixture_commit(f->repo, "main", v2, 3, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 2);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/www/manifests/%s.tmp", f->state_dir, first);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/www/manifests/%s", f->state_dir, res.release);
	assert_int_equal(access(p, F_OK), 0);
}

/* Damage the live release's manifest: replace it with junk, or remove it. */
static void
spoil_manifest(struct fixture *f, int remove)
{
	char cur[RELEASE_NAME_MAX], p[512];
	int fd;

	fixture_current(f, cur, sizeof(cur));
	snprintf(p, sizeof(p), "%s/www/manifests/%s", f->state_dir, cur);
	if (remove) {
		assert_int_equal(unlink(p), 0);
		return;
	}
	assert_true((fd = open(p, O_WRONLY | O_TRUNC)) >= 0);
	assert_int_equal(write(fd, "deployd-manifest\njunk", 21), 21);
	close(fd);
}

/*
 * Without a manifest (torn, or removed) the deploy still reuses what git and the stamp allow,
 * and still refuses an edited file; the next release has one again.
 */
static void
t_fallback(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("index.html", "v1\n"), TF("a.txt", "alpha\n"),
	    TF("b.txt", "beta\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TF("a.txt", "alpha\n"),
	    TF("b.txt", "beta\n") };
	const struct tfile v3[] = { TF("index.html", "v3\n"), TF("a.txt", "alpha\n"),
	    TF("b.txt", "beta\n") };
	struct deploy_result res;
	char c[SHA_HEX], p[512];
	int fd, pfd;

	f->site.reuse = REUSE_HARDLINK;
	fixture_commit(f->repo, "main", v1, 3, "v1\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	spoil_manifest(f, 0);
	/* Root edits a read-only file in place: its mtime tells, manifest or not. */
	snprintf(p, sizeof(p), "%s/current/a.txt", f->path);
	assert_true((fd = open(p, O_WRONLY)) >= 0);
	assert_int_equal(write(fd, "ALPHA\n", 6), 6);
	close(fd);
	fixture_commit(f->repo, "main", v2, 3, "v2\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 1);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/a.txt", "alpha\n", 6, 0444);
	fixture_assert_file(pfd, "current/b.txt", "beta\n", 5, 0444);
	spoil_manifest(f, 1);
	fixture_commit(f->repo, "main", v3, 3, "v3\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.files_reused, 2);
	fixture_assert_file(pfd, "current/index.html", "v3\n", 3, 0444);
	close(pfd);
	snprintf(p, sizeof(p), "%s/www/manifests/%s", f->state_dir, res.release);
	assert_int_equal(access(p, F_OK), 0);
}

/*
 * The manifest is what reuse trusts: a file whose inode the manifest does not name, or that
 * it does not list, is written from its blob even though git and the stamp would pass it.
 */
static void
t_manifest_decides(void **state)
{
	struct fixture *f = *state;
	const struct tfile v1[] = { TF("a.txt", "alpha\n"), TF("b.txt", "beta\n"),
	    TF("c.txt", "gamma\n") };
	struct release_opts o = { 0 };
	struct release_stats st;
	struct manifest base = { 0 }, rec = { 0 };
	struct error e = { 0 };
	char c[SHA_HEX];
	unsigned char *buf;
	size_t len;
	struct stat sb, a, b;
	int64_t stamp;

	fixture_commit(f->repo, "main", v1, 3, "v1\n", 0, c);
	o.reuse = REUSE_HARDLINK;
	o.record = &base;
	assert_int_equal(release_write_incr(f->src, c, f->releases_fd, "r1", &o, &st, &e), E_OK);
	assert_int_equal(base.n, 3);
	assert_false(st.by_manifest);
	release_settle(f->releases_fd, "r1");
	assert_true((stamp = release_stamp(f->releases_fd, "r1")) > 0);
	/* Round trip it as the engine would, then make two entries lie. */
	assert_int_equal(manifest_encode(&base, "r1", c, stamp, &buf, &len), E_OK);
	manifest_free(&base);
	assert_int_equal(manifest_decode(buf, len, "r1", c, stamp, &base, &e), E_OK);
	free(buf);
	base.v[0].ino++;			/* a.txt */
	free(base.v[2].path);			/* c.txt: not listed */
	base.n = 2;

	memset(&o, 0, sizeof(o));
	o.reuse = REUSE_HARDLINK;
	o.base = "r1";
	o.base_commit = c;
	o.base_written_ns = stamp;
	o.base_manifest = &base;
	o.record = &rec;
	assert_int_equal(release_write_incr(f->src, c, f->releases_fd, "r2", &o, &st, &e), E_OK);
	assert_true(st.by_manifest);
	assert_int_equal(st.reused, 1);
	assert_int_equal(st.written, 2);
	assert_int_equal(fstatat(f->releases_fd, "r1/a.txt", &a, 0), 0);
	assert_int_equal(fstatat(f->releases_fd, "r2/a.txt", &sb, 0), 0);
	assert_true(a.st_ino != sb.st_ino);
	assert_int_equal(fstatat(f->releases_fd, "r1/b.txt", &b, 0), 0);
	assert_int_equal(fstatat(f->releases_fd, "r2/b.txt", &sb, 0), 0);
	assert_true(b.st_ino == sb.st_ino);
	/* The new release's record: every file, as it now is. */
	assert_int_equal(rec.n, 3);
	manifest_free(&rec);
	manifest_free(&base);
}

/*
 * The write threads record a folder's files while the walk records the symlinks it makes:
 * every entry of a wide tree is in the manifest exactly once, on a second deploy too (links
 * by the manifest while the walk records). Before the two shared a lock, this crashed.
 */
static void
t_recorded_with_threads(void **state)
{
	enum { DIRS = 24, PER = 40, N = DIRS * PER * 2 };
	struct fixture *f = *state;
	struct tfile *v = calloc(N, sizeof(*v));
	char (*paths)[32] = calloc(N, sizeof(*paths)), c[SHA_HEX];
	struct deploy_result res;
	struct site_state st;
	struct manifest m;
	struct error e = { 0 };
	const struct release_rec *rec;
	size_t i, round;

	assert_non_null(v);
	assert_non_null(paths);
	for (i = 0; i < N; i++) {
		int link = i % 2;

		snprintf(paths[i], sizeof(paths[i]), "d%02zu/%s%03zu", i / (PER * 2),
		    link ? "l" : "f", i % (PER * 2));
		v[i].path = paths[i];
		v[i].data = link ? "../index" : "same content\n";
		v[i].len = strlen(v[i].data);
		v[i].mode = link ? GIT_FILEMODE_LINK : GIT_FILEMODE_BLOB;
	}
	f->site.reuse = REUSE_HARDLINK;
	for (round = 0; round < 2; round++) {
		/* The second round changes one file per folder: the rest are linked. */
		if (round == 1)
			for (i = 0; i < N; i += PER * 2)
				v[i].data = "changed\n", v[i].len = 8;
		fixture_commit(f->repo, "main", v, N, round ? "v2\n" : "v1\n", 0, c);
		assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
		fixture_state(f, &st);
		rec = &st.releases[st.nreleases - 1];
		assert_int_equal(manifest_load(f->state_dir, "www", rec->name, rec->commit,
		    rec->written_ns, &m, &e), E_OK);
		assert_int_equal(m.n, N + DIRS);	/* and each folder once */
		for (i = 0; i < N; i++)
			assert_non_null(manifest_find(&m, paths[i]));
		for (i = 0; i < N; i += PER * 2) {
			const struct manifest_entry *me;
			char dir[8];

			snprintf(dir, sizeof(dir), "d%02zu", i / (PER * 2));
			assert_non_null(me = manifest_find(&m, dir));
			assert_int_equal(me->gitmode, MANIFEST_GITMODE_TREE);
			assert_int_equal(me->size, PER * 2);
		}
		manifest_free(&m);
		state_free(&st);
	}
	assert_int_equal(res.files_reused, N - DIRS);
	free(paths);
	free(v);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_round_trip),
		cmocka_unit_test(t_corrupt),
		cmocka_unit_test(t_truncated),
		cmocka_unit_test(t_other),
		cmocka_unit_test(t_order),
		FIXTURE_TEST(t_saved_and_pruned),
		FIXTURE_TEST(t_fallback),
		FIXTURE_TEST(t_manifest_decides),
		FIXTURE_TEST(t_recorded_with_threads),
	};

	return FIXTURE_MAIN(tests);
}
