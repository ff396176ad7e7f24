/* fuzz_webhook.c: libFuzzer target: any headers and body through provider_handle (detect, verify, parse). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "fuzz.h"

/*
 * Input: "@flags" lines, "Name: value" header lines, an empty line, the body (see
 * fuzz_util_frame). Flags: t = the site follows tags "v*" instead of branch main,
 * 1 = allow_sha1, w = the secret is a GitLab "whsec_" signing key, g = method GET,
 * o = the site accepts only github and gitlab, z = no timestamp tolerance.
 */

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

static void
fuzz_webhook_hex(const unsigned char *mac, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static int
fuzz_webhook_in_headers(const struct fuzz_frame *f, const char *needle)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strstr(f->h[i].value, needle) != NULL)
			return 1;
	return 0;
}

static int
fuzz_webhook_in_request(const struct fuzz_frame *f, const char *needle)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strstr(f->h[i].name, needle) != NULL)
			return 1;
	return fuzz_webhook_in_headers(f, needle) ||
	    memmem(f->body, f->body_len, needle, strlen(needle)) != NULL;
}

static const char *
fuzz_webhook_header(const struct fuzz_frame *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strcasecmp(f->h[i].name, name) == 0)
			return f->h[i].value;
	return NULL;
}

/*
 * An accepted delivery must carry proof that the sender knows the secret: the token
 * itself, or one of the MACs the hosts send, computed here with OpenSSL's one-shot HMAC.
 */
static int
fuzz_webhook_proved(const struct fuzz_frame *f, const char *secret)
{
	unsigned char mac[EVP_MAX_MD_SIZE], *form = NULL, *msg;
	char hex[2 * EVP_MAX_MD_SIZE + 1], b64[128];
	const char *id, *ts;
	unsigned int maclen;
	size_t formlen = 0, mlen;
	int ok = 0;

	if (fuzz_webhook_in_headers(f, secret))
		return 1;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), f->body, f->body_len, mac, &maclen);
	fuzz_webhook_hex(mac, maclen, hex);
	ok |= fuzz_webhook_in_headers(f, hex);
	HMAC(EVP_sha1(), secret, (int)strlen(secret), f->body, f->body_len, mac, &maclen);
	fuzz_webhook_hex(mac, maclen, hex);
	ok |= fuzz_webhook_in_headers(f, hex);
	if (hook_form_payload(f->body, f->body_len, &form, &formlen) == E_OK) {
		HMAC(EVP_sha256(), secret, (int)strlen(secret), form, formlen, mac, &maclen);
		fuzz_webhook_hex(mac, maclen, hex);
		ok |= fuzz_webhook_in_headers(f, hex);
		free(form);
	}
	id = fuzz_webhook_header(f, "webhook-id");
	ts = fuzz_webhook_header(f, "webhook-timestamp");
	if (id != NULL && ts != NULL) {
		mlen = strlen(id) + strlen(ts) + 2 + f->body_len;
		msg = malloc(mlen + 1);
		snprintf((char *)msg, mlen + 1, "%s.%s.", id, ts);
		memcpy(msg + strlen(id) + strlen(ts) + 2, f->body, f->body_len);
		/* The signing key is the raw secret: whsec_ carries it base64-encoded. */
		HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), msg, mlen, mac,
		    &maclen);
		sodium_bin2base64(b64, sizeof(b64), mac, maclen, sodium_base64_VARIANT_ORIGINAL);
		ok |= fuzz_webhook_in_headers(f, b64);
		if (strcmp(secret, FUZZ_SECRET) != 0) {
			HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, mlen, mac, &maclen);
			sodium_bin2base64(b64, sizeof(b64), mac, maclen,
			    sodium_base64_VARIANT_ORIGINAL);
			ok |= fuzz_webhook_in_headers(f, b64);
		}
		free(msg);
	}
	return ok;
}

