/* fixture.c: what the engine's unit tests share: a scratch site, a source repository, commits, checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"
#include "tests/unit/fixture.h"

int
fixture_setup(void **state)
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

int
fixture_teardown(void **state)
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
void
fixture_commit(git_repository *repo, const char *branch, const struct tfile *files, size_t n,
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
void
fixture_commit_raw(git_repository *repo, const char *mode, const char *name, char out[SHA_HEX])
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

void
fixture_assert_file(int dirfd, const char *path, const char *data, size_t len, mode_t mode)
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

void
fixture_assert_link(int dirfd, const char *path, const char *target)
{
	char buf[256];
	ssize_t n = readlinkat(dirfd, path, buf, sizeof(buf) - 1);

	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, target);
}

int
fixture_exists(int dirfd, const char *path)
{
	struct stat st;

	return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void
fixture_mkdir(int dirfd, const char *name)
{
	assert_int_equal(mkdirat(dirfd, name, 0755), 0);
}


void
fixture_on_phase(void *arg, enum phase phase, const char *commit,
    const struct deploy_progress *progress)
{
	struct fixture_phases *p = arg;

	(void)commit;
	if (progress != NULL)
		return;		/* progress within a phase, not a new one */
	if (p->n < 8)
		p->seen[p->n++] = (int)phase;
}

int
fixture_deploy(struct fixture *f, const char *rev, struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = TRIG_MANUAL;
	if (rev != NULL)
		util_strlcpy(req.rev, rev, sizeof(req.rev));
	return engine_deploy(&f->site, &req, res, NULL, NULL);
}

int
fixture_open_path(struct fixture *f)
{
	int fd = open(f->path, O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	return fd;
}

void
fixture_current(struct fixture *f, char *buf, size_t len)
{
	int pfd = fixture_open_path(f);

	assert_int_equal(swap_read_current(pfd, buf, len), E_OK);
	close(pfd);
}

size_t
fixture_count_releases(struct fixture *f, int *tmps)
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

void
fixture_argv(struct strv *sv, const char *script)
{
	util_strv_free(sv);
	util_strv_push(sv, "/bin/sh");
	util_strv_push(sv, "-c");
	util_strv_push(sv, script);
}

void
fixture_clear_hooks(struct fixture *f)
{
	util_strv_free(&f->site.hooks.pre_activate);
	util_strv_free(&f->site.hooks.post_activate);
	util_strv_free(&f->site.hooks.on_failure);
	util_strv_free(&f->site.shared);
}

/* The whole of a small file, NUL-terminated; "" if it does not exist. */
void
fixture_slurp(const char *path, char *buf, size_t len)
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

int
fixture_deploy_trig(struct fixture *f, enum trigger trig, struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = trig;
	return engine_deploy(&f->site, &req, res, NULL, NULL);
}

/* A first commit live, then a second one committed: what every lifecycle starts from. */
void
fixture_two_commits(struct fixture *f, char c1[SHA_HEX], char c2[SHA_HEX],
    char live[RELEASE_NAME_MAX])
{
	const struct tfile v1[] = { TF("index.html", "v1\n") };
	const struct tfile v2[] = { TF("index.html", "v2\n"), TF("new.html", "new\n") };
	struct deploy_result res;

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	util_strlcpy(live, res.release, RELEASE_NAME_MAX);
	fixture_commit(f->repo, "main", v2, 2, "two\n", 0, c2);
}

/* The site's state as saved; the caller frees it. */
void
fixture_state(struct fixture *f, struct site_state *st)
{
	struct error e = { 0 };

	assert_int_equal(state_load(f->state_dir, "www", st, &e), E_OK);
}

int
fixture_prepare(struct fixture *f, struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = TRIG_MANUAL;
	return engine_prepare(&f->site, &req, res, NULL, NULL);
}

int
fixture_activate(struct fixture *f, const char *release, const char *rev,
    struct deploy_result *res)
{
	struct deploy_request req = { 0 };

	req.trigger = TRIG_MANUAL;
	if (rev != NULL)
		util_strlcpy(req.rev, rev, sizeof(req.rev));
	return engine_activate(&f->site, release, &req, res, NULL, NULL);
}

/*
 * main() of each engine test: run the tests, or be the fetch helper when run as one
 * (fetch_site runs /proc/self/exe __fetch ...; DEPLOYD_BIN's, when set, instead).
 */
int
fixture_run(int argc, char **argv, const char *name, const struct CMUnitTest *tests, size_t n)
{
	int rc;

	if (argc > 1 && strcmp(argv[1], "__fetch") == 0)
		return fetcher_main(argc, argv);
	log_init(getenv("TEST_VERBOSE") != NULL ? LOG_LVL_DEBUG : LOG_LVL_WARN, 0);
	/* DEPLOYD_BIN=.../deployd fetches through the real binary's __fetch instead. */
	fetch_set_exe(getenv("DEPLOYD_BIN"));
	engine_init();
	rc = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
	engine_shutdown();
	return rc;
}
