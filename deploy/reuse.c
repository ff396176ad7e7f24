/* reuse.c: unchanged files of the live release shared by reflink or hard link, or copied, never trusted blindly. */
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

/*
 * Is the previous release's file, as stat says, still what deployd wrote there? Its type, its
 * git mode (or the read-only variant of it) and the blob's size must match. With a manifest,
 * it must be the very inode written, with the very mode and time recorded then; without one,
 * it must not have changed since that release got its name. Writable files are judged by
 * ctime, which a hook cannot set back. Read-only files are hard links shared by several
 * releases, and linking or pruning any of them moves the ctime, so they are judged by mtime:
 * editing one in place needs a chmod first, which the exact mode check catches unless it is
 * undone.
 */
static int
reuse_base_ok(const struct release_walk *w, const struct stat *sb,
    const struct manifest_entry *me, mode_t want, int64_t size)
{
	mode_t perm = sb->st_mode & 07777;
	const struct timespec *t;
	int64_t ns;

	if (!S_ISREG(sb->st_mode) || (int64_t)sb->st_size != size)
		return 0;
	if (perm == want)
		t = &sb->st_ctim;
	else if (perm == (want & ~(mode_t)0222))
		t = &sb->st_mtim;
	else
		return 0;
	ns = (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
	if (me != NULL)
		return sb->st_ino == me->ino && sb->st_mode == me->mode &&
		    ns == (perm == want ? me->ctime_ns : me->mtime_ns);
	return ns < w->base_ns;
}

/* Copy size bytes from in to out: in the kernel if it can, else through a buffer. */
static int
reuse_copy_data(int in, int out, int64_t size)
{
	char buf[65536];
	int64_t done = 0;
	ssize_t n, m, o;

	while (done < size) {
		n = copy_file_range(in, NULL, out, NULL, (size_t)(size - done), 0);
		if (n <= 0)
			break;
		done += n;
	}
	if (done < size && lseek(in, done, SEEK_SET) == done &&
	    lseek(out, done, SEEK_SET) == done) {
		while (done < size && (n = read(in, buf, sizeof(buf))) > 0) {
			for (o = 0; o < n; o += m)
				if ((m = write(out, buf + o, (size_t)(n - o))) <= 0)
					return E_SYS;
			done += n;
		}
	}
	return done == size ? E_OK : E_SYS;
}

/* A reflink or a copy of the base's file, as a new file of the release with its own mode. */
static int
reuse_copy(struct release_walk *w, int basefd, int dirfd, const char *name,
    const struct manifest_entry *me, mode_t want, int64_t size, struct stat *out_sb)
{
	struct stat sb;
	int in, out, rc = E_OK;

	/* O_NONBLOCK: a FIFO put there by a hook must not hang the deploy. */
	in = openat(basefd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return 1;
	if (fstat(in, &sb) != 0 || !reuse_base_ok(w, &sb, me, want, size)) {
		close(in);
		return 1;
	}
	out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return util_error_sys(w->e, "writing %s", w->path);
	}
	if (w->method != REUSE_REFLINK || ioctl(out, FICLONE, in) != 0)
		rc = reuse_copy_data(in, out, size);
	if (rc != E_OK || fchmod(out, w->readonly ? want & ~(mode_t)0222 : want) != 0 ||
	    (w->record != NULL && fstat(out, out_sb) != 0))
		rc = util_error_sys(w->e, "copying %s from the previous release", w->path);
	close(in);
	if (close(out) != 0 && rc == E_OK)
		rc = util_error_sys(w->e, "writing %s", w->path);
	return rc;
}

/*
 * Link name from basefd into dirfd and check the new name, which nothing else can swap,
 * against the base's manifest: the very inode, mode, size and mtime written. Uses nothing
 * but its arguments, so fill.c's threads call it. 1: not reusable, and nothing is left
 * behind; E_SYS: errno says why.
 */
int
reuse_link_known(int basefd, int dirfd, const char *name, const struct manifest_entry *me,
    mode_t want, struct stat *sb)
{
	/* linkat without AT_SYMLINK_FOLLOW never links through a symlink. */
	if (linkat(basefd, name, dirfd, name, 0) != 0)
		return errno == ENOENT || errno == EMLINK || errno == EPERM ? 1 : E_SYS;
	if (fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) != 0)
		return E_SYS;
	if ((sb->st_mode & 07777) == (want & ~(mode_t)0222) && reuse_base_ok(NULL, sb, me,
	    want, me->size))
		return E_OK;
	if (unlinkat(dirfd, name, 0) != 0)
		return E_SYS;
	return 1;
}

/*
 * A hard link to the base's file, checked after linking, on the new name. With a manifest
 * that is the only stat: one link and one stat per unchanged file.
 */
