/* upkeep.c: a site's repository cache kept small: count its packs and loose objects, and (in the fetch helper) repack what is reachable and drop the rest. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <git2/sys/odb_backend.h>

#include "deploy/deploy.h"

/* Thresholds and grace; DEPLOYD_UPKEEP_* in the environment override them (tests, tuning). */
#define UPKEEP_PACKS_MAX	8	/* more packs than this: repack */
#define UPKEEP_LOOSE_MAX	256	/* more loose objects than this: repack */
#define UPKEEP_GRACE_S		3600	/* unreachable objects younger than this stay */
#define UPKEEP_FULL_AGE_S	86400	/* a base pack older than this is rewritten whole */
#define UPKEEP_FULL_SHARE	10	/* rewrite it whole once the rest reach 1/10 of it */
#define UPKEEP_BASE_FILE	"deployd-upkeep-base"

static int64_t
upkeep_knob(const char *name, int64_t def)
{
	const char *v = getenv(name);
	uint64_t n;

	if (v == NULL || util_parse_uint(v, INT64_MAX, &n) != E_OK)
		return def;
	return (int64_t)n;
}

int64_t
upkeep_grace_s(void)
{
	return upkeep_knob("DEPLOYD_UPKEEP_GRACE", UPKEEP_GRACE_S);
}

static int
upkeep_is_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr("0123456789abcdef", s[i]) == NULL)
			return 0;
	return s[n] == '\0';
}

