/* submodule.c: .gitmodules, submodule caches, and fetching every submodule a commit pins. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>

#include "deploy/deploy.h"

#define SUBMODULE_DEPTH_MAX	8	/* submodules of submodules; a cycle stops here */

void
submodule_free(struct submodule *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].path);
		free(m[i].url);
	}
	free(m);
}

static char *
submodule_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	/* A value may be quoted, as git config writes names with spaces. */
	if (end - s >= 2 && *s == '"' && end[-1] == '"') {
		end[-1] = '\0';
		s++;
	}
	return s;
}

/*
 * The [submodule "NAME"] sections of a .gitmodules file with their path and url. Only what a
 * deploy needs of git's config syntax: sections, "key = value", comments (# and ;). Entries
 * without a path or a url are dropped. 0, or E_INVAL for a line that makes no sense.
 */
int
submodule_parse(const char *text, size_t len, struct submodule **out, size_t *nout)
{
	struct submodule *m = NULL, *cur = NULL;
	char *buf = util_xmalloc(len + 1), *line, *next, *eq, *key, *val, *q;
	size_t n = 0, i, j;
	int rc = E_OK;

	memcpy(buf, text, len);
	buf[len] = '\0';
	for (line = buf; line != NULL && rc == E_OK; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		line = submodule_trim(line);
		if (*line == '\0' || *line == '#' || *line == ';')
			continue;
		if (*line == '[') {
			cur = NULL;
			if (strncmp(line, "[submodule", 10) != 0)
				continue;	/* another section: not ours */
			if ((q = strchr(line, '"')) == NULL || strrchr(line, '"') == q ||
			    strrchr(line, ']') == NULL) {
				rc = E_INVAL;
				break;
			}
			*strrchr(line, '"') = '\0';
			m = util_xrealloc(m, n + 1, sizeof(*m));
			cur = &m[n++];
			memset(cur, 0, sizeof(*cur));
			cur->name = util_xstrdup(q + 1);
			continue;
		}
		if (cur == NULL)
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			continue;	/* a boolean key: nothing we use */
		*eq = '\0';
		key = submodule_trim(line);
		val = submodule_trim(eq + 1);
		for (q = key; *q != '\0'; q++)
			*q = (char)tolower((unsigned char)*q);
		if (strcmp(key, "path") == 0) {
			free(cur->path);
			cur->path = util_xstrdup(val);
		} else if (strcmp(key, "url") == 0) {
			free(cur->url);
			cur->url = util_xstrdup(val);
		}
	}
	free(buf);
	/* Keep complete entries only; a path may end in '/' in hand-written files. */
	for (i = j = 0; i < n; i++) {
		if (rc == E_OK && m[i].path != NULL && m[i].url != NULL && m[i].path[0] != '\0') {
			size_t pl = strlen(m[i].path);

			while (pl > 1 && m[i].path[pl - 1] == '/')
				m[i].path[--pl] = '\0';
			m[j++] = m[i];
		} else {
			free(m[i].name);
			free(m[i].path);
			free(m[i].url);
		}
	}
	if (rc != E_OK) {
		free(m);
		*out = NULL;
		*nout = 0;
		return rc;
	}
	*out = m;
	*nout = j;
	return E_OK;
}

const struct submodule *
submodule_find(const struct submodule *m, size_t n, const char *path)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(m[i].path, path) == 0)
			return &m[i];
	return NULL;
}

/*
 * A relative submodule URL ("./x", "../x") as git resolves it: against the superproject's URL
 * taken as a directory, each "../" dropping one path component, never the scheme and host
 * (or the "host:" of an scp-like URL). Absolute URLs come back as they are.
 */