static int
reuse_link(struct release_walk *w, int basefd, int dirfd, const char *name,
    const struct manifest_entry *me, mode_t want, int64_t size, struct stat *sb)
{
	int rc;

	/*
	 * Only a read-only file is linked; a writable one is copied, read-only. Linking and then
	 * unlinking a file that fails the check would still move its ctime.
	 */
	if (me != NULL ? (me->mode & 0222) != 0 : (fstatat(basefd, name, sb,
	    AT_SYMLINK_NOFOLLOW) != 0 || (sb->st_mode & 07777) != (want & ~(mode_t)0222)))
		return reuse_copy(w, basefd, dirfd, name, me, want, size, sb);
	if (me != NULL && (rc = reuse_link_known(basefd, dirfd, name, me, want, sb)) != E_SYS)
		return rc;
	if (me != NULL)
		return util_error_sys(w->e, "linking %s from the previous release", w->path);
	if (linkat(basefd, name, dirfd, name, 0) != 0) {
		if (errno == ENOENT || errno == EMLINK || errno == EPERM)
			return reuse_copy(w, basefd, dirfd, name, me, want, size, sb);
		return util_error_sys(w->e, "linking %s from the previous release", w->path);
	}
	if (fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) != 0)
		return util_error_sys(w->e, "%s", w->path);
	if ((sb->st_mode & 07777) == (want & ~(mode_t)0222) && reuse_base_ok(w, sb, me, want,
	    size))
		return E_OK;
	if (unlinkat(dirfd, name, 0) != 0)
		return util_error_sys(w->e, "removing %s", w->path);
	return 1;
}

