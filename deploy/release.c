/* release.c: name, write, list and prune the release directories under <path>/releases. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "deployd.h"

#define RELEASE_TMP_PREFIX ".tmp-"

/* What one release_write carries down the tree (and into submodules). */
struct release_walk {
	git_repository	*repo;		/* the repository of the tree being written */
	const git_tree	*top;		/* its top tree, which has its .gitmodules */
	struct submodule *mods;		/* read from there at the first gitlink */
	size_t		 nmods;
	int		 mods_read;
	char		 key[PATH_MAX];	/* its submodule key, "" for the site's repo */
	size_t		 root;		/* where its paths start in path */
	const char	*cache_dir;
	char		 path[PATH_MAX];	/* path inside the release, for messages */
	size_t		 nfiles;
	int		 allow_external;	/* symlinks may point outside the release */
	struct error	*e;
};

static int release_write_tree(struct release_walk *, const git_tree *, int);

/*
 * A gitlink: the pinned commit's tree, from the submodule's cache (fetched with the site's
 * credentials by the fetch helper), written into the directory, submodules and all.
 */
static int
release_write_module(struct release_walk *w, const git_tree_entry *te, int fd)
{
	struct release_walk saved;
	const struct submodule *sm;
	git_repository *sub = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	char *dir = NULL, *key;
	int rc;

	if (!w->mods_read) {
		if ((rc = submodule_read(w->repo, w->top, &w->mods, &w->nmods, w->e)) != E_OK)
			return rc;
		w->mods_read = 1;
	}
	saved = *w;
	if ((sm = submodule_find(w->mods, w->nmods, w->path + w->root)) == NULL)
		return util_error(w->e, E_INVAL, "submodule at '%s' has no url in .gitmodules",
		    w->path);
	key = w->key[0] != '\0' ? util_xasprintf("%s/%s", w->key, sm->name) :
	    util_xstrdup(sm->name);
	dir = submodule_dir(w->cache_dir, key);
	/* E_GIT: the engine then clones afresh, which fetches the submodules again. */
	if (git_repository_open_ext(&sub, dir, GIT_REPOSITORY_OPEN_NO_SEARCH |
	    GIT_REPOSITORY_OPEN_BARE, NULL) != 0 ||
	    git_commit_lookup(&c, sub, git_tree_entry_id(te)) != 0 ||
	    git_commit_tree(&tree, c) != 0) {
		rc = util_error_git(w->e, "submodule '%s' at %s: commit %.12s", sm->name,
		    w->path, git_oid_tostr_s(git_tree_entry_id(te)));
		goto out;
	}
	w->repo = sub;
	w->top = tree;
	w->mods = NULL;
	w->nmods = 0;
	w->mods_read = 0;
	util_strlcpy(w->key, key, sizeof(w->key));
	w->root = strlen(w->path) + 1;
	rc = release_write_tree(w, tree, fd);
	submodule_free(w->mods, w->nmods);
	saved.nfiles = w->nfiles;
	util_strlcpy(saved.path, w->path, sizeof(saved.path));
	*w = saved;
out:
	git_tree_free(tree);
	git_commit_free(c);
	git_repository_free(sub);
	free(dir);
	free(key);
	return rc;
}

static int
release_is_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int
release_is_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* "20261125T224329Z-0123456789ab": sorting names sorts releases by time. */
int
release_name(int64_t unix_secs, const char *commit, char *buf, size_t len)
{
	char stamp[32];
	time_t t = (time_t)unix_secs;
	struct tm tm;
	int n;

	if (commit == NULL || strlen(commit) < 12 || !release_is_hex(commit, 12))
		return E_INVAL;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		return E_INVAL;
	if (strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) != 16)
		return E_INVAL;
	n = snprintf(buf, len, "%s-%.12s", stamp, commit);
	return n < 0 || (size_t)n >= len ? E_INVAL : E_OK;
}

static int
release_num(const char *s, size_t n)
{
	int v = 0;

	while (n-- > 0)
		v = v * 10 + (*s++ - '0');
	return v;
}

