/* hooks/provider.c: the webhook provider table, and what every provider shares: decide a delivery's answer. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "hooks/hooks.h"

/*
 * Detection goes from the most specific header to the least: Forgejo also sends
 * X-Gitea-* and X-Gogs-*, Gitea sends X-Gogs-* and X-GitHub-*, so the first row that
 * recognises a request wins. Adding a provider means one row here and one file.
 */
static const struct hook_provider provider_table[] = {
	{ "forgejo", PROV_FORGEJO, forgejo_detect, forgejo_verify, forgejo_parse,
	    { "X-Forgejo-Delivery", "X-Gitea-Delivery", NULL } },
	{ "gitea", PROV_GITEA, gitea_detect, gitea_verify, gitea_parse,
	    { "X-Gitea-Delivery", NULL, NULL } },
	{ "gogs", PROV_GOGS, gogs_detect, gogs_verify, gogs_parse,
	    { "X-Gogs-Delivery", NULL, NULL } },
	/* Idempotency-Key stays the same when GitLab retries; the event UUID may not. */
	{ "gitlab", PROV_GITLAB, gitlab_detect, gitlab_verify, gitlab_parse,
	    { "Idempotency-Key", "X-Gitlab-Event-UUID", "webhook-id" } },
	{ "bitbucket", PROV_BITBUCKET, bitbucket_detect, bitbucket_verify, bitbucket_parse,
	    { "X-Request-UUID", "X-Request-Id", NULL } },
	{ "github", PROV_GITHUB, github_detect, github_verify, github_parse,
	    { "X-GitHub-Delivery", NULL, NULL } },
};

#define PROVIDER_COUNT (sizeof(provider_table) / sizeof(provider_table[0]))

enum { PROVIDER_CT_JSON, PROVIDER_CT_FORM, PROVIDER_CT_OTHER };

unsigned
provider_bit(const char *name)
{
	size_t i;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (strcmp(provider_table[i].name, name) == 0)
			return provider_table[i].bit;
	return 0;
}

const char *
provider_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (provider_table[i].bit == bit)
			return provider_table[i].name;
	return NULL;
}

const char *
provider_header(const struct hook_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value != NULL ? req->headers[i].value : "";
	return NULL;
}

int
provider_has_prefix(const struct hook_request *req, const char *prefix)
{
	size_t i, n = strlen(prefix);

	for (i = 0; i < req->nheaders; i++)
		if (strncasecmp(req->headers[i].name, prefix, n) == 0)
			return 1;
	return 0;
}

