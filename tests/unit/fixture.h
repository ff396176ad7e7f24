/* fixture.h: the engine's unit tests' shared scratch site and helpers (tests/unit/fixture.c). */
#ifndef DEPLOYD_TEST_FIXTURE_H
#define DEPLOYD_TEST_FIXTURE_H

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

/* A test on its own scratch site. */
#define FIXTURE_TEST(t)	cmocka_unit_test_setup_teardown(t, fixture_setup, fixture_teardown)

/* Which phases a deploy announced, in order. */
struct fixture_phases {
	int	seen[8];
	int	n;
};

int	 fixture_setup(void **state);
int	 fixture_teardown(void **state);
/* Commit files on refs/heads/<branch>: on its tip, or as a new root when force is set. */
void	 fixture_commit(git_repository *repo, const char *branch, const struct tfile *files,
	    size_t n, const char *msg, int force, char out[SHA_HEX]);
void	 fixture_commit_raw(git_repository *repo, const char *mode, const char *name,
	    char out[SHA_HEX]);
void	 fixture_assert_file(int dirfd, const char *path, const char *data, size_t len,
	    mode_t mode);
void	 fixture_assert_link(int dirfd, const char *path, const char *target);
int	 fixture_exists(int dirfd, const char *path);
void	 fixture_mkdir(int dirfd, const char *name);
void	 fixture_on_phase(void *arg, enum phase phase, const char *commit,
	    const struct deploy_progress *progress);
/* A manual deploy of the tip, or of rev. */
int	 fixture_deploy(struct fixture *f, const char *rev, struct deploy_result *res);
int	 fixture_open_path(struct fixture *f);
void	 fixture_current(struct fixture *f, char *buf, size_t len);
size_t	 fixture_count_releases(struct fixture *f, int *tmps);
void	 fixture_argv(struct strv *sv, const char *script);
void	 fixture_clear_hooks(struct fixture *f);
void	 fixture_slurp(const char *path, char *buf, size_t len);
int	 fixture_deploy_trig(struct fixture *f, enum trigger trig, struct deploy_result *res);
/* A first commit live ("v1"), then a second one ("v2", new.html) committed. */
void	 fixture_two_commits(struct fixture *f, char c1[SHA_HEX], char c2[SHA_HEX],
	    char live[RELEASE_NAME_MAX]);
void	 fixture_state(struct fixture *f, struct site_state *st);
int	 fixture_prepare(struct fixture *f, struct deploy_result *res);
int	 fixture_activate(struct fixture *f, const char *release, const char *rev,
	    struct deploy_result *res);
/* main() of each test program: FIXTURE_MAIN(tests). */
int	 fixture_run(int argc, char **argv, const char *name, const struct CMUnitTest *tests,
	    size_t n);
#define FIXTURE_MAIN(tests) \
	fixture_run(argc, argv, #tests, tests, sizeof(tests) / sizeof((tests)[0]))

#endif