char *
submodule_resolve_url(const char *base, const char *url)
{
	const char *rel = url, *scheme, *colon, *slash;
	size_t floor = 0, len, i;
	char *b, *res;

	if (strncmp(url, "./", 2) != 0 && strncmp(url, "../", 3) != 0)
		return util_xstrdup(url);
	b = util_xstrdup(base);
	len = strlen(b);
	while (len > 1 && b[len - 1] == '/')
		b[--len] = '\0';
	/* Where the path starts: nothing before it is ever dropped. */
	if ((scheme = strstr(b, "://")) != NULL) {
		slash = strchr(scheme + 3, '/');
		floor = slash != NULL ? (size_t)(slash - b) : len;
	} else if (b[0] != '/' && (colon = strchr(b, ':')) != NULL &&
	    ((slash = strchr(b, '/')) == NULL || slash > colon))
		floor = (size_t)(colon - b) + 1;
	for (;;) {
		if (strncmp(rel, "./", 2) == 0) {
			rel += 2;
			continue;
		}
		if (strncmp(rel, "../", 3) != 0)
			break;
		rel += 3;
		len = strlen(b);
		for (i = len; i > floor && b[i - 1] != '/'; i--)
			;
		b[i > floor ? i - 1 : floor] = '\0';
	}
	len = strlen(b);
	if (len == 0)
		res = util_xstrdup(rel);
	else if (b[len - 1] == ':' || b[len - 1] == '/')
		res = util_xasprintf("%s%s", b, rel);
	else
		res = util_xasprintf("%s/%s", b, rel);
	free(b);
	return res;
}

/*
 * state_dir/<site>/modules/<key>.git, beside cache.git. The key (a submodule's name, prefixed by
 * its parents' for nested ones) is %-encoded to one safe file name: names come from the
 * repository and may hold '/' or "..".
 */
char *
submodule_dir(const char *cache_dir, const char *key)
{
	static const char hex[] = "0123456789abcdef";
	const char *slash = strrchr(cache_dir, '/');
	size_t i, o = 0, len = strlen(key);
	char *enc = util_xmalloc(len * 3 + 1), *dir;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (isalnum(c) || c == '-' || c == '_' || (c == '.' && i > 0)) {
			enc[o++] = (char)c;
		} else {
			enc[o++] = '%';
			enc[o++] = hex[c >> 4];
			enc[o++] = hex[c & 15];
		}
	}
	enc[o] = '\0';
	if (slash == NULL)
		dir = util_xasprintf("modules/%s.git", enc);
	else
		dir = util_xasprintf("%.*s/modules/%s.git", (int)(slash - cache_dir), cache_dir,
		    enc);
	free(enc);
	return dir;
}

/* The .gitmodules of a tree's top directory; none at all is an empty list. */
int
submodule_read(git_repository *repo, const git_tree *tree, struct submodule **m, size_t *n,
    struct error *e)
{
	const git_tree_entry *te = git_tree_entry_byname(tree, ".gitmodules");
	git_blob *blob = NULL;
	int rc;

	*m = NULL;
	*n = 0;
	if (te == NULL || git_tree_entry_type(te) != GIT_OBJECT_BLOB)
		return E_OK;
	if (git_blob_lookup(&blob, repo, git_tree_entry_id(te)) != 0)
		return repo_error(e, "reading .gitmodules");
	rc = submodule_parse(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), m, n);
	git_blob_free(blob);
	if (rc != E_OK)
		return util_error(e, rc, ".gitmodules cannot be parsed");
	return E_OK;
}

/* What the walk over a tree's submodules needs. */
struct submodule_walk {
	const char		*cache_dir;
	submodule_fetch_fn	 fetch;
	void			*arg;
	struct error		*e;
	int			 depth;
};

static int submodule_fetch_tree(struct submodule_walk *, git_repository *, git_tree *,
    const char *url, const char *key);

struct submodule_visit {
	struct submodule_walk	*w;
	git_repository		*repo;
	const char		*url;
	const char		*key;
	struct submodule	*mods;
	size_t			 nmods;
	int			 rc;
};

