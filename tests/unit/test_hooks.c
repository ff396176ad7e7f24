/* test_hooks.c: webhook verification and parsing, with realistic payloads signed the way each host signs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hooks/hooks.h"

#define SECRET		"s3cr3t-for-the-www-site"
#define C2		"6b1f53303a732ccc8c6aae6640399827c15250e3"
#define C3		"a625406f6977d45c1391b078f4d3656e0b75bfcb"
#define NOW_MS		1764064800000LL		/* 2025-11-25T10:00:00Z */

/* A request under construction: up to 16 headers, a body, and the site it is for. */
struct treq {
	struct hook_header	h[16];
	char			hv[16][256];
	size_t			n;
	char		       *body;
	size_t			len;
	struct hook_site	site;
	const char	       *secret;
	struct hook_result	res;
};

static char *
fixture(const char *name, size_t *len)
{
	const char *dir = getenv("TEST_DATA_DIR");
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	if (dir == NULL || *dir == '\0')
		dir = "../tests/unit/data";
	snprintf(path, sizeof(path), "%s/hooks/%s", dir, name);
	if ((f = fopen(path, "rb")) == NULL)
		fail_msg("cannot open fixture %s (set TEST_DATA_DIR)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = util_xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* The test's own HMAC: OpenSSL's one-shot HMAC(), not the code under test. */
static void
hmac_hex(const EVP_MD *md, const char *key, const void *data, size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0, i;

	assert_non_null(HMAC(md, key, (int)strlen(key), data, len, mac, &maclen));
	for (i = 0; i < maclen; i++)
		sprintf(out + 2 * i, "%02x", mac[i]);
	out[2 * maclen] = '\0';
}

/* Encode like Go's url.QueryEscape, which Gitea, Forgejo and Gogs use. */
static char *
form_encode(const char *json, size_t len, size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = util_xmalloc(8 + 3 * len + 1);
	size_t i, n = 0;

	memcpy(out, "payload=", 8);
	n = 8;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)json[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-_.~", c) != NULL) {
			out[n++] = (char)c;
		} else if (c == ' ') {
			out[n++] = '+';
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

static struct treq *
treq_new(const char *fixture_name)
{
	struct treq *t = util_xcalloc(1, sizeof(*t));

	t->site.name = (char *)(uintptr_t)"www";
	t->site.branch = (char *)(uintptr_t)"main";
	t->site.providers = PROV_ALL;
	t->secret = SECRET;
	if (fixture_name != NULL)
		t->body = fixture(fixture_name, &t->len);
	else
		t->body = util_xstrdup("");
	return t;
}

static void
treq_free(struct treq *t)
{
	free(t->body);
	free(t);
}

static void
treq_body(struct treq *t, const char *body)
{
	free(t->body);
	t->body = util_xstrdup(body);
	t->len = strlen(body);
}

static void
hdr(struct treq *t, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
hdr(struct treq *t, const char *name, const char *fmt, ...)
{
	va_list ap;

	assert_true(t->n < 16);
	va_start(ap, fmt);
	vsnprintf(t->hv[t->n], sizeof(t->hv[t->n]), fmt, ap);
	va_end(ap);
	t->h[t->n].name = name;
	t->h[t->n].value = t->hv[t->n];
	t->n++;
}

/* Replace the body by its form encoding; returns the JSON it encodes, which the caller frees. */
static char *
treq_to_form(struct treq *t)
{
	char *json = t->body;
	size_t jl = t->len;

	t->body = form_encode(json, jl, &t->len);
	(void)jl;
	return json;
}

static int
run(struct treq *t)
{
	struct hook_request req;

	req.method = "POST";
	req.headers = t->h;
	req.nheaders = t->n;
	req.body = (const unsigned char *)t->body;
	req.body_len = t->len;
	req.now_ms = NOW_MS;
	return provider_handle(&t->site, (const unsigned char *)t->secret, strlen(t->secret),
	    5 * 60 * 1000, &req, &t->res);
}

/* A refusal must never carry the secret or the MAC the server expected. */
static void
assert_refused(struct treq *t, int status, const char *expected_mac)
{
	assert_int_equal(run(t), status);
	assert_int_equal(t->res.status, status);
	assert_int_equal(t->res.queue, 0);
	assert_true(t->res.reason[0] != '\0');
	assert_null(strstr(t->res.reason, SECRET));
	assert_null(strstr(t->res.reason, t->secret));
	if (expected_mac != NULL)
		assert_null(strstr(t->res.reason, expected_mac));
}

static void
assert_queued(struct treq *t, const char *provider, const char *ref, const char *after)
{
	assert_int_equal(run(t), 202);
	assert_int_equal(t->res.queue, 1);
	assert_string_equal(t->res.provider, provider);
	assert_string_equal(t->res.ref, ref);
	assert_string_equal(t->res.after, after);
}

static void
assert_ignored(struct treq *t, const char *reason)
{
	assert_int_equal(run(t), 202);
	assert_int_equal(t->res.queue, 0);
	assert_string_equal(t->res.reason, reason);
}

/* GitHub's headers around a body signed with secret (NULL: unsigned). */
static void
github_headers(struct treq *t, const char *event, const char *ctype)
{
	char sig[129];

	hdr(t, "Content-Type", "%s", ctype);
	hdr(t, "User-Agent", "GitHub-Hookshot/5f1c0e2");
	hdr(t, "X-GitHub-Event", "%s", event);
	hdr(t, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	hdr(t, "X-GitHub-Hook-ID", "445566778");
	hmac_hex(EVP_sha1(), t->secret, t->body, t->len, sig);
	hdr(t, "X-Hub-Signature", "sha1=%s", sig);
}

static void
github_sign(struct treq *t)
{
	char sig[129];

	hmac_hex(EVP_sha256(), t->secret, t->body, t->len, sig);
	hdr(t, "X-Hub-Signature-256", "sha256=%s", sig);
}

/* ---- the GitHub test vector ---- */

static void
t_github_vector(void **state)
{
	static const char want[] =
	    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
	const char *key = "It's a Secret to Everybody";
	const unsigned char *parts[1] = { (const unsigned char *)"Hello, World!" };
	size_t lens[1] = { 13 };
	unsigned char mac[32];
	char hex[65];
	struct treq *t;
	size_t i;

	(void)state;
	assert_int_equal(hook_hmac("SHA256", (const unsigned char *)key, strlen(key),
	    parts, lens, 1, mac, sizeof(mac)), E_OK);
	for (i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	assert_string_equal(hex, want);

	/* Through the whole path: the signature passes, so the non-JSON body is a 400, not a 401. */
	t = treq_new(NULL);
	t->secret = key;
	treq_body(t, "Hello, World!");
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "push");
	hdr(t, "X-Hub-Signature-256", "sha256=%s", want);
	assert_refused(t, 400, NULL);
	assert_string_equal(t->res.reason, "malformed JSON");
	treq_free(t);

	/* One bit off in the vector's MAC is a 401. */
	t = treq_new(NULL);
	t->secret = key;
	treq_body(t, "Hello, World!");
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "push");
	hdr(t, "X-Hub-Signature-256",
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e16");
	assert_refused(t, 401, want);
	treq_free(t);
}

/* ---- GitHub ---- */

static void
t_github_push_json(void **state)
{
	struct treq *t = treq_new("github-push.json");

	(void)state;
	assert_true(t->len > 7000);	/* realistic size, nested objects */
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_queued(t, "github", "refs/heads/main", C3);
	assert_string_equal(t->res.delivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	assert_string_equal(t->res.event, "push");
	assert_int_equal(t->res.kind, HOOK_PUSH);
	treq_free(t);
}

static void
t_github_push_form(void **state)
{
	struct treq *t = treq_new("github-push.json");
	char *json = treq_to_form(t);

	(void)state;
	/* GitHub signs the form body exactly as sent. */
	github_headers(t, "push", "application/x-www-form-urlencoded");
	github_sign(t);
	assert_queued(t, "github", "refs/heads/main", C3);
	treq_free(t);

	/* A form delivery signed over the decoded JSON is Gitea's rule, not GitHub's. */
	t = treq_new("github-push.json");
	free(t->body);
	t->body = json;
	t->len = strlen(json);
	github_headers(t, "push", "application/x-www-form-urlencoded");
	github_sign(t);		/* signs the JSON... */
	json = treq_to_form(t);	/* ...then the body becomes a form */
	assert_refused(t, 401, NULL);
	free(json);
	treq_free(t);
}

static void
t_github_charset(void **state)
{
	struct treq *t = treq_new("github-push.json");

	(void)state;
	github_headers(t, "push", "application/json; charset=utf-8");
	github_sign(t);
	assert_queued(t, "github", "refs/heads/main", C3);
	treq_free(t);
}

static void
t_github_bad_signatures(void **state)
{
	static const char *const bad[] = {
		NULL,		/* missing */
		"",		/* empty, as a host with no secret set sends */
		"sha256=0000000000000000000000000000000000000000000000000000000000000000",
		"UPPER",	/* the right MAC in uppercase */
		"TRUNC",	/* the right MAC minus its last digit */
		"NOPREFIX",	/* the right MAC without sha256= */
		"LONG",		/* the right MAC plus one digit */
		"OTHERBODY",	/* a MAC of another body */
		"WRONGKEY",	/* the right body with another secret */
		"sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	};
	char good[129], *p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct treq *t = treq_new("github-push.json");

		hdr(t, "Content-Type", "application/json");
		hdr(t, "X-GitHub-Event", "push");
		hdr(t, "X-GitHub-Delivery", "d-%zu", i);
		hmac_hex(EVP_sha256(), SECRET, t->body, t->len, good);
		if (bad[i] == NULL) {
			/* no header at all */
		} else if (strcmp(bad[i], "UPPER") == 0) {
			for (p = good; *p; p++)
				if (*p >= 'a' && *p <= 'f')
					*p = (char)(*p - 'a' + 'A');
			hdr(t, "X-Hub-Signature-256", "sha256=%s", good);
		} else if (strcmp(bad[i], "TRUNC") == 0) {
			good[63] = '\0';
			hdr(t, "X-Hub-Signature-256", "sha256=%s", good);
		} else if (strcmp(bad[i], "NOPREFIX") == 0) {
			hdr(t, "X-Hub-Signature-256", "%s", good);
		} else if (strcmp(bad[i], "LONG") == 0) {
			hdr(t, "X-Hub-Signature-256", "sha256=%s0", good);
		} else if (strcmp(bad[i], "OTHERBODY") == 0) {
			char other[129];

			hmac_hex(EVP_sha256(), SECRET, "{\"ref\":\"refs/heads/main\"}", 24, other);
			hdr(t, "X-Hub-Signature-256", "sha256=%s", other);
		} else if (strcmp(bad[i], "WRONGKEY") == 0) {
			char other[129];

			hmac_hex(EVP_sha256(), SECRET "x", t->body, t->len, other);
			hdr(t, "X-Hub-Signature-256", "sha256=%s", other);
		} else {
			hdr(t, "X-Hub-Signature-256", "%s", bad[i]);
		}
		hmac_hex(EVP_sha256(), SECRET, t->body, t->len, good);
		assert_refused(t, 401, good);
		/* The delivery id is known even when refused, for the log. */
		assert_string_equal(t->res.provider, "github");
		treq_free(t);
	}
}

static void
t_github_sha1(void **state)
{
	struct treq *t;

	(void)state;
	/* SHA-1 alone, not allowed: 401 */
	t = treq_new("github-push.json");
	github_headers(t, "push", "application/json");
	assert_refused(t, 401, NULL);
	assert_non_null(strstr(t->res.reason, "allow_sha1"));
	treq_free(t);

	/* SHA-1 alone, allowed: queued */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	github_headers(t, "push", "application/json");
	assert_queued(t, "github", "refs/heads/main", C3);
	treq_free(t);

	/* SHA-1 allowed but wrong */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "push");
	hdr(t, "X-Hub-Signature", "sha1=%s", "0123456789abcdef0123456789abcdef01234567");
	assert_refused(t, 401, NULL);
	treq_free(t);

	/* A bad SHA-256 is not rescued by a good SHA-1. */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	github_headers(t, "push", "application/json");
	hdr(t, "X-Hub-Signature-256", "sha256=%064d", 0);
	assert_refused(t, 401, NULL);
	treq_free(t);
}

static void
t_github_ping(void **state)
{
	struct treq *t = treq_new("github-ping.json");

	(void)state;
	github_headers(t, "ping", "application/json");
	github_sign(t);
	assert_int_equal(run(t), 200);
	assert_int_equal(t->res.queue, 0);
	assert_int_equal(t->res.kind, HOOK_PING);
	treq_free(t);

	/* An unsigned ping is refused too: the host then shows the hook's secret is wrong. */
	t = treq_new("github-ping.json");
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "ping");
	assert_refused(t, 401, NULL);
	treq_free(t);
}

static void
t_github_refs(void **state)
{
	struct treq *t;

	(void)state;
	/* push to another ref */
	t = treq_new("github-push.json");
	t->site.branch = (char *)(uintptr_t)"production";
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_ignored(t, "push to another ref");
	treq_free(t);

	/* deletion of the tracked branch never queues */
	t = treq_new("github-delete.json");
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_ignored(t, "branch deletion");
	assert_string_equal(t->res.ref, "refs/heads/main");
	treq_free(t);

	/* a tag push on a branch-tracking site */
	t = treq_new("github-tag.json");
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_ignored(t, "tag push");
	treq_free(t);

	/* the same tag on a site that tracks v* */
	t = treq_new("github-tag.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_queued(t, "github", "refs/tags/v1.4.0", "f0f705ab066fbe063e0fa7be229ae035d1d97c2c");
	treq_free(t);

	/* a tag that does not match the glob */
	t = treq_new("github-tag.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"release-*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_ignored(t, "push to another ref");
	treq_free(t);

	/* a branch push on a tag-tracking site */
	t = treq_new("github-push.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_ignored(t, "push to another ref");
	treq_free(t);

	/* another event */
	t = treq_new("github-ping.json");
	github_headers(t, "issues", "application/json");
	github_sign(t);
	assert_ignored(t, "event issues ignored");
	treq_free(t);
}

/* ---- content types and malformed bodies ---- */

static void
t_content_types(void **state)
{
	static const char *const types[] = { "text/plain", "application/xml",
	    "multipart/form-data; boundary=x", "application/jsonx", NULL };
	struct treq *t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		t = treq_new("github-push.json");
		if (types[i] != NULL)
			hdr(t, "Content-Type", "%s", types[i]);
		hdr(t, "X-GitHub-Event", "push");
		github_sign(t);
		assert_refused(t, 415, NULL);
		treq_free(t);
	}
}

static void
t_malformed(void **state)
{
	static const struct {
		const char *ctype;
		const char *body;
		int	    status;
		const char *reason;
	} cases[] = {
		{ "application/json", "this is not json", 400, "malformed JSON" },
		{ "application/json", "", 400, "malformed JSON" },
		{ "application/json", "{\"ref\":\"refs/heads/main\"", 400, "malformed JSON" },
		{ "application/json", "[1,2,3]", 400, "JSON payload is not an object" },
		{ "application/json", "{\"ref\":\"a\",\"ref\":\"refs/heads/main\"}", 400,
		    "malformed JSON" },
		{ "application/json", "{\"after\":\"" C3 "\"}", 400, "push payload without a ref" },
		{ "application/x-www-form-urlencoded", "ref=refs%2Fheads%2Fmain", 400,
		    "form body without payload=" },
		{ "application/x-www-form-urlencoded", "", 400, "form body without payload=" },
		{ "application/x-www-form-urlencoded", "xpayload=%7B%7D", 400,
		    "form body without payload=" },
		{ "application/x-www-form-urlencoded", "payload=%7B%zz", 400,
		    "malformed form encoding" },
		{ "application/x-www-form-urlencoded", "payload=%7", 400,
		    "malformed form encoding" },
		{ "application/x-www-form-urlencoded", "payload=not+json", 400, "malformed JSON" },
	};
	struct treq *t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t = treq_new(NULL);
		treq_body(t, cases[i].body);
		github_headers(t, "push", cases[i].ctype);
		github_sign(t);
		assert_refused(t, cases[i].status, NULL);
		assert_string_equal(t->res.reason, cases[i].reason);
		treq_free(t);
	}
}

/* Nesting far past jansson's depth limit is a 400, not a stack overflow. */
static void
t_deep_json(void **state)
{
	struct treq *t = treq_new(NULL);
	size_t n = 200000, i;

	(void)state;
	free(t->body);
	t->body = util_xmalloc(2 * n + 1);
	for (i = 0; i < n; i++) {
		t->body[i] = '[';
		t->body[n + i] = ']';
	}
	t->body[2 * n] = '\0';
	t->len = 2 * n;
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_refused(t, 400, NULL);
	treq_free(t);
}

static void
t_form_payload(void **state)
{
	static const struct {
		const char *in;
		const char *out;
		int	    rc;
	} cases[] = {
		{ "payload=%7B%22a%22%3A+1%7D", "{\"a\": 1}", E_OK },
		{ "a=1&payload=%7b%7d&b=2", "{}", E_OK },
		{ "payloads=1&payload=x", "x", E_OK },
		{ "payload=", "", E_OK },
		{ "a=1&b=2", NULL, E_NOTFOUND },
		{ "payload=%G0", NULL, E_INVAL },
	};
	unsigned char *out;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(hook_form_payload((const unsigned char *)cases[i].in,
		    strlen(cases[i].in), &out, &len), cases[i].rc);
		if (cases[i].out == NULL) {
			assert_null(out);
			continue;
		}
		assert_int_equal(len, strlen(cases[i].out));
		assert_memory_equal(out, cases[i].out, len);
		free(out);
	}
}

/* ---- site policy ---- */

static void
t_policy(void **state)
{
	struct hook_request req;
	struct treq *t;

	(void)state;
	t = treq_new("github-push.json");
	t->site.providers = PROV_GITLAB | PROV_GITEA;
	github_headers(t, "push", "application/json");
	github_sign(t);
	assert_refused(t, 403, NULL);
	assert_string_equal(t->res.provider, "github");
	treq_free(t);

	/* No provider's header at all. */
	t = treq_new("github-push.json");
	hdr(t, "Content-Type", "application/json");
	github_sign(t);
	assert_refused(t, 400, NULL);
	assert_string_equal(t->res.provider, "");
	treq_free(t);

	/* A GET (a proxy's redirect turned the POST into one) */
	t = treq_new(NULL);
	github_headers(t, "push", "application/json");
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.headers = t->h;
	req.nheaders = t->n;
	req.body = (const unsigned char *)"";
	assert_int_equal(provider_handle(&t->site, (const unsigned char *)SECRET,
	    strlen(SECRET), 0, &req, &t->res), 405);
	treq_free(t);
}

/*
 * A delivery id is one safe word whatever the header held: no space either, since the
 * daemon refuses a record with one (fuzz_http found the listener sending it, answered 503).
 */
static void
t_delivery_sanitized(void **state)
{
	struct treq *t = treq_new("github-push.json");

	(void)state;
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "push\r\nX: y");
	hdr(t, "X-GitHub-Delivery", "%s", "abc\ninjected \"quote\" %s <tag>");
	github_sign(t);
	assert_int_equal(run(t), 202);
	assert_string_equal(t->res.delivery, "abc_injected__quote___s__tag_");
	assert_string_equal(t->res.reason, "event push__X: y ignored");
	treq_free(t);

	t = treq_new("github-push.json");
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-GitHub-Event", "push");
	hdr(t, "X-GitHub-Delivery", "%0200d", 7);
	github_sign(t);
	assert_int_equal(run(t), 202);
	assert_int_equal(strlen(t->res.delivery), HOOK_DELIVERY_MAX - 1);
	treq_free(t);
}

/* ---- Gitea, Forgejo, Gogs: they sign the JSON, also inside a form ---- */

struct gitea_like {
	const char *provider;
	const char *fixture;
	const char *const *sig_headers;	/* every signature header the host sends */
	const char *event_header;
	const char *delivery_header;
};

static const char *const gitea_sigs[] = { "X-Gitea-Signature", "X-Gogs-Signature", NULL };
static const char *const forgejo_sigs[] = { "X-Forgejo-Signature", "X-Gitea-Signature",
	"X-Gogs-Signature", NULL };
static const char *const gogs_sigs[] = { "X-Gogs-Signature", NULL };

static const struct gitea_like gitea_hosts[] = {
	{ "gitea", "gitea-push.json", gitea_sigs, "X-Gitea-Event", "X-Gitea-Delivery" },
	{ "forgejo", "forgejo-push.json", forgejo_sigs, "X-Forgejo-Event", "X-Forgejo-Delivery" },
	{ "gogs", "gogs-push.json", gogs_sigs, "X-Gogs-Event", "X-Gogs-Delivery" },
};

/* The headers a Gitea-family host sends, signing `signed_json` with `key`. */
static void
gitea_headers(struct treq *t, const struct gitea_like *g, const char *event,
    const char *ctype, const char *signed_json, size_t sl, const char *key)
{
	char sig[129];
	size_t i;

	hmac_hex(EVP_sha256(), key, signed_json, sl, sig);
	hdr(t, "Content-Type", "%s", ctype);
	hdr(t, g->event_header, "%s", event);
	hdr(t, g->delivery_header, "e1f7c2a0-51b4-4c54-8a29-%s", g->provider);
	for (i = 0; g->sig_headers[i] != NULL; i++)
		hdr(t, g->sig_headers[i], "%s", sig);
	if (strcmp(g->provider, "gogs") != 0) {
		/* Gitea and Forgejo also send GitHub-style headers: detection must not pick GitHub. */
		hdr(t, "X-GitHub-Event", "%s", event);
		hdr(t, "X-Hub-Signature-256", "sha256=%s", sig);
	}
}

static void
t_gitea_family(void **state)
{
	const struct gitea_like *g;
	struct treq *t;
	char *json;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(gitea_hosts) / sizeof(gitea_hosts[0]); i++) {
		g = &gitea_hosts[i];

		/* JSON body */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, SECRET);
		assert_queued(t, g->provider, "refs/heads/main", C2);
		assert_non_null(strstr(t->res.delivery, g->provider));
		treq_free(t);

		/* form body, signed over the decoded JSON */
		t = treq_new(g->fixture);
		json = treq_to_form(t);
		gitea_headers(t, g, "push", "application/x-www-form-urlencoded", json,
		    strlen(json), SECRET);
		assert_queued(t, g->provider, "refs/heads/main", C2);
		treq_free(t);

		/* form body signed over the raw form body: not how these hosts sign */
		t = treq_new(g->fixture);
		free(json);
		json = treq_to_form(t);
		gitea_headers(t, g, "push", "application/x-www-form-urlencoded", t->body,
		    t->len, SECRET);
		assert_refused(t, 401, NULL);
		treq_free(t);

		/* wrong secret */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, "wrong");
		assert_refused(t, 401, NULL);
		treq_free(t);

		/* no secret on the hook: the host sends the headers empty */
		t = treq_new(g->fixture);
		hdr(t, "Content-Type", "application/json");
		hdr(t, g->event_header, "push");
		hdr(t, g->sig_headers[0], "%s", "");
		assert_refused(t, 401, NULL);
		treq_free(t);

		/* a delete event is not a push */
		t = treq_new(g->fixture);
		gitea_headers(t, g, "delete", "application/json", t->body, t->len, SECRET);
		assert_ignored(t, "event delete ignored");
		treq_free(t);

		/* only this host allowed, or everything but this host */
		t = treq_new(g->fixture);
		t->site.providers = PROV_ALL & ~provider_bit(g->provider);
		gitea_headers(t, g, "push", "application/json", t->body, t->len, SECRET);
		assert_refused(t, 403, NULL);
		assert_string_equal(t->res.provider, g->provider);
		treq_free(t);
		free(json);
	}
}

