/* test_prepare.c: a deploy's first half: fetch failures, the cache, polls, tags, submodules, pre_activate. */
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

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	fixture_current(f, cur, sizeof(cur));

	/* A tree deployd refuses: the failure leaves current and the disk as they were. */
	fixture_commit(f->repo, "main", lfs, 1, "lfs\n", 0, c);
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "LFS"));
	assert_int_equal(res.changed, 0);
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(fixture_count_releases(f, &tmps), 1);
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
	assert_int_equal(fixture_deploy(f, NULL, &res), E_GIT);
	assert_non_null(strstr(res.error, "branch 'nope' not found on"));
	f->site.branch = (char *)(uintptr_t)"main";

	/* A remote that is not there. */
	f->site.repo = (char *)(uintptr_t)"/nonexistent/repo.git";
	assert_int_equal(fixture_deploy(f, NULL, &res), E_GIT);
	assert_non_null(strstr(res.error, "/nonexistent/repo.git: No such file or directory"));
	f->site.repo = f->src;
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);

	/* Another holder of the site lock. */
	{
		char lock[256];
		int fd;

		snprintf(lock, sizeof(lock), "%s/.deployd.lock", f->path);
		assert_int_equal(lock_acquire(lock, 0, &fd, &e), E_OK);
		assert_int_equal(fixture_deploy(f, NULL, &res), E_BUSY);
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

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(util_mkdir_p(f->path, 0755), E_OK);
	pfd = fixture_open_path(f);
	fixture_mkdir(pfd, "current");
	assert_true((fd = openat(pfd, "current/keep", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "current is a directory, not a symlink; move it away"));
	assert_true(fixture_exists(pfd, "current/keep"));
	assert_false(fixture_exists(pfd, "releases"));

	assert_int_equal(util_rm_rf_at(pfd, "current"), E_OK);
	assert_true((fd = openat(pfd, "releases", O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "releases is not a directory"));
	assert_false(fixture_exists(pfd, "current"));
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

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/HEAD", f->state_dir);
	assert_non_null(fp = fopen(p, "w"));
	fputs("garbage\n", fp);
	fclose(fp);
	fixture_commit(f->repo, "main", ok, 1, "again\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
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

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	snprintf(url, sizeof(url), "file://%s", f->src);
	f->site.repo = url;
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	f->site.repo = f->src;
	assert_string_equal(res.commit, c);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "via file://\n", 12, 0644);
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

	fixture_commit(f->repo, "main", ok, 1, "good\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	snprintf(p, sizeof(p), "%s/www/cache.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	assert_int_equal(mkdir(p, 0755), 0);
	fixture_commit(f->repo, "main", ok2, 2, "again\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/new.html", "new\n", 4, 0644);
	close(pfd);
	snprintf(p, sizeof(p), "%s/www/cache.git.new", f->state_dir);
	assert_false(fixture_exists(AT_FDCWD, p));
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
	assert_int_equal(fixture_deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 < 5000);
	assert_non_null(strstr(res.error, "fetch timed out after 1 s"));
	/* The child was reaped: no zombie is left for anyone. */
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);

	/* The site's own fetch_timeout is the deadline when no test override is set. */
	fetch_set_timeout_ms(0);
	f->site.fetch_timeout_ms = 1500;
	t0 = util_mono_ms();
	assert_int_equal(fixture_deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 >= 1400);
	assert_true(util_mono_ms() - t0 < 6000);
	assert_non_null(strstr(res.error, "fetch timed out after 2 s"));
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	f->site.fetch_timeout_ms = 0;
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

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	fixture_current(f, cur, sizeof(cur));

	fixture_argv(&f->site.hooks.pre_activate, "echo build broke; exit 3");
	snprintf(script, sizeof(script), "printf '%%s|%%s' \"$DEPLOYD_ERROR\" "
	    "\"$DEPLOYD_COMMIT\" >%s/failure.txt", f->dir);
	fixture_argv(&f->site.hooks.on_failure, script);
	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "pre_activate hook failed (exit status 3)");
	assert_int_equal(res.changed, 0);
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(fixture_count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	snprintf(path, sizeof(path), "%s/failure.txt", f->dir);
	fixture_slurp(path, got, sizeof(got));
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
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_INVAL);
	assert_int_not_equal(access(path, F_OK), 0);

	/* A hook that hangs, with a child of its own, is killed with its group at the timeout. */
	snprintf(script, sizeof(script), "sleep 60 & echo $! >%s/gc.pid; sleep 60", f->dir);
	fixture_argv(&f->site.hooks.pre_activate, script);
	f->site.hooks.timeout_ms = 500;
	t0 = util_mono_ms();
	assert_int_equal(fixture_deploy(f, NULL, &res), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 < 10000);
	assert_string_equal(res.error, "pre_activate hook timed out after 1 s");
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(fixture_count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	snprintf(path, sizeof(path), "%s/gc.pid", f->dir);
	fixture_slurp(path, got, sizeof(got));
	gc = (pid_t)atoi(got);
	assert_true(gc > 0);
	/* The grandchild was in the hook's group; it is gone (perhaps a zombie of init). */
	{
		char proc[64], st_line[512];

		snprintf(proc, sizeof(proc), "/proc/%d/stat", (int)gc);
		fixture_slurp(proc, st_line, sizeof(st_line));
		assert_true(st_line[0] == '\0' || strstr(st_line, ") Z ") != NULL);
	}
	fetch_stop_helper();	/* this thread's poll helper is a child too */
	assert_int_equal(waitpid(-1, &stat_, WNOHANG), -1);

	/* A command that does not exist. */
	util_strv_free(&f->site.hooks.pre_activate);
	util_strv_push(&f->site.hooks.pre_activate, "/nonexistent/build");
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.error,
	    "pre_activate hook /nonexistent/build: No such file or directory");
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	f->site.hooks.timeout_ms = 0;
	fixture_clear_hooks(f);
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

	fixture_commit(f->repo, "main", v1, 2, "one\n", 0, c);
	fixture_argv(&f->site.hooks.pre_activate, "test -d uploads/ && test -f .env && "
	    "test -d a/b/c && echo hi > uploads/from-hook");
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	pfd = fixture_open_path(f);
	fixture_assert_link(pfd, "current/uploads", "../../shared/uploads");
	fixture_assert_link(pfd, "current/.env", "../../shared/.env");
	fixture_assert_link(pfd, "current/a/b/c", "../../../../shared/a/b/c");
	assert_int_equal(fstatat(pfd, "current/a/b", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0755);
	fixture_assert_file(pfd, "current/a/keep.txt", "k\n", 2, 0644);
	fixture_assert_file(pfd, "shared/.env", "KEY=1\n", 6, 0600);
	fixture_assert_file(pfd, "shared/uploads/from-hook", "hi\n", 3, 0644);
	assert_int_equal(fstatat(pfd, "shared/a/b/c", &sb, 0), 0);
	assert_true(S_ISDIR(sb.st_mode));
	/* Through the links, from the web server's side. */
	fixture_assert_file(pfd, "current/uploads/from-hook", "hi\n", 3, 0644);
	close(pfd);
	fixture_current(f, cur, sizeof(cur));

	/* A repository that has a shared path itself. */
	fixture_commit(f->repo, "main", bad, 2, "bad\n", 0, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error, "repository contains shared path 'uploads'");
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(fixture_count_releases(f, &tmps), 1);
	assert_int_equal(tmps, 0);
	fixture_commit(f->repo, "main", bad2, 2, "bad2\n", 1, c);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_INVAL);
	assert_string_equal(res.error,
	    "repository contains 'a/b', which is in the way of shared path 'a/b/c'");
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "shared/uploads/from-hook", "hi\n", 3, 0644);
	close(pfd);
	fixture_clear_hooks(f);
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

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	log_fetches(f, log, sizeof(log));
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_string_equal(res.commit, c1);
	/* Polls ask a long-lived helper (__fetch --serve); a fetch starts a helper of its own. */
	assert_int_equal(count_lines(log, "--serve", 1), 1);
	assert_int_equal(count_lines(log, "--serve", 0), 0);	/* no fetch */

	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c2);
	assert_int_equal(count_lines(log, "--serve", 1), 1);	/* the same helper asked */
	assert_int_equal(count_lines(log, "--serve", 0), 1);
	assert_int_equal(count_lines(log, "--branch main -- ", 1), 1);
	fixture_current(f, cur, sizeof(cur));

	/* The tracked branch is deleted on the remote: current stays, and status says so. */
	assert_int_equal(git_reference_lookup(&ref, f->repo, "refs/heads/main"), 0);
	assert_int_equal(git_reference_delete(ref), 0);
	git_reference_free(ref);
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_GIT);
	snprintf(log, sizeof(log), "branch 'main' no longer exists on %s; current release kept",
	    f->src);
	assert_string_equal(res.error, log);
	assert_int_equal(fixture_deploy_trig(f, TRIG_WEBHOOK, &res), E_GIT);
	assert_string_equal(res.error, log);
	fixture_current(f, after, sizeof(after));
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

	fixture_commit(f->repo, "main", v1, 1, "one\n", 0, c1);
	fixture_commit(f->repo, "main", v2, 1, "two\n", 0, c2);
	fixture_commit(f->repo, "main", v3, 1, "three\n", 0, c3);
	f->site.branch = NULL;
	f->site.tags = (char *)(uintptr_t)"v*";

	assert_int_equal(fixture_deploy(f, NULL, &res), E_GIT);
	snprintf(got, sizeof(got), "no tag matching 'v*' on %s", f->src);
	assert_string_equal(res.error, got);

	tag(f->repo, "v1.9", c1, 0);
	tag(f->repo, "v1.10", c2, 1);	/* annotated, and the highest version */
	tag(f->repo, "release-9", c3, 0);	/* does not match */
	snprintf(path, sizeof(path), "tr '\\000' '\\n' </proc/$$/environ | grep REF "
	    ">%s/ref.txt", f->dir);
	fixture_argv(&f->site.hooks.pre_activate, path);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.commit, c2);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "v2\n", 3, 0644);
	close(pfd);
	snprintf(path, sizeof(path), "%s/ref.txt", f->dir);
	fixture_slurp(path, got, sizeof(got));
	assert_string_equal(got, "DEPLOYD_REF=refs/tags/v1.10\n");

	/* A poll with no new tag fetches nothing and deploys nothing. */
	log_fetches(f, log, sizeof(log));
	before = (int)fixture_count_releases(f, &tmps);
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 0);
	assert_int_equal((int)fixture_count_releases(f, &tmps), before);
	assert_int_equal(count_lines(log, "--serve", 0), 0);

	/* A higher tag on an older commit still wins: versions, not dates, decide. */
	tag(f->repo, "v2.0", c1, 1);
	assert_int_equal(fixture_deploy_trig(f, TRIG_POLL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	assert_string_equal(res.commit, c1);
	fixture_slurp(path, got, sizeof(got));
	assert_string_equal(got, "DEPLOYD_REF=refs/tags/v2.0\n");
	assert_int_equal(count_lines(log, "--tags v* ", 1), 1);
	fixture_clear_hooks(f);
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

		fixture_commit(deep, "main", dv, 1, "deep\n", 0, d1);
	}
	{
		const struct tfile lv[] = {
			TF(".gitmodules",
			    "[submodule \"deep\"]\n\tpath = deep\n\turl = ../deep.git\n"),
			TF("lib.txt", "lib 1\n"),
			{ "deep", d1, 40, GIT_FILEMODE_COMMIT },
		};

		fixture_commit(lib, "main", lv, 3, "lib 1\n", 0, l1);
	}
	{
		const struct tfile sv[] = {
			TF(".gitmodules", "# vendored\n[submodule \"vendor/lib\"]\n"
			    "\tpath = vendor/lib\n\turl = ../lib.git\n[core]\n\tx = y\n"),
			TF("index.html", "site\n"),
			{ "vendor/lib", l1, 40, GIT_FILEMODE_COMMIT },
		};

		fixture_commit(f->repo, "main", sv, 3, "with lib\n", 0, c);
	}
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/index.html", "site\n", 5, 0644);
	fixture_assert_file(pfd, "current/vendor/lib/lib.txt", "lib 1\n", 6, 0644);
	fixture_assert_file(pfd, "current/vendor/lib/deep/deep.txt", "deep\n", 5, 0644);
	assert_false(fixture_exists(pfd, "current/vendor/lib/.git"));
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

		fixture_commit(lib, "main", lv, 3, "lib 2\n", 0, l2);
		fixture_commit(f->repo, "main", sv, 3, "bump lib\n", 0, c);
	}
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_int_equal(res.changed, 1);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/vendor/lib/lib.txt", "lib 2\n", 6, 0644);
	close(pfd);
	fixture_current(f, cur, sizeof(cur));

	/* A gitlink that .gitmodules does not describe. */
	{
		const struct tfile sv[] = {
			TF("index.html", "site\n"),
			{ "orphan", l2, 40, GIT_FILEMODE_COMMIT },
		};

		fixture_commit(f->repo, "main", sv, 2, "orphan\n", 0, c);
	}
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_string_equal(res.error, "submodule at 'orphan' has no url in .gitmodules");
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);

	/* A pinned commit the submodule's remote does not have. */
	{
		const struct tfile sv[] = {
			TF(".gitmodules",
			    "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n"),
			{ "lib", C1, 40, GIT_FILEMODE_COMMIT },
		};

		fixture_commit(f->repo, "main", sv, 2, "bad pin\n", 0, c);
	}
	assert_int_not_equal(fixture_deploy(f, NULL, &res), E_OK);
	assert_non_null(strstr(res.error, "commit " C1 " is not on any branch or tag there"));
	fixture_current(f, after, sizeof(after));
	assert_string_equal(after, cur);
	assert_int_equal(fixture_count_releases(f, &tmps), 2);
	assert_int_equal(tmps, 0);

	/* A damaged submodule cache is noticed when writing, and everything is fetched again. */
	{
		const struct tfile sv[] = {
			TF(".gitmodules", "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n"
			    "\turl = ../lib.git\n"),
			TF("index.html", "site again\n"),
			{ "vendor/lib", l2, 40, GIT_FILEMODE_COMMIT },
		};

		fixture_commit(f->repo, "main", sv, 3, "again\n", 0, c);
	}
	snprintf(p, sizeof(p), "%s/www/modules/vendor%%2flib.git/objects", f->state_dir);
	assert_int_equal(util_rm_rf_at(AT_FDCWD, p), E_OK);
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(fixture_deploy(f, NULL, &res), E_OK);
	pfd = fixture_open_path(f);
	fixture_assert_file(pfd, "current/vendor/lib/lib.txt", "lib 2\n", 6, 0644);
	fixture_assert_file(pfd, "current/index.html", "site again\n", 11, 0644);
	close(pfd);
	git_repository_free(lib);
	git_repository_free(deep);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		FIXTURE_TEST(t_engine_failures),
		FIXTURE_TEST(t_engine_bad_layout),
		FIXTURE_TEST(t_engine_corrupt_cache),
		FIXTURE_TEST(t_engine_file_url),
		FIXTURE_TEST(t_engine_cache_lost_objects),
		FIXTURE_TEST(t_engine_timeout),
		FIXTURE_TEST(t_engine_pre_activate_fails),
		FIXTURE_TEST(t_engine_shared),
		FIXTURE_TEST(t_engine_poll_check),
		FIXTURE_TEST(t_engine_tags),
		FIXTURE_TEST(t_engine_submodules),
	};

	return FIXTURE_MAIN(tests);
}
