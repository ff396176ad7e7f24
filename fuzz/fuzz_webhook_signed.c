/* fuzz_webhook_signed.c: libFuzzer target: correctly signed deliveries, so the JSON parsers behind verification run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "fuzz.h"

/*
 * Input: one selector byte, then the JSON document. The harness signs the document the
 * way the chosen host does, so every input passes verification and reaches parse().
 * Selector bits: 0-2 provider (table below, modulo 6); 3 form-encoded body; 4-5 event
 * (column of the provider's row); 6 the site follows tags "v*"; 7 the alternative proof
 * (GitHub: SHA-1 alone with allow_sha1; GitLab: a webhook-signature instead of the token).
 */

enum { FUZZ_GITHUB, FUZZ_GITEA, FUZZ_FORGEJO, FUZZ_GOGS, FUZZ_GITLAB, FUZZ_BITBUCKET };

static const struct {
	const char	*name;
	const char	*event_header;
	const char	*delivery_header;
	const char	*events[4];
} fuzz_hosts[] = {
	[FUZZ_GITHUB] = { "github", "X-GitHub-Event", "X-GitHub-Delivery",
	    { "push", "ping", "push", "release" } },
	[FUZZ_GITEA] = { "gitea", "X-Gitea-Event", "X-Gitea-Delivery",
	    { "push", "push", "create", "delete" } },
	[FUZZ_FORGEJO] = { "forgejo", "X-Forgejo-Event", "X-Forgejo-Delivery",
	    { "push", "push", "create", "issues" } },
	[FUZZ_GOGS] = { "gogs", "X-Gogs-Event", "X-Gogs-Delivery",
	    { "push", "push", "create", "fork" } },
	[FUZZ_GITLAB] = { "gitlab", "X-Gitlab-Event", "X-Gitlab-Event-UUID",
	    { "Push Hook", "Tag Push Hook", "Push Hook", "Note Hook" } },
	[FUZZ_BITBUCKET] = { "bitbucket", "X-Event-Key", "X-Request-UUID",
	    { "repo:push", "repo:refs_changed", "diagnostics:ping", "pullrequest:created" } },
};

#define FUZZ_WEBHOOK_ID "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
#define FUZZ_TS		"1764064790"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_util_whsec();
	log_init(LOG_LVL_ERROR, 0);
	return 0;
}

/* Go's url.QueryEscape, which Gitea, Forgejo and Gogs use for payload=. */
static unsigned char *
fuzz_signed_form(const uint8_t *json, size_t len, size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char *out = malloc(8 + 3 * len + 1);
	size_t i, n = 8;

	memcpy(out, "payload=", 8);
	for (i = 0; i < len; i++) {
		unsigned char c = json[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || (c != '\0' && strchr("-_.~", c) != NULL)) {
			out[n++] = c;
		} else if (c == ' ') {
			out[n++] = '+';
		} else {
			out[n++] = '%';
			out[n++] = (unsigned char)hex[c >> 4];
			out[n++] = (unsigned char)hex[c & 15];
		}
	}
	*outlen = n;
	return out;
}