static void
t_gitea_test_delivery(void **state)
{
	struct treq *t = treq_new("gitea-test.json");
	char *json;

	(void)state;
	gitea_headers(t, &gitea_hosts[0], "push", "application/json", t->body, t->len, SECRET);
	assert_int_equal(run(t), 200);
	assert_int_equal(t->res.queue, 0);
	assert_int_equal(t->res.kind, HOOK_PING);
	treq_free(t);

	t = treq_new("gitea-test.json");
	json = treq_to_form(t);
	gitea_headers(t, &gitea_hosts[0], "push", "application/x-www-form-urlencoded", json,
	    strlen(json), SECRET);
	assert_int_equal(run(t), 200);
	free(json);
	treq_free(t);
}

/* ---- GitLab ---- */

static void
gitlab_headers(struct treq *t, const char *event)
{
	hdr(t, "Content-Type", "application/json");
	hdr(t, "User-Agent", "GitLab/17.6.0");
	hdr(t, "X-Gitlab-Event", "%s", event);
	hdr(t, "X-Gitlab-Event-UUID", "2a1e8c0f-93b7-4f4e-b8a4-0d5c3e7f9a11");
	hdr(t, "X-Gitlab-Instance", "https://gitlab.example.org");
	hdr(t, "X-Gitlab-Webhook-UUID", "0b6d7a2c-51f4-4bde-9e31-8a27c4f1d655");
	hdr(t, "Idempotency-Key", "b0d1f2f0-0c32-4a6e-9d7b-3f1c2e5a7d90");
}