/* HMAC over several parts, so that "id.timestamp.body" needs no copy of a 25 MiB body. */
int
provider_hmac(const char *digest, const unsigned char *key, size_t keylen,
    const unsigned char *const *parts, const size_t *lens, size_t nparts,
    unsigned char *mac, size_t maclen)
{
	EVP_MAC *m = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	char dname[16];
	size_t i, outl = 0;
	int rc = E_INVAL;

	/* OpenSSL treats a zero-length key as "no key"; config refuses empty secrets anyway. */
	if (keylen == 0)
		return E_INVAL;
	util_strlcpy(dname, digest, sizeof(dname));
	params[0] = OSSL_PARAM_construct_utf8_string("digest", dname, 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((m = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (ctx = EVP_MAC_CTX_new(m)) == NULL ||
	    EVP_MAC_init(ctx, key, keylen, params) != 1)
		goto out;
	for (i = 0; i < nparts; i++)
		if (lens[i] > 0 && EVP_MAC_update(ctx, parts[i], lens[i]) != 1)
			goto out;
	if (EVP_MAC_final(ctx, mac, &outl, maclen) != 1 || outl != maclen)
		goto out;
	rc = E_OK;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	return rc;
}

static int
provider_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;	/* hosts send lowercase; anything else is not their signature */
}

/* Percent-escapes may use either case; "| 0x20" alone would also let control bytes in. */
static int
provider_pct_hexval(unsigned char c)
{
	return provider_hexval(c >= 'A' && c <= 'F' ? c + ('a' - 'A') : c);
}

/*
 * Check a hex MAC of data with the site's secret. Returns 0 on a match, else E_INVAL
 * with a reason naming the header `what`, never the expected MAC or the key.
 */
int
provider_check_hex(const char *digest, size_t maclen, const char *hex,
    const struct hook_input *in, const unsigned char *data, size_t len,
    const char *what, char *reason, size_t rlen)
{
	unsigned char given[EVP_MAX_MD_SIZE], want[EVP_MAX_MD_SIZE];
	const unsigned char *parts[1] = { data };
	size_t i;
	int hi, lo, rc;

	if (maclen > sizeof(given) || strlen(hex) != maclen * 2)
		goto malformed;
	for (i = 0; i < maclen; i++) {
		if ((hi = provider_hexval((unsigned char)hex[2 * i])) < 0 ||
		    (lo = provider_hexval((unsigned char)hex[2 * i + 1])) < 0)
			goto malformed;
		given[i] = (unsigned char)(hi << 4 | lo);
	}
	if (provider_hmac(digest, in->secret, in->secret_len, parts, &len, 1, want,
	    maclen) != E_OK) {
		snprintf(reason, rlen, "%s: cannot compute the HMAC", what);
		return E_INVAL;
	}
	rc = sodium_memcmp(given, want, maclen) == 0 ? E_OK : E_INVAL;
	sodium_memzero(want, sizeof(want));
	if (rc != E_OK)
		snprintf(reason, rlen, "%s does not match the payload", what);
	return rc;
malformed:
	snprintf(reason, rlen, "%s is not %zu lowercase hex digits", what, maclen * 2);
	return E_INVAL;
}

/* Find payload= in an x-www-form-urlencoded body and percent-decode it (+ is a space). */
int
provider_form_payload(const unsigned char *body, size_t len, unsigned char **out,
    size_t *outlen)
{
	const unsigned char *p = body, *end = body + len, *amp, *v;
	unsigned char *buf;
	size_t n = 0;
	int hi, lo;

	*out = NULL;
	*outlen = 0;
	for (; p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if (amp - p >= 8 && memcmp(p, "payload=", 8) == 0)
			break;
		if (amp == end) {
			p = end;
			break;
		}
	}
	if (p >= end)
		return E_NOTFOUND;
	buf = util_xmalloc((size_t)(amp - p));
	for (v = p + 8; v < amp; v++) {
		if (*v == '+') {
			buf[n++] = ' ';
		} else if (*v != '%') {
			buf[n++] = *v;
		} else {
			if (amp - v < 3 ||
			    (hi = provider_pct_hexval(v[1])) < 0 ||
			    (lo = provider_pct_hexval(v[2])) < 0) {
				free(buf);
				return E_INVAL;
			}
			buf[n++] = (unsigned char)(hi << 4 | lo);
			v += 2;
		}
	}
	*out = buf;
	*outlen = n;
	return E_OK;
}

/*
 * Keep only characters that are harmless in a log line, a JSON answer and a file name.
 * Spaces only where asked for (event names: "Push Hook"): a delivery id is one word, as
 * the daemon checks (privsep.c) and as key=value log lines need.
 */
void
provider_safe_copy(char *dst, size_t dstlen, const char *src, int space)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._:{}/@+=-";
	size_t n = 0;

	if (dstlen == 0)
		return;
	for (; src != NULL && *src != '\0' && n + 1 < dstlen; src++)
		dst[n++] = strchr(ok, *src) != NULL || (space && *src == ' ') ? *src : '_';
	dst[n] = '\0';
}

/* A commit id as the payload gives it: 40 lowercase hex digits, else left empty. */
void
provider_copy_sha(char dst[SHA_HEX], json_t *v)
{
	const char *s = json_string_value(v);
	size_t i;

	dst[0] = '\0';
	if (s == NULL || strlen(s) != SHA_HEX - 1)
		return;
	for (i = 0; i < SHA_HEX - 1; i++)
		if (provider_hexval((unsigned char)s[i]) < 0)
			return;
	memcpy(dst, s, SHA_HEX);
}

static int
provider_zero_sha(const char *s)
{
	return strspn(s, "0") == SHA_HEX - 1;
}

