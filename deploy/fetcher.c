/* fetcher.c: the fetch helper process (`deployd __fetch`): libgit2 fetches, ls-remote, credentials. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <sodium.h>

#include "deploy/deploy.h"

/*
 * libgit2 1.5.1 leaks on some failing fetches (a reference in revparse during negotiation with a
 * damaged cache). The child exits right after, so under LeakSanitizer those allocations are
 * ignored rather than turned into a failed fetch.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FETCHER_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FETCHER_LSAN 1
#endif
#endif
#ifdef FETCHER_LSAN
#include <sanitizer/lsan_interface.h>
#define fetcher_lsan_disable()	__lsan_disable()
#define fetcher_lsan_enable()	__lsan_enable()
#else
#define fetcher_lsan_disable()	do { } while (0)
#define fetcher_lsan_enable()	do { } while (0)
#endif

/* What the child was asked to do (its command line). */
struct fetcher_opts {
	int		 serve;
	int		 ls_remote;
	int		 fresh;
	const char	*branch;
	const char	*tags;
	const char	*ssh_key;
	const char	*known_hosts;
	const char	*token_file;
	const char	*token_user;
	const char	*ca_file;
	const char	*cache;
	const char	*url;
};

/* One connection's callbacks' state: to whom, and why they refused, if they did. */
struct fetcher_conn {
	const struct fetcher_opts *o;
	const char	*url;
	char		 shown[512];	/* url without user:password@ */
	int		 ssh;
	char		 host[256];
	int		 port;
	int		 cred_calls;
	char		 why[1024];
};

/*
 * Errors that point at a damaged cache rather than at the remote or the network: worth one
 * fresh clone. Repository, OS and indexer errors are left out: a missing local source or a bad
 * pack from the server would otherwise throw away a good cache on every poll.
 */
static const int fetcher_cache_error_classes[] = {
	GIT_ERROR_ODB, GIT_ERROR_OBJECT, GIT_ERROR_ZLIB, GIT_ERROR_REFERENCE,
};

static int
fetcher_cache_error(void)
{
	const git_error *ge = git_error_last();
	size_t i;

	if (ge == NULL)
		return 0;
	for (i = 0; i < sizeof(fetcher_cache_error_classes) / sizeof(int); i++)
		if (ge->klass == fetcher_cache_error_classes[i])
			return 1;
	return 0;
}

