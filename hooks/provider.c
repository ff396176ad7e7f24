/* provider.c: the webhook provider table, and what it decides for every delivery: detect, verify, parse, answer. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "hooks/hooks.h"

/*
 * Detection goes from the most specific header to the least: Forgejo also sends
 * X-Gitea-* and X-Gogs-*, Gitea sends X-Gogs-* and X-GitHub-*, so the first row that
 * recognises a request wins. Adding a provider means one row here and one file.
 */
/* hook_parse_push reads these four; Bitbucket's parse reads the other two. */
#define PROVIDER_PUSH	{ "ref", "before", "after", "deleted", NULL }
static const struct hook_provider provider_table[] = {
	{ "forgejo", PROV_FORGEJO, forgejo_detect, forgejo_verify, forgejo_parse,
	    { "X-Forgejo-Delivery", "X-Gitea-Delivery", NULL }, PROVIDER_PUSH },
	{ "gitea", PROV_GITEA, gitea_detect, gitea_verify, gitea_parse,
	    { "X-Gitea-Delivery", NULL, NULL }, PROVIDER_PUSH },
	{ "gogs", PROV_GOGS, gogs_detect, gogs_verify, gogs_parse,
	    { "X-Gogs-Delivery", NULL, NULL }, PROVIDER_PUSH },
	/* Idempotency-Key stays the same when GitLab retries; the event UUID may not. */
	{ "gitlab", PROV_GITLAB, gitlab_detect, gitlab_verify, gitlab_parse,
	    { "Idempotency-Key", "X-Gitlab-Event-UUID", "webhook-id" }, PROVIDER_PUSH },
	{ "bitbucket", PROV_BITBUCKET, bitbucket_detect, bitbucket_verify, bitbucket_parse,
	    { "X-Request-UUID", "X-Request-Id", NULL }, { "push", "changes", NULL } },
	{ "github", PROV_GITHUB, github_detect, github_verify, github_parse,
	    { "X-GitHub-Delivery", NULL, NULL }, PROVIDER_PUSH },
};

#define PROVIDER_COUNT (sizeof(provider_table) / sizeof(provider_table[0]))

enum { PROVIDER_CT_JSON, PROVIDER_CT_FORM, PROVIDER_CT_OTHER };

unsigned
provider_bit(const char *name)
{
	size_t i;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (strcmp(provider_table[i].name, name) == 0)
			return provider_table[i].bit;
	return 0;
}

const char *
provider_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (provider_table[i].bit == bit)
			return provider_table[i].name;
	return NULL;
}

static int
provider_content_type(const struct hook_request *req)
{
	static const struct {
		const char *type;
		int	    ct;
	} types[] = {
		{ "application/json", PROVIDER_CT_JSON },
		{ "application/x-www-form-urlencoded", PROVIDER_CT_FORM },
	};
	const char *v = hook_header_value(req, "Content-Type");
	size_t i, n;

	if (v == NULL)
		return PROVIDER_CT_OTHER;
	v += strspn(v, " \t");
	n = strcspn(v, "; \t");		/* parameters such as charset are fine */
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].type) == n && strncasecmp(v, types[i].type, n) == 0)
			return types[i].ct;
	return PROVIDER_CT_OTHER;
}

static int
provider_refuse(struct hook_result *res, int status, const char *reason)
{
	res->status = status;
	res->queue = 0;
	util_strlcpy(res->reason, reason, sizeof(res->reason));
	return status;
}

/* Does this ref change ring the site's doorbell? If not, say why. */
static int
provider_ref_verdict(const struct hook_site *site, const struct hook_ref *r,
    const char **why)
{
	const char *name;

	if (strncmp(r->ref, "refs/heads/", 11) == 0) {
		name = r->ref + 11;
		if (r->deleted)
			*why = "branch deletion";
		else if (site->branch != NULL && strcmp(name, site->branch) == 0)
			return 1;
		else
			*why = "push to another ref";
	} else if (strncmp(r->ref, "refs/tags/", 10) == 0) {
		name = r->ref + 10;
		if (r->deleted)
			*why = "tag deletion";
		else if (site->tags != NULL && fnmatch(site->tags, name, 0) == 0)
			return 1;
		else
			*why = site->tags != NULL ? "push to another ref" : "tag push";
	} else {
		*why = "push to another ref";
	}
	return 0;
}

static int
provider_decide(const struct hook_site *site, const struct hook_payload *pl,
    struct hook_result *res)
{
	const struct hook_ref *r;
	const char *why = NULL, *first = NULL;
	size_t i;