static void
t_gitlab_token(void **state)
{
	static const char *const wrong[] = {
		SECRET "x",			/* one byte longer */
		"s3cr3t-for-the-www-sit",	/* one byte shorter */
		"s3cr3t-for-the-www-sitf",	/* last byte off by one */
		"t3cr3t-for-the-www-site",	/* first byte off by one */
		"",
	};
	struct treq *t;
	size_t i;

	(void)state;
	t = treq_new("gitlab-push.json");
	gitlab_headers(t, "Push Hook");
	hdr(t, "X-Gitlab-Token", "%s", SECRET);
	assert_queued(t, "gitlab", "refs/heads/main", C2);
	/* Idempotency-Key is what stays the same when GitLab retries. */
	assert_string_equal(t->res.delivery, "b0d1f2f0-0c32-4a6e-9d7b-3f1c2e5a7d90");
	treq_free(t);

	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		t = treq_new("gitlab-push.json");
		gitlab_headers(t, "Push Hook");
		hdr(t, "X-Gitlab-Token", "%s", wrong[i]);
		assert_refused(t, 401, NULL);
		assert_null(strstr(t->res.reason, wrong[i][0] != '\0' ? wrong[i] : "\x01"));
		treq_free(t);
	}

	t = treq_new("gitlab-push.json");
	gitlab_headers(t, "Push Hook");
	assert_refused(t, 401, NULL);
	treq_free(t);
}

