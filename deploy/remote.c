/* remote.c: the fetch helper's git work: ls-remote, fetch, submodules, a fresh clone. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <git2.h>

#include "deploy/deploy.h"

/* The child's one error line, kept until the last attempt so the parent sees only that. */
static char remote_err[1024];

void
remote_fail(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(remote_err, sizeof(remote_err), fmt, ap);
	va_end(ap);
	for (p = remote_err; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

const char *
remote_error(void)
{
	return remote_err;
}

void
remote_fail_clear(void)
{
	remote_err[0] = '\0';
}

/*
 * libgit2 1.5.1 leaks on some failing fetches (a reference in revparse during negotiation with a
 * damaged cache). The child exits right after, so under LeakSanitizer those allocations are
 * ignored rather than turned into a failed fetch.
 */
#if defined(__SANITIZE_ADDRESS__)
#define REMOTE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REMOTE_LSAN 1
#endif
#endif
#ifdef REMOTE_LSAN
#include <sanitizer/lsan_interface.h>
#define remote_lsan_disable()	__lsan_disable()
#define remote_lsan_enable()	__lsan_enable()
#else
#define remote_lsan_disable()	do { } while (0)
#define remote_lsan_enable()	do { } while (0)
#endif

/*
 * Errors that point at a damaged cache rather than at the remote or the network: worth one
 * fresh clone. Repository, OS and indexer errors are left out: a missing local source or a bad
 * pack from the server would otherwise throw away a good cache on every poll.
 */
static const int remote_cache_error_classes[] = {
	GIT_ERROR_ODB, GIT_ERROR_OBJECT, GIT_ERROR_ZLIB, GIT_ERROR_REFERENCE,
};

static int
remote_cache_error(void)
{
	const git_error *ge = git_error_last();
	size_t i;

	if (ge == NULL)
		return 0;
	for (i = 0; i < sizeof(remote_cache_error_classes) / sizeof(int); i++)
		if (ge->klass == remote_cache_error_classes[i])
			return 1;
	return 0;
}

/* A connection failed: the callback's own reason if it refused, else libgit2's. */
static void
remote_conn_failed(const struct cred_conn *c, const char *doing)
{
	if (c->why[0] != '\0')
		remote_fail("%s", c->why);
	else
		remote_fail("%s %s: %s", doing, c->shown, repo_last_error());
}

/*
 * The parent shows how the download goes (deploy --wait, the events stream): a line at most
 * every 100 ms, and the last one when every object has arrived.
 */
static int
remote_progress(const git_indexer_progress *st, void *payload)
{
	static int64_t last;
	int64_t now = util_mono_ms();

	(void)payload;
	if (now - last < 100 && st->received_objects != st->total_objects)
		return 0;
	last = now;
	printf("progress %u %u %zu\n", st->received_objects, st->total_objects,
	    st->received_bytes);
	fflush(stdout);
	return 0;
}

/* A connection's callbacks: cred.c's, and progress lines for the parent. */
static void
remote_conn_init(struct cred_conn *c, const struct fetcher_opts *o, const char *url,
    git_remote_callbacks *cbs)
{
	cred_init(c, o, url, cbs);
	cbs->transfer_progress = remote_progress;
}

/* Open the bare cache, or create it; a cache that does not even open is re-created. */
static int
remote_open_cache(const char *dir, const char *url, git_repository **repo)
{
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (repo_open(repo, dir) == 0)
			return 0;
		fprintf(stderr, "deployd: cache %s is broken (%s); cloning afresh\n", dir,
		    repo_last_error());
		if (util_rm_rf_at(AT_FDCWD, dir) != E_OK) {
			remote_fail("removing broken cache %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	if (git_repository_init(repo, dir, 1) != 0) {
		remote_fail("creating cache %s: %s", dir, repo_last_error());
		return -1;
	}
	seed_local(*repo, url);
	return 0;
}

/* Did an earlier fetch bring ref into the cache? Then a remote without it has deleted it. */
static int
remote_cache_has(git_repository *repo, const char *cache, const char *ref)
{
	git_repository *own = NULL;
	git_reference *r = NULL;
	int found;

	if (repo == NULL && repo_open(&own, cache) != 0)
		return 0;
	found = git_reference_lookup(&r, repo != NULL ? repo : own, ref) == 0;
	git_reference_free(r);
	git_repository_free(own);
	return found;
}

/*
 * From the remote's advertisement, the ref to deploy (refs/heads/<branch>, or the
 * highest-versioned refs/tags/<glob match>), its id, and the commit it peels to if the
 * remote said (an annotated tag's "^{}" line). 0, or -1 with the reason set.
 */
static int
remote_pick(const struct fetcher_opts *o, git_repository *repo, const struct cred_conn *c,
    const git_remote_head **heads, size_t n, char *ref, size_t reflen, git_oid *id,
    git_oid *peeled)
{
	const char **names;
	char want[FETCH_REF_MAX];
	size_t i, nn = 0, len;
	int best;

	if (o->branch != NULL) {
		snprintf(ref, reflen, "refs/heads/%s", o->branch);
		for (i = 0; i < n; i++) {
			if (strcmp(heads[i]->name, ref) == 0) {
				git_oid_cpy(id, &heads[i]->oid);
				git_oid_cpy(peeled, &heads[i]->oid);
				return 0;
			}
		}
		if (remote_cache_has(repo, o->cache, ref))
			remote_fail("branch '%s' no longer exists on %s; current release "
			    "kept", o->branch, c->shown);
		else
			remote_fail("branch '%s' not found on %s", o->branch, c->shown);
		return -1;
	}
	names = util_xcalloc(n + 1, sizeof(*names));
	for (i = 0; i < n; i++) {
		len = strlen(heads[i]->name);
		if (strncmp(heads[i]->name, "refs/tags/", 10) == 0 && len < FETCH_REF_MAX &&
		    (len < 3 || strcmp(heads[i]->name + len - 3, "^{}") != 0))
			names[nn++] = heads[i]->name + 10;
	}
	best = tags_pick(o->tags, names, nn);
	if (best < 0) {
		free(names);
		remote_fail("no tag matching '%s' on %s", o->tags, c->shown);
		return -1;
	}
	snprintf(ref, reflen, "refs/tags/%s", names[best]);
	free(names);
	snprintf(want, sizeof(want), "%s^{}", ref);
	for (i = 0; i < n; i++)
		if (strcmp(heads[i]->name, ref) == 0)
			git_oid_cpy(id, &heads[i]->oid);
	git_oid_cpy(peeled, id);
	for (i = 0; i < n; i++)
		if (strcmp(heads[i]->name, want) == 0)
			git_oid_cpy(peeled, &heads[i]->oid);
	return 0;
}

/* Connect for fetching and read the advertisement. -1: failed, reason set. */
static int
remote_connect(git_remote *remote, struct cred_conn *c, const git_remote_callbacks *cbs,
    const git_remote_head ***heads, size_t *n)
{
	git_proxy_options proxy;
	int grc;

	git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
	remote_lsan_disable();
	grc = git_remote_connect(remote, GIT_DIRECTION_FETCH, cbs, &proxy, NULL);
	remote_lsan_enable();
	if (grc != 0) {
		remote_conn_failed(c, "connecting to");
		return -1;
	}
	if (git_remote_ls(heads, n, remote) != 0) {
		remote_conn_failed(c, "listing refs of");
		return -1;
	}
	return 0;
}

/* "ls-remote": what would be deployed now, by the commit the remote advertises. */
int
remote_ls(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct cred_conn c;
	git_remote *remote = NULL;
	git_oid id;
	size_t n;
	int rc = -1;

	remote_conn_init(&c, o, o->url, &cbs);
	if (git_remote_create_detached(&remote, o->url) != 0) {
		remote_conn_failed(&c, "checking");
		return -1;
	}
	if (remote_connect(remote, &c, &cbs, &heads, &n) == 0 &&
	    remote_pick(o, NULL, &c, heads, n, ref, reflen, &id, tip) == 0)
		rc = 0;
	git_remote_disconnect(remote);
	git_remote_free(remote);
	return rc;
}

/*
 * An anonymous remote without url.<base>.insteadOf rewriting: the configured URL is the one
 * fetched. (libgit2 1.5.1 also leaks PCRE2 match data while applying insteadOf.)
 */
static int
remote_new(git_repository *repo, const char *url, git_remote **remote)
{
	git_remote_create_options ropts;

	git_remote_create_options_init(&ropts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ropts.repository = repo;
	ropts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
	    GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	return git_remote_create_with_opts(remote, url, &ropts);
}

/* Download what refspecs name over the open connection, then update the refs. 0 or -1. */
static int
remote_download(git_remote *remote, const git_strarray *refspecs,
    const git_remote_callbacks *cbs)
{
	git_fetch_options fopts;
	int grc;

	git_fetch_options_init(&fopts, GIT_FETCH_OPTIONS_VERSION);
	fopts.callbacks = *cbs;
	fopts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fopts.update_fetchhead = 0;
	remote_lsan_disable();
	grc = git_remote_download(remote, refspecs, &fopts);
	remote_lsan_enable();
	git_remote_disconnect(remote);
	if (grc != 0 || git_remote_update_tips(remote, cbs, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE,
	    "deployd fetch") != 0)
		return -1;
	return 0;
}

/* One attempt at fetching every branch and tag of url into repo; then commit must be there. */
static int
remote_module_once(git_repository *repo, const struct fetcher_opts *o, const char *url,
    const struct git_oid *commit, struct error *e)
{
	static const char *const specs[] = { "+refs/heads/*:refs/heads/*",
	    "+refs/tags/*:refs/tags/*" };
	git_strarray refspecs = { (char **)(uintptr_t)specs, 2 };
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct cred_conn c;
	git_remote *remote = NULL;
	git_commit *cm = NULL;
	size_t n;
	int rc = E_OK;

	remote_conn_init(&c, o, url, &cbs);
	if (remote_new(repo, url, &remote) != 0) {
		rc = repo_error(e, "submodule %s", c.shown);
		goto out;
	}
	if (remote_connect(remote, &c, &cbs, &heads, &n) != 0) {
		rc = util_error(e, E_GIT, "submodule: %s", remote_error());
		goto out;
	}
	if (remote_download(remote, &refspecs, &cbs) != 0) {
		rc = c.why[0] != '\0' ? util_error(e, E_GIT, "submodule: %s", c.why) :
		    repo_error(e, "fetching submodule %s", c.shown);
		goto out;
	}
	if (git_commit_lookup(&cm, repo, commit) != 0)
		rc = util_error(e, E_NOTFOUND, "submodule %s: commit %s is not on any branch or "
		    "tag there", c.shown, git_oid_tostr_s(commit));
out:
	git_commit_free(cm);
	git_remote_free(remote);
	return rc;
}

/*
 * One submodule: make its pinned commit present in its own bare cache (dir), fetching every
 * branch and tag of url with the site's credentials. A commit already there is immutable. A
 * cache that still lacks it after a fetch may be damaged (its refs claim what its objects
 * lack, so the server sends nothing): it gets one fresh start.
 */
static int
remote_module(const char *url, const char *dir, const struct git_oid *commit, void *arg,
    struct error *e)
{
	const struct fetcher_opts *o = arg;
	git_repository *repo = NULL;
	git_commit *cm = NULL;
	char *parent, *slash;
	int rc, attempt, fresh = 0;

	parent = util_xstrdup(dir);
	if ((slash = strrchr(parent, '/')) != NULL)
		*slash = '\0';
	if (util_mkdir_p(parent, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", parent);
		free(parent);
		return rc;
	}
	free(parent);
	for (attempt = 0; attempt < 2; attempt++) {
		if (repo == NULL && repo_open(&repo, dir) != 0) {
			util_rm_rf_at(AT_FDCWD, dir);
			fresh = 1;
			if (git_repository_init(&repo, dir, 1) != 0)
				return repo_error(e, "creating submodule cache %s", dir);
		}
		if (git_commit_lookup(&cm, repo, commit) == 0) {
			rc = E_OK;
			break;
		}
		rc = remote_module_once(repo, o, url, commit, e);
		if (rc == E_OK || fresh)
			break;
		fprintf(stderr, "deployd: submodule cache %s: %s; cloning afresh\n", dir, e->msg);
		git_repository_free(repo);
		repo = NULL;
		util_rm_rf_at(AT_FDCWD, dir);
	}
	git_commit_free(cm);
	git_repository_free(repo);
	return rc;
}

/* One fetch into repo: connect, pick the ref, download it, peel it. -1: failed, *cache_err set. */
static int
remote_once(git_repository *repo, const struct fetcher_opts *o, git_oid *tip, char *ref,
    size_t reflen, int *cache_err)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct cred_conn c;
	char spec[2 * FETCH_REF_MAX + 2];
	char *specs[1] = { spec };
	git_strarray refspecs = { specs, 1 };
	git_remote *remote = NULL;
	git_object *obj = NULL, *peeled = NULL;
	git_oid id, adv_peeled;
	struct error se = { 0 };
	size_t n;
	int rc = -1;

	*cache_err = 0;
	remote_conn_init(&c, o, o->url, &cbs);
	if (remote_new(repo, o->url, &remote) != 0) {
		remote_conn_failed(&c, "fetching");
		goto out;
	}
	if (remote_connect(remote, &c, &cbs, &heads, &n) != 0 ||
	    remote_pick(o, repo, &c, heads, n, ref, reflen, &id, &adv_peeled) != 0)
		goto out;
	snprintf(spec, sizeof(spec), "+%s:%s", ref, ref);
	if (remote_download(remote, &refspecs, &cbs) != 0) {
		*cache_err = remote_cache_error();
		remote_conn_failed(&c, "fetching");
		goto out;
	}
	/* An annotated tag peels to its commit; a branch tip must be one. */
	if (git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY) != 0 ||
	    git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) != 0) {
		*cache_err = 1;
		remote_fail("%s of %s: %s is not a commit in the cache: %s", ref, c.shown,
		    git_oid_tostr_s(&id), repo_last_error());
		goto out;
	}
	git_oid_cpy(tip, git_object_id(peeled));
	if (submodule_fetch_all(repo, o->cache, tip, o->url, remote_module,
	    (void *)(uintptr_t)o, &se) != E_OK) {
		remote_fail("%s", se.msg);
		goto out;
	}
	rc = 0;
out:
	git_object_free(peeled);
	git_object_free(obj);
	git_remote_free(remote);
	return rc;
}

/*
 * Clone afresh beside the cache and swap it in only on success, so a failing re-clone never
 * leaves less than there was.
 */
static int
remote_reclone(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	char *fresh = util_xasprintf("%s.new", o->cache);
	int cache_err, rc = -1;

	if (util_rm_rf_at(AT_FDCWD, fresh) != E_OK)
		remote_fail("removing %s: %s", fresh, strerror(errno));
	else if (git_repository_init(&repo, fresh, 1) != 0)
		remote_fail("creating cache %s: %s", fresh, repo_last_error());
	else if (remote_once(repo, o, tip, ref, reflen, &cache_err) == 0) {
		git_repository_free(repo);
		repo = NULL;
		if (util_rm_rf_at(AT_FDCWD, o->cache) != E_OK || rename(fresh, o->cache) != 0)
			remote_fail("replacing cache %s: %s", o->cache, strerror(errno));
		else
			rc = 0;
	}
	git_repository_free(repo);
	if (rc != 0)
		util_rm_rf_at(AT_FDCWD, fresh);
	free(fresh);
	return rc;
}

/* The submodule caches beside cache (state_dir/<site>/modules), for a fresh start. */
static void
remote_drop_modules(const char *cache)
{
	const char *slash = strrchr(cache, '/');
	char *dir = slash != NULL ? util_xasprintf("%.*s/modules", (int)(slash - cache), cache) :
	    util_xstrdup("modules");

	util_rm_rf_at(AT_FDCWD, dir);
	free(dir);
}

/* `--fresh`: a new clone of the remote, with new submodule caches, replaces the cache. */
int
remote_fetch_fresh(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	fprintf(stderr, "deployd: cloning %s afresh\n", o->cache);
	remote_drop_modules(o->cache);
	return remote_reclone(o, tip, ref, reflen);
}

/* Fetch into the cache; a failure inside the cache itself gets one fresh clone. 0 or -1. */
int
remote_fetch(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	int cache_err = 0, rc = -1;

	if (remote_open_cache(o->cache, o->url, &repo) != 0)
		return -1;
	if (remote_once(repo, o, tip, ref, reflen, &cache_err) == 0)
		rc = 0;
	seed_drop(repo);
	git_repository_free(repo);
	if (rc != 0 && cache_err) {
		fprintf(stderr, "deployd: fetch into %s failed in the cache (%s); "
		    "cloning afresh\n", o->cache, remote_error());
		if (remote_reclone(o, tip, ref, reflen) == 0)
			rc = 0;
	}
	return rc;
}
