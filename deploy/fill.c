/* fill.c: a release's files linked or written a folder at a time by a few threads, while the tree walk goes on. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

#define FILL_MAX_THREADS	4
#define FILL_MAX_QUEUED		32	/* folders waiting: each holds two descriptors */
#define FILL_STACK		(256 * 1024)

struct fill {
	pthread_mutex_t		 mu;
	pthread_cond_t		 more, room;
	struct fill_batch	*queue, *tail;	/* waiting for a thread */
	struct manifest		*record;	/* what the threads made, if wanted */
	size_t			 queued, reused, written;
	int			 rc;		/* the first failure */
	struct error		 e;
	int			 closing;
	const char		*cache_dir;
	pthread_t		 threads[FILL_MAX_THREADS];
	size_t			 nthreads;
};

/* mkdirat then open it: the new directory's fd is what the subtree is written through. */
int
fill_make_dir(struct release_walk *w, int dirfd, const char *name, int *fdp)
{
	int fd;

	/* At the root, w->path is still empty: name the temporary release by its full path. */
	if (mkdirat(dirfd, name, 0700) != 0) {
		char dir[PATH_MAX];

		if (w->path[0] != '\0')
			return util_error_sys(w->e, "creating %s", w->path);
		return util_error_sys(w->e, "creating %s/%s", util_fd_path(dirfd, dir,
		    sizeof(dir)), name);
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return util_error_sys(w->e, "opening %s", w->path);
	if (fchmod(fd, 0755) != 0) {
		util_error_sys(w->e, "chmod %s", w->path);
		close(fd);
		return E_SYS;
	}
	*fdp = fd;
	return E_OK;
}

/* A new file of the release from data; *sb says what it is. E_SYS: errno says why. */
int
fill_write_file(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
    struct stat *sb)
{
	int fd, saved;

	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return E_SYS;
	/* fchmod, not the open mode, so the umask cannot take away the world-read bit. */
	if (util_write_all(fd, data, len) != E_OK || fchmod(fd, mode) != 0 ||
	    (sb != NULL && fstat(fd, sb) != 0)) {
		saved = errno;
		close(fd);
		errno = saved;
		return E_SYS;
	}
	return close(fd) == 0 ? E_OK : E_SYS;
}

/* One file in a thread: a checked link when the manifest allows, else its blob. */
static int
fill_item(struct fill_batch *b, struct fill_item *it, git_repository **repo,
    const char *cache_dir)
{
	git_blob *blob = NULL;
	git_oid oid;
	int rc;

	if (it->me != NULL) {
		rc = reuse_link_known(b->basefd, b->dirfd, it->name, it->me, it->want, &it->sb);
		if (rc == E_OK) {
			it->reused = 1;
			return E_OK;
		}
		if (rc != 1)
			return util_error_sys(&b->e, "linking %s from the previous release",
			    it->path);
	}
	/* Each thread reads through its own repository: libgit2 objects are not shared. */
	if (*repo == NULL && repo_open(repo, cache_dir) != 0)
		return repo_error(&b->e, "opening %s", cache_dir);
	git_oid_fromraw(&oid, it->oid);
	if (git_blob_lookup(&blob, *repo, &oid) != 0)
		return repo_error(&b->e, "reading %s", it->path);
	rc = fill_write_file(b->dirfd, it->name, git_blob_rawcontent(blob),
	    (size_t)git_blob_rawsize(blob), it->perm, &it->sb);
	git_blob_free(blob);
	if (rc != E_OK)
		return util_error_sys(&b->e, "writing %s", it->path);
	return E_OK;
}

static void *
fill_thread(void *arg)
{
	struct fill *f = arg;
	struct fill_batch *b;
	git_repository *repo = NULL;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&f->mu);
		while (f->queue == NULL && !f->closing)
			pthread_cond_wait(&f->more, &f->mu);
		if ((b = f->queue) == NULL) {
			pthread_mutex_unlock(&f->mu);
			break;
		}
		if ((f->queue = b->next) == NULL)
			f->tail = NULL;
		f->queued--;
		pthread_cond_signal(&f->room);
		pthread_mutex_unlock(&f->mu);

		for (i = 0; i < b->n && b->rc == E_OK; i++)
			b->rc = fill_item(b, &b->v[i], &repo, f->cache_dir);
		close(b->basefd);
		close(b->dirfd);
		b->basefd = b->dirfd = -1;

		/* Recorded and freed at once: a first deploy keeps no batch of 20,000 files. */
		pthread_mutex_lock(&f->mu);
		if (b->rc != E_OK && f->rc == E_OK) {
			f->rc = b->rc;
			f->e = b->e;
		}
		for (i = 0; i < b->n && b->rc == E_OK; i++) {
			if (b->v[i].reused)
				f->reused++;
			else
				f->written++;
			if (f->record != NULL)
				manifest_add(f->record, b->v[i].path, b->v[i].oid, b->v[i].gitmode,
				    &b->v[i].sb);
		}
		pthread_mutex_unlock(&f->mu);
		fill_batch_free(b);
	}
	git_repository_free(repo);
	return NULL;
}

/*
 * Threads for a release written from cache_dir, one per core up to FILL_MAX_THREADS; NULL on
 * one core, or if none can start: the walk then does every file itself.
 */