	res->kind = pl->kind;
	util_strlcpy(res->event, pl->event, sizeof(res->event));
	if (pl->kind == HOOK_PING)
		return provider_refuse(res, 200, "ping");
	if (pl->kind != HOOK_PUSH) {
		snprintf(res->reason, sizeof(res->reason), "event %s ignored",
		    pl->event[0] != '\0' ? pl->event : "(none)");
		res->status = 202;
		return 202;
	}
	if (pl->nrefs == 0)
		return provider_refuse(res, 202, "push without ref changes");
	for (i = 0; i < pl->nrefs; i++) {
		r = &pl->refs[i];
		if (provider_ref_verdict(site, r, &why)) {
			util_strlcpy(res->ref, r->ref, sizeof(res->ref));
			util_strlcpy(res->after, r->after, sizeof(res->after));
			res->queue = 1;
			res->status = 202;
			return 202;
		}
		if (first == NULL) {
			first = why;
			util_strlcpy(res->ref, r->ref, sizeof(res->ref));
			util_strlcpy(res->after, r->after, sizeof(res->after));
		}
	}
	return provider_refuse(res, 202, first);
}

/*
 * Decide the answer to one webhook. Checks run cheapest and least revealing first:
 * who sent it (403), what it is (415, 400 for a broken form), whether the sender knows
 * the secret (401), and only then the JSON is parsed (400) and the ref judged (200/202).
 */
int
provider_handle(const struct hook_site *site, const unsigned char *secret,
    size_t secret_len, int64_t tolerance_ms, const struct hook_request *req,
    struct hook_result *res)
{
	const struct hook_provider *p = NULL;
	struct hook_input in;
	struct hook_payload pl;
	unsigned char *form = NULL;
	char *picked = NULL;
	size_t picked_len = 0;
	const char *v;
	char reason[HOOK_REASON_MAX];
	json_error_t jerr;
	json_t *root = NULL;
	size_t i;
	int ct;

	memset(res, 0, sizeof(*res));
	res->provider = "";
	if (req->method == NULL || strcmp(req->method, "POST") != 0)
		return provider_refuse(res, 405, "method not allowed");
	for (i = 0; i < PROVIDER_COUNT && p == NULL; i++)
		if (provider_table[i].detect(req))
			p = &provider_table[i];
	if (p == NULL)
		return provider_refuse(res, 400, "no webhook event header from a known provider");
	res->provider = p->name;
	for (i = 0; i < 3 && p->delivery[i] != NULL; i++) {
		if ((v = hook_header_value(req, p->delivery[i])) != NULL && *v != '\0') {
			hook_safe_copy(res->delivery, sizeof(res->delivery), v, 0);
			break;
		}
	}
	if ((site->providers & p->bit) == 0)
		return provider_refuse(res, 403, "provider not allowed for this site");

	memset(&in, 0, sizeof(in));
	in.req = req;
	in.site = site;
	in.secret = secret;
	in.secret_len = secret_len;
	in.tolerance_ms = tolerance_ms;
	in.json = req->body;
	in.json_len = req->body_len;
	if ((ct = provider_content_type(req)) == PROVIDER_CT_OTHER)
		return provider_refuse(res, 415,
		    "unsupported content type (use application/json)");
	if (ct == PROVIDER_CT_FORM) {
		switch (hook_form_payload(req->body, req->body_len, &form, &in.json_len)) {
		case E_OK:
			break;
		case E_NOTFOUND:
			return provider_refuse(res, 400, "form body without payload=");
		default:
			return provider_refuse(res, 400, "malformed form encoding");
		}
		in.json = form;
		in.form = 1;
	}

	reason[0] = '\0';
	if (p->verify(&in, reason, sizeof(reason)) != E_OK) {
		provider_refuse(res, 401, reason[0] != '\0' ? reason : "bad signature");
		goto out;
	}
	/*
	 * jansson bounds nesting depth itself; duplicates would let two readers disagree.
	 * It parses only the members the provider reads, when they can be cut out.
	 */
	if (pick_members(in.json, in.json_len, p->members, &picked, &picked_len) == E_OK)
		root = json_loadb(picked, picked_len, JSON_REJECT_DUPLICATES, &jerr);
	else
		root = json_loadb((const char *)in.json, in.json_len, JSON_REJECT_DUPLICATES,
		    &jerr);
	if (root == NULL) {
		provider_refuse(res, 400, "malformed JSON");
		goto out;
	}
	if (!json_is_object(root)) {
		provider_refuse(res, 400, "JSON payload is not an object");
		goto out;
	}
	memset(&pl, 0, sizeof(pl));
	reason[0] = '\0';
	if (p->parse(&in, root, &pl, reason, sizeof(reason)) != E_OK) {
		provider_refuse(res, 400, reason[0] != '\0' ? reason : "malformed payload");
		goto out;
	}
	provider_decide(site, &pl, res);
out:
	json_decref(root);
	free(picked);
	free(form);
	return res->status;
}
