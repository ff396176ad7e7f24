/* subtree.c: a folder unchanged since the live release, linked from that release's manifest without reading git. */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deploy/deploy.h"

#define SUBTREE_MAX_DEPTH	64	/* deeper folders are read from git */

/*
 * Can the base manifest's entries under w->path stand for the tree of that id? Its folder
 * entry must name the same tree, every file it counted must be there, each in a folder that
 * has its own entry, and each must be one a thread links: a regular file of the site written
 * read-only, and no .gitattributes (the walk reads those). Sets [*lo, *hi), the entries
 * under the folder, in path order.
 */
static int
subtree_usable(const struct release_walk *w, const unsigned char tree[MANIFEST_OID],
    size_t *lo, size_t *hi)
{
	const struct manifest *m = w->base_mf;
	const struct manifest_entry *d = manifest_find(m, w->path), *me;
	size_t at[SUBTREE_MAX_DEPTH], len[SUBTREE_MAX_DEPTH], depth = 0, i, files = 0;
	const char *name;

	if (d == NULL || d->gitmode != MANIFEST_GITMODE_TREE || d->size < 0 ||
	    memcmp(d->oid, tree, MANIFEST_OID) != 0)
		return 0;
	/* The folders open at entry i: their entries' indexes and path lengths, innermost last. */
	at[0] = (size_t)(d - m->v);
	len[0] = strlen(d->path);
	*lo = at[0] + 1;
	for (i = *lo; i < m->n; i++) {
		me = &m->v[i];
		if (strncmp(me->path, d->path, len[0]) != 0 || me->path[len[0]] != '/')
			break;	/* past the folder: path order keeps its entries together */
		while (depth > 0 && (strncmp(me->path, m->v[at[depth]].path, len[depth]) != 0 ||
		    me->path[len[depth]] != '/'))
			depth--;
		name = me->path + len[depth] + 1;
		if (strchr(name, '/') != NULL)
			return 0;	/* in a folder that has no entry */
		if (me->gitmode == MANIFEST_GITMODE_TREE) {
			if (++depth == SUBTREE_MAX_DEPTH)
				return 0;
			at[depth] = i;
			len[depth] = strlen(me->path);
			continue;
		}
		if ((me->gitmode != 0100644 && me->gitmode != 0100755) || !S_ISREG(me->mode) ||
		    (me->mode & 0222) != 0 || me->size < 0 || strcmp(name, ".gitattributes") == 0)
			return 0;
		files++;
	}
	*hi = i;
	return files == (uint64_t)d->size;
}

/*
 * Link the entries from *i on that lie under w->path, a folder the base has as basefd and
 * the new release as dirfd: its files go to the threads as one batch, its folders are made
 * and filled the same way. Folder entries are recorded for the new release as they were.
 * A folder gone from the base (basefd -1) has its files written from their blobs.
 */
static int
subtree_fill(struct release_walk *w, size_t *i, size_t hi, int basefd, int dirfd)
{
	const struct manifest *m = w->base_mf;
	size_t base = strlen(w->path);
	struct fill_batch *batch = NULL;
	int rc = E_OK, subbase, fd;

	while (rc == E_OK && *i < hi) {
		const struct manifest_entry *me = &m->v[*i];
		const char *name = me->path + base + 1;
		mode_t want = me->gitmode == 0100755 ? 0755 : 0644;

		if (strncmp(me->path, w->path, base) != 0 || me->path[base] != '/')
			break;	/* past this folder */
		(*i)++;
		if (me->gitmode != MANIFEST_GITMODE_TREE) {
			if (batch == NULL)
				batch = util_xcalloc(1, sizeof(*batch));
			fill_add(batch, me->path, me->oid, me->gitmode, want,
			    want & ~(mode_t)0222, basefd >= 0 ? me : NULL);
			w->nfiles++;
			continue;
		}
		util_strlcpy(w->path, me->path, sizeof(w->path));
		subbase = basefd >= 0 ? openat(basefd, name, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC) : -1;
		if ((rc = fill_make_dir(w, dirfd, name, &fd)) == E_OK) {
			fill_record_dir(w->fill, w->record, w->path, me->oid, (size_t)me->size);
			rc = subtree_fill(w, i, hi, subbase, fd);
			close(fd);
		}
		if (subbase >= 0)
			close(subbase);
		w->path[base] = '\0';
	}
	return fill_flush(w->fill, batch, basefd, dirfd, rc, w->e);
}

/*
 * The folder name (w->path) of the new release is the tree of that id, which the base
 * release (basefd) has too: link it from the base's manifest. 1: it cannot be, and nothing
 * was made; the walk reads the tree from git instead. A file found changed since the base
 * recorded it is still written from its blob, by the thread that finds it.
 */
int
subtree_reuse(struct release_walk *w, const unsigned char tree[MANIFEST_OID], int basefd,
    int dirfd, const char *name)
{
	size_t lo, hi;
	int subbase, fd, rc;

	if (w->fill == NULL || w->base_mf == NULL || w->record == NULL || basefd < 0 ||
	    w->method != REUSE_HARDLINK || !w->readonly || w->key[0] != '\0' ||
	    !subtree_usable(w, tree, &lo, &hi))
		return 1;
	if ((subbase = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return 1;
	if ((rc = fill_make_dir(w, dirfd, name, &fd)) == E_OK) {
		fill_record_dir(w->fill, w->record, w->path, tree, (size_t)w->base_mf->v[lo -
		    1].size);
		rc = subtree_fill(w, &lo, hi, subbase, fd);
		close(fd);
	}
	close(subbase);
	w->nsubtrees++;
	return rc;
}
