/* hooks/github.c: GitHub webhooks: X-Hub-Signature-256 over the raw body, push and ping events. */
#include <string.h>

#include "hooks/hooks.h"

int
github_detect(const struct hook_request *req)
{
	return hook_header_value(req, "X-GitHub-Event") != NULL;
}

/*
 * GitHub signs the raw body, form-encoded or not. It sends the SHA-1 header next to the
 * SHA-256 one, so SHA-1 counts only when it comes alone and the site allows it.
 */
int
github_verify(const struct hook_input *in, char *reason, size_t len)
{
	const char *sig = hook_header_value(in->req, "X-Hub-Signature-256");

	if (sig != NULL && *sig != '\0') {
		if (strncmp(sig, "sha256=", 7) != 0) {
			util_strlcpy(reason, "X-Hub-Signature-256 lacks the sha256= prefix", len);
			return E_INVAL;
		}
		return hook_check_hex("SHA256", 32, sig + 7, in, in->req->body,
		    in->req->body_len, "X-Hub-Signature-256", reason, len);
	}
	sig = hook_header_value(in->req, "X-Hub-Signature");
	if (sig != NULL && *sig != '\0') {
		if (!in->site->allow_sha1) {
			util_strlcpy(reason, "SHA-1 signature refused (allow_sha1 is off);"
			    " X-Hub-Signature-256 missing", len);
			return E_INVAL;
		}
		if (strncmp(sig, "sha1=", 5) != 0) {
			util_strlcpy(reason, "X-Hub-Signature lacks the sha1= prefix", len);
			return E_INVAL;
		}
		return hook_check_hex("SHA1", 20, sig + 5, in, in->req->body,
		    in->req->body_len, "X-Hub-Signature", reason, len);
	}
	util_strlcpy(reason, "missing X-Hub-Signature-256 (is a secret set on the hook?)", len);
	return E_INVAL;
}

int
github_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	static const struct hook_event events[] = {
		{ "push", HOOK_PUSH },
		{ "ping", HOOK_PING },
		{ NULL, 0 },
	};

	hook_set_event(pl, hook_header_value(in->req, "X-GitHub-Event"), events);
	if (pl->kind != HOOK_PUSH)
		return E_OK;
	return hook_parse_push(root, 0, pl, reason, len);
}