/* A URL for messages, without any user:password@ part. */
static void
fetcher_redact_url(const char *url, char *buf, size_t len)
{
	const char *scheme = strstr(url, "://"), *at, *slash;

	if (scheme != NULL && (at = strchr(scheme + 3, '@')) != NULL &&
	    ((slash = strchr(scheme + 3, '/')) == NULL || at < slash))
		snprintf(buf, len, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
	else
		util_strlcpy(buf, url, len);
}

/*
 * Is url an SSH URL (ssh://, ssh+git://, git+ssh:// or scp-like user@host:path), and to which
 * host and port? The port is not in what libgit2 tells the certificate callback.
 */
int
fetcher_url_ssh(const char *url, char *host, size_t hlen, int *port)
{
	static const char *const schemes[] = { "ssh://", "ssh+git://", "git+ssh://" };
	const char *p = NULL, *end, *at, *colon, *slash;
	size_t i;

	*port = 22;
	host[0] = '\0';
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && p == NULL; i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			p = url + strlen(schemes[i]);
	if (p == NULL) {
		if (strstr(url, "://") != NULL || url[0] == '/' || url[0] == '.')
			return 0;
		/* scp-like: a colon before any slash. */
		colon = strchr(url, ':');
		slash = strchr(url, '/');
		if (colon == NULL || colon == url || (slash != NULL && slash < colon))
			return 0;
		if (url[0] == '[' && (end = strchr(url, ']')) != NULL && end[1] == ':') {
			snprintf(host, hlen, "%.*s", (int)(end - url - 1), url + 1);
			return 1;
		}
		at = memchr(url, '@', (size_t)(colon - url));
		p = at != NULL ? at + 1 : url;
		snprintf(host, hlen, "%.*s", (int)(colon - p), p);
		return 1;
	}
	end = p + strcspn(p, "/");
	for (at = end; at > p && at[-1] != '@'; at--)
		;
	p = at;
	if (*p == '[' && (colon = memchr(p, ']', (size_t)(end - p))) != NULL) {
		snprintf(host, hlen, "%.*s", (int)(colon - p - 1), p + 1);
		colon++;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		snprintf(host, hlen, "%.*s", (int)((colon != NULL ? colon : end) - p), p);
	}
	if (colon != NULL && colon < end && *colon == ':' && colon + 1 < end) {
		char num[8];
		uint64_t v;

		/* A port that is not a number up to the path keeps the default; ssh will say why. */
		if ((size_t)(end - colon - 1) < sizeof(num)) {
			memcpy(num, colon + 1, (size_t)(end - colon - 1));
			num[end - colon - 1] = '\0';
			if (util_parse_uint(num, 65535, &v) == E_OK && v > 0)
				*port = (int)v;
		}
	}
	return 1;
}

/* The child's one error line, kept until the last attempt so the parent sees only that. */
static char fetcher_err[1024];

static void
fetcher_fail(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(fetcher_err, sizeof(fetcher_err), fmt, ap);
	va_end(ap);
	for (p = fetcher_err; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static const char *
fetcher_git_msg(void)
{
	const git_error *ge = git_error_last();

	return ge != NULL && ge->message != NULL ? ge->message : "unknown git error";
}

/* A connection failed: the callback's own reason if it refused, else libgit2's. */
static void
fetcher_conn_fail(const struct fetcher_conn *c, const char *doing)
{
	if (c->why[0] != '\0')
		fetcher_fail("%s", c->why);
	else
		fetcher_fail("%s %s: %s", doing, c->shown, fetcher_git_msg());
}

/*
 * Credentials: the deploy key for SSH, the token for HTTPS, read from their files now. A
 * second call for the same connection means the first was refused: fail at once instead of
 * letting libgit2 ask forever.
 */
static int
fetcher_cred_cb(git_credential **out, const char *url, const char *user_from_url,
    unsigned int allowed, void *payload)
{
	struct fetcher_conn *c = payload;
	struct error e = { 0 };
	unsigned char *tok = NULL;
	size_t toklen = 0;
	int rc;

	(void)url;
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user_from_url != NULL ?
		    user_from_url : "git");
	if (c->cred_calls++ > 0) {
		snprintf(c->why, sizeof(c->why), "authentication failed for %s%s", c->shown,
		    c->ssh ? " (is the deploy key authorized on the server?)" :
		    " (is the token valid and allowed to read the repository?)");
		git_error_set_str(GIT_ERROR_NET, c->why);
		return GIT_EAUTH;
	}
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		if (c->o->ssh_key == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for an SSH key, but ssh_key "
			    "is not set", c->shown);
			return GIT_EAUTH;
		}
		/* Checked at every fetch: a key rotated in with loose permissions is refused. */
		if (secret_check_file(c->o->ssh_key, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "ssh_key %s", e.msg);
			return GIT_EAUTH;
		}
		return git_credential_ssh_key_new(out, user_from_url != NULL ? user_from_url :
		    "git", NULL, c->o->ssh_key, NULL);
	}
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
		if (c->o->token_file == NULL) {
			snprintf(c->why, sizeof(c->why), "%s asks for credentials, but "
			    "token_file is not set", c->shown);
			return GIT_EAUTH;
		}
		if (secret_read(c->o->token_file, &tok, &toklen, &e) != E_OK) {
			snprintf(c->why, sizeof(c->why), "token_file %s", e.msg);
			return GIT_EAUTH;
		}
		/* secret_read's buffer is larger than any secret it returns. */
		tok[toklen] = '\0';
		rc = git_credential_userpass_plaintext_new(out, c->o->token_user != NULL ?
		    c->o->token_user : "x-access-token", (const char *)tok);
		secret_free(tok, toklen);
		return rc;
	}
	snprintf(c->why, sizeof(c->why), "%s asks for a kind of authentication deployd does "
	    "not offer", c->shown);
	return GIT_EAUTH;
}

/*
 * libgit2 1.5.1 reports SSH host keys with valid = 0 and, without this callback, accepts any.
 * Host keys are checked against the pinned known_hosts file, never trusted on first use. TLS
 * certificates were checked by libgit2 against the CA store (and ca_file).
 */