void
provider_set_event(struct hook_payload *pl, const char *event, const struct hook_event *map)
{
	provider_safe_copy(pl->event, sizeof(pl->event), event != NULL ? event : "", 1);
	pl->kind = HOOK_OTHER;
	for (; event != NULL && map->name != NULL; map++)
		if (strcmp(map->name, event) == 0)
			pl->kind = map->kind;
}

/*
 * Gitea's, Gogs's and GitLab's "test delivery" buttons send a push event whose before
 * and after are the same commit, which no real push can produce.
 */
static int
provider_test_push(json_t *root)
{
	json_t *b = json_object_get(root, "before"), *a = json_object_get(root, "after");

	if (json_is_string(b) && json_is_string(a))
		return strcmp(json_string_value(b), json_string_value(a)) == 0;
	return (b == NULL || json_is_null(b)) && (a == NULL || json_is_null(a));
}

/*
 * The ref/before/after/deleted shape shared by GitHub, Gitea, Forgejo, Gogs and GitLab.
 * With `tests`, a host's test delivery becomes a ping.
 */
int
provider_parse_push(json_t *root, int tests, struct hook_payload *pl, char *reason,
    size_t len)
{
	struct hook_ref *r = &pl->refs[0];
	const char *ref = json_string_value(json_object_get(root, "ref"));

	if (tests && provider_test_push(root)) {
		pl->kind = HOOK_PING;
		return E_OK;
	}
	if (ref == NULL) {
		util_strlcpy(reason, "push payload without a ref", len);
		return E_INVAL;
	}
	/* An over-long ref cannot be the tracked one; keep it empty so it never matches. */
	if (util_strlcpy(r->ref, ref, sizeof(r->ref)) >= sizeof(r->ref))
		r->ref[0] = '\0';
	provider_copy_sha(r->before, json_object_get(root, "before"));
	provider_copy_sha(r->after, json_object_get(root, "after"));
	r->deleted = json_is_true(json_object_get(root, "deleted")) ||
	    provider_zero_sha(r->after);
	pl->nrefs = 1;
	return E_OK;
}

static int
provider_content_type(const struct hook_request *req)
{
	static const struct {
		const char *type;
		int	    ct;
	} types[] = {
		{ "application/json", PROVIDER_CT_JSON },
		{ "application/x-www-form-urlencoded", PROVIDER_CT_FORM },
	};
	const char *v = provider_header(req, "Content-Type");
	size_t i, n;

	if (v == NULL)
		return PROVIDER_CT_OTHER;
	v += strspn(v, " \t");
	n = strcspn(v, "; \t");		/* parameters such as charset are fine */
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].type) == n && strncasecmp(v, types[i].type, n) == 0)
			return types[i].ct;
	return PROVIDER_CT_OTHER;
}

static int
provider_refuse(struct hook_result *res, int status, const char *reason)
{
	res->status = status;
	res->queue = 0;
	util_strlcpy(res->reason, reason, sizeof(res->reason));
	return status;
}

/* Does this ref change ring the site's doorbell? If not, say why. */
static int
provider_ref_verdict(const struct hook_site *site, const struct hook_ref *r,
    const char **why)
{
	const char *name;

	if (strncmp(r->ref, "refs/heads/", 11) == 0) {
		name = r->ref + 11;
		if (r->deleted)
			*why = "branch deletion";
		else if (site->branch != NULL && strcmp(name, site->branch) == 0)
			return 1;
		else
			*why = "push to another ref";
	} else if (strncmp(r->ref, "refs/tags/", 10) == 0) {
		name = r->ref + 10;
		if (r->deleted)
			*why = "tag deletion";
		else if (site->tags != NULL && fnmatch(site->tags, name, 0) == 0)
			return 1;
		else
			*why = site->tags != NULL ? "push to another ref" : "tag push";
	} else {
		*why = "push to another ref";
	}
	return 0;
}

static int
provider_decide(const struct hook_site *site, const struct hook_payload *pl,
    struct hook_result *res)
{
	const struct hook_ref *r;
	const char *why = NULL, *first = NULL;
	size_t i;

