/* test_gitlab.c: GitLab deliveries: the token in clear, and the signed (Standard Webhooks) form. */
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

/* ---- GitLab ---- */

static void
gitlab_headers(struct treq *t, const char *event)
{
	treq_hdr(t, "Content-Type", "application/json");
	treq_hdr(t, "User-Agent", "GitLab/17.6.0");
	treq_hdr(t, "X-Gitlab-Event", "%s", event);
	treq_hdr(t, "X-Gitlab-Event-UUID", "2a1e8c0f-93b7-4f4e-b8a4-0d5c3e7f9a11");
	treq_hdr(t, "X-Gitlab-Instance", "https://gitlab.example.org");
	treq_hdr(t, "X-Gitlab-Webhook-UUID", "0b6d7a2c-51f4-4bde-9e31-8a27c4f1d655");
	treq_hdr(t, "Idempotency-Key", "b0d1f2f0-0c32-4a6e-9d7b-3f1c2e5a7d90");
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
	treq_hdr(t, "X-Gitlab-Token", "%s", SECRET);
	treq_queued(t, "gitlab", "refs/heads/main", C2);
	/* Idempotency-Key is what stays the same when GitLab retries. */
	assert_string_equal(t->res.delivery, "b0d1f2f0-0c32-4a6e-9d7b-3f1c2e5a7d90");
	treq_free(t);

	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		t = treq_new("gitlab-push.json");
		gitlab_headers(t, "Push Hook");
		treq_hdr(t, "X-Gitlab-Token", "%s", wrong[i]);
		treq_refused(t, 401, NULL);
		assert_null(strstr(t->res.reason, wrong[i][0] != '\0' ? wrong[i] : "\x01"));
		treq_free(t);
	}

	t = treq_new("gitlab-push.json");
	gitlab_headers(t, "Push Hook");
	treq_refused(t, 401, NULL);
	treq_free(t);
}

static void
t_gitlab_tags(void **state)
{
	struct treq *t;

	(void)state;
	t = treq_new("gitlab-tag-push.json");
	gitlab_headers(t, "Tag Push Hook");
	treq_hdr(t, "X-Gitlab-Token", "%s", SECRET);
	treq_ignored(t, "tag push");
	treq_free(t);

	t = treq_new("gitlab-tag-push.json");
	t->site.branch = NULL;
	t->site.tags = (char *)(uintptr_t)"v[0-9]*";
	gitlab_headers(t, "Tag Push Hook");
	treq_hdr(t, "X-Gitlab-Token", "%s", SECRET);
	treq_queued(t, "gitlab", "refs/tags/v1.4.0", "e544cde93a077a14b1a2075ef74ea5416f7b8581");
	treq_free(t);

	t = treq_new("gitlab-push.json");
	gitlab_headers(t, "Merge Request Hook");
	treq_hdr(t, "X-Gitlab-Token", "%s", SECRET);
	treq_ignored(t, "event Merge Request Hook ignored");
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
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now + 60);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* several signatures (key rotation): one matching is enough */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 100, sig, sizeof(sig));
	gitlab_sign(t, (const unsigned char *)"another key", 11, id, now - 100, other,
	    sizeof(other));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now - 100);
	treq_hdr(t, "webhook-signature", "v1a,bm90IGEgc2lnbmF0dXJl %s %s", other, sig);
	treq_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* outside the 5 minute tolerance: a replay */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 301, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now - 301);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_refused(t, 401, sig + 3);
	assert_non_null(strstr(t->res.reason, "tolerance"));
	treq_free(t);

	/* signed with another key */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now);
	treq_hdr(t, "webhook-signature", "%s", other);
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	treq_refused(t, 401, sig + 3);
	treq_free(t);

	/* the id is signed too: another id with the same signature fails */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", "msg_other");
	treq_hdr(t, "webhook-timestamp", "%lld", now);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_refused(t, 401, NULL);
	treq_free(t);

	/* a secret without the whsec_ prefix is the key itself */
	t = treq_new("gitlab-push.json");
	gitlab_sign(t, (const unsigned char *)SECRET, strlen(SECRET), id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_queued(t, "gitlab", "refs/heads/main", C2);
	treq_free(t);

	/* a bad signature is not rescued by a wrong token, and a good token rescues a stale one */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now - 3600, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now - 3600);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_hdr(t, "X-Gitlab-Token", "%s", "not the secret");
	treq_refused(t, 401, NULL);
	assert_non_null(strstr(t->res.reason, "tolerance"));
	treq_free(t);

	/* no timestamp */
	t = treq_new("gitlab-push.json");
	t->secret = secret;
	gitlab_sign(t, key, 32, id, now, sig, sizeof(sig));
	gitlab_headers(t, "Push Hook");
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_refused(t, 401, NULL);
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
			treq_hdr(t, "webhook-id", "%s", id);
			treq_hdr(t, "webhook-timestamp", "%lld", now);
			treq_hdr(t, "webhook-signature", "%s", bad);
			if (treq_run(t) != 401)
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
	treq_hdr(t, "webhook-id", "%s", id);
	treq_hdr(t, "webhook-timestamp", "%lld", now);
	treq_hdr(t, "webhook-signature", "%s", sig);
	treq_queued(t, "gitlab", "refs/heads/main", C2);
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
		treq_hdr(t, "webhook-id", "%s", id);
		treq_hdr(t, "webhook-timestamp", "%lld", now);
		treq_hdr(t, "webhook-signature", "%s", sig);
		treq_refused(t, 401, sig + 3);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_gitlab_token),
		cmocka_unit_test(t_gitlab_tags),
		cmocka_unit_test(t_gitlab_signed),
		cmocka_unit_test(t_gitlab_signed_strict),
		cmocka_unit_test(t_gitlab_whsec_strict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