/* Fetch the commit the gitlink te at path pins (sm describes it), then whatever it pins. */
static int
submodule_visit(struct submodule_visit *v, const struct submodule *sm, const char *path,
    const git_tree_entry *te)
{
	struct submodule_walk *w = v->w;
	git_repository *sub = NULL;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	char *url, *key, *dir;
	int rc;

	url = submodule_resolve_url(v->url, sm->url);
	key = v->key[0] != '\0' ? util_xasprintf("%s/%s", v->key, sm->name) :
	    util_xstrdup(sm->name);
	dir = submodule_dir(w->cache_dir, key);
	if ((rc = w->fetch(url, dir, git_tree_entry_id(te), w->arg, w->e)) == E_OK) {
		if (git_repository_open_bare(&sub, dir) != 0 ||
		    git_commit_lookup(&c, sub, git_tree_entry_id(te)) != 0 ||
		    git_commit_tree(&tree, c) != 0)
			rc = repo_error(w->e, "submodule '%s' at %s", sm->name, path);
		else
			rc = submodule_fetch_tree(w, sub, tree, url, key);
	}
	git_tree_free(tree);
	git_commit_free(c);
	git_repository_free(sub);
	free(dir);
	free(key);
	free(url);
	return rc;
}

static int
submodule_fetch_tree(struct submodule_walk *w, git_repository *repo, git_tree *tree,
    const char *url, const char *key)
{
	struct submodule_visit v;
	size_t i;
	int rc;

	if (w->depth >= SUBMODULE_DEPTH_MAX)
		return util_error(w->e, E_INVAL, "submodules nested more than %d deep",
		    SUBMODULE_DEPTH_MAX);
	memset(&v, 0, sizeof(v));
	v.w = w;
	v.repo = repo;
	v.url = url;
	v.key = key;
	if ((rc = submodule_read(repo, tree, &v.mods, &v.nmods, w->e)) != E_OK)
		return rc;
	/*
	 * Only the paths .gitmodules names are looked up, not the whole tree walked (a read of
	 * every folder on each deploy): a gitlink it does not name fails just the same when the
	 * release is written ("has no url in .gitmodules"), before anything goes live.
	 */
	w->depth++;
	for (i = 0; i < v.nmods && v.rc == E_OK; i++) {
		const struct submodule *sm = &v.mods[i];
		git_tree_entry *te = NULL;
		int grc;

		if (submodule_find(v.mods, v.nmods, sm->path) != sm)
			continue;	/* the same path twice: the first one stands */
		if ((grc = git_tree_entry_bypath(&te, tree, sm->path)) == GIT_ENOTFOUND)
			continue;	/* named, but not in this commit */
		if (grc != 0)
			v.rc = repo_error(w->e, "reading %s for submodules", sm->path);
		else if (git_tree_entry_filemode(te) == GIT_FILEMODE_COMMIT)
			v.rc = submodule_visit(&v, sm, sm->path, te);
		git_tree_entry_free(te);
	}
	w->depth--;
	submodule_free(v.mods, v.nmods);
	return v.rc;
}

/*
 * Every submodule commit pins, recursively, fetched into its cache beside cache_dir (see
 * submodule_dir) by fetch, which knows the site's credentials. 0 or an E_* code.
 */
int
submodule_fetch_all(git_repository *repo, const char *cache_dir, const git_oid *commit,
    const char *url, submodule_fetch_fn fetch, void *arg, struct error *e)
{
	struct submodule_walk w;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	int rc;

	memset(&w, 0, sizeof(w));
	w.cache_dir = cache_dir;
	w.fetch = fetch;
	w.arg = arg;
	w.e = e;
	if (git_commit_lookup(&c, repo, commit) != 0 || git_commit_tree(&tree, c) != 0)
		rc = repo_error(e, "reading commit %s", git_oid_tostr_s(commit));
	else
		rc = submodule_fetch_tree(&w, repo, tree, url, "");
	git_tree_free(tree);
	git_commit_free(c);
	return rc;
}
