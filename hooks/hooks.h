/* hooks.h: the webhook providers, one file and one table row per git host; the floor only. */
#ifndef DEPLOYD_HOOKS_H
#define DEPLOYD_HOOKS_H

#include "lib/lib.h"

/* Provider bits for hook_site.providers (and the config's providers list). */
#define PROV_GITHUB	(1u << 0)
#define PROV_GITEA	(1u << 1)
#define PROV_FORGEJO	(1u << 2)
#define PROV_GOGS	(1u << 3)
#define PROV_GITLAB	(1u << 4)
#define PROV_BITBUCKET	(1u << 5)
#define PROV_ALL	0x3fu

/* What a provider needs to know of the site a webhook names. */
struct hook_site {
	const char	*name;
	const char	*branch;	/* exactly one of branch and tags */
	const char	*tags;		/* a glob */
	unsigned	 providers;	/* PROV_* bits accepted */
	int		 allow_sha1;	/* GitHub's legacy X-Hub-Signature alone */
};

/* One request header; names compare case-insensitively. */
struct hook_header {
	const char	*name;
	const char	*value;
};

/* A webhook request as the listener received it. */
struct hook_request {
	const char	*method;
	const struct hook_header *headers;
	size_t		 nheaders;
	const unsigned char *body;	/* raw bytes, not NUL-terminated */
	size_t		 body_len;
	int64_t		 now_ms;	/* wall clock, for timestamped signatures */
};

/* What verify and parse see: the request, the site's key, and the JSON document. */
struct hook_input {
	const struct hook_request *req;
	const struct hook_site *site;
	const unsigned char *secret;
	size_t		 secret_len;
	int64_t		 tolerance_ms;	/* for timestamped signatures; 0: no check */
	const unsigned char *json;	/* the body, or the decoded payload= of a form */
	size_t		 json_len;
	int		 form;		/* the body was form-encoded */
};

enum hook_kind { HOOK_OTHER, HOOK_PUSH, HOOK_PING };

#define HOOK_REFS_MAX	16	/* Bitbucket reports several ref changes per push */
#define HOOK_REF_MAX	256
#define HOOK_DELIVERY_MAX 96	/* = sizeof(deploy_request.delivery) */
#define HOOK_REASON_MAX	128

struct hook_ref {
	char		ref[HOOK_REF_MAX];	/* refs/heads/x, refs/tags/y, ... */
	char		before[SHA_HEX];	/* empty unless 40 hex digits */
	char		after[SHA_HEX];
	int		deleted;
};

/* A provider's parse() fills this from the headers and the JSON. */
struct hook_payload {
	int		kind;			/* enum hook_kind */
	char		event[32];		/* the provider's event name, safe to log and send */
	struct hook_ref	refs[HOOK_REFS_MAX];
	size_t		nrefs;
};

/* One row of the provider table in hooks/provider.c. */
struct hook_provider {
	const char	*name;
	unsigned	 bit;			/* PROV_* */
	int		(*detect)(const struct hook_request *);
	/* 0 or E_INVAL with a reason that never holds the secret or a MAC. */
	int		(*verify)(const struct hook_input *, char *reason, size_t len);
	int		(*parse)(const struct hook_input *, json_t *root,
			    struct hook_payload *, char *reason, size_t len);
	const char	*delivery[3];		/* delivery-id headers, best first */
	const char	*members[5];		/* the top-level members parse reads */
};

/* The outcome of one webhook: the HTTP status and what to tell and do. */
struct hook_result {
	int		status;			/* 200, 202, 400, 401, 403, 405 or 415 */
	int		queue;			/* 1: queue a deploy of the tip */
	int		kind;			/* enum hook_kind */
	const char	*provider;		/* "" until detected */
	char		event[32];
	char		delivery[HOOK_DELIVERY_MAX];
	char		ref[HOOK_REF_MAX];	/* the ref that decided */
	char		after[SHA_HEX];		/* logged, never trusted */
	char		reason[HOOK_REASON_MAX];	/* why ignored or refused; safe to send */
};

/* hooks/provider.c */
int	 provider_handle(const struct hook_site *, const unsigned char *secret,
	    size_t secret_len, int64_t tolerance_ms, const struct hook_request *,
	    struct hook_result *);	/* returns the HTTP status */
unsigned provider_bit(const char *name);	/* 0: unknown */
const char *provider_name(unsigned bit);

/* hooks/hook.c: what the providers share, below the table that dispatches to them */
const char *hook_header_value(const struct hook_request *, const char *name);
int	 hook_has_prefix(const struct hook_request *, const char *prefix);
int	 hook_hmac(const char *digest, const unsigned char *key, size_t keylen,
	    const unsigned char *const *parts, const size_t *lens, size_t nparts,
	    unsigned char *mac, size_t maclen);
int	 hook_check_hex(const char *digest, size_t maclen, const char *hex,
	    const struct hook_input *, const unsigned char *data, size_t len,
	    const char *what, char *reason, size_t rlen);
int	 hook_form_payload(const unsigned char *body, size_t len,
	    unsigned char **out, size_t *outlen);
int	 hook_parse_push(json_t *root, int tests, struct hook_payload *, char *reason,
	    size_t len);
void	 hook_copy_sha(char dst[SHA_HEX], json_t *v);
void	 hook_safe_copy(char *dst, size_t dstlen, const char *src, int space);
struct hook_event {
	const char	*name;
	int		 kind;			/* enum hook_kind */
};
void	 hook_set_event(struct hook_payload *, const char *event,
	    const struct hook_event *map);
/* hooks/github.c, gitea.c, forgejo.c, gogs.c, gitlab.c, bitbucket.c */
int	 github_detect(const struct hook_request *);
int	 github_verify(const struct hook_input *, char *, size_t);
int	 github_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitea_detect(const struct hook_request *);
int	 gitea_verify(const struct hook_input *, char *, size_t);
int	 gitea_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitea_verify_header(const struct hook_input *, const char *header, char *, size_t);
int	 gitea_parse_event(const struct hook_input *, const char *header, json_t *,
	    struct hook_payload *, char *, size_t);
int	 forgejo_detect(const struct hook_request *);
int	 forgejo_verify(const struct hook_input *, char *, size_t);
int	 forgejo_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gogs_detect(const struct hook_request *);
int	 gogs_verify(const struct hook_input *, char *, size_t);
int	 gogs_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitlab_detect(const struct hook_request *);
int	 gitlab_signing_key(const unsigned char *secret, size_t len, unsigned char *key,
	    size_t size, size_t *keylen);
int	 gitlab_verify(const struct hook_input *, char *, size_t);
int	 gitlab_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 bitbucket_detect(const struct hook_request *);
int	 bitbucket_verify(const struct hook_input *, char *, size_t);
int	 bitbucket_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);

/* hooks/pick.c: the members a provider reads, cut out of the body for jansson */
#define PICK_WHOLE	1	/* not sure of the body: parse all of it */
int	 pick_members(const unsigned char *json, size_t len, const char *const *keys,
	    char **out, size_t *out_len);

#endif