/* A symlink of the base, if unchanged: its target is checked again, not trusted. */
static int
reuse_symlink(struct release_walk *w, int basefd, int dirfd, const char *name,
    const struct manifest_entry *me, int64_t size, struct stat *out_sb)
{
	char target[PATH_MAX];
	struct stat sb;
	int64_t ns;
	ssize_t n;

	if (fstatat(basefd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(sb.st_mode) ||
	    (int64_t)sb.st_size != size)
		return 1;
	ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
	if (me != NULL ? sb.st_ino != me->ino || ns != me->ctime_ns : ns >= w->base_ns)
		return 1;
	if ((n = readlinkat(basefd, name, target, sizeof(target))) != size ||
	    (size_t)n >= sizeof(target))
		return 1;
	target[n] = '\0';
	if (strlen(target) != (size_t)n || (!w->allow_external &&
	    util_link_escapes(w->path, target)))
		return 1;	/* written from the blob, where the refusal is explained */
	if (symlinkat(target, dirfd, name) != 0 || (w->record != NULL &&
	    fstatat(dirfd, name, out_sb, AT_SYMLINK_NOFOLLOW) != 0))
		return util_error_sys(w->e, "writing %s", w->path);
	return E_OK;
}

/* The base's manifest entry for w->path, if it lists this very blob with this mode. */
const struct manifest_entry *
reuse_known(const struct release_walk *w, const git_tree_entry *te)
{
	const struct manifest_entry *me;

	if ((me = manifest_find(w->base_mf, w->path)) == NULL ||
	    me->gitmode != (uint32_t)git_tree_entry_filemode(te) || me->size < 0 ||
	    memcmp(me->oid, git_tree_entry_id(te)->id, MANIFEST_OID) != 0)
		return NULL;
	return me;
}

/*
 * The same blob with the same mode was at this path in the base: share or copy the base's
 * file, and say in *sb what the new one is. 1 means it cannot be reused (gone, changed since,
 * or not in the base's manifest), and the blob is written instead.
 */
int
reuse_entry(struct release_walk *w, int basefd, int dirfd, const char *name,
    const git_tree_entry *te, struct stat *sb)
{
	git_filemode_t mode = git_tree_entry_filemode(te);
	mode_t want = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
	const struct manifest_entry *me = NULL;
	git_object_t type;
	size_t size;

	/* The LFS refusal reads the blob; .gitattributes is small. */
	if (strcmp(name, ".gitattributes") == 0)
		return 1;
	if (w->base_mf != NULL) {
		/* The manifest knows the blob's size and the file written: git is not asked. */
		if ((me = reuse_known(w, te)) == NULL)
			return 1;
		size = (size_t)me->size;
	} else {
		if (git_odb_read_header(&size, &type, w->odb, git_tree_entry_id(te)) != 0)
			return repo_error(w->e, "reading %s", w->path);
		if (type != GIT_OBJECT_BLOB || size > INT64_MAX)
			return 1;
	}
	if (mode == GIT_FILEMODE_LINK)
		return reuse_symlink(w, basefd, dirfd, name, me, (int64_t)size, sb);
	if (w->method == REUSE_HARDLINK)
		return reuse_link(w, basefd, dirfd, name, me, want, (int64_t)size, sb);
	return reuse_copy(w, basefd, dirfd, name, me, want, (int64_t)size, sb);
}

#define REUSE_CAN_REFLINK	1u
#define REUSE_CAN_HARDLINK	2u
#define REUSE_NCAPS		16

/* What each file system holding releases can do, by device: probed once per process. */
static struct {
	dev_t		dev;
	unsigned	caps;
} reuse_caps[REUSE_NCAPS];
static size_t reuse_ncaps;
static pthread_mutex_t reuse_caps_mu = PTHREAD_MUTEX_INITIALIZER;

/* Try FICLONE and linkat once in dirfd, an empty new release on the file system in question. */
static int
reuse_probe(int dirfd, unsigned *caps)
{
	static const char *const names[] = { ".deployd-probe-a", ".deployd-probe-b",
	    ".deployd-probe-c" };
	struct stat sb;
	size_t i;
	int a, b, rc = E_OK, saved;

	*caps = 0;
	if (fstat(dirfd, &sb) != 0)
		return E_SYS;
	pthread_mutex_lock(&reuse_caps_mu);
	for (i = 0; i < reuse_ncaps && i < REUSE_NCAPS; i++)
		if (reuse_caps[i].dev == sb.st_dev) {
			*caps = reuse_caps[i].caps;
			pthread_mutex_unlock(&reuse_caps_mu);
			return E_OK;
		}
	pthread_mutex_unlock(&reuse_caps_mu);
	a = openat(dirfd, names[0], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	b = openat(dirfd, names[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (a < 0 || b < 0 || util_write_all(a, "deployd\n", 8) != E_OK)
		rc = E_SYS;
	else {
		if (ioctl(b, FICLONE, a) == 0)
			*caps |= REUSE_CAN_REFLINK;
		if (linkat(dirfd, names[0], dirfd, names[2], 0) == 0)
			*caps |= REUSE_CAN_HARDLINK;
	}
	saved = errno;
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlinkat(dirfd, names[i], 0);
	if (rc != E_OK) {
		errno = saved;
		return rc;
	}
	pthread_mutex_lock(&reuse_caps_mu);
	reuse_caps[reuse_ncaps % REUSE_NCAPS].dev = sb.st_dev;
	reuse_caps[reuse_ncaps % REUSE_NCAPS].caps = *caps;
	reuse_ncaps++;
	pthread_mutex_unlock(&reuse_caps_mu);
	log_debug("releases on device %lu: reflinks %s, hard links %s",
	    (unsigned long)sb.st_dev, *caps & REUSE_CAN_REFLINK ? "yes" : "no",
	    *caps & REUSE_CAN_HARDLINK ? "yes" : "no");
	return E_OK;
}

const char *const reuse_method_names[] = {
	[REUSE_AUTO] = "auto",
	[REUSE_REFLINK] = "reflink",
	[REUSE_HARDLINK] = "hardlink",
	[REUSE_COPY] = "copy",
};

/* The fixed mode of a site, if its file system can do it; auto's choice otherwise. */
int
reuse_method(struct release_walk *w, const struct release_opts *o, int fd, int releases_fd)
{
	static const struct {
		int		 mode;
		unsigned	 cap;
		const char	*what;
	} need[] = {
		{ REUSE_REFLINK, REUSE_CAN_REFLINK, "reflinks (FICLONE)" },
		{ REUSE_HARDLINK, REUSE_CAN_HARDLINK, "hard links" },
	};
	char dir[PATH_MAX];
	unsigned caps = 0;
	size_t i;

	/* auto goes on with copies (a full disk then fails the write, which says so). */
	if (o->reuse != REUSE_COPY && reuse_probe(fd, &caps) != E_OK &&
	    o->reuse != REUSE_AUTO)
		return util_error_sys(w->e, "probing %s", util_fd_path(releases_fd, dir,
		    sizeof(dir)));
	for (i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (o->reuse == need[i].mode && !(caps & need[i].cap))
			return util_error(w->e, E_CONFIG, "reuse: %s, but the file system of "
			    "%s cannot make %s; set reuse: auto or copy",
			    reuse_method_names[o->reuse], util_fd_path(releases_fd, dir,
			    sizeof(dir)), need[i].what);
	if (o->reuse != REUSE_AUTO)
		w->method = o->reuse;
	else if (caps & REUSE_CAN_REFLINK)
		w->method = REUSE_REFLINK;
	else if ((caps & REUSE_CAN_HARDLINK) && o->auto_hardlink)
		w->method = REUSE_HARDLINK;
	else
		w->method = REUSE_COPY;
	w->readonly = w->method == REUSE_HARDLINK;
	return E_OK;
}
