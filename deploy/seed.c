/* seed.c: a new cache of a repository on this machine starts from a copy of its object files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

#define SEED_REFS	"refs/deployd-seed/"

/*
 * Copy one file in the kernel (copy_file_range: no trip through user space, and a reflink
 * where the filesystem can). A copy, not a hard link: whatever happens to the cache's files
 * (a damaged disk, a cleanup by hand) must not reach the source repository, nor the other way.
 */
static int
seed_copy(const char *src, const char *dst, off_t size)
{
	ssize_t n;
	off_t left = size;
	int in, out, rc = -1;

	if ((in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444)) < 0) {
		close(in);
		return errno == EEXIST ? 0 : -1;
	}
	while (left > 0 && (n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0)) > 0)
		left -= n;
	if (left == 0)
		rc = 0;
	close(in);
	if (close(out) != 0 || rc != 0) {
		unlink(dst);
		return -1;
	}
	return 0;
}

/*
 * Copy one directory's regular files (objects/XX or objects/pack) to the same place in the
 * cache. Only names git writes are taken: loose objects and finished packs with their index.
 * -1 on any failure: the caller then fetches as usual.
 */
static int
seed_copy_dir(const char *from, const char *to, int packs)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	char *src, *dst;
	size_t len;
	int rc = 0;

	if ((d = opendir(from)) == NULL)
		return -1;
	if (mkdir(to, 0755) != 0 && errno != EEXIST) {
		closedir(d);
		return -1;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		/* A pack without its index is being written: leave it to the fetch. */
		if (packs && !(len > 5 && strcmp(de->d_name + len - 4, ".idx") == 0) &&
		    !(len > 6 && strcmp(de->d_name + len - 5, ".pack") == 0))
			continue;
		src = util_xasprintf("%s/%s", from, de->d_name);
		dst = util_xasprintf("%s/%s", to, de->d_name);
		if (lstat(src, &st) == 0 && S_ISREG(st.st_mode))
			rc = seed_copy(src, dst, st.st_size);
		free(src);
		free(dst);
	}
	closedir(d);
	return rc;
}

static int
seed_is_fanout(const char *name)
{
	return strlen(name) == 2 && strchr("0123456789abcdef", name[0]) != NULL &&
	    strchr("0123456789abcdef", name[1]) != NULL;
}

struct seed_refs {
	git_repository	*cache;
	git_odb		*odb;
	int		 n;
};

/* Each of the source's branch and tag tips that the cache now has becomes a ref of ours. */
static int
seed_ref_cb(git_reference *ref, void *payload)
{
	struct seed_refs *sr = payload;
	const char *name = git_reference_name(ref);
	git_reference *made = NULL;
	char refname[64];

	if (git_reference_type(ref) == GIT_REFERENCE_DIRECT &&
	    (strncmp(name, "refs/heads/", 11) == 0 || strncmp(name, "refs/tags/", 10) == 0) &&
	    git_odb_exists(sr->odb, git_reference_target(ref))) {
		snprintf(refname, sizeof(refname), SEED_REFS "%d", sr->n);
		if (git_reference_create(&made, sr->cache, refname, git_reference_target(ref), 1,
		    "deployd seed") == 0)
			sr->n++;
		git_reference_free(made);
	}
	git_reference_free(ref);
	return 0;
}

/*
 * libgit2's local transport builds a pack of everything in one thread, which took seconds
 * for a large site. For a repository on this machine git copies the object files instead
 * (clone --local); so does this, and it marks the source's tips as the cache's own, so that
 * the fetch after it finds nothing to send. A source with alternates is left to the fetch.
 * Returns the number of tips seeded, 0 if none.
 */
int
seed_local(struct git_repository *cache, const char *url)
{
	struct seed_refs sr = { cache, NULL, 0 };
	git_repository *src = NULL;
	struct dirent *de;
	struct stat st;
	const char *path = url;
	char *from = NULL, *to = NULL, *alt = NULL, *a, *b;
	DIR *d = NULL;
	int rc = -1;

	if (strncmp(path, "file://", 7) == 0)
		path += 7;
	if (path[0] != '/' || git_repository_open_ext(&src, path,
	    GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) != 0)
		goto out;
	from = util_xasprintf("%sobjects", git_repository_commondir(src));
	to = util_xasprintf("%sobjects", git_repository_commondir(cache));
	alt = util_xasprintf("%s/info/alternates", from);
	if (stat(alt, &st) == 0 || (d = opendir(from)) == NULL)
		goto out;
	rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (!seed_is_fanout(de->d_name) && strcmp(de->d_name, "pack") != 0)
			continue;
		a = util_xasprintf("%s/%s", from, de->d_name);
		b = util_xasprintf("%s/%s", to, de->d_name);
		rc = seed_copy_dir(a, b, strcmp(de->d_name, "pack") == 0);
		free(a);
		free(b);
	}
	if (rc == 0 && git_repository_odb(&sr.odb, cache) == 0) {
		/* The cache's view of its object directory predates the links. */
		git_odb_refresh(sr.odb);
		git_reference_foreach(src, seed_ref_cb, &sr);
		rc = sr.n;
	}
out:
	if (d != NULL)
		closedir(d);
	git_odb_free(sr.odb);
	git_repository_free(src);
	free(from);
	free(to);
	free(alt);
	return rc < 0 ? 0 : rc;
}

/* The seed refs have done their job once a fetch has run: drop them. */
void
seed_drop(struct git_repository *cache)
{
	git_reference_iterator *it = NULL;
	git_reference *ref;

	if (git_reference_iterator_glob_new(&it, cache, SEED_REFS "*") != 0)
		return;
	while (git_reference_next(&ref, it) == 0) {
		git_reference_delete(ref);
		git_reference_free(ref);
	}
	git_reference_iterator_free(it);
}
