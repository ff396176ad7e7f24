/* hooks/gitea.c: Gitea webhooks, and the signing and payload rules Forgejo and Gogs share with it. */
#include <stdio.h>
#include <string.h>

#include "hooks/hooks.h"

int
gitea_detect(const struct hook_request *req)
{
	return hook_has_prefix(req, "X-Gitea-");
}

/*
 * Gitea, Forgejo and Gogs sign the JSON document, not the request body: for a
 * form-encoded delivery that is the decoded payload= value. An empty header is what
 * they send when the hook has no secret.
 */
int
gitea_verify_header(const struct hook_input *in, const char *header, char *reason,
    size_t len)
{
	const char *sig = hook_header_value(in->req, header);

	if (sig == NULL || *sig == '\0') {
		snprintf(reason, len, "missing %s (is a secret set on the hook?)", header);
		return E_INVAL;
	}
	return hook_check_hex("SHA256", 32, sig, in, in->json, in->json_len, header,
	    reason, len);
}

/* The three share one push payload, and a test delivery that repeats one commit. */
int
gitea_parse_event(const struct hook_input *in, const char *header, json_t *root,
    struct hook_payload *pl, char *reason, size_t len)
{
	static const struct hook_event events[] = {
		{ "push", HOOK_PUSH },
		{ NULL, 0 },
	};

	hook_set_event(pl, hook_header_value(in->req, header), events);
	if (pl->kind != HOOK_PUSH)
		return E_OK;
	return hook_parse_push(root, 1, pl, reason, len);
}

int
gitea_verify(const struct hook_input *in, char *reason, size_t len)
{
	return gitea_verify_header(in, "X-Gitea-Signature", reason, len);
}

int
gitea_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	return gitea_parse_event(in, "X-Gitea-Event", root, pl, reason, len);
}
