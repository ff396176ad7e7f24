/* hook.c: what every provider shares: headers, MACs, form bodies, push payloads and safe copies. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "hooks/hooks.h"

const char *
hook_header_value(const struct hook_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value != NULL ? req->headers[i].value : "";
	return NULL;
}

int
hook_has_prefix(const struct hook_request *req, const char *prefix)
{
	size_t i, n = strlen(prefix);

	for (i = 0; i < req->nheaders; i++)
		if (strncasecmp(req->headers[i].name, prefix, n) == 0)
			return 1;
	return 0;
}

/* HMAC over several parts, so that "id.timestamp.body" needs no copy of a 25 MiB body. */
int
hook_hmac(const char *digest, const unsigned char *key, size_t keylen,
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
hook_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;	/* hosts send lowercase; anything else is not their signature */
}

/* Percent-escapes may use either case; "| 0x20" alone would also let control bytes in. */
static int
hook_pct_hexval(unsigned char c)
{
	return hook_hexval(c >= 'A' && c <= 'F' ? c + ('a' - 'A') : c);
}

/*
 * Check a hex MAC of data with the site's secret. Returns 0 on a match, else E_INVAL
 * with a reason naming the header `what`, never the expected MAC or the key.
 */
int
hook_check_hex(const char *digest, size_t maclen, const char *hex,
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
		if ((hi = hook_hexval((unsigned char)hex[2 * i])) < 0 ||
		    (lo = hook_hexval((unsigned char)hex[2 * i + 1])) < 0)
			goto malformed;
		given[i] = (unsigned char)(hi << 4 | lo);
	}
	if (hook_hmac(digest, in->secret, in->secret_len, parts, &len, 1, want,
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
hook_form_payload(const unsigned char *body, size_t len, unsigned char **out,
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
			    (hi = hook_pct_hexval(v[1])) < 0 ||
			    (lo = hook_pct_hexval(v[2])) < 0) {
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
hook_safe_copy(char *dst, size_t dstlen, const char *src, int space)
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
hook_copy_sha(char dst[SHA_HEX], json_t *v)
{
	const char *s = json_string_value(v);
	size_t i;

	dst[0] = '\0';
	if (s == NULL || strlen(s) != SHA_HEX - 1)
		return;
	for (i = 0; i < SHA_HEX - 1; i++)
		if (hook_hexval((unsigned char)s[i]) < 0)
			return;
	memcpy(dst, s, SHA_HEX);
}

static int
hook_zero_sha(const char *s)
{
	return strspn(s, "0") == SHA_HEX - 1;
}

void
hook_set_event(struct hook_payload *pl, const char *event, const struct hook_event *map)
{
	hook_safe_copy(pl->event, sizeof(pl->event), event != NULL ? event : "", 1);
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
hook_test_push(json_t *root)
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
hook_parse_push(json_t *root, int tests, struct hook_payload *pl, char *reason,
    size_t len)
{
	struct hook_ref *r = &pl->refs[0];
	const char *ref = json_string_value(json_object_get(root, "ref"));

	if (tests && hook_test_push(root)) {
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
	hook_copy_sha(r->before, json_object_get(root, "before"));
	hook_copy_sha(r->after, json_object_get(root, "after"));
	r->deleted = json_is_true(json_object_get(root, "deleted")) ||
	    hook_zero_sha(r->after);
	pl->nrefs = 1;
	return E_OK;
}