/* Either output may be NULL. Anything but an exact, real date and 12 lowercase hex is E_INVAL. */
int
release_parse_name(const char *name, int64_t *unix_secs, char commit12[13])
{
	struct tm tm = { 0 };
	time_t t;

	if (strlen(name) != 29 || !release_is_digits(name, 8) || name[8] != 'T' ||
	    !release_is_digits(name + 9, 6) || name[15] != 'Z' || name[16] != '-' ||
	    !release_is_hex(name + 17, 12))
		return E_INVAL;
	tm.tm_year = release_num(name, 4) - 1900;
	tm.tm_mon = release_num(name + 4, 2) - 1;
	tm.tm_mday = release_num(name + 6, 2);
	tm.tm_hour = release_num(name + 9, 2);
	tm.tm_min = release_num(name + 11, 2);
	tm.tm_sec = release_num(name + 13, 2);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 ||
	    tm.tm_min > 59 || tm.tm_sec > 59)
		return E_INVAL;
	t = timegm(&tm);
	/* timegm normalises 31 February into March: a changed day means it did not exist. */
	if (tm.tm_mday != release_num(name + 6, 2) || tm.tm_mon + 1 != release_num(name + 4, 2))
		return E_INVAL;
	if (unix_secs != NULL)
		*unix_secs = (int64_t)t;
	if (commit12 != NULL) {
		memcpy(commit12, name + 17, 12);
		commit12[12] = '\0';
	}
	return E_OK;
}

/* Names a hostile tree could use to write outside the release, or to add a repository. */
static int
release_unsafe_name(const char *name)
{
	return name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strchr(name, '/') != NULL || strcasecmp(name, ".git") == 0;
}

static int
release_write_blob(struct release_walk *w, int dirfd, const char *name, git_blob *blob,
    mode_t mode)
{
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);
	int fd;

	if (strcmp(name, ".gitattributes") == 0 && memmem(data, len, "filter=lfs", 10) != NULL)
		return util_error(w->e, E_INVAL, "%s uses Git LFS (filter=lfs); deployd does "
		    "not fetch LFS objects", w->path);
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return util_error_sys(w->e, "writing %s", w->path);
	/* fchmod, not the open mode, so the umask cannot take away the world-read bit. */
	if (util_write_all(fd, data, len) != E_OK || fchmod(fd, mode) != 0) {
		util_error_sys(w->e, "writing %s", w->path);
		close(fd);
		return E_SYS;
	}
	if (close(fd) != 0)
		return util_error_sys(w->e, "writing %s", w->path);
	return E_OK;
}

/*
 * Does a link at path (relative to the release root) with this target leave the release?
 * Absolute targets always do; relative ones do when their ".." climb above the root.
 */
int
release_link_escapes(const char *path, const char *target)
{
	const char *p, *seg;
	long depth = 0;
	size_t n;

	if (*target == '/')
		return 1;
	for (p = path; *p != '\0'; p++)
		if (*p == '/')
			depth++;	/* the link's directory is depth levels below the root */
	for (seg = target; *seg != '\0'; seg += n + (seg[n] == '/')) {
		n = strcspn(seg, "/");
		if (n == 0 || (n == 1 && seg[0] == '.'))
			continue;
		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			if (--depth < 0)
				return 1;
		} else
			depth++;
	}
	return 0;
}

static int
release_write_link(struct release_walk *w, int dirfd, const char *name, git_blob *blob)
{
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);
	char target[PATH_MAX];

	if (len == 0 || len >= sizeof(target) || memchr(data, '\0', len) != NULL)
		return util_error(w->e, E_INVAL, "%s: bad symlink target", w->path);
	memcpy(target, data, len);
	target[len] = '\0';
	if (!w->allow_external && release_link_escapes(w->path, target))
		return util_error(w->e, E_INVAL, "%s: symlink to '%s' points outside the "
		    "release (set allow_external_symlinks: true to allow it)", w->path, target);
	if (symlinkat(target, dirfd, name) != 0)
		return util_error_sys(w->e, "writing %s", w->path);
	return E_OK;
}