static int
fetcher_cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
	struct fetcher_conn *c = payload;
	git_cert_hostkey *hk;
	struct error e = { 0 };

	if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2) {
		hk = (git_cert_hostkey *)cert;
		if (c->o->known_hosts == NULL) {
			snprintf(c->why, sizeof(c->why), "%s is an SSH remote but known_hosts "
			    "is not set; deployd never trusts a host key on first use", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (!(hk->type & GIT_CERT_SSH_RAW) || hk->hostkey == NULL) {
			snprintf(c->why, sizeof(c->why), "%s: the SSH library gave no host key "
			    "to check", c->shown);
			return GIT_ECERTIFICATE;
		}
		if (knownhosts_check(c->o->known_hosts, host != NULL ? host : c->host,
		    c->port, (const unsigned char *)hk->hostkey, hk->hostkey_len, &e) != E_OK) {
			util_strlcpy(c->why, e.msg, sizeof(c->why));
			return GIT_ECERTIFICATE;
		}
		return 0;
	}
	if (!valid) {
		snprintf(c->why, sizeof(c->why), "TLS certificate of %s is not trusted%s",
		    host != NULL ? host : c->shown, c->o->ca_file != NULL ?
		    " (not even with ca_file)" : " (set ca_file for a private CA)");
		return GIT_ECERTIFICATE;
	}
	return 0;
}

/*
 * The parent shows how the download goes (deploy --wait, the events stream): a line at most
 * every 100 ms, and the last one when every object has arrived.
 */
static int
fetcher_progress_cb(const git_indexer_progress *st, void *payload)
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

static void
fetcher_conn_init(struct fetcher_conn *c, const struct fetcher_opts *o, const char *url,
    git_remote_callbacks *cbs)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->url = url;
	fetcher_redact_url(url, c->shown, sizeof(c->shown));
	c->ssh = fetcher_url_ssh(url, c->host, sizeof(c->host), &c->port);
	git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs->credentials = fetcher_cred_cb;
	cbs->certificate_check = fetcher_cert_cb;
	cbs->transfer_progress = fetcher_progress_cb;
	cbs->payload = c;
}