static void
t_gitlab_tags(void **state)
{
	struct treq *t;

	(void)state;
	t = treq_new("gitlab-tag-push.json");
	gitlab_headers(t, "Tag Push Hook");
	hdr(t, "X-Gitlab-Token", "%s", SECRET);
	assert_ignored(t, "tag push");
	treq_free(t);

	t = treq_new("gitlab-tag-push.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v[0-9]*";
	gitlab_headers(t, "Tag Push Hook");
	hdr(t, "X-Gitlab-Token", "%s", SECRET);
	assert_queued(t, "gitlab", "refs/tags/v1.4.0", "e544cde93a077a14b1a2075ef74ea5416f7b8581");
	treq_free(t);

	t = treq_new("gitlab-push.json");
	gitlab_headers(t, "Merge Request Hook");
	hdr(t, "X-Gitlab-Token", "%s", SECRET);
	assert_ignored(t, "event Merge Request Hook ignored");
	treq_free(t);
}

/* Standard Webhooks: "v1," + base64(HMAC-SHA256(key, id.ts.body)), key = whsec_<base64>. */
static void
gitlab_sign(struct treq *t, const unsigned char *key, size_t keylen, const char *id,
    long long ts, char *out, size_t outlen)
{
	unsigned char mac[32], b64[64];
	unsigned int maclen = 0;
	char *msg;

	msg = util_xasprintf("%s.%lld.%.*s", id, ts, (int)t->len, t->body);
	assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
	    strlen(msg), mac, &maclen));
	free(msg);
	EVP_EncodeBlock(b64, mac, 32);
	snprintf(out, outlen, "v1,%s", (const char *)b64);
}