/* mkdirat then open it: the new directory's fd is what the subtree is written through. */
static int
release_make_dir(struct release_walk *w, int dirfd, const char *name, int *fdp)
{
	int fd;

	/* At the root, w->path is still empty: name the temporary release by its full path. */
	if (mkdirat(dirfd, name, 0700) != 0) {
		char link[64], dir[PATH_MAX];
		ssize_t n;

		if (w->path[0] != '\0')
			return util_error_sys(w->e, "creating %s", w->path);
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		if ((n = readlink(link, dir, sizeof(dir) - 1)) < 0)
			n = 0;
		dir[n] = '\0';
		return util_error_sys(w->e, "creating %s/%s", n > 0 ? dir : "releases", name);
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

static int
release_write_tree(struct release_walk *w, const git_tree *tree, int dirfd)
{
	size_t i, n = git_tree_entrycount(tree), base = strlen(w->path);
	int rc = E_OK;

	for (i = 0; i < n && rc == E_OK; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i);
		const char *name = git_tree_entry_name(te);
		git_filemode_t mode = git_tree_entry_filemode(te);
		git_blob *blob = NULL;
		git_tree *sub = NULL;
		int fd;

		if (release_unsafe_name(name))
			return util_error(w->e, E_INVAL, "refusing tree entry '%s' in %s",
			    name, base > 0 ? w->path : "the top directory");
		if ((size_t)snprintf(w->path + base, sizeof(w->path) - base, "%s%s",
		    base > 0 ? "/" : "", name) >= sizeof(w->path) - base)
			return util_error(w->e, E_INVAL, "%s...: path too long", w->path);
		switch (mode) {
		case GIT_FILEMODE_TREE:
			if (git_tree_lookup(&sub, w->repo, git_tree_entry_id(te)) != 0)
				return util_error_git(w->e, "reading %s", w->path);
			if ((rc = release_make_dir(w, dirfd, name, &fd)) == E_OK) {
				rc = release_write_tree(w, sub, fd);
				close(fd);
			}
			git_tree_free(sub);
			break;
		case GIT_FILEMODE_BLOB:
		case GIT_FILEMODE_BLOB_EXECUTABLE:
		case GIT_FILEMODE_LINK:
			if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(te)) != 0)
				return util_error_git(w->e, "reading %s", w->path);
			if (mode == GIT_FILEMODE_LINK)
				rc = release_write_link(w, dirfd, name, blob);
			else
				rc = release_write_blob(w, dirfd, name, blob,
				    mode == GIT_FILEMODE_BLOB ? 0644 : 0755);
			git_blob_free(blob);
			w->nfiles++;
			break;
		case GIT_FILEMODE_COMMIT:
			if ((rc = release_make_dir(w, dirfd, name, &fd)) == E_OK) {
				rc = release_write_module(w, te, fd);
				close(fd);
			}
			break;
		default:
			rc = util_error(w->e, E_INVAL, "%s: unknown file mode %o", w->path,
			    (unsigned)mode);
			break;
		}
		w->path[base] = '\0';
	}
	return rc;
}

/* Write the commit's tree as releases_fd/tmpname, a new directory; the caller renames it. */
int
release_write(const char *cache_dir, const char *commit, int releases_fd,
    const char *tmpname, size_t *nfiles, struct error *e)
{
	return release_write_checked(cache_dir, commit, releases_fd, tmpname, 1, nfiles, e);
}

/* The same, refusing symlinks that leave the release unless allow_external is set. */
int
release_write_checked(const char *cache_dir, const char *commit, int releases_fd,
    const char *tmpname, int allow_external, size_t *nfiles, struct error *e)
{
	struct release_walk *w;
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_oid oid;
	int fd = -1, rc;

	if (nfiles != NULL)
		*nfiles = 0;
	w = util_xcalloc(1, sizeof(*w));
	w->e = e;
	w->allow_external = allow_external;
	if (git_oid_fromstr(&oid, commit) != 0) {
		rc = util_error(e, E_INVAL, "bad commit id '%s'", commit);
		goto out;
	}
	if (git_repository_open_ext(&repo, cache_dir, GIT_REPOSITORY_OPEN_NO_SEARCH |
	    GIT_REPOSITORY_OPEN_BARE, NULL) != 0) {
		rc = util_error_git(e, "opening %s", cache_dir);
		goto out;
	}
	if (git_commit_lookup(&c, repo, &oid) != 0 || git_commit_tree(&tree, c) != 0) {
		rc = util_error_git(e, "reading commit %.12s", commit);
		goto out;
	}
	w->repo = repo;
	w->top = tree;
	w->cache_dir = cache_dir;
	if ((rc = release_make_dir(w, releases_fd, tmpname, &fd)) != E_OK)
		goto out;
	rc = release_write_tree(w, tree, fd);
	submodule_free(w->mods, w->nmods);
	if (nfiles != NULL)
		*nfiles = w->nfiles;
out:
	if (fd >= 0)
		close(fd);
	git_tree_free(tree);
	git_commit_free(c);
	git_repository_free(repo);
	free(w);
	return rc;
}