/* Open the bare cache, or create it; a cache that does not even open is re-created. */
static int
fetcher_open_cache(const char *dir, const char *url, git_repository **repo)
{
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (repo_open(repo, dir) == 0)
			return 0;
		fprintf(stderr, "deployd: cache %s is broken (%s); cloning afresh\n", dir,
		    fetcher_git_msg());
		if (util_rm_rf_at(AT_FDCWD, dir) != E_OK) {
			fetcher_fail("removing broken cache %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	if (git_repository_init(repo, dir, 1) != 0) {
		fetcher_fail("creating cache %s: %s", dir, fetcher_git_msg());
		return -1;
	}
	seed_local(*repo, url);
	return 0;
}

/* Did an earlier fetch bring ref into the cache? Then a remote without it has deleted it. */
static int
fetcher_cache_has(git_repository *repo, const char *cache, const char *ref)
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
fetcher_pick(const struct fetcher_opts *o, git_repository *repo, const struct fetcher_conn *c,
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
		if (fetcher_cache_has(repo, o->cache, ref))
			fetcher_fail("branch '%s' no longer exists on %s; current release "
			    "kept", o->branch, c->shown);
		else
			fetcher_fail("branch '%s' not found on %s", o->branch, c->shown);
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
		fetcher_fail("no tag matching '%s' on %s", o->tags, c->shown);
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
fetcher_connect(git_remote *remote, struct fetcher_conn *c, const git_remote_callbacks *cbs,
    const git_remote_head ***heads, size_t *n)
{
	git_proxy_options proxy;
	int grc;

	git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
	fetcher_lsan_disable();
	grc = git_remote_connect(remote, GIT_DIRECTION_FETCH, cbs, &proxy, NULL);
	fetcher_lsan_enable();
	if (grc != 0) {
		fetcher_conn_fail(c, "connecting to");
		return -1;
	}
	if (git_remote_ls(heads, n, remote) != 0) {
		fetcher_conn_fail(c, "listing refs of");
		return -1;
	}
	return 0;
}

/* "ls-remote": what would be deployed now, by the commit the remote advertises. */
static int
fetcher_ls_remote(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetcher_conn c;
	git_remote *remote = NULL;
	git_oid id;
	size_t n;
	int rc = -1;

	fetcher_conn_init(&c, o, o->url, &cbs);
	if (git_remote_create_detached(&remote, o->url) != 0) {
		fetcher_conn_fail(&c, "checking");
		return -1;
	}
	if (fetcher_connect(remote, &c, &cbs, &heads, &n) == 0 &&
	    fetcher_pick(o, NULL, &c, heads, n, ref, reflen, &id, tip) == 0)
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
fetcher_remote_new(git_repository *repo, const char *url, git_remote **remote)
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
fetcher_download(git_remote *remote, const git_strarray *refspecs,
    const git_remote_callbacks *cbs)
{
	git_fetch_options fopts;
	int grc;

	git_fetch_options_init(&fopts, GIT_FETCH_OPTIONS_VERSION);
	fopts.callbacks = *cbs;
	fopts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fopts.update_fetchhead = 0;
	fetcher_lsan_disable();
	grc = git_remote_download(remote, refspecs, &fopts);
	fetcher_lsan_enable();
	git_remote_disconnect(remote);
	if (grc != 0 || git_remote_update_tips(remote, cbs, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE,
	    "deployd fetch") != 0)
		return -1;
	return 0;
}

/* One attempt at fetching every branch and tag of url into repo; then commit must be there. */
static int
fetcher_module_once(git_repository *repo, const struct fetcher_opts *o, const char *url,
    const struct git_oid *commit, struct error *e)
{
	static const char *const specs[] = { "+refs/heads/*:refs/heads/*",
	    "+refs/tags/*:refs/tags/*" };
	git_strarray refspecs = { (char **)(uintptr_t)specs, 2 };
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetcher_conn c;
	git_remote *remote = NULL;
	git_commit *cm = NULL;
	size_t n;
	int rc = E_OK;

	fetcher_conn_init(&c, o, url, &cbs);
	if (fetcher_remote_new(repo, url, &remote) != 0) {
		rc = repo_error(e, "submodule %s", c.shown);
		goto out;
	}
	if (fetcher_connect(remote, &c, &cbs, &heads, &n) != 0) {
		rc = util_error(e, E_GIT, "submodule: %s", fetcher_err);
		goto out;
	}
	if (fetcher_download(remote, &refspecs, &cbs) != 0) {
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
fetcher_module(const char *url, const char *dir, const struct git_oid *commit, void *arg,
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
		rc = fetcher_module_once(repo, o, url, commit, e);
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
fetcher_once(git_repository *repo, const struct fetcher_opts *o, git_oid *tip, char *ref,
    size_t reflen, int *cache_err)
{
	git_remote_callbacks cbs;
	const git_remote_head **heads;
	struct fetcher_conn c;
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
	fetcher_conn_init(&c, o, o->url, &cbs);
	if (fetcher_remote_new(repo, o->url, &remote) != 0) {
		fetcher_conn_fail(&c, "fetching");
		goto out;
	}
	if (fetcher_connect(remote, &c, &cbs, &heads, &n) != 0 ||
	    fetcher_pick(o, repo, &c, heads, n, ref, reflen, &id, &adv_peeled) != 0)
		goto out;
	snprintf(spec, sizeof(spec), "+%s:%s", ref, ref);
	if (fetcher_download(remote, &refspecs, &cbs) != 0) {
		*cache_err = fetcher_cache_error();
		fetcher_conn_fail(&c, "fetching");
		goto out;
	}
	/* An annotated tag peels to its commit; a branch tip must be one. */
	if (git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY) != 0 ||
	    git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) != 0) {
		*cache_err = 1;
		fetcher_fail("%s of %s: %s is not a commit in the cache: %s", ref, c.shown,
		    git_oid_tostr_s(&id), fetcher_git_msg());
		goto out;
	}
	git_oid_cpy(tip, git_object_id(peeled));
	if (submodule_fetch_all(repo, o->cache, tip, o->url, fetcher_module,
	    (void *)(uintptr_t)o, &se) != E_OK) {
		fetcher_fail("%s", se.msg);
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
fetcher_reclone(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	char *fresh = util_xasprintf("%s.new", o->cache);
	int cache_err, rc = -1;

	if (util_rm_rf_at(AT_FDCWD, fresh) != E_OK)
		fetcher_fail("removing %s: %s", fresh, strerror(errno));
	else if (git_repository_init(&repo, fresh, 1) != 0)
		fetcher_fail("creating cache %s: %s", fresh, fetcher_git_msg());
	else if (fetcher_once(repo, o, tip, ref, reflen, &cache_err) == 0) {
		git_repository_free(repo);
		repo = NULL;
		if (util_rm_rf_at(AT_FDCWD, o->cache) != E_OK || rename(fresh, o->cache) != 0)
			fetcher_fail("replacing cache %s: %s", o->cache, strerror(errno));
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
fetcher_drop_modules(const char *cache)
{
	const char *slash = strrchr(cache, '/');
	char *dir = slash != NULL ? util_xasprintf("%.*s/modules", (int)(slash - cache), cache) :
	    util_xstrdup("modules");

	util_rm_rf_at(AT_FDCWD, dir);
	free(dir);
}

/* Where the system's CA bundle lives (Debian, then Fedora); ca_file is trusted in addition. */
static const char *const fetcher_system_ca[] = {
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
};

static int
fetcher_copy_into(int dst, const char *path)
{
	char buf[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(dst, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(fd);
	return n < 0 ? -1 : 0;
}

/*
 * libgit2 (mbedTLS) replaces its CA store with what GIT_OPT_SET_SSL_CERT_LOCATIONS names, so
 * ca_file and the system bundle go together into one in-memory file. This child is this one
 * site's, so the setting affects no other site.
 */
static int
fetcher_ca(const char *ca_file)
{
	char path[64];
	size_t i;
	int fd;

	if ((fd = memfd_create("deployd-ca", 0)) < 0) {
		fetcher_fail("ca_file %s: memfd_create: %s", ca_file, strerror(errno));
		return -1;
	}
	if (fetcher_copy_into(fd, ca_file) != 0 || write(fd, "\n", 1) != 1) {
		fetcher_fail("ca_file %s: %s", ca_file, strerror(errno));
		close(fd);
		return -1;
	}
	for (i = 0; i < sizeof(fetcher_system_ca) / sizeof(fetcher_system_ca[0]); i++)
		if (fetcher_copy_into(fd, fetcher_system_ca[i]) == 0)
			break;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, path, NULL) != 0) {
		fetcher_fail("ca_file %s: %s", ca_file, fetcher_git_msg());
		close(fd);
		return -1;
	}
	/* The descriptor stays open for the child's short life: the path names it. */
	return 0;
}

/* Options first, then "-- CACHE URL". 0, or -1 with the usage error set. */
static int
fetcher_args(int argc, char **argv, struct fetcher_opts *o)
{
	const struct {
		const char	 *flag;
		const char	**dst;
	} opts[] = {
		{ "--branch", &o->branch },
		{ "--tags", &o->tags },
		{ "--ssh-key", &o->ssh_key },
		{ "--known-hosts", &o->known_hosts },
		{ "--token-file", &o->token_file },
		{ "--token-user", &o->token_user },
		{ "--ca-file", &o->ca_file },
	};
	size_t j;
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--ls-remote") == 0) {
			o->ls_remote = 1;
			continue;
		}
		if (strcmp(argv[i], "--serve") == 0 && argc == 3) {
			o->serve = 1;
			return 0;
		}
		if (strcmp(argv[i], "--fresh") == 0) {
			o->fresh = 1;
			continue;
		}
		for (j = 0; j < sizeof(opts) / sizeof(opts[0]); j++)
			if (strcmp(argv[i], opts[j].flag) == 0 && i + 1 < argc)
				break;
		if (j == sizeof(opts) / sizeof(opts[0]))
			return -1;
		*opts[j].dst = argv[++i];
	}
	if (i + 3 != argc || (o->branch == NULL) == (o->tags == NULL))
		return -1;
	o->cache = argv[i + 1];
	o->url = argv[i + 2];
	return 0;
}

/* What one request does; 0 or -1 with fetcher_err set. */
static int
fetcher_run(const struct fetcher_opts *o, git_oid *tip, char *ref, size_t reflen)
{
	git_repository *repo = NULL;
	struct stat st;
	char host[256], shown[512];
	int cache_err = 0, rc = -1, port;

	ref[0] = '\0';
	fetcher_err[0] = '\0';
	fetcher_redact_url(o->url, shown, sizeof(shown));
	if (fetcher_url_ssh(o->url, host, sizeof(host), &port) && o->known_hosts == NULL)
		fetcher_fail("%s is an SSH remote but known_hosts is not set; deployd never "
		    "trusts a host key on first use (ssh-keyscan -p %d %s > FILE)", shown, port,
		    host);
	else if (o->url[0] == '/' && stat(o->url, &st) != 0)
		/* libgit2 calls a missing local path an "unsupported URL protocol". */
		fetcher_fail("repository %s: %s", shown, strerror(errno));
	else if (o->ca_file != NULL && fetcher_ca(o->ca_file) != 0)
		;
	else if (o->ls_remote) {
		if (fetcher_ls_remote(o, tip, ref, reflen) == 0)
			rc = 0;
	} else if (o->fresh) {
		fprintf(stderr, "deployd: cloning %s afresh\n", o->cache);
		fetcher_drop_modules(o->cache);
		if (fetcher_reclone(o, tip, ref, reflen) == 0)
			rc = 0;
	} else if (fetcher_open_cache(o->cache, o->url, &repo) == 0) {
		if (fetcher_once(repo, o, tip, ref, reflen, &cache_err) == 0)
			rc = 0;
		seed_drop(repo);
		git_repository_free(repo);
		if (rc != 0 && cache_err) {
			fprintf(stderr, "deployd: fetch into %s failed in the cache (%s); "
			    "cloning afresh\n", o->cache, fetcher_err);
			if (fetcher_reclone(o, tip, ref, reflen) == 0)
				rc = 0;
		}
	}
	return rc;
}

static void
fetcher_reply(int rc, const git_oid *tip, const char *ref)
{
	if (rc == 0)
		printf("ok %s %s\n", git_oid_tostr_s(tip), ref);
	else
		printf("error %s\n", fetcher_err[0] ? fetcher_err : "fetch failed");
	fflush(stdout);
}

/*
 * `__fetch --serve`: answer ls-remote requests from stdin until it closes. A request is the
 * one-shot helper's arguments (after "__fetch"), each ending in NUL, then an empty one; the
 * answer is the same one line. Only ls-remote without a CA file is served: other requests
 * change process-wide state.
 */
static int
fetcher_serve(char *exe)
{
	struct fetcher_opts o;
	struct strv args = { 0 };
	char *field = NULL, ref[FETCH_REF_MAX];
	size_t cap = 0;
	ssize_t n;
	git_oid tip;
	int rc;

	memset(&tip, 0, sizeof(tip));
	util_strv_push(&args, exe);
	util_strv_push(&args, "__fetch");
	while ((n = getdelim(&field, &cap, '\0', stdin)) > 0) {
		if (n > 1 || field[0] != '\0') {
			util_strv_push(&args, field);
			continue;
		}
		if (fetcher_args((int)args.n, args.v, &o) != 0 || !o.ls_remote ||
		    o.ca_file != NULL || o.serve) {
			fetcher_fail("usage: a served request is ls-remote without a CA file");
			rc = -1;
		} else
			rc = fetcher_run(&o, &tip, ref, sizeof(ref));
		fetcher_reply(rc, &tip, ref);
		while (args.n > 2)
			free(args.v[--args.n]);
		args.v[args.n] = NULL;
	}
	free(field);
	util_strv_free(&args);
	git_libgit2_shutdown();
	return 0;
}

/*
 * "deployd __fetch [--ls-remote | --fresh] (--branch B | --tags GLOB) [--ssh-key F]
 * [--known-hosts F] [--token-file F] [--token-user U] [--ca-file F] -- CACHE URL": prints
 * "ok <commit> <ref>" or "error <message>"; exits 0 or 1.
 */
int
fetcher_main(int argc, char **argv)
{
	struct fetcher_opts o;
	char ref[FETCH_REF_MAX];
	git_oid tip;
	int rc;

	/* A fetch must not outlive a daemon killed with SIGKILL: it would race the next one. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	if (fetcher_args(argc, argv, &o) != 0) {
		printf("error usage: deployd __fetch [--ls-remote | --fresh] "
		    "(--branch B | --tags GLOB) "
		    "[--ssh-key F] [--known-hosts F] [--token-file F] [--token-user U] "
		    "[--ca-file F] -- CACHE URL\n");
		fflush(stdout);
		return 1;
	}
	if (sodium_init() < 0) {
		printf("error libsodium failed to initialise\n");
		fflush(stdout);
		return 1;
	}
	git_libgit2_init();
	/* The source may be a local repository owned by another user: it is trusted config. */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	if (o.serve)
		return fetcher_serve(argv[0]);
	rc = fetcher_run(&o, &tip, ref, sizeof(ref));
	fetcher_reply(rc, &tip, ref);
	git_libgit2_shutdown();
	return rc != 0 || ferror(stdout) ? 1 : 0;
}
