/* hooks/gitlab.c: GitLab webhooks: the X-Gitlab-Token secret, or the signed Standard Webhooks form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "hooks/hooks.h"

#define GITLAB_SIGS_MAX	8	/* signatures tried per header, during key rotation */
#define GITLAB_ID_MAX	256

int
gitlab_detect(const struct hook_request *req)
{
	return hook_has_prefix(req, "X-Gitlab-");
}

/* Hash both sides first: the comparison then takes the same time whatever their lengths. */
static int
gitlab_verify_token(const struct hook_input *in, const char *token, char *reason, size_t len)
{
	unsigned char a[crypto_hash_sha256_BYTES], b[crypto_hash_sha256_BYTES];
	int rc;

	crypto_hash_sha256(a, (const unsigned char *)token, strlen(token));
	crypto_hash_sha256(b, in->secret, in->secret_len);
	rc = crypto_verify_32(a, b) == 0 && in->secret_len > 0 ? E_OK : E_INVAL;
	sodium_memzero(b, sizeof(b));
	if (rc != E_OK)
		util_strlcpy(reason, "X-Gitlab-Token does not match", len);
	return rc;
}

/*
 * The signing key from a site's secret: "whsec_<base64>" is decoded (strictly, so a key has
 * one spelling); a secret without the prefix is used as it is. Also used by `deployd check`.
 */
int
gitlab_signing_key(const unsigned char *secret, size_t len, unsigned char *key, size_t size,
    size_t *keylen)
{
	if (len >= 6 && memcmp(secret, "whsec_", 6) == 0)
		return len > 6 && base64_decode((const char *)secret + 6, len - 6, NULL, key,
		    size, keylen) == E_OK ? E_OK : E_INVAL;
	if (len > size)
		return E_INVAL;
	memcpy(key, secret, len);
	*keylen = len;
	return E_OK;
}

/* Any one "v1,<base64>" in the space-separated list may match. */
static int
gitlab_match_any(const char *sigs, const unsigned char mac[32])
{
	unsigned char given[64];
	char one[128];
	size_t n, glen;
	int tries = 0, found = 0;

	while (*sigs != '\0' && tries++ < GITLAB_SIGS_MAX) {
		sigs += strspn(sigs, " ");
		n = strcspn(sigs, " ");
		if (n > 3 && n < sizeof(one) && strncmp(sigs, "v1,", 3) == 0) {
			memcpy(one, sigs + 3, n - 3);
			one[n - 3] = '\0';
			if (base64_decode(one, n - 3, NULL, given, sizeof(given), &glen) ==
			    E_OK && glen == 32 &&
			    sodium_memcmp(given, mac, 32) == 0)
				found = 1;
		}
		sigs += n;
	}
	return found;
}

static int
gitlab_verify_signed(const struct hook_input *in, const char *sigs, char *reason, size_t len)
{
	const char *id = hook_header_value(in->req, "webhook-id");
	const char *ts = hook_header_value(in->req, "webhook-timestamp");
	const unsigned char *parts[5];
	unsigned char key[256], mac[32];
	size_t lens[5], keylen = 0;
	uint64_t when;
	int rc = E_INVAL;

	if (id == NULL || *id == '\0' || strlen(id) > GITLAB_ID_MAX ||
	    ts == NULL || util_parse_uint(ts, 999999999999ULL, &when) != E_OK) {
		util_strlcpy(reason, "webhook-signature without a valid webhook-id and"
		    " webhook-timestamp", len);
		return E_INVAL;
	}
	if (in->tolerance_ms > 0 && llabs(in->req->now_ms / 1000 - (long long)when) * 1000 >
	    in->tolerance_ms) {
		util_strlcpy(reason, "webhook-timestamp outside the signature tolerance", len);
		return E_INVAL;
	}
	if (gitlab_signing_key(in->secret, in->secret_len, key, sizeof(key), &keylen) != E_OK) {
		util_strlcpy(reason, "the site's secret is not a usable signing key", len);
		goto out;
	}
	parts[0] = (const unsigned char *)id;
	lens[0] = strlen(id);
	parts[1] = (const unsigned char *)".";
	lens[1] = 1;
	parts[2] = (const unsigned char *)ts;
	lens[2] = strlen(ts);
	parts[3] = (const unsigned char *)".";
	lens[3] = 1;
	parts[4] = in->req->body;
	lens[4] = in->req->body_len;
	if (hook_hmac("SHA256", key, keylen, parts, lens, 5, mac, sizeof(mac)) != E_OK) {
		util_strlcpy(reason, "webhook-signature: cannot compute the HMAC", len);
		goto out;
	}
	if (gitlab_match_any(sigs, mac))
		rc = E_OK;
	else
		util_strlcpy(reason, "webhook-signature does not match the payload", len);
out:
	sodium_memzero(key, sizeof(key));
	sodium_memzero(mac, sizeof(mac));
	return rc;
}

/*
 * A hook may carry a token, a signature, or both (GitLab sends each one that is
 * configured). Either proves the sender knows the site's secret.
 */
int
gitlab_verify(const struct hook_input *in, char *reason, size_t len)
{
	const char *sig = hook_header_value(in->req, "webhook-signature");
	const char *token = hook_header_value(in->req, "X-Gitlab-Token");
	char other[HOOK_REASON_MAX];
	int rc;

	if (sig != NULL && *sig != '\0') {
		if ((rc = gitlab_verify_signed(in, sig, reason, len)) == E_OK || token == NULL)
			return rc;
		/* keep the signature's reason: it is the more telling one */
		return gitlab_verify_token(in, token, other, sizeof(other));
	}
	if (token != NULL)
		return gitlab_verify_token(in, token, reason, len);
	util_strlcpy(reason, "missing X-Gitlab-Token or webhook-signature", len);
	return E_INVAL;
}

int
gitlab_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	static const struct hook_event events[] = {
		{ "Push Hook", HOOK_PUSH },
		{ "Tag Push Hook", HOOK_PUSH },
		{ NULL, 0 },
	};

	hook_set_event(pl, hook_header_value(in->req, "X-Gitlab-Event"), events);
	if (pl->kind != HOOK_PUSH)
		return E_OK;
	return hook_parse_push(root, 1, pl, reason, len);
}