/* A fresh open file description, so listing never disturbs releases_fd's offset. */
static DIR *
release_opendir(int releases_fd)
{
	DIR *d;
	int fd;

	if ((fd = openat(releases_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return NULL;
	if ((d = fdopendir(fd)) == NULL)
		close(fd);
	return d;
}

/* Remove the temporary releases of writes that never finished: how many, or E_SYS. */
int
release_cleanup_tmp(int releases_fd)
{
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if ((d = release_opendir(releases_fd)) == NULL)
		return E_SYS;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, RELEASE_TMP_PREFIX, strlen(RELEASE_TMP_PREFIX)) != 0)
			continue;
		if (util_rm_rf_at(releases_fd, de->d_name) != E_OK) {
			log_warn("removing %s: %s", de->d_name, strerror(errno));
			rc = E_SYS;
		} else if (rc >= 0)
			rc++;
	}
	closedir(d);
	return rc;
}

static int
release_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The release directories on disk, oldest first (names sort by time). */
int
release_list(int releases_fd, struct strv *out, struct error *e)
{
	struct dirent *de;
	DIR *d;

	if ((d = release_opendir(releases_fd)) == NULL)
		return util_error_sys(e, "listing releases");
	while ((de = readdir(d)) != NULL)
		if (release_parse_name(de->d_name, NULL, NULL) == E_OK)
			util_strv_push(out, de->d_name);
	closedir(d);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), release_cmp);
	return E_OK;
}

static int
release_recorded(const struct site_state *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, name) == 0)
			return 1;
	return 0;
}

/*
 * Only good releases count toward keep (bad ones stay for debugging and do not count), current
 * and the good release before it are never pruned, and release directories that state does not
 * know of are leftovers of failed deploys.
 */
int
release_prune(int releases_fd, struct site_state *st, int64_t keep, const char *current,
    struct error *e)
{
	struct strv disk = { 0 };
	size_t i, j, cur = SIZE_MAX, prev = SIZE_MAX;
	int64_t count;
	char *del;
	int rc = E_OK;

	if (current == NULL)
		current = "";
	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, current) == 0)
			cur = i;
	for (i = cur == SIZE_MAX ? st->nreleases : cur; i-- > 0;) {
		if (!st->releases[i].bad) {
			prev = i;
			break;
		}
	}
	/* keep includes current and the release before it; the newest others fill the rest. */
	count = (cur != SIZE_MAX && !st->releases[cur].bad) + (prev != SIZE_MAX);
	del = util_xcalloc(st->nreleases ? st->nreleases : 1, 1);
	for (i = st->nreleases; i-- > 0;) {
		if (st->releases[i].bad || i == cur || i == prev)
			continue;
		if (count < keep)
			count++;
		else
			del[i] = 1;
	}
	for (i = j = 0; i < st->nreleases; i++) {
		if (del[i] && util_rm_rf_at(releases_fd, st->releases[i].name) != E_OK) {
			rc = util_error_sys(e, "removing release %s", st->releases[i].name);
			del[i] = 0;
		}
		if (!del[i])
			st->releases[j++] = st->releases[i];
	}
	st->nreleases = j;
	free(del);

	if (release_list(releases_fd, &disk, e) != E_OK)
		return E_SYS;
	for (i = 0; i < disk.n; i++) {
		if (strcmp(disk.v[i], current) == 0 || release_recorded(st, disk.v[i]))
			continue;
		if (util_rm_rf_at(releases_fd, disk.v[i]) != E_OK)
			rc = util_error_sys(e, "removing leftover release %s", disk.v[i]);
	}
	util_strv_free(&disk);
	return rc;
}