static void
t_gitlab_signed(void **state)
{
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
	char secret[128], sig[128], other[128];
	unsigned char b64[64];
	const char *id = "msg_2Kq9iTnY1Xb3ZqQp7vR0";
	long long now = NOW_MS / 1000;
	struct treq *t;

	(void)state;
	EVP_EncodeBlock(b64, key, 32);
	snprintf(secret, sizeof(secret), "whsec_%s", (const char *)b64);

	/* within tolerance, also a little in the future (clock skew) */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now + 60, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now + 60);
	hdr(t, "webhook-signature", "%s", sig);
	assert_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* several signatures (key rotation): one matching is enough */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 100, sig, sizeof(sig));
	gitlab_sign(t, (const unsigned char *)"another key", 11, id, now - 100, other,
	    sizeof(other));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now - 100);
	hdr(t, "webhook-signature", "v1a,bm90IGEgc2lnbmF0dXJl %s %s", other, sig);
	assert_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* outside the 5 minute tolerance: a replay */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 301, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now - 301);
	hdr(t, "webhook-signature", "%s", sig);
	assert_refused(t, 401, sig + 3);
	assert_non_null(strstr(t->res.reason, "tolerance"));
	treq_free(t);

	/* signed with another key */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now);
	hdr(t, "webhook-signature", "%s", other);
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	assert_refused(t, 401, sig + 3);
	treq_free(t);

	/* the id is signed too: another id with the same signature fails */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", "msg_other");
	hdr(t, "webhook-timestamp", "%lld", now);
	hdr(t, "webhook-signature", "%s", sig);
	assert_refused(t, 401, NULL);
	treq_free(t);

	/* a secret without the whsec_ prefix is the key itself */
	t = treq_new("gitlab-push.json");
	gitlab_sign(t, (const unsigned char *)SECRET, strlen(SECRET), id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now);
	hdr(t, "webhook-signature", "%s", sig);
	assert_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* a bad signature is not rescued by a wrong token, and a good token rescues a stale one */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 3600, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now - 3600);
	hdr(t, "webhook-signature", "%s", sig);
	hdr(t, "X-Gitlab-Token", "%s", "not the secret");
	assert_refused(t, 401, NULL);
	assert_non_null(strstr(t->res.reason, "tolerance"));
	treq_free(t);

	/* no timestamp */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-signature", "%s", sig);
	assert_refused(t, 401, NULL);
	treq_free(t);
}