	res->kind = pl->kind;
	util_strlcpy(res->event, pl->event, sizeof(res->event));
	if (pl->kind == HOOK_PING)
		return provider_refuse(res, 200, "ping");
	if (pl->kind != HOOK_PUSH) {
		snprintf(res->reason, sizeof(res->reason), "event %s ignored",
		    pl->event[0] != '\0' ? pl->event : "(none)");
		res->status = 202;
		return 202;
	}
	if (pl->nrefs == 0)
		return provider_refuse(res, 202, "push without ref changes");
	for (i = 0; i < pl->nrefs; i++) {
		r = &pl->refs[i];
		if (provider_ref_verdict(site, r, &why)) {
			util_strlcpy(res->ref, r->ref, sizeof(res->ref));
			util_strlcpy(res->after, r->after, sizeof(res->after));
			res->queue = 1;
			res->status = 202;
			return 202;
		}
		if (first == NULL) {
			first = why;
			util_strlcpy(res->ref, r->ref, sizeof(res->ref));
			util_strlcpy(res->after, r->after, sizeof(res->after));
		}
	}
	return provider_refuse(res, 202, first);
}

/*
 * Decide the answer to one webhook. Checks run cheapest and least revealing first:
 * who sent it (403), what it is (415, 400 for a broken form), whether the sender knows
 * the secret (401), and only then the JSON is parsed (400) and the ref judged (200/202).
 */
int
provider_handle(const struct hook_site *site, const unsigned char *secret,
    size_t secret_len, int64_t tolerance_ms, const struct hook_request *req,
    struct hook_result *res)
{
	const struct hook_provider *p = NULL;
	struct hook_input in;
	struct hook_payload pl;
	unsigned char *form = NULL;
	const char *v;
	char reason[HOOK_REASON_MAX];
	json_error_t jerr;
	json_t *root = NULL;
	size_t i;
	int ct;

	memset(res, 0, sizeof(*res));
	res->provider = "";
	if (req->method == NULL || strcmp(req->method, "POST") != 0)
		return provider_refuse(res, 405, "method not allowed");
	for (i = 0; i < PROVIDER_COUNT && p == NULL; i++)
		if (provider_table[i].detect(req))
			p = &provider_table[i];
	if (p == NULL)
		return provider_refuse(res, 400, "no webhook event header from a known provider");
	res->provider = p->name;
	for (i = 0; i < 3 && p->delivery[i] != NULL; i++) {
		if ((v = provider_header(req, p->delivery[i])) != NULL && *v != '\0') {
			provider_safe_copy(res->delivery, sizeof(res->delivery), v, 0);
			break;
		}
	}
	if ((site->providers & p->bit) == 0)
		return provider_refuse(res, 403, "provider not allowed for this site");

	memset(&in, 0, sizeof(in));
	in.req = req;
	in.site = site;
	in.secret = secret;
	in.secret_len = secret_len;
	in.tolerance_ms = tolerance_ms;
	in.json = req->body;
	in.json_len = req->body_len;
	if ((ct = provider_content_type(req)) == PROVIDER_CT_OTHER)
		return provider_refuse(res, 415,
		    "unsupported content type (use application/json)");
	if (ct == PROVIDER_CT_FORM) {
		switch (provider_form_payload(req->body, req->body_len, &form, &in.json_len)) {
		case E_OK:
			break;
		case E_NOTFOUND:
			return provider_refuse(res, 400, "form body without payload=");
		default:
			return provider_refuse(res, 400, "malformed form encoding");
		}
		in.json = form;
		in.form = 1;
	}

	reason[0] = '\0';
	if (p->verify(&in, reason, sizeof(reason)) != E_OK) {
		provider_refuse(res, 401, reason[0] != '\0' ? reason : "bad signature");
		goto out;
	}
	/* jansson bounds nesting depth itself; duplicates would let two readers disagree. */
	root = json_loadb((const char *)in.json, in.json_len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		provider_refuse(res, 400, "malformed JSON");
		goto out;
	}
	if (!json_is_object(root)) {
		provider_refuse(res, 400, "JSON payload is not an object");
		goto out;
	}
	memset(&pl, 0, sizeof(pl));
	reason[0] = '\0';
	if (p->parse(&in, root, &pl, reason, sizeof(reason)) != E_OK) {
		provider_refuse(res, 400, reason[0] != '\0' ? reason : "malformed payload");
		goto out;
	}
	provider_decide(site, &pl, res);
out:
	json_decref(root);
	free(form);
	return res->status;
}