static void
fuzz_webhook_check(const struct fuzz_frame *f, const struct hook_site *site,
    const char *secret, int status, const struct hook_result *res)
{
	static const int allowed[] = { 200, 202, 400, 401, 403, 405, 415, 0 };
	unsigned char mac[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned int maclen;
	const char *c;

	fuzz_util_check_status("provider_handle", status, allowed);
	if (res->status != status)
		fuzz_util_die("returned %d but res.status is %d", status, res->status);
	if (memchr(res->reason, '\0', sizeof(res->reason)) == NULL ||
	    memchr(res->delivery, '\0', sizeof(res->delivery)) == NULL ||
	    memchr(res->ref, '\0', sizeof(res->ref)) == NULL ||
	    memchr(res->event, '\0', sizeof(res->event)) == NULL ||
	    memchr(res->after, '\0', sizeof(res->after)) == NULL)
		fuzz_util_die("a result string is not terminated");
	/* Echoing what the sender sent reveals nothing; the secret or a MAC from us would. */
	if ((strstr(res->reason, FUZZ_SECRET) != NULL || strstr(res->reason, secret) != NULL) &&
	    !fuzz_webhook_in_request(f, FUZZ_SECRET) && !fuzz_webhook_in_request(f, secret))
		fuzz_util_die("the reason reveals the secret: %s", res->reason);
	HMAC(EVP_sha256(), secret, (int)strlen(secret), f->body, f->body_len, mac, &maclen);
	fuzz_webhook_hex(mac, maclen, hex);
	if (strstr(res->reason, hex) != NULL && !fuzz_webhook_in_request(f, hex))
		fuzz_util_die("the reason reveals the expected MAC: %s", res->reason);
	if (res->provider == NULL)
		fuzz_util_die("no provider name");
	for (c = res->delivery; *c != '\0'; c++)
		if (*c <= 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
			fuzz_util_die("unsafe byte 0x%02x in the delivery id", (unsigned char)*c);
	if (res->queue && status != 202)
		fuzz_util_die("queued with status %d", status);
	if (res->queue && site->branch != NULL &&
	    (strncmp(res->ref, "refs/heads/", 11) != 0 || strcmp(res->ref + 11, site->branch) != 0))
		fuzz_util_die("queued for ref '%s', not the tracked branch", res->ref);
	if (res->queue && site->tags != NULL && strncmp(res->ref, "refs/tags/", 10) != 0)
		fuzz_util_die("queued for ref '%s', not a tag", res->ref);
	if ((status == 200 || status == 202) && !fuzz_webhook_proved(f, secret))
		fuzz_util_die("answered %d to a delivery that proves no knowledge of the secret",
		    status);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hook_site site;
	struct hook_request req;
	struct hook_result res;
	struct fuzz_frame f;
	const char *secret = FUZZ_SECRET;
	int64_t tolerance = FUZZ_TOLERANCE_MS;
	int status;

	fuzz_util_frame(data, size, &f);
	memset(&site, 0, sizeof(site));
	site.name = (char *)(uintptr_t)"www";
	site.providers = PROV_ALL;
	if (strchr(f.directives, 't') != NULL)
		site.tags = (char *)(uintptr_t)"v*";
	else
		site.branch = (char *)(uintptr_t)"main";
	site.allow_sha1 = strchr(f.directives, '1') != NULL;
	if (strchr(f.directives, 'w') != NULL)
		secret = fuzz_util_whsec();
	if (strchr(f.directives, 'o') != NULL)
		site.providers = PROV_GITHUB | PROV_GITLAB;
	if (strchr(f.directives, 'z') != NULL)
		tolerance = 0;

	memset(&req, 0, sizeof(req));
	req.method = strchr(f.directives, 'g') != NULL ? "GET" : "POST";
	req.headers = f.h;
	req.nheaders = f.n;
	req.body = f.body;
	req.body_len = f.body_len;
	req.now_ms = FUZZ_NOW_MS;
	status = provider_handle(&site, (const unsigned char *)secret, strlen(secret), tolerance,
	    &req, &res);
	if (fuzz_util_verbose())
		fprintf(stderr, "fuzz_webhook: %d %s queue=%d ref=%s reason=%s\n", status,
		    res.provider, res.queue, res.ref, res.reason);
	fuzz_webhook_check(&f, &site, secret, status, &res);
	fuzz_util_frame_free(&f);
	return 0;
}