static int
upkeep_has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Packs, loose objects and bytes under CACHE/objects; what an operator wants to see. */
int
upkeep_survey(const char *cache, struct upkeep_stats *st)
{
	char *dir = util_xasprintf("%s/objects", cache), sub[3];
	struct dirent *d;
	struct stat sb;
	DIR *top, *in;
	int fd;

	memset(st, 0, sizeof(*st));
	if ((top = opendir(dir)) == NULL) {
		free(dir);
		return errno == ENOENT ? E_OK : E_SYS;
	}
	while ((d = readdir(top)) != NULL) {
		int pack = strcmp(d->d_name, "pack") == 0;

		if (!pack && !upkeep_is_hex(d->d_name, 2))
			continue;
		util_strlcpy(sub, pack ? "" : d->d_name, sizeof(sub));
		if ((fd = openat(dirfd(top), d->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			continue;
		if ((in = fdopendir(fd)) == NULL) {
			close(fd);
			continue;
		}
		while ((d = readdir(in)) != NULL) {
			if (d->d_name[0] == '.' || fstatat(dirfd(in), d->d_name, &sb,
			    AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
				continue;
			st->bytes += sb.st_size;
			if (pack && strncmp(d->d_name, "pack-", 5) == 0 &&
			    upkeep_has_suffix(d->d_name, ".pack"))
				st->packs++;
			else if (!pack && upkeep_is_hex(d->d_name, 38))
				st->loose++;
		}
		closedir(in);
	}
	closedir(top);
	free(dir);
	return E_OK;
}

int
upkeep_needed(const struct upkeep_stats *st)
{
	return st->packs > upkeep_knob("DEPLOYD_UPKEEP_PACKS", UPKEEP_PACKS_MAX) ||
	    st->loose > upkeep_knob("DEPLOYD_UPKEEP_LOOSE", UPKEEP_LOOSE_MAX);
}

/* ---- the fetch helper's side: repack, then remove ---- */

static int
upkeep_git_fail(const char *what)
{
	const git_error *ge = git_error_last();

	remote_fail("cache upkeep: %s: %s", what, ge != NULL && ge->message != NULL ?
	    ge->message : "unknown error");
	return -1;
}

/* The commits the walk starts from: a full repack records them as its base's roots. */
struct upkeep_roots {
	git_oid	*v;
	size_t	 n;
	size_t	 cap;
};

static int
upkeep_push(git_revwalk *walk, struct upkeep_roots *r, const git_oid *id)
{
	if (git_revwalk_push(walk, id) != 0)
		return -1;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = util_xrealloc(r->v, r->cap, sizeof(*r->v));
	}
	git_oid_cpy(&r->v[r->n++], id);
	return 0;
}

/*
 * What a ref names goes into the pack: a commit through the walk; an annotated tag as
 * itself (each tag of a chain) with its commit through the walk, so that an incremental
 * pack does not take the commit's whole tree again; any other target whole.
 */
static int
upkeep_add_ref(git_repository *repo, git_packbuilder *pb, git_revwalk *walk,
    struct upkeep_roots *roots, const char *name)
{
	git_object *obj = NULL, *next;
	git_oid id;
	int rc = 0;

	if (git_reference_name_to_id(&id, repo, name) != 0)
		return 0;	/* a dangling symbolic ref names nothing */
	if (git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY) != 0)
		return upkeep_git_fail(name);
	while (rc == 0 && git_object_type(obj) == GIT_OBJECT_TAG) {
		rc = git_packbuilder_insert(pb, git_object_id(obj), NULL);
		if (rc == 0 && (rc = git_tag_target(&next, (git_tag *)obj)) == 0) {
			git_object_free(obj);
			obj = next;
		}
	}
	if (rc == 0 && git_object_type(obj) == GIT_OBJECT_COMMIT)
		rc = upkeep_push(walk, roots, git_object_id(obj));
	else if (rc == 0)
		rc = git_packbuilder_insert_recur(pb, git_object_id(obj), NULL);
	git_object_free(obj);
	return rc != 0 ? upkeep_git_fail(name) : 0;
}

/* The commits of releases still on disk, which a force-push may have left unreachable. */
static int
upkeep_add_keep(git_repository *repo, git_revwalk *walk, struct upkeep_roots *roots,
    const char *csv)
{
	char *list = util_xstrdup(csv), *save = NULL, *hex;
	git_object *obj;
	git_oid id;
	int rc = 0;

	for (hex = strtok_r(list, ",", &save); hex != NULL && rc == 0;
	    hex = strtok_r(NULL, ",", &save)) {
		if (strlen(hex) < 4 || strlen(hex) > 40 || git_oid_fromstrn(&id, hex,
		    strlen(hex)) != 0) {
			remote_fail("cache upkeep: --keep: '%s' is not a commit id", hex);
			rc = -1;
			break;
		}
		/* A commit the cache never had (a release from an older cache) keeps nothing. */
		if (git_object_lookup_prefix(&obj, repo, &id, strlen(hex),
		    GIT_OBJECT_COMMIT) != 0)
			continue;
		if (upkeep_push(walk, roots, git_object_id(obj)) != 0)
			rc = upkeep_git_fail(hex);
		git_object_free(obj);
	}
	free(list);
	return rc;
}

static void
upkeep_fsync(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Adds the pack of index idx to odb; 0 or -1. */
static int
upkeep_odb_add(git_odb *odb, const char *idx, int priority)
{
	git_odb_backend *be = NULL;

	if (git_odb_backend_one_pack(&be, idx) != 0 || git_odb_add_backend(odb, be,
	    priority) != 0) {
		if (be != NULL)
			be->free(be);
		return -1;
	}
	return 0;
}

/* An odb of one pack, to ask what it holds. */
static git_odb *
upkeep_one_pack(const char *idx)
{
	git_odb *odb = NULL;

	if (git_odb_new(&odb) != 0)
		return NULL;
	if (upkeep_odb_add(odb, idx, 1) != 0) {
		git_odb_free(odb);
		return NULL;
	}
	return odb;
}

struct upkeep_cover {
	git_odb	*fresh;
	int	 missing;
};

static int
upkeep_cover_cb(const git_oid *id, void *arg)
{
	struct upkeep_cover *c = arg;

	if (!git_odb_exists(c->fresh, id)) {
		c->missing = 1;
		return 1;	/* stop: one is enough */
	}
	return 0;
}

/* Does the new pack hold every object of the old one? */
static int
upkeep_covered(git_odb *fresh, const char *idx)
{
	struct upkeep_cover c = { fresh, 0 };
	git_odb *old = upkeep_one_pack(idx);

	if (old == NULL)
		return 0;
	git_odb_foreach(old, upkeep_cover_cb, &c);
	git_odb_free(old);
	return !c.missing;
}

/*
 * Old packs: the index goes first, so a crash leaves a pack nobody reads rather than an
 * index without its pack. A pack whose objects are not all in the new one holds
 * something unreachable: it goes once it is older than the grace period.
 */
static void
upkeep_drop_packs(const char *packdir, const char *const *stay, git_odb *fresh, time_t cutoff,
    struct upkeep_stats *gone)
{
	static const char *const ext[] = { ".idx", ".pack", ".rev", ".bitmap", ".promisor",
	    ".mtimes" };
	struct dirent *d;
	struct stat sb;
	size_t i, n;
	char *base, *path, *idx;
	int kept;
	DIR *dir;

	if ((dir = opendir(packdir)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (strncmp(d->d_name, "pack-", 5) != 0 || !upkeep_has_suffix(d->d_name, ".idx"))
			continue;
		n = strlen(d->d_name) - 4;
		for (kept = 0, i = 0; stay[i] != NULL && !kept; i++)
			kept = strncmp(d->d_name, stay[i], n) == 0 && strlen(stay[i]) == n;
		base = util_xasprintf("%s/%.*s", packdir, (int)n, d->d_name);
		path = util_xasprintf("%s.keep", base);
		if (kept || access(path, F_OK) == 0) {
			free(path);
			free(base);
			continue;
		}
		free(path);
		path = util_xasprintf("%s.pack", base);
		idx = util_xasprintf("%s.idx", base);
		if (stat(path, &sb) == 0 && (sb.st_mtime < cutoff || upkeep_covered(fresh, idx))) {
			for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
				char *f = util_xasprintf("%s%s", base, ext[i]);

				if (unlink(f) == 0 && i == 1)
					gone->packs++;
				free(f);
			}
		}
		free(idx);
		free(path);
		free(base);
	}
	closedir(dir);
}

/* Loose objects the new pack holds, or older than the grace period; and stale temporaries. */
static void
upkeep_drop_loose(const char *objdir, git_odb *fresh, time_t cutoff, struct upkeep_stats *gone)
{
	char hex[41], *path;
	struct dirent *d, *e;
	struct stat sb;
	DIR *top, *in;
	git_oid id;
	int fd;

	if ((top = opendir(objdir)) == NULL)
		return;
	while ((d = readdir(top)) != NULL) {
		if (!upkeep_is_hex(d->d_name, 2))
			continue;
		if ((fd = openat(dirfd(top), d->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			continue;
		if ((in = fdopendir(fd)) == NULL) {
			close(fd);
			continue;
		}
		while ((e = readdir(in)) != NULL) {
			if (fstatat(dirfd(in), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
			    !S_ISREG(sb.st_mode))
				continue;
			if (!upkeep_is_hex(e->d_name, 38)) {
				/* A temporary of a writer killed long ago. */
				if (sb.st_mtime < cutoff)
					unlinkat(dirfd(in), e->d_name, 0);
				continue;
			}
			memcpy(hex, d->d_name, 2);
			memcpy(hex + 2, e->d_name, 38);
			hex[40] = '\0';
			if (git_oid_fromstr(&id, hex) != 0)
				continue;
			if ((sb.st_mtime < cutoff || git_odb_exists(fresh, &id)) &&
			    unlinkat(dirfd(in), e->d_name, 0) == 0)
				gone->loose++;
		}
		closedir(in);
		/* An empty fan-out directory is only clutter; a non-empty one stays. */
		path = util_xasprintf("%s/%s", objdir, d->d_name);
		rmdir(path);
		free(path);
	}
	closedir(top);
}

/*
 * Temporaries of a writer that was killed (libgit2 names them tmp_* in objects/,
 * pack_git2_* in objects/pack/, and *.lock beside the file they replace), once older than the grace period: a live writer's are
 * recent.
 */
static void
upkeep_drop_temps(const char *dirpath, const char *prefix, time_t cutoff)
{
	struct dirent *d;
	struct stat sb;
	DIR *dir;

	if ((dir = opendir(dirpath)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (strncmp(d->d_name, prefix, strlen(prefix)) != 0 &&
		    !upkeep_has_suffix(d->d_name, ".lock"))
			continue;
		if (fstatat(dirfd(dir), d->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(sb.st_mode) && sb.st_mtime < cutoff)
			unlinkat(dirfd(dir), d->d_name, 0);
	}
	closedir(dir);
}

/*
 * The base: the pack of the last full repack, and the commits it was made from, in
 * CACHE/deployd-upkeep-base ("pack HEX", then one commit id a line). Everything those
 * commits reach is in that pack, so an upkeep may pack only what is newer, with the walk
 * hiding them, and leave the base alone. A marker that does not hold (a pack gone, a
 * commit it does not have, a malformed line) only means a full repack.
 */
struct upkeep_base {
	char		 name[64];	/* pack-HEX */
	git_odb		*odb;		/* that pack alone */
	struct upkeep_roots roots;
	int64_t		 bytes;		/* its .pack */
	time_t		 made;		/* the marker's mtime */
};

static void
upkeep_base_free(struct upkeep_base *b)
{
	git_odb_free(b->odb);
	free(b->roots.v);
	memset(b, 0, sizeof(*b));
}

static int
upkeep_base_read(const char *cache, const char *packdir, struct upkeep_base *b)
{
	char *path = util_xasprintf("%s/%s", cache, UPKEEP_BASE_FILE), line[128], *p;
	struct stat sb;
	git_oid id;
	size_t i;
	FILE *f;
	int ok = 0;

	memset(b, 0, sizeof(*b));
	if ((f = fopen(path, "re")) == NULL || fstat(fileno(f), &sb) != 0)
		goto out;
	b->made = sb.st_mtime;
	while (fgets(line, sizeof(line), f) != NULL) {
		if ((p = strchr(line, '\n')) != NULL)
			*p = '\0';
		if (b->name[0] == '\0') {
			if (strncmp(line, "pack ", 5) != 0 || !upkeep_is_hex(line + 5, 40))
				goto out;
			snprintf(b->name, sizeof(b->name), "pack-%.40s", line + 5);
			continue;
		}
		if (!upkeep_is_hex(line, 40) || git_oid_fromstr(&id, line) != 0)
			goto out;
		if (b->roots.n == b->roots.cap) {
			b->roots.cap = b->roots.cap ? b->roots.cap * 2 : 16;
			b->roots.v = util_xrealloc(b->roots.v, b->roots.cap, sizeof(id));
		}
		git_oid_cpy(&b->roots.v[b->roots.n++], &id);
	}
	free(path);
	path = util_xasprintf("%s/%s.pack", packdir, b->name);
	if (stat(path, &sb) != 0)
		goto out;
	b->bytes = sb.st_size;
	free(path);
	path = util_xasprintf("%s/%s.idx", packdir, b->name);
	if ((b->odb = upkeep_one_pack(path)) == NULL)
		goto out;
	for (i = 0; i < b->roots.n; i++)
		if (!git_odb_exists(b->odb, &b->roots.v[i]))
			goto out;
	ok = b->roots.n > 0;
out:
	if (f != NULL)
		fclose(f);
	free(path);
	if (!ok)
		upkeep_base_free(b);
	return ok ? 0 : -1;
}

/* After a full repack, before anything is removed: the new pack is the base. */
static void
upkeep_base_write(const char *cache, const git_oid *pack, const struct upkeep_roots *r)
{
	char *path = util_xasprintf("%s/%s", cache, UPKEEP_BASE_FILE);
	size_t i, len = 46 + r->n * 41;
	char *buf = util_xcalloc(1, len + 1);
	size_t off = (size_t)snprintf(buf, len + 1, "pack %s\n", git_oid_tostr_s(pack));
	struct error e;

	for (i = 0; i < r->n; i++)
		off += (size_t)snprintf(buf + off, len + 1 - off, "%s\n",
		    git_oid_tostr_s(&r->v[i]));
	/* A marker that cannot be written is removed: no marker means a full repack. */
	if (util_write_file_atomic(path, buf, off, 0644, &e) != E_OK)
		unlink(path);
	free(buf);
	free(path);
}

/* Is an incremental upkeep sound and worth it, or is it time to rewrite the base? */
static int
upkeep_incremental(const struct upkeep_base *b, const char *cache)
{
	struct upkeep_stats st;

	if (b->odb == NULL)
		return 0;
	if (time(NULL) - b->made > (time_t)upkeep_knob("DEPLOYD_UPKEEP_FULL_AGE",
	    UPKEEP_FULL_AGE_S))
		return 0;	/* unreachable objects in the base go only with a full one */
	if (upkeep_survey(cache, &st) != E_OK)
		return 0;
	return (st.bytes - b->bytes) * UPKEEP_FULL_SHARE < b->bytes;
}

/*
 * `__fetch --upkeep`: one new pack of everything reachable from the cache's refs and from
 * the commits in keep (comma-separated ids), written, synced and named before anything is
 * removed; then old packs and loose objects that it holds go, and what it does not hold
 * (unreachable) goes once older than grace_s. While the packs beside the base stay small
 * against it, the new pack holds only what the base does not (the walk hides the base's
 * commits) and the base stays; otherwise the new pack holds everything and becomes the
 * base. A kill at any instant leaves every reachable object in a complete pack or where
 * it was. Prints "upkeep PACKS LOOSE BYTES PACKS_GONE LOOSE_GONE OBJECTS FULL"; 0, or -1
 * with remote_fail's line.
 */
int
upkeep_repack(const char *cache, const char *keep, int64_t grace_s, git_oid *packid)
{
	git_repository *repo = NULL;
	git_packbuilder *pb = NULL;
	git_revwalk *walk = NULL;
	git_reference_iterator *it = NULL;
	git_reference *ref;
	git_odb *fresh = NULL;
	struct upkeep_stats after, gone = { 0 };
	struct upkeep_roots roots = { 0 };
	struct upkeep_base base;
	char *packdir = NULL, *objdir = NULL, *idx = NULL, *pack = NULL, newname[64];
	const char *stay[3] = { newname, NULL, NULL };
	time_t cutoff = time(NULL) - (time_t)grace_s;
	size_t i, nobj = 0;
	int rc = -1, full;

	memset(packid, 0, sizeof(*packid));
	newname[0] = '\0';
	objdir = util_xasprintf("%s/objects", cache);
	packdir = util_xasprintf("%s/objects/pack", cache);
	upkeep_base_read(cache, packdir, &base);
	full = !upkeep_incremental(&base, cache);
	if (git_repository_open_bare(&repo, cache) != 0) {
		upkeep_git_fail(cache);
		goto out;
	}
	if (git_packbuilder_new(&pb, repo) != 0 || git_revwalk_new(&walk, repo) != 0 ||
	    git_reference_iterator_new(&it, repo) != 0 || git_odb_new(&fresh) != 0) {
		upkeep_git_fail("starting");
		goto out;
	}
	while (git_reference_next(&ref, it) == 0) {
		int r = upkeep_add_ref(repo, pb, walk, &roots, git_reference_name(ref));

		git_reference_free(ref);
		if (r != 0)
			goto out;
	}
	if (keep != NULL && keep[0] != '\0' && upkeep_add_keep(repo, walk, &roots, keep) != 0)
		goto out;
	for (i = 0; !full && i < base.roots.n; i++)
		if (git_revwalk_hide(walk, &base.roots.v[i]) != 0) {
			upkeep_git_fail("hiding the base");
			goto out;
		}
	if (git_packbuilder_insert_walk(pb, walk) != 0) {
		upkeep_git_fail("walking the history");
		goto out;
	}
	if ((nobj = git_packbuilder_object_count(pb)) > 0) {
		if (git_packbuilder_write(pb, packdir, 0, NULL, NULL) != 0) {
			upkeep_git_fail("writing the pack");
			goto out;
		}
		git_oid_cpy(packid, git_packbuilder_hash(pb));
		snprintf(newname, sizeof(newname), "pack-%s", git_oid_tostr_s(packid));
		idx = util_xasprintf("%s/%s.idx", packdir, newname);
		pack = util_xasprintf("%s/%s.pack", packdir, newname);
		/* Durable before anything it replaces is removed. */
		upkeep_fsync(pack);
		upkeep_fsync(idx);
		upkeep_fsync(packdir);
		if (upkeep_odb_add(fresh, idx, 1) != 0) {
			upkeep_git_fail("reading the new pack");
			goto out;
		}
		if (full)
			upkeep_base_write(cache, packid, &roots);
	}
	if (!full) {
		/* What the base holds is as good as packed: the base stays, its objects go. */
		char *bidx = util_xasprintf("%s/%s.idx", packdir, base.name);

		stay[1] = base.name;
		i = upkeep_odb_add(fresh, bidx, 2) != 0;
		free(bidx);
		if (i) {
			upkeep_git_fail("reading the base pack");
			goto out;
		}
	}
	if (nobj > 0 || !full) {
		upkeep_drop_packs(packdir, stay, fresh, cutoff, &gone);
		upkeep_drop_loose(objdir, fresh, cutoff, &gone);
	}
	upkeep_drop_temps(packdir, "pack_git2_", cutoff);
	upkeep_drop_temps(objdir, "tmp_", cutoff);
	upkeep_fsync(packdir);
	upkeep_survey(cache, &after);
	printf("upkeep %lld %lld %lld %lld %lld %zu %d\n", (long long)after.packs,
	    (long long)after.loose, (long long)after.bytes, (long long)gone.packs,
	    (long long)gone.loose, nobj, full);
	rc = 0;
out:
	git_odb_free(fresh);
	upkeep_base_free(&base);
	free(roots.v);
	git_reference_iterator_free(it);
	git_revwalk_free(walk);
	git_packbuilder_free(pb);
	git_repository_free(repo);
	free(pack);
	free(idx);
	free(packdir);
	free(objdir);
	return rc;
}

/* ---- the engine's side: when, under which lock, keeping what ---- */

/* The commits the cache must keep beyond its refs: every release on disk, and what is live. */
static char *
upkeep_keep_list(const struct site_state *st)
{
	const char *extra[] = { st->applied, st->desired, st->prepared.commit };
	size_t i, n = st->nreleases + sizeof(extra) / sizeof(extra[0]), cap = n * SHA_HEX + 1;
	size_t off = 0;
	char *csv = util_xcalloc(1, cap);

	for (i = 0; i < n; i++) {
		const char *id = i < st->nreleases ? st->releases[i].commit :
		    extra[i - st->nreleases];
		int w;

		if (id[0] == '\0')
			continue;
		/* Each id is shorter than SHA_HEX, so with its comma it always fits. */
		w = snprintf(csv + off, cap - off, "%s%s", off > 0 ? "," : "", id);
		if (w < 0 || (size_t)w >= cap - off)
			break;
		off += (size_t)w;
	}
	return csv;
}

/*
 * Between deploys: survey the cache, and when it has too many packs or loose objects,
 * repack it in a helper under the site's deploy lock (a deploy that holds it wins; the
 * next deploy tries again). Returns 1 if it repacked, 0 if not needed or not now, -1 on
 * failure (e says why; the cache is as sound as before).
 */
int
upkeep_site(const struct site *site, struct upkeep_stats *before, struct upkeep_stats *after,
    struct error *e)
{
	struct site_state st;
	struct fetch_result fr;
	char *cache = fetch_cache_path(site), *keep = NULL;
	int fd = -1, rc = -1;

	memset(&st, 0, sizeof(st));
	memset(after, 0, sizeof(*after));
	if (upkeep_survey(cache, before) != E_OK || !upkeep_needed(before)) {
		*after = *before;
		free(cache);
		return 0;
	}
	if (run_lock(site, &fd, e) != E_OK) {
		*after = *before;
		free(cache);
		return e->code == E_BUSY ? 0 : -1;
	}
	if (state_load(site->state_dir, site->name, &st, e) != E_OK)
		goto out;
	keep = upkeep_keep_list(&st);
	if (fetch_upkeep(site, keep, upkeep_grace_s(), &fr, e) != E_OK)
		goto out;
	*after = fr.up;
	st.upkeep_at = util_now_ms() / 1000;
	if (state_save(site->state_dir, site->name, &st, e) != E_OK)
		goto out;
	rc = 1;
out:
	lock_release(fd);
	state_free(&st);
	free(keep);
	free(cache);
	return rc;
}
