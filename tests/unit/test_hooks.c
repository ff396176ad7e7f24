/* test_hooks.c: the provider table and what every delivery meets, shown with GitHub. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hooks/hooks.h"
#include "tests/unit/treq.h"

static void
github_headers(struct treq *t, const char *event, const char *ctype)
{
	char sig[129];

	treq_hdr(t, "Content-Type", "%s", ctype);
	treq_hdr(t, "User-Agent", "GitHub-Hookshot/5f1c0e2");
	treq_hdr(t, "X-GitHub-Event", "%s", event);
	treq_hdr(t, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	treq_hdr(t, "X-GitHub-Hook-ID", "445566778");
	treq_hmac_hex(EVP_sha1(), t->secret, t->body, t->len, sig);
	treq_hdr(t, "X-Hub-Signature", "sha1=%s", sig);
}

static void
github_sign(struct treq *t)
{
	char sig[129];

	treq_hmac_hex(EVP_sha256(), t->secret, t->body, t->len, sig);
	treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", sig);
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
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "push");
	treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", want);
	treq_refused(t, 400, NULL);
	assert_string_equal(t->res.reason, "malformed JSON");
	treq_free(t);

	/* One bit off in the vector's MAC is a 401. */
	t = treq_new(NULL);
	t->secret = key;
	treq_body(t, "Hello, World!");
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "push");
	treq_hdr(t, "X-Hub-Signature-256",
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e16");
	treq_refused(t, 401, want);
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
	treq_queued(t, "github", "refs/heads/main", C3);
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
	treq_queued(t, "github", "refs/heads/main", C3);
	treq_free(t);

	/* A form delivery signed over the decoded JSON is Gitea's rule, not GitHub's. */
	t = treq_new("github-push.json");
	free(t->body);
	t->body = json;
	t->len = strlen(json);
	github_headers(t, "push", "application/x-www-form-urlencoded");
	github_sign(t);		/* signs the JSON... */
	json = treq_to_form(t);	/* ...then the body becomes a form */
	treq_refused(t, 401, NULL);
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
	treq_queued(t, "github", "refs/heads/main", C3);
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

		treq_hdr(t, "Content-Type", "application/json");
		treq_hdr(t, "X-GitHub-Event", "push");
		treq_hdr(t, "X-GitHub-Delivery", "d-%zu", i);
		treq_hmac_hex(EVP_sha256(), SECRET, t->body, t->len, good);
		if (bad[i] == NULL) {
			/* no header at all */
		} else if (strcmp(bad[i], "UPPER") == 0) {
			for (p = good; *p; p++)
				if (*p >= 'a' && *p <= 'f')
					*p = (char)(*p - 'a' + 'A');
			treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", good);
		} else if (strcmp(bad[i], "TRUNC") == 0) {
			good[63] = '\0';
			treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", good);
		} else if (strcmp(bad[i], "NOPREFIX") == 0) {
			treq_hdr(t, "X-Hub-Signature-256", "%s", good);
		} else if (strcmp(bad[i], "LONG") == 0) {
			treq_hdr(t, "X-Hub-Signature-256", "sha256=%s0", good);
		} else if (strcmp(bad[i], "OTHERBODY") == 0) {
			char other[129];

			treq_hmac_hex(EVP_sha256(), SECRET, "{\"ref\":\"refs/heads/main\"}", 24, other);
			treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", other);
		} else if (strcmp(bad[i], "WRONGKEY") == 0) {
			char other[129];

			treq_hmac_hex(EVP_sha256(), SECRET "x", t->body, t->len, other);
			treq_hdr(t, "X-Hub-Signature-256", "sha256=%s", other);
		} else {
			treq_hdr(t, "X-Hub-Signature-256", "%s", bad[i]);
		}
		treq_hmac_hex(EVP_sha256(), SECRET, t->body, t->len, good);
		treq_refused(t, 401, good);
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
	treq_refused(t, 401, NULL);
	assert_non_null(strstr(t->res.reason, "allow_sha1"));
	treq_free(t);

	/* SHA-1 alone, allowed: queued */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	github_headers(t, "push", "application/json");
	treq_queued(t, "github", "refs/heads/main", C3);
	treq_free(t);

	/* SHA-1 allowed but wrong */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "push");
	treq_hdr(t, "X-Hub-Signature", "sha1=%s", "0123456789abcdef0123456789abcdef01234567");
	treq_refused(t, 401, NULL);
	treq_free(t);

	/* A bad SHA-256 is not rescued by a good SHA-1. */
	t = treq_new("github-push.json");
	t->site.allow_sha1 = 1;
	github_headers(t, "push", "application/json");
	treq_hdr(t, "X-Hub-Signature-256", "sha256=%064d", 0);
	treq_refused(t, 401, NULL);
	treq_free(t);
}