static void
fuzz_signed_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0, i;

	HMAC(md, FUZZ_SECRET, (int)strlen(FUZZ_SECRET), data, len, mac, &maclen);
	for (i = 0; i < maclen; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int allowed[] = { 200, 202, 400, 0 };
	struct hook_header h[8];
	struct hook_site site;
	struct hook_request req;
	struct hook_result res;
	unsigned char *body, mac[EVP_MAX_MD_SIZE], *msg;
	char sig[2 * EVP_MAX_MD_SIZE + 16], hex[2 * EVP_MAX_MD_SIZE + 1], b64[128];
	const char *secret = FUZZ_SECRET;
	const uint8_t *json;
	unsigned int maclen;
	size_t jlen, blen, n = 0, mlen;
	unsigned sel;
	int host, form, alt, status;

	if (size < 1)
		return 0;
	sel = data[0];
	json = data + 1;
	jlen = size - 1;
	host = (int)(sel & 7) % 6;
	form = (sel >> 3) & 1;
	alt = (sel >> 7) & 1;

	memset(&site, 0, sizeof(site));
	site.name = (char *)(uintptr_t)"www";
	site.providers = PROV_ALL;
	if ((sel >> 6) & 1)
		site.tags = (char *)(uintptr_t)"v*";
	else
		site.branch = (char *)(uintptr_t)"main";

	if (form) {
		body = fuzz_signed_form(json, jlen, &blen);
	} else {
		body = malloc(jlen + 1);
		memcpy(body, json, jlen);
		blen = jlen;
	}

	h[n].name = "Content-Type";
	h[n++].value = form ? "application/x-www-form-urlencoded" : "application/json";
	h[n].name = fuzz_hosts[host].event_header;
	h[n++].value = fuzz_hosts[host].events[(sel >> 4) & 3];
	h[n].name = fuzz_hosts[host].delivery_header;
	h[n++].value = "9f6d6a8e-1c2b-4f0e-8d8a-0e6f2f3b4a5c";
	switch (host) {
	case FUZZ_GITHUB:
		if (alt) {
			site.allow_sha1 = 1;
			memcpy(sig, "sha1=", 5);
			fuzz_signed_hex(EVP_sha1(), body, blen, sig + 5);
			h[n].name = "X-Hub-Signature";
		} else {
			memcpy(sig, "sha256=", 7);
			fuzz_signed_hex(EVP_sha256(), body, blen, sig + 7);
			h[n].name = "X-Hub-Signature-256";
		}
		h[n++].value = sig;
		break;
	case FUZZ_GITEA:
	case FUZZ_FORGEJO:
	case FUZZ_GOGS:
		/* These three sign the JSON document, not the form body. */
		fuzz_signed_hex(EVP_sha256(), json, jlen, hex);
		h[n].name = host == FUZZ_GITEA ? "X-Gitea-Signature" :
		    host == FUZZ_FORGEJO ? "X-Forgejo-Signature" : "X-Gogs-Signature";
		h[n++].value = hex;
		break;
	case FUZZ_GITLAB:
		if (!alt) {
			h[n].name = "X-Gitlab-Token";
			h[n++].value = FUZZ_SECRET;
			break;
		}
		secret = fuzz_util_whsec();
		mlen = strlen(FUZZ_WEBHOOK_ID "." FUZZ_TS ".") + blen;
		msg = malloc(mlen);
		memcpy(msg, FUZZ_WEBHOOK_ID "." FUZZ_TS ".", mlen - blen);
		memcpy(msg + mlen - blen, body, blen);
		HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), msg, mlen, mac, &maclen);
		free(msg);
		memcpy(sig, "v1,", 3);
		sodium_bin2base64(b64, sizeof(b64), mac, maclen, sodium_base64_VARIANT_ORIGINAL);
		snprintf(sig + 3, sizeof(sig) - 3, "%s", b64);
		h[n].name = "webhook-id";
		h[n++].value = FUZZ_WEBHOOK_ID;
		h[n].name = "webhook-timestamp";
		h[n++].value = FUZZ_TS;
		h[n].name = "webhook-signature";
		h[n++].value = sig;
		break;
	case FUZZ_BITBUCKET:
		memcpy(sig, "sha256=", 7);
		fuzz_signed_hex(EVP_sha256(), body, blen, sig + 7);
		h[n].name = "X-Hub-Signature";
		h[n++].value = sig;
		break;
	}

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.headers = h;
	req.nheaders = n;
	req.body = body;
	req.body_len = blen;
	req.now_ms = FUZZ_NOW_MS;
	status = provider_handle(&site, (const unsigned char *)secret, strlen(secret),
	    FUZZ_TOLERANCE_MS, &req, &res);
	if (fuzz_util_verbose())
		fprintf(stderr, "fuzz_webhook_signed: %d %s queue=%d ref=%s reason=%s\n", status,
		    res.provider, res.queue, res.ref, res.reason);
	/* Correctly signed, allowed provider, supported type: never 401, 403 or 415. */
	fuzz_util_check_status(fuzz_hosts[host].name, status, allowed);
	if (strcmp(res.provider, fuzz_hosts[host].name) != 0)
		fuzz_util_die("sent as %s, detected as '%s'", fuzz_hosts[host].name, res.provider);
	if (status == 400 && res.reason[0] == '\0')
		fuzz_util_die("400 without a reason");
	if (res.queue && (status != 202 || res.ref[0] == '\0'))
		fuzz_util_die("queued with status %d and ref '%s'", status, res.ref);
	if (res.queue && site.branch != NULL && strcmp(res.ref, "refs/heads/main") != 0)
		fuzz_util_die("queued for ref '%s', not the tracked branch", res.ref);
	if (res.queue && site.tags != NULL && strncmp(res.ref, "refs/tags/v", 11) != 0)
		fuzz_util_die("queued for ref '%s', which does not match v*", res.ref);
	free(body);
	return 0;
}
