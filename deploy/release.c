/* release.c: name, write and list the release directories under <path>/releases. */
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

#define RELEASE_TMP_PREFIX ".tmp-"

static int release_write_tree(struct release_walk *, const git_tree *, int, const git_tree *,
    int);

#define RELEASE_PROGRESS_EVERY 256	/* files between two progress reports */

static int
release_count_cb(const char *root, const git_tree_entry *te, void *payload)
{
	(void)root;
	if (git_tree_entry_type(te) == GIT_OBJECT_BLOB)
		(*(size_t *)payload)++;
	return 0;
}

/*
 * A gitlink: the pinned commit's tree, from the submodule's cache (fetched with the site's
 * credentials by the fetch helper), written into the directory, submodules and all.
 */
static int
release_write_module(struct release_walk *w, const git_tree_entry *te, int fd,
    const git_tree_entry *oe, int basefd)
{
	struct release_walk saved;
	const struct submodule *sm;
	git_repository *sub = NULL;
	git_commit *c = NULL, *oc = NULL;
	git_tree *tree = NULL, *otree = NULL;
	const git_tree *old = NULL;
	git_odb *odb = NULL;
	char *dir = NULL, *key, inrepo[PATH_MAX];
	int rc;

	if (!w->mods_read) {
		if ((rc = submodule_read(w->repo, w->top, &w->mods, &w->nmods, w->e)) != E_OK)
			return rc;
		w->mods_read = 1;
	}
	saved = *w;
	/* .gitmodules names paths from the top of the repository, not of subdir. */
	if (w->subdir != NULL)
		snprintf(inrepo, sizeof(inrepo), "%s/%s", w->subdir, w->path + w->root);
	else
		util_strlcpy(inrepo, w->path + w->root, sizeof(inrepo));
	if ((sm = submodule_find(w->mods, w->nmods, inrepo)) == NULL)
		return util_error(w->e, E_INVAL, "submodule at '%s' has no url in .gitmodules",
		    w->path);
	key = w->key[0] != '\0' ? util_xasprintf("%s/%s", w->key, sm->name) :
	    util_xstrdup(sm->name);
	dir = submodule_dir(w->cache_dir, key);
	/* E_GIT: the engine then clones afresh, which fetches the submodules again. */
	if (repo_open(&sub, dir) != 0 ||
	    git_commit_lookup(&c, sub, git_tree_entry_id(te)) != 0 ||
	    git_commit_tree(&tree, c) != 0 || git_repository_odb(&odb, sub) != 0) {
		rc = repo_error(w->e, "submodule '%s' at %s: commit %.12s", sm->name,
		    w->path, git_oid_tostr_s(git_tree_entry_id(te)));
		goto out;
	}
	/* The previous release's commit of the submodule, if the cache still has it. */
	if (oe != NULL && basefd >= 0) {
		if (git_oid_equal(git_tree_entry_id(oe), git_tree_entry_id(te)))
			old = tree;
		else if (git_commit_lookup(&oc, sub, git_tree_entry_id(oe)) == 0 &&
		    git_commit_tree(&otree, oc) == 0)
			old = otree;
	}
	w->repo = sub;
	w->odb = odb;
	w->top = tree;
	w->mods = NULL;
	w->nmods = 0;
	w->mods_read = 0;
	w->subdir = NULL;
	util_strlcpy(w->key, key, sizeof(w->key));
	w->root = strlen(w->path) + 1;
	rc = release_write_tree(w, tree, fd, old, old != NULL ? basefd : -1);
	submodule_free(w->mods, w->nmods);
	saved.nfiles = w->nfiles;
	saved.nwritten = w->nwritten;
	saved.nreused = w->nreused;
	util_strlcpy(saved.path, w->path, sizeof(saved.path));
	*w = saved;
out:
	git_odb_free(odb);
	git_tree_free(otree);
	git_commit_free(oc);
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

/* Either output may be NULL. Anything but an exact, real date and 12 lowercase hex is E_INVAL. */
int
release_parse_name(const char *name, int64_t *unix_secs, char commit12[13])
{
	struct tm tm = { 0 };
	time_t t;

	if (strlen(name) != 29 || util_digits(name, 8) < 0 || name[8] != 'T' ||
	    util_digits(name + 9, 6) < 0 || name[15] != 'Z' || name[16] != '-' ||
	    !release_is_hex(name + 17, 12))
		return E_INVAL;
	tm.tm_year = util_digits(name, 4) - 1900;
	tm.tm_mon = util_digits(name + 4, 2) - 1;
	tm.tm_mday = util_digits(name + 6, 2);
	tm.tm_hour = util_digits(name + 9, 2);
	tm.tm_min = util_digits(name + 11, 2);
	tm.tm_sec = util_digits(name + 13, 2);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 ||
	    tm.tm_min > 59 || tm.tm_sec > 59)
		return E_INVAL;
	t = timegm(&tm);
	/* timegm normalises 31 February into March: a changed day means it did not exist. */
	if (tm.tm_mday != util_digits(name + 6, 2) || tm.tm_mon + 1 != util_digits(name + 4, 2))
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
    mode_t mode, struct stat *sb)
{
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);

	if (strcmp(name, ".gitattributes") == 0 && memmem(data, len, "filter=lfs", 10) != NULL)
		return util_error(w->e, E_INVAL, "%s uses Git LFS (filter=lfs); deployd does "
		    "not fetch LFS objects", w->path);
	if (fill_write_file(dirfd, name, data, len, mode, w->record != NULL ? sb : NULL) != E_OK)
		return util_error_sys(w->e, "writing %s", w->path);
	return E_OK;
}

