/* hooks/gogs.c: Gogs webhooks: Gitea's format under X-Gogs-* headers. */
#include "hooks/hooks.h"

int
gogs_detect(const struct hook_request *req)
{
	return hook_has_prefix(req, "X-Gogs-");
}

int
gogs_verify(const struct hook_input *in, char *reason, size_t len)
{
	return gitea_verify_header(in, "X-Gogs-Signature", reason, len);
}

int
gogs_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	return gitea_parse_event(in, "X-Gogs-Event", root, pl, reason, len);
}