/*
 * One signature, one spelling (issue: libsodium 1.0.18 read 0x80..0xff as '/'). Every byte
 * at every position of a correct signature's base64 is refused with 401; the correct
 * signature, checked before and after, is still queued.
 */
static void
t_gitlab_signed_strict(void **state)
{
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
	char secret[128], sig[128], bad[128], id[64];
	unsigned char b64[64];
	long long now = NOW_MS / 1000;
	size_t pos, len, refused = 0;
	struct treq *t;
	int b, n;

	(void)state;
	EVP_EncodeBlock(b64, key, 32);
	snprintf(secret, sizeof(secret), "whsec_%s", (const char *)b64);
	/* a delivery whose signature has a '/', where the old decoder took 129 spellings */
	for (n = 0; n < 1000; n++) {
		snprintf(id, sizeof(id), "msg_2Kq9iTnY1Xb3ZqQp7vR%d", n);
		t = treq_new("gitlab-push.json");
		gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
		treq_free(t);
		if (strchr(sig, '/') != NULL)
			break;
	}
	assert_non_null(strchr(sig, '/'));
	len = strlen(sig);
	for (pos = 3; pos <= len; pos++) {
		for (b = 1; b < 256; b++) {
			if (b == (unsigned char)sig[pos] || b == ' ')
				continue;
			memcpy(bad, sig, len + 1);
			bad[pos] = (char)b;
			if (pos == len)
				bad[pos + 1] = '\0';	/* one byte appended */
			t = treq_new("gitlab-push.json");
			t->secret = secret;
			gitlab_headers(t, "Push Hook");
			hdr(t, "webhook-id", "%s", id);
			hdr(t, "webhook-timestamp", "%lld", now);
			hdr(t, "webhook-signature", "%s", bad);
			if (run(t) != 401)
				fail_msg("signature with byte 0x%02x at %zu: %d, want 401", b, pos,
				    t->res.status);
			refused++;
			treq_free(t);
		}
	}
	assert_true(refused > 40 * 250);

	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_headers(t, "Push Hook");
	hdr(t, "webhook-id", "%s", id);
	hdr(t, "webhook-timestamp", "%lld", now);
	hdr(t, "webhook-signature", "%s", sig);
	assert_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);
}

