/* manifest.c: what each file of a release was when deployd wrote it, so the next one can trust one stat. */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "deploy/deploy.h"

/*
 * The file: MANIFEST_MAGIC, then varints: version, count, written_ns; the commit (40 bytes);
 * the release's name (a varint length, then the bytes); then each entry in path order: the
 * length it shares with the previous path, the rest (length, bytes), the blob id (20 bytes),
 * the git mode, st_mode, size, inode, mtime and ctime in ns. A SHA-256 of all that ends it.
 * Shared prefixes keep 20,000 entries near a megabyte; the hash turns a torn or edited file
 * into "no manifest", never into a wrong reuse.
 *
 * "Path order" sorts '/' before every other byte: a folder's entries then follow it directly,
 * its subfolders' inside them, as a walk of the tree meets them. A folder has an entry of its
 * own (git mode 040000, the tree's id, size = the files under it) when everything under it was
 * recorded: the next release links such a folder, unchanged, without reading git.
 * Version 1 sorted by strcmp and had no folders; it is read as stale.
 */
#define MANIFEST_MAGIC		"deployd-manifest\n"
#define MANIFEST_MAGIC_LEN	(sizeof(MANIFEST_MAGIC) - 1)
#define MANIFEST_DIR		"manifests"
#define MANIFEST_MAX_BYTES	((size_t)1 << 30)

void
manifest_add(struct manifest *m, const char *path, const unsigned char oid[MANIFEST_OID],
    unsigned gitmode, const struct stat *sb)
{
	struct manifest_entry *me;

	if (m->n == m->cap) {
		m->cap = m->cap == 0 ? 1024 : m->cap * 2;
		m->v = util_xrealloc(m->v, m->cap, sizeof(*m->v));
	}
	me = &m->v[m->n++];
	me->path = util_xstrdup(path);
	memcpy(me->oid, oid, MANIFEST_OID);
	me->gitmode = gitmode;
	me->mode = (uint32_t)sb->st_mode;
	me->size = (int64_t)sb->st_size;
	me->ino = (uint64_t)sb->st_ino;
	me->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
	me->ctime_ns = (int64_t)sb->st_ctim.tv_sec * 1000000000 + sb->st_ctim.tv_nsec;
}

/* A folder whose every file is in m: tree is its id, nfiles the files under it. */
void
manifest_add_dir(struct manifest *m, const char *path, const unsigned char tree[MANIFEST_OID],
    size_t nfiles)
{
	struct stat sb;

	memset(&sb, 0, sizeof(sb));
	sb.st_mode = S_IFDIR | 0755;
	sb.st_size = (off_t)nfiles;
	manifest_add(m, path, tree, MANIFEST_GITMODE_TREE, &sb);
}