struct fill *
fill_start(const char *cache_dir, struct manifest *record)
{
	long cpus = util_cpus();
	const char *env = getenv("DEPLOYD_WRITE_THREADS");
	pthread_attr_t attr;
	struct fill *f;
	size_t i, want;

	/* The benchmark's knob: 1 measures the walk doing everything itself. */
	if (env != NULL && env[0] >= '1' && env[0] <= '0' + FILL_MAX_THREADS && env[1] == '\0')
		cpus = env[0] - '0';
	want = cpus > FILL_MAX_THREADS ? FILL_MAX_THREADS : cpus > 0 ? (size_t)cpus : 1;
	if (want < 2)
		return NULL;
	f = util_xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->more, NULL);
	pthread_cond_init(&f->room, NULL);
	f->cache_dir = cache_dir;
	f->record = record;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, FILL_STACK);
	for (i = 0; i < want; i++)
		if (pthread_create(&f->threads[f->nthreads], &attr, fill_thread, f) == 0)
			f->nthreads++;
	pthread_attr_destroy(&attr);
	if (f->nthreads == 0) {
		pthread_cond_destroy(&f->room);
		pthread_cond_destroy(&f->more);
		pthread_mutex_destroy(&f->mu);
		free(f);
		return NULL;
	}
	return f;
}

/*
 * Add a file to a folder's batch: me non-NULL means a checked link to basefd's file first.
 * want is git's mode for it (0644 or 0755), perm what a written copy gets.
 */
void
fill_add(struct fill_batch *b, const char *path, const unsigned char oid[MANIFEST_OID],
    unsigned gitmode, mode_t want, mode_t perm, const struct manifest_entry *me)
{
	struct fill_item *it;
	const char *slash;

	if (b->n == b->cap) {
		b->cap = b->cap == 0 ? 16 : b->cap * 2;
		b->v = util_xrealloc(b->v, b->cap, sizeof(*b->v));
	}
	it = &b->v[b->n++];
	memset(it, 0, sizeof(*it));
	it->path = util_xstrdup(path);
	it->name = (slash = strrchr(it->path, '/')) != NULL ? slash + 1 : it->path;
	memcpy(it->oid, oid, MANIFEST_OID);
	it->gitmode = gitmode;
	it->want = want;
	it->perm = perm;
	it->me = me;
}

/*
 * Hand a folder's batch to the threads, with its own copies of the two descriptors (basefd
 * may be -1 when nothing is linked). Waits while FILL_MAX_QUEUED folders are waiting.
 */
int
fill_queue(struct fill *f, struct fill_batch *b, int basefd, int dirfd, struct error *e)
{
	b->basefd = basefd >= 0 ? fcntl(basefd, F_DUPFD_CLOEXEC, 0) : -1;
	b->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (b->dirfd < 0 || (basefd >= 0 && b->basefd < 0)) {
		if (b->basefd >= 0)
			close(b->basefd);
		if (b->dirfd >= 0)
			close(b->dirfd);
		return util_error_sys(e, "duplicating a folder's descriptor");
	}
	b->rc = E_OK;
	b->next = NULL;
	pthread_mutex_lock(&f->mu);
	while (f->queued >= FILL_MAX_QUEUED)
		pthread_cond_wait(&f->room, &f->mu);
	if (f->tail != NULL)
		f->tail->next = b;
	else
		f->queue = b;
	f->tail = b;
	f->queued++;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->mu);
	return E_OK;
}

/*
 * A folder's walk is over with rc: its batch (if any) goes to the threads, which get their
 * own descriptors, or is dropped after a failure. The result is the folder's.
 */
int
fill_flush(struct fill *f, struct fill_batch *b, int basefd, int dirfd, int rc, struct error *e)
{
	if (b == NULL)
		return rc;
	if (rc != E_OK) {
		fill_batch_free(b);
		return rc;
	}
	return fill_queue(f, b, basefd, dirfd, e);
}

/*
 * Record a file the walk made itself (a symlink, a submodule's file) into m. The threads add
 * to the same manifest as they finish folders: with f, under their lock.
 */
void
fill_record(struct fill *f, struct manifest *m, const char *path,
    const unsigned char oid[MANIFEST_OID], unsigned gitmode, const struct stat *sb)
{
	if (f != NULL)
		pthread_mutex_lock(&f->mu);
	manifest_add(m, path, oid, gitmode, sb);
	if (f != NULL)
		pthread_mutex_unlock(&f->mu);
}

/* Record a folder all of whose files are recorded (manifest_add_dir), under the same lock. */
void
fill_record_dir(struct fill *f, struct manifest *m, const char *path,
    const unsigned char tree[MANIFEST_OID], size_t nfiles)
{
	if (f != NULL)
		pthread_mutex_lock(&f->mu);
	manifest_add_dir(m, path, tree, nfiles);
	if (f != NULL)
		pthread_mutex_unlock(&f->mu);
}

void
fill_batch_free(struct fill_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		free(b->v[i].path);
	free(b->v);
	free(b);
}

/*
 * Wait for every folder, then count what the threads did. The first error, if any, is the
 * result. f is freed.
 */
int
fill_finish(struct fill *f, struct release_walk *w, int rc)
{
	size_t i;

	if (f == NULL)
		return rc;
	pthread_mutex_lock(&f->mu);
	f->closing = 1;
	pthread_cond_broadcast(&f->more);
	pthread_mutex_unlock(&f->mu);
	for (i = 0; i < f->nthreads; i++)
		pthread_join(f->threads[i], NULL);
	w->nreused += f->reused;
	w->nwritten += f->written;
	if (f->rc != E_OK && rc == E_OK) {
		*w->e = f->e;
		rc = f->rc;
	}
	pthread_cond_destroy(&f->room);
	pthread_cond_destroy(&f->more);
	pthread_mutex_destroy(&f->mu);
	free(f);
	return rc;
}