static int
release_write_link(struct release_walk *w, int dirfd, const char *name, git_blob *blob,
    struct stat *sb)
{
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);
	char target[PATH_MAX];

	if (len == 0 || len >= sizeof(target) || memchr(data, '\0', len) != NULL)
		return util_error(w->e, E_INVAL, "%s: bad symlink target", w->path);
	memcpy(target, data, len);
	target[len] = '\0';
	if (!w->allow_external && util_link_escapes(w->path, target))
		return util_error(w->e, E_INVAL, "%s: symlink to '%s' points outside the "
		    "release (set allow_external_symlinks: true to allow it)", w->path, target);
	if (symlinkat(target, dirfd, name) != 0 || (w->record != NULL &&
	    fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) != 0))
		return util_error_sys(w->e, "writing %s", w->path);
	return E_OK;
}

/* A file or symlink from its blob; *sb says what was written. */
static int
release_write_entry(struct release_walk *w, int dirfd, const char *name,
    const git_tree_entry *te, struct stat *sb)
{
	git_filemode_t mode = git_tree_entry_filemode(te);
	git_blob *blob = NULL;
	int rc;

	if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(te)) != 0)
		return repo_error(w->e, "reading %s", w->path);
	if (mode == GIT_FILEMODE_LINK)
		rc = release_write_link(w, dirfd, name, blob, sb);
	else
		rc = release_write_blob(w, dirfd, name, blob, (mode == GIT_FILEMODE_BLOB ? 0644 :
		    0755) & (w->readonly ? ~(mode_t)0222 : ~(mode_t)0), sb);
	git_blob_free(blob);
	return rc;
}

/*
 * A file or symlink of the tree at w->path: reused from the base (basefd) when oe is the same
 * blob, else written. With threads, the site's own regular files go to the folder's batch:
 * a link checked by the manifest, or a write.
 */
static int
release_write_file(struct release_walk *w, const git_tree_entry *te, const git_tree_entry *oe,
    int basefd, int dirfd, struct fill_batch **batch)
{
	git_filemode_t mode = git_tree_entry_filemode(te);
	const char *name = git_tree_entry_name(te);
	const struct manifest_entry *me = NULL;
	mode_t want = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
	int same, pooled, rc = 1;
	struct stat sb;

	same = oe != NULL && git_oid_equal(git_tree_entry_id(oe), git_tree_entry_id(te));
	/* Submodules read another repository; .gitattributes is read for the LFS refusal. */
	pooled = w->fill != NULL && mode != GIT_FILEMODE_LINK && w->key[0] == '\0' &&
	    strcmp(name, ".gitattributes") != 0;
	if (pooled && same && w->base_mf != NULL && w->method == REUSE_HARDLINK &&
	    (me = reuse_known(w, te)) != NULL && (me->mode & 0222) != 0)
		me = NULL;	/* written writable: reuse_entry copies it */
	if (same && me == NULL)
		rc = reuse_entry(w, basefd, dirfd, name, te, &sb);
	w->nfiles++;
	if (w->opts != NULL && w->opts->progress != NULL &&
	    w->nfiles % RELEASE_PROGRESS_EVERY == 0)
		w->opts->progress(w->opts->progress_arg, w->nfiles, w->total);
	if (rc == 1 && pooled) {
		if (*batch == NULL)
			*batch = util_xcalloc(1, sizeof(**batch));
		fill_add(*batch, w->path, git_tree_entry_id(te)->id, mode, want,
		    want & (w->readonly ? ~(mode_t)0222 : ~(mode_t)0), me);
		return E_OK;	/* counted and recorded by fill_finish */
	}
	if (rc == E_OK)
		w->nreused++;
	else if (rc == 1) {
		rc = release_write_entry(w, dirfd, name, te, &sb);
		w->nwritten++;
	}
	if (rc == E_OK && w->record != NULL)
		fill_record(w->fill, w->record, w->path, git_tree_entry_id(te)->id, mode, &sb);
	return rc;
}