static void
t_github_ping(void **state)
{
	struct treq *t = treq_new("github-ping.json");

	(void)state;
	github_headers(t, "ping", "application/json");
	github_sign(t);
	assert_int_equal(treq_run(t), 200);
	assert_int_equal(t->res.queue, 0);
	assert_int_equal(t->res.kind, HOOK_PING);
	treq_free(t);

	/* An unsigned ping is refused too: the host then shows the hook's secret is wrong. */
	t = treq_new("github-ping.json");
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "ping");
	treq_refused(t, 401, NULL);
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
	treq_ignored(t, "push to another ref");
	treq_free(t);

	/* deletion of the tracked branch never queues */
	t = treq_new("github-delete.json");
	github_headers(t, "push", "application/json");
	github_sign(t);
	treq_ignored(t, "branch deletion");
	assert_string_equal(t->res.ref, "refs/heads/main");
	treq_free(t);

	/* a tag push on a branch-tracking site */
	t = treq_new("github-tag.json");
	github_headers(t, "push", "application/json");
	github_sign(t);
	treq_ignored(t, "tag push");
	treq_free(t);

	/* the same tag on a site that tracks v* */
	t = treq_new("github-tag.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	treq_queued(t, "github", "refs/tags/v1.4.0", "f0f705ab066fbe063e0fa7be229ae035d1d97c2c");
	treq_free(t);

	/* a tag that does not match the glob */
	t = treq_new("github-tag.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"release-*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	treq_ignored(t, "push to another ref");
	treq_free(t);

	/* a branch push on a tag-tracking site */
	t = treq_new("github-push.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v*";
	github_headers(t, "push", "application/json");
	github_sign(t);
	treq_ignored(t, "push to another ref");
	treq_free(t);

	/* another event */
	t = treq_new("github-ping.json");
	github_headers(t, "issues", "application/json");
	github_sign(t);
	treq_ignored(t, "event issues ignored");
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
			treq_hdr(t, "Content-Type", "%s", types[i]);
		treq_hdr(t, "X-GitHub-Event", "push");
		github_sign(t);
		treq_refused(t, 415, NULL);
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
		treq_refused(t, cases[i].status, NULL);
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
	treq_refused(t, 400, NULL);
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
	treq_refused(t, 403, NULL);
	assert_string_equal(t->res.provider, "github");
	treq_free(t);

	/* No provider's header at all. */
	t = treq_new("github-push.json");
	treq_hdr(t, "Content-Type", "application/json");
	github_sign(t);
	treq_refused(t, 400, NULL);
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
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "push\r\nX: y");
	treq_hdr(t, "X-GitHub-Delivery", "%s", "abc\ninjected \"quote\" %s <tag>");
	github_sign(t);
	assert_int_equal(treq_run(t), 202);
	assert_string_equal(t->res.delivery, "abc_injected__quote___s__tag_");
	assert_string_equal(t->res.reason, "event push__X: y ignored");
	treq_free(t);

	t = treq_new("github-push.json");
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "X-GitHub-Event", "push");
	treq_hdr(t, "X-GitHub-Delivery", "%0200d", 7);
	github_sign(t);
	assert_int_equal(treq_run(t), 202);
	assert_int_equal(strlen(t->res.delivery), HOOK_DELIVERY_MAX - 1);
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
		cmocka_unit_test(t_provider_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