/* A whsec_ key that is not canonical base64 is no key: every delivery is refused. */
static void
t_gitlab_whsec_strict(void **state)
{
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
	char secret[128], sig[128];
	unsigned char b64[64], raw[256];
	const char *id = "msg_2Kq9iTnY1Xb3ZqQp7vR0";
	long long now = NOW_MS / 1000;
	size_t keylen;
	struct treq *t;
	int b;

	(void)state;
	EVP_EncodeBlock(b64, key, 32);
	snprintf(secret, sizeof(secret), "whsec_%s", (const char *)b64);
	assert_int_equal(gitlab_signing_key((const unsigned char *)secret, strlen(secret), raw,
	    sizeof(raw), &keylen), E_OK);
	assert_int_equal(keylen, 32);
	assert_memory_equal(raw, key, 32);
	for (b = 0x80; b <= 0xff; b += 0x15) {
		secret[6 + 4] = (char)b;
		assert_int_equal(gitlab_signing_key((const unsigned char *)secret, strlen(secret),
		    raw, sizeof(raw), &keylen), E_INVAL);
		t = treq_new("gitlab-push.json");
		t->secret = secret;
		gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
		gitlab_headers(t, "Push Hook");
		hdr(t, "webhook-id", "%s", id);
		hdr(t, "webhook-timestamp", "%lld", now);
		hdr(t, "webhook-signature", "%s", sig);
		assert_refused(t, 401, sig + 3);
		assert_non_null(strstr(t->res.reason, "not a usable signing key"));
		treq_free(t);
	}
	/* "whsec_" with nothing after it, and a key with a padding byte too many */
	assert_int_equal(gitlab_signing_key((const unsigned char *)"whsec_", 6, raw, sizeof(raw),
	    &keylen), E_INVAL);
	snprintf(secret, sizeof(secret), "whsec_%s=", (const char *)b64);
	assert_int_equal(gitlab_signing_key((const unsigned char *)secret, strlen(secret), raw,
	    sizeof(raw), &keylen), E_INVAL);
}

/* ---- Bitbucket ---- */

static void
bitbucket_headers(struct treq *t, const char *event, int dc)
{
	char sig[129];

	hmac_hex(EVP_sha256(), t->secret, t->body, t->len, sig);
	hdr(t, "Content-Type", dc ? "application/json; charset=utf-8" : "application/json");
	hdr(t, "X-Event-Key", "%s", event);
	if (dc) {
		hdr(t, "X-Request-Id", "1b0e3a4c-2f7d-4e9b-a1c6-5d8f0e2b7a93");
	} else {
		hdr(t, "User-Agent", "Bitbucket-Webhooks/2.0");
		hdr(t, "X-Request-UUID", "{3a7e2f4c-8b1d-4f6a-9c2e-0d5b7a1e3f80}");
		hdr(t, "X-Hook-UUID", "{5c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f}");
		hdr(t, "X-Attempt-Number", "1");
	}
	hdr(t, "X-Hub-Signature", "sha256=%s", sig);
}