/*
 * The folder te (at w->path) from its tree in git; oe is the base's entry there, if a folder.
 * A folder with no submodule under it gets an entry in the new release's manifest, with the
 * count of its files, so that the next release may link it whole (subtree.c).
 */
static int
release_write_subtree(struct release_walk *w, const git_tree_entry *te,
    const git_tree_entry *oe, int basefd, int dirfd)
{
	const char *name = git_tree_entry_name(te);
	const git_tree *oldsub = NULL;
	git_tree *sub = NULL, *osub = NULL;
	size_t nfiles = w->nfiles;
	int fd, subbase = -1, plain = w->plain, rc;

	if (git_tree_lookup(&sub, w->repo, git_tree_entry_id(te)) != 0)
		return repo_error(w->e, "reading %s", w->path);
	if (oe != NULL && git_oid_equal(git_tree_entry_id(oe), git_tree_entry_id(te)))
		oldsub = sub;
	else if (oe != NULL && git_tree_lookup(&osub, w->repo, git_tree_entry_id(oe)) == 0)
		oldsub = osub;
	if (oldsub != NULL && (subbase = openat(basefd, name, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		oldsub = NULL;
	w->plain = 1;
	if ((rc = fill_make_dir(w, dirfd, name, &fd)) == E_OK) {
		rc = release_write_tree(w, sub, fd, oldsub, subbase);
		close(fd);
	}
	if (rc == E_OK && w->plain && w->record != NULL && w->key[0] == '\0')
		fill_record_dir(w->fill, w->record, w->path, git_tree_entry_id(te)->id,
		    w->nfiles - nfiles);
	w->plain = plain && w->plain;
	if (subbase >= 0)
		close(subbase);
	git_tree_free(osub);
	git_tree_free(sub);
	return rc;
}

/*
 * Write tree into dirfd. old is the tree at the same path in the base release, whose directory
 * is basefd (or NULL and -1): entries with the same id and mode there are reused, not written.
 */
static int
release_write_tree(struct release_walk *w, const git_tree *tree, int dirfd, const git_tree *old,
    int basefd)
{
	size_t i, n = git_tree_entrycount(tree), base = strlen(w->path);
	struct fill_batch *batch = NULL;
	int rc = E_OK;

	for (i = 0; i < n && rc == E_OK; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i), *oe = NULL;
		const char *name = git_tree_entry_name(te);
		git_filemode_t mode = git_tree_entry_filemode(te);
		int fd, subbase = -1;

		if (release_unsafe_name(name)) {
			rc = util_error(w->e, E_INVAL, "refusing tree entry '%s' in %s",
			    name, base > 0 ? w->path : "the top directory");
			break;
		}
		if ((size_t)snprintf(w->path + base, sizeof(w->path) - base, "%s%s",
		    base > 0 ? "/" : "", name) >= sizeof(w->path) - base) {
			rc = util_error(w->e, E_INVAL, "%s...: path too long", w->path);
			break;
		}
		/* An unchanged subtree is compared with itself: no search per entry. */
		if (old == tree)
			oe = te;
		else if (old != NULL)
			oe = git_tree_entry_byname(old, name);
		if (oe != NULL && git_tree_entry_filemode(oe) != mode)
			oe = NULL;
		switch (mode) {
		case GIT_FILEMODE_TREE:
			if (oe != NULL && git_oid_equal(git_tree_entry_id(oe),
			    git_tree_entry_id(te)) && (rc = subtree_reuse(w,
			    git_tree_entry_id(te)->id, basefd, dirfd, name)) != 1)
				break;
			rc = release_write_subtree(w, te, oe, basefd, dirfd);
			break;
		case GIT_FILEMODE_BLOB:
		case GIT_FILEMODE_BLOB_EXECUTABLE:
		case GIT_FILEMODE_LINK:
			rc = release_write_file(w, te, oe, basefd, dirfd, &batch);
			break;
		case GIT_FILEMODE_COMMIT:
			w->plain = 0;
			if (oe != NULL)
				subbase = openat(basefd, name, O_RDONLY | O_DIRECTORY |
				    O_NOFOLLOW | O_CLOEXEC);
			if ((rc = fill_make_dir(w, dirfd, name, &fd)) == E_OK) {
				rc = release_write_module(w, te, fd, subbase >= 0 ? oe : NULL,
				    subbase);
				close(fd);
			}
			break;
		default:
			rc = util_error(w->e, E_INVAL, "%s: unknown file mode %o", w->path,
			    (unsigned)mode);
			break;
		}
		if (subbase >= 0)
			close(subbase);
		w->path[base] = '\0';
	}
	w->path[base] = '\0';
	return fill_flush(w->fill, batch, basefd, dirfd, rc, w->e);
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
	struct release_opts o = { 0 };
	struct release_stats st;
	int rc;

	o.allow_external = allow_external;
	o.reuse = REUSE_COPY;
	rc = release_write_incr(cache_dir, commit, releases_fd, tmpname, &o, &st, e);
	if (nfiles != NULL)
		*nfiles = st.nfiles;
	return rc;
}

/*
 * The trees a release of commit is written from: the commit's top tree (its .gitmodules)
 * and the tree at subdir in it (the top tree again without subdir). E_INVAL: the commit has
 * no directory there; E_GIT: an object did not read.
 */
static int
release_trees(git_repository *repo, const git_oid *commit, const char *subdir, git_tree **top,
    git_tree **tree, struct error *e)
{
	git_tree_entry *te = NULL;
	git_commit *c = NULL;
	int rc = E_OK, grc;

	*top = *tree = NULL;
	if (git_commit_lookup(&c, repo, commit) != 0 || git_commit_tree(top, c) != 0)
		rc = repo_error(e, "reading commit %.12s", git_oid_tostr_s(commit));
	else if (subdir == NULL) {
		if (git_tree_dup(tree, *top) != 0)
			rc = repo_error(e, "reading commit %.12s", git_oid_tostr_s(commit));
	} else if ((grc = git_tree_entry_bypath(&te, *top, subdir)) == GIT_ENOTFOUND)
		rc = util_error(e, E_INVAL, "commit %.12s has no %s/ (the site's subdir)",
		    git_oid_tostr_s(commit), subdir);
	else if (grc != 0)
		rc = repo_error(e, "reading %s in commit %.12s", subdir, git_oid_tostr_s(commit));
	else if (git_tree_entry_type(te) != GIT_OBJECT_TREE)
		rc = util_error(e, E_INVAL, "%s in commit %.12s is not a directory (the site's "
		    "subdir)", subdir, git_oid_tostr_s(commit));
	else if (git_tree_lookup(tree, repo, git_tree_entry_id(te)) != 0)
		rc = repo_error(e, "reading %s in commit %.12s", subdir, git_oid_tostr_s(commit));
	git_tree_entry_free(te);
	git_commit_free(c);
	if (rc != E_OK) {
		git_tree_free(*top);
		*top = NULL;
	}
	return rc;
}

/* The id of the tree a release of commit is written from: equal ids, equal releases. */
int
release_subtree_id(const char *cache_dir, const char *commit, const char *subdir,
    char id[SHA_HEX], struct error *e)
{
	git_repository *repo = NULL;
	git_tree *top = NULL, *tree = NULL;
	git_oid oid;
	int rc;

	if (git_oid_fromstr(&oid, commit) != 0)
		return util_error(e, E_INVAL, "bad commit id '%s'", commit);
	if (repo_open(&repo, cache_dir) != 0)
		return repo_error(e, "opening %s", cache_dir);
	if ((rc = release_trees(repo, &oid, subdir, &top, &tree, e)) == E_OK)
		git_oid_tostr(id, SHA_HEX, git_tree_id(tree));
	git_tree_free(tree);
	git_tree_free(top);
	git_repository_free(repo);
	return rc;
}

/*
 * The same, reusing what o->base (the live release) has unchanged: only the blobs that differ
 * between its commit and this one are read and written. The base is never written to.
 */
int
release_write_incr(const char *cache_dir, const char *commit, int releases_fd,
    const char *tmpname, const struct release_opts *o, struct release_stats *stats,
    struct error *e)
{
	struct release_walk *w;
	struct error oe = { 0 };
	git_repository *repo = NULL;
	git_tree *top = NULL, *tree = NULL, *otop = NULL, *otree = NULL;
	git_oid oid, ooid;
	int fd = -1, basefd = -1, rc;

	memset(stats, 0, sizeof(*stats));
	stats->method = reuse_method_names[REUSE_COPY];
	w = util_xcalloc(1, sizeof(*w));
	w->e = e;
	w->allow_external = o->allow_external;
	if (git_oid_fromstr(&oid, commit) != 0) {
		rc = util_error(e, E_INVAL, "bad commit id '%s'", commit);
		goto out;
	}
	if (repo_open(&repo, cache_dir) != 0 || git_repository_odb(&w->odb, repo) != 0) {
		rc = repo_error(e, "opening %s", cache_dir);
		goto out;
	}
	if ((rc = release_trees(repo, &oid, o->subdir, &top, &tree, e)) != E_OK)
		goto out;
	w->repo = repo;
	w->top = top;
	w->subdir = o->subdir;
	w->cache_dir = cache_dir;
	w->opts = o;
	w->record = o->record;
	/* The total lets `deploy --wait` draw a bar; walking the tree reads no blob. */
	if (o->progress != NULL)
		git_tree_walk(tree, GIT_TREEWALK_PRE, release_count_cb, &w->total);
	if ((rc = fill_make_dir(w, releases_fd, tmpname, &fd)) != E_OK ||
	    (rc = reuse_method(w, o, fd, releases_fd)) != E_OK)
		goto out;
	stats->method = reuse_method_names[w->method];
	/*
	 * A base whose commit the cache lost (a force-push and a fresh clone), or that has no
	 * subdir, is not used.
	 */
	if (o->base != NULL && o->base_commit != NULL && o->base_written_ns > 0 &&
	    git_oid_fromstr(&ooid, o->base_commit) == 0 &&
	    release_trees(repo, &ooid, o->subdir, &otop, &otree, &oe) == E_OK &&
	    (basefd = openat(releases_fd, o->base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) >= 0) {
		w->base_ns = o->base_written_ns;
		w->base_mf = o->base_manifest;
	} else if (o->base != NULL)
		log_info("release %s cannot be reused from; writing every file", o->base);
	w->fill = fill_start(cache_dir, w->record);
	rc = release_write_tree(w, tree, fd, basefd >= 0 ? otree : NULL, basefd);
	rc = fill_finish(w->fill, w, rc);
	if (rc == E_OK && o->progress != NULL)
		o->progress(o->progress_arg, w->nfiles, w->nfiles > w->total ? w->nfiles :
		    w->total);
	submodule_free(w->mods, w->nmods);
	stats->nfiles = w->nfiles;
	stats->written = w->nwritten;
	stats->reused = w->nreused;
	stats->by_manifest = w->base_mf != NULL;
	stats->folders_by_manifest = w->nsubtrees;
out:
	if (basefd >= 0)
		close(basefd);
	if (fd >= 0)
		close(fd);
	git_tree_free(otree);
	git_tree_free(otop);
	git_tree_free(tree);
	git_tree_free(top);
	git_odb_free(w->odb);
	git_repository_free(repo);
	free(w);
	return rc;
}

/*
 * Before the rename that stamps a release: wait for the coarse clock that file times come from
 * to tick past every file written (a few ms at most), and stat the directory so that a kernel
 * with fine-grained timestamps gives the rename a fine one. Every file of the release is then
 * strictly older than the stamp, and whatever changes later is not, even in the same tick.
 */
void
release_settle(int releases_fd, const char *tmpname)
{
	struct timespec c0, now, ms = { 0, 1000000 };
	struct stat sb;
	int i;

	clock_gettime(CLOCK_REALTIME_COARSE, &c0);
	for (i = 0; i < 100; i++) {
		nanosleep(&ms, NULL);
		clock_gettime(CLOCK_REALTIME_COARSE, &now);
		if (now.tv_sec != c0.tv_sec || now.tv_nsec != c0.tv_nsec)
			break;
	}
	fstatat(releases_fd, tmpname, &sb, AT_SYMLINK_NOFOLLOW);
}

/*
 * When a release got its name: the ctime of its directory, which the rename set after every
 * file was written. Later changes to its files carry later times. 0 if it cannot be read.
 */
int64_t
release_stamp(int releases_fd, const char *name)
{
	struct stat sb;

	if (fstatat(releases_fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	return (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
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

