/* hooks/forgejo.c: Forgejo webhooks: Gitea's format under X-Forgejo-* headers. */
#include "hooks/hooks.h"

int
forgejo_detect(const struct hook_request *req)
{
	return hook_has_prefix(req, "X-Forgejo-");
}

int
forgejo_verify(const struct hook_input *in, char *reason, size_t len)
{
	return gitea_verify_header(in, "X-Forgejo-Signature", reason, len);
}

int
forgejo_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	return gitea_parse_event(in, "X-Forgejo-Event", root, pl, reason, len);
}