void
manifest_free(struct manifest *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* Path order: byte order, but '/' comes before every other byte (and after the end). */
int
manifest_pathcmp(const char *a, const char *b)
{
	unsigned ca, cb;

	for (;; a++, b++) {
		ca = *a == '/' ? 1 : *a == '\0' ? 0 : (unsigned)(unsigned char)*a + 1;
		cb = *b == '/' ? 1 : *b == '\0' ? 0 : (unsigned)(unsigned char)*b + 1;
		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (ca == 0)
			return 0;
	}
}

static int
manifest_cmp(const void *a, const void *b)
{
	return manifest_pathcmp(((const struct manifest_entry *)a)->path,
	    ((const struct manifest_entry *)b)->path);
}

const struct manifest_entry *
manifest_find(const struct manifest *m, const char *path)
{
	struct manifest_entry key;

	if (m == NULL || m->n == 0)
		return NULL;
	key.path = (char *)(uintptr_t)path;
	return bsearch(&key, m->v, m->n, sizeof(*m->v), manifest_cmp);
}

/* A growing output buffer. */
struct manifest_buf {
	unsigned char	*p;
	size_t		 len, cap;
};

static void
manifest_put(struct manifest_buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		while (b->len + len > b->cap)
			b->cap = b->cap == 0 ? 65536 : b->cap * 2;
		b->p = util_xrealloc(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void
manifest_put_varint(struct manifest_buf *b, uint64_t v)
{
	unsigned char c[10];
	size_t n = 0;

	do {
		c[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			c[n] |= 0x80;
		n++;
	} while (v != 0);
	manifest_put(b, c, n);
}

/* Sorts m by path. *buf is malloc'd. E_INVAL: two entries for one path. */
int
manifest_encode(struct manifest *m, const char *name, const char *commit, int64_t written_ns,
    unsigned char **buf, size_t *len)
{
	struct manifest_buf b = { 0 };
	unsigned char md[SHA256_DIGEST_LENGTH];
	const char *prev = "";
	size_t i, shared, plen;

	if (strlen(commit) != SHA_HEX - 1 || strlen(name) >= RELEASE_NAME_MAX)
		return E_INVAL;
	if (m->n > 1)
		qsort(m->v, m->n, sizeof(*m->v), manifest_cmp);
	for (i = 1; i < m->n; i++)
		if (manifest_pathcmp(m->v[i - 1].path, m->v[i].path) == 0)
			return E_INVAL;
	manifest_put(&b, MANIFEST_MAGIC, MANIFEST_MAGIC_LEN);
	manifest_put_varint(&b, MANIFEST_VERSION);
	manifest_put_varint(&b, m->n);
	manifest_put_varint(&b, (uint64_t)written_ns);
	manifest_put(&b, commit, SHA_HEX - 1);
	manifest_put_varint(&b, strlen(name));
	manifest_put(&b, name, strlen(name));
	for (i = 0; i < m->n; i++) {
		const struct manifest_entry *me = &m->v[i];

		for (shared = 0; prev[shared] != '\0' && prev[shared] == me->path[shared];
		    shared++)
			;
		plen = strlen(me->path);
		manifest_put_varint(&b, shared);
		manifest_put_varint(&b, plen - shared);
		manifest_put(&b, me->path + shared, plen - shared);
		manifest_put(&b, me->oid, MANIFEST_OID);
		manifest_put_varint(&b, me->gitmode);
		manifest_put_varint(&b, me->mode);
		manifest_put_varint(&b, (uint64_t)me->size);
		manifest_put_varint(&b, me->ino);
		manifest_put_varint(&b, (uint64_t)me->mtime_ns);
		manifest_put_varint(&b, (uint64_t)me->ctime_ns);
		prev = me->path;
	}
	SHA256(b.p, b.len, md);
	manifest_put(&b, md, sizeof(md));
	*buf = b.p;
	*len = b.len;
	return E_OK;
}

/* A reader over the decoded bytes: any read past the end sets bad, and reads give 0. */
struct manifest_in {
	const unsigned char	*p, *end;
	int			 bad;
};

static uint64_t
manifest_get_varint(struct manifest_in *in)
{
	uint64_t v = 0;
	unsigned shift;

	for (shift = 0; shift < 64; shift += 7) {
		if (in->p >= in->end) {
			in->bad = 1;
			return 0;
		}
		v |= (uint64_t)(*in->p & 0x7f) << shift;
		if ((*in->p++ & 0x80) == 0)
			return v;
	}
	in->bad = 1;
	return 0;
}

static const unsigned char *
manifest_get(struct manifest_in *in, size_t len)
{
	const unsigned char *p = in->p;

	if ((size_t)(in->end - in->p) < len) {
		in->bad = 1;
		return NULL;
	}
	in->p += len;
	return p;
}

static int
manifest_corrupt(struct error *e, const char *why)
{
	return util_error(e, E_STALE, "manifest %s", why);
}

/*
 * Decode what manifest_encode wrote for the release name of commit, stamped written_ns.
 * E_STALE, with the reason, for anything else: another release's, another version's, torn,
 * edited or out of order. m is then empty.
 */
int
manifest_decode(const unsigned char *buf, size_t len, const char *name, const char *commit,
    int64_t written_ns, struct manifest *m, struct error *e)
{
	struct manifest_in in;
	unsigned char md[SHA256_DIGEST_LENGTH];
	const unsigned char *s;
	char path[PATH_MAX];
	uint64_t n, version, shared, rest, i;
	size_t plen = 0;

	memset(m, 0, sizeof(*m));
	if (len < MANIFEST_MAGIC_LEN + sizeof(md) ||
	    memcmp(buf, MANIFEST_MAGIC, MANIFEST_MAGIC_LEN) != 0)
		return manifest_corrupt(e, "is not a deployd manifest");
	SHA256(buf, len - sizeof(md), md);
	if (memcmp(md, buf + len - sizeof(md), sizeof(md)) != 0)
		return manifest_corrupt(e, "fails its checksum (torn or edited)");
	in.p = buf + MANIFEST_MAGIC_LEN;
	in.end = buf + len - sizeof(md);
	in.bad = 0;
	if ((version = manifest_get_varint(&in)) != MANIFEST_VERSION)
		return util_error(e, E_STALE, "manifest version %llu, not %d",
		    (unsigned long long)version, MANIFEST_VERSION);
	n = manifest_get_varint(&in);
	if ((int64_t)manifest_get_varint(&in) != written_ns ||
	    (s = manifest_get(&in, SHA_HEX - 1)) == NULL || memcmp(s, commit, SHA_HEX - 1) != 0)
		return manifest_corrupt(e, "is of another release");
	rest = manifest_get_varint(&in);
	if (in.bad || rest != strlen(name) || (s = manifest_get(&in, rest)) == NULL ||
	    memcmp(s, name, rest) != 0)
		return manifest_corrupt(e, "is of another release");
	/* Each entry takes at least 27 bytes: a count beyond that is a lie. */
	if (n > (uint64_t)(in.end - in.p) / 27)
		return manifest_corrupt(e, "is truncated");
	m->cap = n > 0 ? n : 1;
	m->v = util_xcalloc(m->cap, sizeof(*m->v));
	for (i = 0; i < n && !in.bad; i++) {
		struct manifest_entry *me = &m->v[i];

		shared = manifest_get_varint(&in);
		rest = manifest_get_varint(&in);
		if (in.bad || shared > plen || rest == 0 || rest >= sizeof(path) - shared ||
		    (s = manifest_get(&in, rest)) == NULL || memchr(s, '\0', rest) != NULL)
			break;
		memcpy(path + shared, s, rest);
		plen = shared + rest;
		path[plen] = '\0';
		if (i > 0 && manifest_pathcmp(m->v[i - 1].path, path) >= 0)
			break;
		if ((s = manifest_get(&in, MANIFEST_OID)) == NULL)
			break;
		memcpy(me->oid, s, MANIFEST_OID);
		me->gitmode = (uint32_t)manifest_get_varint(&in);
		me->mode = (uint32_t)manifest_get_varint(&in);
		me->size = (int64_t)manifest_get_varint(&in);
		me->ino = manifest_get_varint(&in);
		me->mtime_ns = (int64_t)manifest_get_varint(&in);
		me->ctime_ns = (int64_t)manifest_get_varint(&in);
		if (in.bad)
			break;
		me->path = util_xstrdup(path);
		m->n++;
	}
	if (m->n != n || in.p != in.end) {
		manifest_free(m);
		return manifest_corrupt(e, "is malformed");
	}
	return E_OK;
}

static char *
manifest_path(const char *state_dir, const char *site, const char *name)
{
	return util_xasprintf("%s/%s/" MANIFEST_DIR "/%s", state_dir, site, name);
}

/* Record release name's manifest in state_dir/<site>/manifests/<name>, atomically. */
int
manifest_save(const char *state_dir, const char *site, const char *name, const char *commit,
    int64_t written_ns, struct manifest *m, struct error *e)
{
	unsigned char *buf = NULL;
	char *dir, *path;
	size_t len;
	int rc;

	if (manifest_encode(m, name, commit, written_ns, &buf, &len) != E_OK)
		return util_error(e, E_INVAL, "manifest of %s: bad entries", name);
	dir = util_xasprintf("%s/%s/" MANIFEST_DIR, state_dir, site);
	path = manifest_path(state_dir, site, name);
	if (util_mkdir_p(dir, 0700) != E_OK)
		rc = util_error_sys(e, "creating %s", dir);
	else
		rc = util_write_file_atomic(path, buf, len, 0600, e);
	free(path);
	free(dir);
	free(buf);
	return rc;
}

/*
 * Read the manifest of release name (commit, stamped written_ns). E_NOTFOUND: there is none;
 * E_STALE: it is not that release's, or not whole. Either way m is empty and nothing is
 * trusted.
 */
int
manifest_load(const char *state_dir, const char *site, const char *name, const char *commit,
    int64_t written_ns, struct manifest *m, struct error *e)
{
	struct stat sb;
	unsigned char *buf = NULL;
	char *path = manifest_path(state_dir, site, name);
	size_t done = 0;
	ssize_t r;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		rc = errno == ENOENT ? util_error(e, E_NOTFOUND, "no manifest at %s", path) :
		    util_error_sys(e, "opening %s", path);
		free(path);
		return rc;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0 ||
	    (size_t)sb.st_size > MANIFEST_MAX_BYTES) {
		rc = util_error(e, E_STALE, "%s is not a manifest file", path);
		goto out;
	}
	buf = util_xmalloc((size_t)sb.st_size);
	while (done < (size_t)sb.st_size && (r = read(fd, buf + done,
	    (size_t)sb.st_size - done)) > 0)
		done += (size_t)r;
	if (done != (size_t)sb.st_size)
		rc = util_error_sys(e, "reading %s", path);
	else
		rc = manifest_decode(buf, done, name, commit, written_ns, m, e);
out:
	close(fd);
	free(buf);
	free(path);
	return rc;
}

/* Remove the manifests of releases no longer on disk, and any a crash left half-written. */
void
manifest_prune(const char *state_dir, const char *site, int releases_fd)
{
	struct dirent *de;
	struct stat sb;
	char *dir = util_xasprintf("%s/%s/" MANIFEST_DIR, state_dir, site);
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		free(dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		/* A torn "<name>.tmp" names no release either. */
		if (fstatat(releases_fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(sb.st_mode))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT)
			log_warn("removing %s/%s: %s", dir, de->d_name, strerror(errno));
	}
	closedir(d);
	free(dir);
}
