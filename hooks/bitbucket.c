/* hooks/bitbucket.c: Bitbucket Cloud (repo:push) and Data Center (repo:refs_changed) webhooks. */
#include <stdio.h>
#include <string.h>

#include "hooks/hooks.h"

int
bitbucket_detect(const struct hook_request *req)
{
	return hook_header_value(req, "X-Event-Key") != NULL;
}

/* Both sign the raw body with HMAC-SHA256, in the header GitHub uses for SHA-1. */
int
bitbucket_verify(const struct hook_input *in, char *reason, size_t len)
{
	const char *sig = hook_header_value(in->req, "X-Hub-Signature");

	if (sig == NULL || *sig == '\0') {
		util_strlcpy(reason, "missing X-Hub-Signature (is a secret set on the hook?)", len);
		return E_INVAL;
	}
	if (strncmp(sig, "sha256=", 7) != 0) {
		util_strlcpy(reason, "X-Hub-Signature lacks the sha256= prefix", len);
		return E_INVAL;
	}
	return hook_check_hex("SHA256", 32, sig + 7, in, in->req->body, in->req->body_len,
	    "X-Hub-Signature", reason, len);
}

/* Cloud names a ref by name and type ("branch", "tag"); other types never match. */
static void
bitbucket_cloud_ref(char *dst, size_t size, json_t *side)
{
	static const struct {
		const char *type;
		const char *prefix;
	} types[] = {
		{ "branch", "refs/heads/" },
		{ "tag", "refs/tags/" },
		{ "annotated_tag", "refs/tags/" },
	};
	const char *name = json_string_value(json_object_get(side, "name"));
	const char *type = json_string_value(json_object_get(side, "type"));
	size_t i;

	dst[0] = '\0';
	if (name == NULL || type == NULL)
		return;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(type, types[i].type) == 0) {
			if ((size_t)snprintf(dst, size, "%s%s", types[i].prefix, name) >= size)
				dst[0] = '\0';
			return;
		}
	}
}

static void
bitbucket_cloud_change(json_t *change, struct hook_ref *r)
{
	json_t *nw = json_object_get(change, "new"), *old = json_object_get(change, "old");

	if (json_is_object(nw)) {
		bitbucket_cloud_ref(r->ref, sizeof(r->ref), nw);
		hook_copy_sha(r->after, json_object_get(json_object_get(nw, "target"), "hash"));
	} else {
		/* "new": null is how Cloud says the ref was deleted */
		bitbucket_cloud_ref(r->ref, sizeof(r->ref), old);
		r->deleted = 1;
	}
	if (json_is_object(old))
		hook_copy_sha(r->before,
		    json_object_get(json_object_get(old, "target"), "hash"));
}

static void
bitbucket_dc_change(json_t *change, struct hook_ref *r)
{
	const char *ref = json_string_value(json_object_get(change, "refId"));
	const char *type = json_string_value(json_object_get(change, "type"));

	if (ref == NULL)
		ref = json_string_value(json_object_get(json_object_get(change, "ref"), "id"));
	if (ref == NULL || util_strlcpy(r->ref, ref, sizeof(r->ref)) >= sizeof(r->ref))
		r->ref[0] = '\0';
	hook_copy_sha(r->before, json_object_get(change, "fromHash"));
	hook_copy_sha(r->after, json_object_get(change, "toHash"));
	r->deleted = (type != NULL && strcmp(type, "DELETE") == 0) ||
	    strspn(r->after, "0") == SHA_HEX - 1;
}

int
bitbucket_parse(const struct hook_input *in, json_t *root, struct hook_payload *pl,
    char *reason, size_t len)
{
	static const struct hook_event events[] = {
		{ "repo:push", HOOK_PUSH },		/* Cloud */
		{ "repo:refs_changed", HOOK_PUSH },	/* Data Center */
		{ "diagnostics:ping", HOOK_PING },	/* Data Center's "Test connection" */
		{ NULL, 0 },
	};
	const char *event = hook_header_value(in->req, "X-Event-Key");
	int cloud;
	json_t *changes;
	size_t i;

	hook_set_event(pl, event, events);
	if (pl->kind != HOOK_PUSH)
		return E_OK;
	cloud = strcmp(event, "repo:push") == 0;
	changes = cloud ? json_object_get(json_object_get(root, "push"), "changes") :
	    json_object_get(root, "changes");
	if (!json_is_array(changes)) {
		util_strlcpy(reason, cloud ? "push payload without push.changes" :
		    "push payload without changes", len);
		return E_INVAL;
	}
	/* Cloud truncates long change lists itself; polling catches whatever is beyond. */
	for (i = 0; i < json_array_size(changes) && pl->nrefs < HOOK_REFS_MAX; i++) {
		json_t *c = json_array_get(changes, i);

		if (!json_is_object(c))
			continue;
		if (cloud)
			bitbucket_cloud_change(c, &pl->refs[pl->nrefs]);
		else
			bitbucket_dc_change(c, &pl->refs[pl->nrefs]);
		pl->nrefs++;
	}
	return E_OK;
}