static void
t_bitbucket(void **state)
{
	char sig[129];
	struct treq *t;

	(void)state;
	/* Cloud: two changes, the tracked branch second */
	t = treq_new("bitbucket-cloud-push.json");
	bitbucket_headers(t, "repo:push", 0);
	assert_queued(t, "bitbucket", "refs/heads/main", C2);
	assert_string_equal(t->res.delivery, "{3a7e2f4c-8b1d-4f6a-9c2e-0d5b7a1e3f80}");
	treq_free(t);

	/* Cloud: only the other branch tracked */
	t = treq_new("bitbucket-cloud-push.json");
	t->site.branch = (char *)(uintptr_t)"feature/search";
	bitbucket_headers(t, "repo:push", 0);
	assert_queued(t, "bitbucket", "refs/heads/feature/search",
	    "2f22765d04931a078909145ca628d2264c852d7d");
	treq_free(t);

	t = treq_new("bitbucket-cloud-push.json");
	t->site.branch = (char *)(uintptr_t)"gh-pages";
	bitbucket_headers(t, "repo:push", 0);
	assert_ignored(t, "push to another ref");
	treq_free(t);

	/* Cloud deletion: "new": null */
	t = treq_new("bitbucket-cloud-delete.json");
	bitbucket_headers(t, "repo:push", 0);
	assert_ignored(t, "branch deletion");
	treq_free(t);

	/* Data Center */
	t = treq_new("bitbucket-dc-refs-changed.json");
	bitbucket_headers(t, "repo:refs_changed", 1);
	assert_queued(t, "bitbucket", "refs/heads/main", C2);
	assert_string_equal(t->res.delivery, "1b0e3a4c-2f7d-4e9b-a1c6-5d8f0e2b7a93");
	treq_free(t);

	/* Data Center's "Test connection" */
	t = treq_new(NULL);
	treq_body(t, "{\"test\": true}");
	bitbucket_headers(t, "diagnostics:ping", 1);
	assert_int_equal(run(t), 200);
	treq_free(t);

	/* Bitbucket signs with SHA-256 only; a sha1= value is refused */
	t = treq_new("bitbucket-cloud-push.json");
	hmac_hex(EVP_sha1(), SECRET, t->body, t->len, sig);
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-Event-Key", "repo:push");
	hdr(t, "X-Hub-Signature", "sha1=%s", sig);
	assert_refused(t, 401, NULL);
	treq_free(t);

	/* wrong secret */
	t = treq_new("bitbucket-dc-refs-changed.json");
	t->secret = "not the secret";
	bitbucket_headers(t, "repo:refs_changed", 1);
	t->secret = SECRET;
	assert_refused(t, 401, NULL);
	treq_free(t);

	/* missing signature */
	t = treq_new("bitbucket-dc-refs-changed.json");
	hdr(t, "Content-Type", "application/json");
	hdr(t, "X-Event-Key", "repo:refs_changed");
	assert_refused(t, 401, NULL);
	treq_free(t);

	/* a push without changes is a malformed payload */
	t = treq_new(NULL);
	treq_body(t, "{\"push\": {}}");
	bitbucket_headers(t, "repo:push", 0);
	assert_refused(t, 400, NULL);
	treq_free(t);
}

static void
t_provider_names(void **state)
{
	static const char *const names[] = { "github", "gitea", "forgejo", "gogs", "gitlab",
	    "bitbucket" };
	unsigned all = 0, b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		b = provider_bit(names[i]);
		assert_int_not_equal(b, 0);
		assert_string_equal(provider_name(b), names[i]);
		all |= b;
	}
	assert_int_equal(all, PROV_ALL);
	assert_int_equal(provider_bit("GitHub"), 0);
	assert_int_equal(provider_bit("svn"), 0);
	assert_null(provider_name(1u << 20));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_github_vector),
		cmocka_unit_test(t_github_push_json),
		cmocka_unit_test(t_github_push_form),
		cmocka_unit_test(t_github_charset),
		cmocka_unit_test(t_github_bad_signatures),
		cmocka_unit_test(t_github_sha1),
		cmocka_unit_test(t_github_ping),
		cmocka_unit_test(t_github_refs),
		cmocka_unit_test(t_content_types),
		cmocka_unit_test(t_malformed),
		cmocka_unit_test(t_deep_json),
		cmocka_unit_test(t_form_payload),
		cmocka_unit_test(t_policy),
		cmocka_unit_test(t_delivery_sanitized),
		cmocka_unit_test(t_gitea_family),
		cmocka_unit_test(t_gitea_test_delivery),
		cmocka_unit_test(t_gitlab_token),
		cmocka_unit_test(t_gitlab_tags),
		cmocka_unit_test(t_gitlab_signed),
		cmocka_unit_test(t_gitlab_signed_strict),
		cmocka_unit_test(t_gitlab_whsec_strict),
		cmocka_unit_test(t_bitbucket),
		cmocka_unit_test(t_provider_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
