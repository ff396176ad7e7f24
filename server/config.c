/* config.c: load and validate deployd.yaml; every key is one row of a table. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yaml.h>

#include "server/deployd.h"

enum ktype {
	K_STR,		/* any non-empty string */
	K_ABSPATH,	/* an absolute path */
	K_SECRET,	/* an absolute path to a file with safe permissions */
	K_HOOKSECRET,	/* a K_SECRET holding a webhook secret, maybe a "whsec_" key */
	K_FILE,		/* an absolute path to a readable file */
	K_REPO,		/* a git URL or an absolute local path */
	K_LISTEN,	/* host:port, [v6]:port or unix:/path */
	K_NAME,		/* a site name */
	K_BRANCH,	/* a branch name */
	K_GLOB,		/* a tag pattern */
	K_DURATION,
	K_SIZE,
	K_INT,
	K_BOOL,
	K_ENUM,
	K_PROVIDERS,	/* list of provider names, stored as bits */
	K_ARGV,		/* list of strings, argv[0] an absolute path */
	K_RELPATHS,	/* list of relative paths inside a release */
	K_MAP,		/* a nested mapping with its own table */
	K_SITES,	/* the list of sites */
};

#define F_REQUIRED	0x1

struct key {
	const char		*name;
	enum ktype		 type;
	size_t			 off;
	const char		*def;		/* default, parsed like a value; NULL: none */
	int64_t			 min, max;	/* for K_INT, K_DURATION and K_SIZE */
	const char *const	*enums;
	int			 flags;
	const struct key	*sub;		/* for K_MAP */
	const char		*help;
};

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const reuse_modes[] = { "auto", "reflink", "hardlink", "copy", NULL };
static const char *const provider_names[] = {
	"github", "gitea", "forgejo", "gogs", "gitlab", "bitbucket", NULL
};

#define DAY_MS (86400LL * 1000)
#define GIB (1024LL * 1024 * 1024)

#define LK(n, t, f, d, lo, hi, h) \
	{ n, t, offsetof(struct limits, f), d, lo, hi, NULL, 0, NULL, h }
static const struct key limits_keys[] = {
	LK("max_body", K_SIZE, max_body, "25MiB", 1024, GIB,
	    "largest webhook body accepted (413 above it)"),
	LK("max_header", K_SIZE, max_header, "16KiB", 1024, 1024 * 1024,
	    "largest request header block (431 above it)"),
	LK("request_timeout", K_DURATION, request_timeout_ms, "30s", 100, 3600 * 1000,
	    "deadline for a whole request; slow clients are cut off"),
	LK("max_connections", K_INT, max_connections, "256", 1, 100000,
	    "simultaneous connections to the listener"),
	LK("max_connections_per_ip", K_INT, max_connections_per_ip, "32", 1, 100000,
	    "simultaneous connections from one address"),
	LK("signature_tolerance", K_DURATION, signature_tolerance_ms, "5m", 1000, DAY_MS,
	    "allowed clock skew for timestamped signatures"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define HK(n, t, f, d, lo, hi, h) \
	{ n, t, offsetof(struct site_hooks, f), d, lo, hi, NULL, 0, NULL, h }
static const struct key hooks_keys[] = {
	HK("pre_activate", K_ARGV, pre_activate, NULL, 0, 0,
	    "command run in the new release before it goes live; failure aborts"),
	HK("post_activate", K_ARGV, post_activate, NULL, 0, 0,
	    "command run after the new release went live"),
	HK("on_failure", K_ARGV, on_failure, NULL, 0, 0,
	    "command run after any failed deploy, with DEPLOYD_ERROR set"),
	HK("timeout", K_DURATION, timeout_ms, "5m", 1000, DAY_MS,
	    "a hook running longer is killed with its process group"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define SK(n, t, f, d, lo, hi, e, fl, h) \
	{ n, t, offsetof(struct site_config, f), d, lo, hi, e, fl, NULL, h }
static const struct key site_keys[] = {
	SK("name", K_NAME, site.name, NULL, 0, 0, NULL, F_REQUIRED,
	    "site name, [a-z0-9_-]+; its webhook URL is /hooks/<name>"),
	SK("repo", K_REPO, site.repo, NULL, 0, 0, NULL, F_REQUIRED,
	    "repository: ssh, https, git://, file:// URL or a local path"),
	SK("branch", K_BRANCH, site.branch, NULL, 0, 0, NULL, 0,
	    "branch to deploy (exactly one of branch and tags)"),
	SK("tags", K_GLOB, site.tags, NULL, 0, 0, NULL, 0,
	    "deploy the highest tag matching this pattern"),
	SK("path", K_ABSPATH, site.path, NULL, 0, 0, NULL, F_REQUIRED,
	    "deploy root holding releases/, shared/ and current"),
	SK("keep", K_INT, site.keep, "5", 2, 1000, NULL, 0,
	    "successful releases kept, current included"),
	SK("reuse", K_ENUM, site.reuse, "auto", 0, 0, reuse_modes, 0,
	    "how unchanged files are shared with the previous release"),
	SK("secret_file", K_HOOKSECRET, secret_file, NULL, 0, 0, NULL, 0,
	    "file holding the webhook secret (HMAC key or GitLab token)"),
	SK("providers", K_PROVIDERS, providers, NULL, 0, 0, NULL, 0,
	    "webhook providers accepted for this site (default: all)"),
	SK("allow_sha1", K_BOOL, allow_sha1, "false", 0, 0, NULL, 0,
	    "accept GitHub's legacy SHA-1 signature alone"),
	SK("poll", K_DURATION, poll_ms, "60s", 1000, DAY_MS, NULL, 0,
	    "polling interval; 0 disables polling"),
	SK("webhook_grace", K_DURATION, webhook_grace_ms, "2m", 0, DAY_MS, NULL, 0,
	    "a polled tip no webhook announced within this is a missed webhook"),
	SK("ssh_key", K_SECRET, site.ssh_key, NULL, 0, 0, NULL, 0,
	    "SSH deploy key (ed25519 or ECDSA)"),
	SK("known_hosts", K_FILE, site.known_hosts, NULL, 0, 0, NULL, 0,
	    "pinned SSH host keys"),
	SK("token_file", K_SECRET, site.token_file, NULL, 0, 0, NULL, 0,
	    "file holding an HTTPS token"),
	SK("token_user", K_STR, site.token_user, "x-access-token", 0, 0, NULL, 0,
	    "HTTPS user name sent with the token"),
	SK("ca_file", K_FILE, site.ca_file, NULL, 0, 0, NULL, 0,
	    "extra CA certificates for HTTPS"),
	SK("allowed_signers", K_FILE, site.allowed_signers, NULL, 0, 0, NULL, 0,
	    "deploy only commits SSH-signed by these keys"),
	SK("fetch_timeout", K_DURATION, site.fetch_timeout_ms, "10m", 1000, DAY_MS, NULL, 0,
	    "a fetch or remote check taking longer is killed"),
	SK("rollback_on_failure", K_BOOL, site.rollback_on_failure, "false", 0, 0, NULL, 0,
	    "swap back to the previous release when post_activate fails"),
	SK("allow_external_symlinks", K_BOOL, site.allow_external_symlinks, "false", 0, 0,
	    NULL, 0, "allow symlinks that point outside the release"),
	{ "hooks", K_MAP, offsetof(struct site_config, site.hooks), NULL, 0, 0, NULL, 0,
	    hooks_keys, "deploy hooks" },
	SK("shared", K_RELPATHS, site.shared, NULL, 0, 0, NULL, 0,
	    "paths linked from path/shared into every release"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define GK(n, t, f, d, lo, hi, e, h) \
	{ n, t, offsetof(struct config, f), d, lo, hi, e, 0, NULL, h }
static const struct key global_keys[] = {
	GK("listen", K_LISTEN, listen, "127.0.0.1:8090", 0, 0, NULL,
	    "webhook listener: host:port, [::1]:port or unix:/path"),
	GK("control_socket", K_ABSPATH, control_socket, "/run/deployd/deployd.sock", 0, 0,
	    NULL, "Unix socket of the control API"),
	GK("state_dir", K_ABSPATH, state_dir, "/var/lib/deployd", 0, 0, NULL,
	    "repository caches and per-site state"),
	GK("log_level", K_ENUM, log_level, "info", 0, 0, log_levels,
	    "error, warn, info or debug"),
	GK("max_parallel_deploys", K_INT, max_parallel_deploys, "2", 1, 64, NULL,
	    "deploys running at once across all sites"),
	{ "limits", K_MAP, offsetof(struct config, limits), NULL, 0, 0, NULL, 0,
	    limits_keys, "listener limits" },
	GK("tls_cert", K_FILE, tls_cert, NULL, 0, 0, NULL,
	    "certificate for HTTPS on the listener"),
	GK("tls_key", K_SECRET, tls_key, NULL, 0, 0, NULL,
	    "private key for HTTPS on the listener"),
	GK("listener_user", K_STR, listener_user, "nobody", 0, 0, NULL,
	    "user the webhook listener process runs as when deployd starts as root"),
	{ "sites", K_SITES, offsetof(struct config, sites), NULL, 0, 0, NULL, 0, NULL,
	    "the sites to deploy" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

/* Client commands only need control_socket; they may not be allowed to read secrets. */
static int config_check_files = 1;

struct loader {
	const char	*file;
	yaml_document_t	*doc;
	struct strv	*errors;
};

static void config_free_fields(const struct key *, void *);

static void __attribute__((format(printf, 3, 4)))
config_err(struct loader *l, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[768], *line;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n != NULL)
		line = util_xasprintf("%s:%zu:%zu: %s", l->file, n->start_mark.line + 1,
		    n->start_mark.column + 1, msg);
	else
		line = util_xasprintf("%s: %s", l->file, msg);
	util_strv_push(l->errors, line);
	free(line);
}

static const char *
config_scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int config_check_hook_secret(const char *, struct error *);

/* Parse one scalar of a simple type. NULL node: parse the default string instead. */
static int
config_parse_scalar(struct loader *l, const struct key *k, const yaml_node_t *n,
    const char *s, void *field)
{
	struct stat st;
	struct error e;
	uint64_t u, port;
	int64_t v;
	int i;

	if (s == NULL) {
		config_err(l, n, "%s: expected a single value", k->name);
		return E_CONFIG;
	}
	if (*s == '\0') {
		config_err(l, n, "%s: empty value", k->name);
		return E_CONFIG;
	}
	switch (k->type) {
	case K_STR:
		break;
	case K_NAME:
		if (!config_valid_name(s)) {
			config_err(l, n, "%s: '%s' is not a valid site name ([a-z0-9_-]+, "
			    "at most 64)", k->name, s);
			return E_CONFIG;
		}
		break;
	case K_ABSPATH:
	case K_SECRET:
	case K_HOOKSECRET:
	case K_FILE:
		if (*s != '/') {
			config_err(l, n, "%s: '%s' must be an absolute path", k->name, s);
			return E_CONFIG;
		}
		if (strlen(s) >= PATH_MAX - 128) {
			config_err(l, n, "%s: path too long", k->name);
			return E_CONFIG;
		}
		if ((k->type == K_SECRET || k->type == K_HOOKSECRET) && n != NULL &&
		    config_check_files && secret_check_file(s, &e) != E_OK) {
			config_err(l, n, "%s: %s", k->name, e.msg);
			return E_CONFIG;
		}
		if (k->type == K_HOOKSECRET && n != NULL && config_check_files &&
		    config_check_hook_secret(s, &e) != E_OK) {
			config_err(l, n, "%s: %s", k->name, e.msg);
			return E_CONFIG;
		}
		errno = 0;
		if (k->type == K_FILE && n != NULL && config_check_files &&
		    (stat(s, &st) != 0 ||
		    !S_ISREG(st.st_mode) || access(s, R_OK) != 0)) {
			config_err(l, n, "%s: %s: %s", k->name, s, errno != 0 ?
			    strerror(errno) : "not a regular file");
			return E_CONFIG;
		}
		break;
	case K_REPO:
		if (*s != '/' && strncmp(s, "file://", 7) != 0 &&
		    strncmp(s, "git://", 6) != 0 && strncmp(s, "ssh://", 6) != 0 &&
		    strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0 &&
		    (strchr(s, ':') == NULL || strchr(s, '@') == NULL ||
		    strchr(s, '@') > strchr(s, ':'))) {
			config_err(l, n, "%s: '%s' is not a repository URL (ssh://, "
			    "user@host:path, https://, git://, file:// or an absolute path)",
			    k->name, s);
			return E_CONFIG;
		}
		break;
	case K_LISTEN:
		if (strncmp(s, "unix:", 5) == 0) {
			if (s[5] != '/') {
				config_err(l, n, "%s: unix socket path must be absolute",
				    k->name);
				return E_CONFIG;
			}
		} else {
			const char *colon = strrchr(s, ':');

			if (colon == NULL || colon == s || colon[1] == '\0' ||
			    util_parse_uint(colon + 1, 65535, &port) != E_OK || port == 0 ||
			    (s[0] == '[' && colon[-1] != ']')) {
				config_err(l, n, "%s: '%s' is not host:port, [addr]:port "
				    "or unix:/path", k->name, s);
				return E_CONFIG;
			}
		}
		break;
	case K_BRANCH:
	case K_GLOB:
		if (s[0] == '-' || strstr(s, "..") != NULL || strchr(s, ' ') != NULL ||
		    strchr(s, ':') != NULL || strchr(s, '\\') != NULL ||
		    (k->type == K_BRANCH && (strchr(s, '*') != NULL ||
		    strchr(s, '?') != NULL || strchr(s, '[') != NULL)) ||
		    strncmp(s, "refs/", 5) == 0) {
			config_err(l, n, "%s: '%s' is not a valid %s", k->name, s,
			    k->type == K_BRANCH ? "branch name" : "tag pattern");
			return E_CONFIG;
		}
		break;
	case K_DURATION:
		if (util_parse_duration(s, &v) != E_OK) {
			config_err(l, n, "%s: '%s' is not a duration (like 30s, 5m, 2h)",
			    k->name, s);
			return E_CONFIG;
		}
		if (v != 0 && (v < k->min || v > k->max)) {
			config_err(l, n, "%s: %s is out of range", k->name, s);
			return E_CONFIG;
		}
		if (v == 0 && strcmp(k->name, "poll") != 0 &&
		    strcmp(k->name, "webhook_grace") != 0) {
			config_err(l, n, "%s: 0 is not allowed here", k->name);
			return E_CONFIG;
		}
		*(int64_t *)field = v;
		return E_OK;
	case K_SIZE:
		if (util_parse_size(s, &v) != E_OK) {
			config_err(l, n, "%s: '%s' is not a size (like 512KiB, 25MiB)",
			    k->name, s);
			return E_CONFIG;
		}
		if (v < k->min || v > k->max) {
			config_err(l, n, "%s: %s is out of range", k->name, s);
			return E_CONFIG;
		}
		*(int64_t *)field = v;
		return E_OK;
	case K_INT:
		/* Every count is positive: digits only, so "", " 5" and "+5" are refused. */
		if (util_parse_uint(s, INT64_MAX, &u) != E_OK) {
			config_err(l, n, "%s: '%s' is not a whole number", k->name, s);
			return E_CONFIG;
		}
		v = (int64_t)u;
		if (v < k->min || v > k->max) {
			config_err(l, n, "%s: %lld is out of range (%lld to %lld)", k->name,
			    (long long)v, (long long)k->min, (long long)k->max);
			return E_CONFIG;
		}
		*(int64_t *)field = v;
		return E_OK;
	case K_BOOL:
		if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)
			*(int *)field = 1;
		else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)
			*(int *)field = 0;
		else {
			config_err(l, n, "%s: '%s' is not true or false", k->name, s);
			return E_CONFIG;
		}
		return E_OK;
	case K_ENUM:
		for (i = 0; k->enums[i] != NULL; i++) {
			if (strcmp(s, k->enums[i]) == 0) {
				*(int *)field = i;
				return E_OK;
			}
		}
		config_err(l, n, "%s: '%s' is not one of the allowed values", k->name, s);
		return E_CONFIG;
	default:
		config_err(l, n, "%s: expected a list or mapping", k->name);
		return E_CONFIG;
	}
	free(*(char **)field);
	*(char **)field = util_xstrdup(s);
	return E_OK;
}

/* Parse a sequence of scalars for the list types. */
static int
config_parse_list(struct loader *l, const struct key *k, yaml_node_t *n, void *field)
{
	yaml_node_item_t *it;
	struct strv sv = { NULL, 0 };
	unsigned bits = 0;
	int i, rc = E_OK;

	if (n->type != YAML_SEQUENCE_NODE) {
		config_err(l, n, "%s: expected a list like [a, b]", k->name);
		return E_CONFIG;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(l->doc, *it);
		const char *s = item != NULL ? config_scalar(item) : NULL;

		if (s == NULL || *s == '\0') {
			config_err(l, item, "%s: list items must be non-empty strings", k->name);
			rc = E_CONFIG;
			continue;
		}
		if (k->type == K_PROVIDERS) {
			for (i = 0; provider_names[i] != NULL; i++)
				if (strcmp(s, provider_names[i]) == 0)
					break;
			if (provider_names[i] == NULL) {
				config_err(l, item, "%s: unknown provider '%s' (github, gitea, "
				    "forgejo, gogs, gitlab, bitbucket)", k->name, s);
				rc = E_CONFIG;
			} else
				bits |= 1u << i;
			continue;
		}
		if (k->type == K_ARGV && sv.n == 0 && *s != '/') {
			config_err(l, item, "%s: the command '%s' must be an absolute path "
			    "(hooks run without a shell or PATH search)", k->name, s);
			rc = E_CONFIG;
		}
		if (k->type == K_RELPATHS && (*s == '/' || strcmp(s, "..") == 0 ||
		    strncmp(s, "../", 3) == 0 || strstr(s, "/../") != NULL ||
		    strcmp(s, ".") == 0 || strcmp(s, ".git") == 0 ||
		    (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0))) {
			config_err(l, item, "%s: '%s' must be a relative path inside the "
			    "release", k->name, s);
			rc = E_CONFIG;
		}
		util_strv_push(&sv, s);
	}
	if (k->type == K_PROVIDERS) {
		if (rc == E_OK && bits == 0) {
			config_err(l, n, "%s: the list is empty; no webhook could be accepted",
			    k->name);
			rc = E_CONFIG;
		}
		*(unsigned *)field = bits;
		return rc;
	}
	if (k->type == K_ARGV && sv.n == 0) {
		config_err(l, n, "%s: the command is empty", k->name);
		rc = E_CONFIG;
	}
	util_strv_free((struct strv *)field);
	*(struct strv *)field = sv;
	return rc;
}

static int config_parse_map(struct loader *, const struct key *, yaml_node_t *, void *,
    const char *);

static void
config_defaults(const struct key *keys, void *base)
{
	struct loader quiet = { "(defaults)", NULL, NULL };
	struct strv sink = { NULL, 0 };
	const struct key *k;

	quiet.errors = &sink;
	for (k = keys; k->name != NULL; k++) {
		if (k->type == K_MAP)
			config_defaults(k->sub, (char *)base + k->off);
		else if (k->type == K_PROVIDERS)
			*(unsigned *)((char *)base + k->off) = PROV_ALL;
		else if (k->def != NULL)
			config_parse_scalar(&quiet, k, NULL, k->def, (char *)base + k->off);
	}
	util_strv_free(&sink);
}

static int
config_parse_value(struct loader *l, const struct key *k, yaml_node_t *v, void *field)
{
	switch (k->type) {
	case K_PROVIDERS:
	case K_ARGV:
	case K_RELPATHS:
		return config_parse_list(l, k, v, field);
	case K_MAP:
		return config_parse_map(l, k->sub, v, field, k->name);
	case K_SITES:
		return E_INVAL;		/* handled by config_parse_sites */
	default:
		return config_parse_scalar(l, k, v, config_scalar(v), field);
	}
}

/* Walk a mapping node against a key table; unknown and repeated keys are errors. */
static int
config_parse_map(struct loader *l, const struct key *keys, yaml_node_t *n, void *base,
    const char *what)
{
	yaml_node_pair_t *p;
	const struct key *k;
	unsigned char seen[64] = { 0 };
	int rc = E_OK;

	if (n->type != YAML_MAPPING_NODE) {
		config_err(l, n, "%s: expected a mapping of keys", what);
		return E_CONFIG;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		const char *name = kn != NULL ? config_scalar(kn) : NULL;

		if (name == NULL || vn == NULL) {
			config_err(l, kn, "%s: keys must be plain words", what);
			rc = E_CONFIG;
			continue;
		}
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, name) == 0)
				break;
		if (k->name == NULL) {
			config_err(l, kn, "unknown key '%s' in %s", name, what);
			rc = E_CONFIG;
			continue;
		}
		if (seen[k - keys]++) {
			config_err(l, kn, "key '%s' appears twice in %s", name, what);
			rc = E_CONFIG;
			continue;
		}
		if (k->type == K_SITES)
			continue;	/* the caller walks the sites once globals are known */
		if (config_parse_value(l, k, vn, (char *)base + k->off) != E_OK)
			rc = E_CONFIG;
	}
	for (k = keys; k->name != NULL; k++) {
		if ((k->flags & F_REQUIRED) && !seen[k - keys]) {
			config_err(l, n, "%s: required key '%s' is missing", what, k->name);
			rc = E_CONFIG;
		}
	}
	return rc;
}

static yaml_node_t *
config_find(struct loader *l, yaml_node_t *map, const char *name, int want_value)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		const char *s = kn != NULL ? config_scalar(kn) : NULL;

		if (s != NULL && strcmp(s, name) == 0)
			return want_value ? yaml_document_get_node(l->doc, p->value) : kn;
	}
	return NULL;
}

static size_t
config_pathlen(const char *p)
{
	size_t n = strlen(p);

	while (n > 1 && p[n - 1] == '/')
		n--;
	return n;
}

/* Checks that involve more than one key of a site, or more than one site. */
static int
config_check_site(struct loader *l, struct config *c, size_t idx, yaml_node_t *sn)
{
	struct site_config *s = &c->sites[idx];
	size_t i, a, b;
	int rc = E_OK;

	if (s->site.branch != NULL && s->site.tags != NULL) {
		config_err(l, config_find(l, sn, "tags", 0),
		    "site '%s': branch and tags cannot both be set", s->site.name);
		rc = E_CONFIG;
	} else if (s->site.branch == NULL && s->site.tags == NULL) {
		config_err(l, sn, "site '%s': one of branch or tags is required",
		    s->site.name ? s->site.name : "?");
		rc = E_CONFIG;
	}
	if (s->site.token_file != NULL && s->site.ssh_key != NULL) {
		config_err(l, config_find(l, sn, "token_file", 0),
		    "site '%s': ssh_key and token_file cannot both be set", s->site.name);
		rc = E_CONFIG;
	}
	for (i = 0; i < idx; i++) {
		struct site_config *o = &c->sites[i];

		if (o->site.name != NULL && s->site.name != NULL &&
		    strcmp(o->site.name, s->site.name) == 0) {
			config_err(l, config_find(l, sn, "name", 1),
			    "duplicate site name '%s' (first defined at line %d)",
			    s->site.name, o->line);
			rc = E_CONFIG;
		}
		if (o->site.path == NULL || s->site.path == NULL)
			continue;
		a = config_pathlen(o->site.path);
		b = config_pathlen(s->site.path);
		/* One deploy root inside another would let one site prune the other. */
		if ((a == b && strncmp(o->site.path, s->site.path, a) == 0) ||
		    (a < b && strncmp(o->site.path, s->site.path, a) == 0 &&
		    s->site.path[a] == '/') ||
		    (b < a && strncmp(o->site.path, s->site.path, b) == 0 &&
		    o->site.path[b] == '/')) {
			config_err(l, config_find(l, sn, "path", 1),
			    "site '%s': path %s overlaps site '%s' (line %d)", s->site.name,
			    s->site.path, o->site.name, o->line);
			rc = E_CONFIG;
		}
	}
	return rc;
}

static int
config_parse_sites(struct loader *l, struct config *c, yaml_node_t *seq)
{
	yaml_node_item_t *it;
	size_t n;
	int rc = E_OK;

	if (seq->type == YAML_SCALAR_NODE && *config_scalar(seq) == '\0')
		return E_OK;	/* "sites:" with nothing */
	if (seq->type != YAML_SEQUENCE_NODE) {
		config_err(l, seq, "sites: expected a list of sites");
		return E_CONFIG;
	}
	n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	c->sites = util_xcalloc(n, sizeof(*c->sites));
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *sn = yaml_document_get_node(l->doc, *it);
		struct site_config *s = &c->sites[c->nsites++];

		config_defaults(site_keys, s);
		if (sn == NULL)
			continue;
		s->line = (int)sn->start_mark.line + 1;
		s->col = (int)sn->start_mark.column + 1;
		if (config_parse_map(l, site_keys, sn, s, "site") != E_OK)
			rc = E_CONFIG;
		if (config_check_site(l, c, c->nsites - 1, sn) != E_OK)
			rc = E_CONFIG;
	}
	return rc;
}

int
config_load(const char *file, struct config **out, struct strv *errors)
{
	struct loader l = { file, NULL, errors };
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *sites;
	struct config *c;
	FILE *fp;
	size_t i;
	int rc = E_OK;

	*out = NULL;
	if ((fp = fopen(file, "r")) == NULL) {
		config_err(&l, NULL, "cannot open: %s", strerror(errno));
		return E_CONFIG;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &doc)) {
		char *line = util_xasprintf("%s:%zu:%zu: YAML syntax error: %s%s%s", file,
		    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		    parser.problem ? parser.problem : "unknown",
		    parser.context ? " " : "", parser.context ? parser.context : "");

		util_strv_push(errors, line);
		free(line);
		yaml_parser_delete(&parser);
		fclose(fp);
		return E_CONFIG;
	}
	yaml_parser_delete(&parser);
	fclose(fp);
	l.doc = &doc;

	c = util_xcalloc(1, sizeof(*c));
	c->file = util_xstrdup(file);
	config_defaults(global_keys, c);
	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		/* An empty file is a valid config with defaults and no sites. */
	} else if (config_parse_map(&l, global_keys, root, c, "the top level") != E_OK) {
		rc = E_CONFIG;
	}
	if (root != NULL && (sites = config_find(&l, root, "sites", 1)) != NULL &&
	    config_parse_sites(&l, c, sites) != E_OK)
		rc = E_CONFIG;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		config_err(&l, config_find(&l, root, c->tls_cert ? "tls_cert" : "tls_key", 0),
		    "tls_cert and tls_key must be set together");
		rc = E_CONFIG;
	}
	yaml_document_delete(&doc);
	if (rc != E_OK) {
		config_free(c);
		return rc;
	}
	/* The engine keeps each site's cache and state under the one state_dir. */
	for (i = 0; i < c->nsites; i++)
		c->sites[i].site.state_dir = c->state_dir;
	*out = c;
	return E_OK;
}

static void
config_free_fields(const struct key *keys, void *base)
{
	const struct key *k;

	for (k = keys; k->name != NULL; k++) {
		void *field = (char *)base + k->off;

		switch (k->type) {
		case K_ARGV:
		case K_RELPATHS:
			util_strv_free(field);
			break;
		case K_MAP:
			config_free_fields(k->sub, field);
			break;
		case K_STR: case K_ABSPATH: case K_SECRET: case K_HOOKSECRET: case K_FILE:
		case K_REPO:
		case K_LISTEN: case K_NAME: case K_BRANCH: case K_GLOB:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		default:
			break;
		}
	}
}

void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nsites; i++)
		config_free_fields(site_keys, &c->sites[i]);
	free(c->sites);
	c->sites = NULL;
	config_free_fields(global_keys, c);
	free(c->file);
	free(c);
}

void
config_set_check_files(int on)
{
	config_check_files = on;
}

/* An RSA deploy key cannot work with Debian's libssh2 (no rsa-sha2): say so early. */
static int
config_key_is_rsa(const char *path)
{
	unsigned char raw[192];
	char text[8192], b64[8192];
	size_t n, o = 0, rawlen = 0, i;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	n = fread(text, 1, sizeof(text) - 1, fp);
	fclose(fp);
	text[n] = '\0';
	if (strstr(text, "BEGIN RSA PRIVATE KEY") != NULL)
		return 1;
	if (strstr(text, "BEGIN OPENSSH PRIVATE KEY") == NULL)
		return 0;
	for (i = 0; i < n; i++) {
		if (text[i] == '-') {
			while (i < n && text[i] != '\n')
				i++;
			continue;
		}
		if (text[i] != '\n' && text[i] != '\r')
			b64[o++] = text[i];
	}
	/* Only the start is needed: whole groups of four, which decode without padding. */
	if (o > 256)
		o = 256;
	if (base64_decode(b64, o - o % 4, NULL, raw, sizeof(raw), &rawlen) != E_OK)
		return 0;
	/* The public key blob near the start names its type. */
	for (i = 0; i + 7 <= rawlen && i < 128; i++)
		if (memcmp(raw + i, "ssh-rsa", 7) == 0)
			return 1;
	return 0;
}

void
config_warnings(const struct config *c, FILE *fp)
{
	size_t i;

	for (i = 0; i < c->nsites; i++) {
		const struct site_config *s = &c->sites[i];

		if (s->site.ssh_key != NULL && config_key_is_rsa(s->site.ssh_key))
			fprintf(fp, "%s:%d:%d: warning: site '%s': ssh_key is an RSA key; "
			    "Debian's libssh2 cannot sign with rsa-sha2 and servers refuse "
			    "ssh-rsa: use an ed25519 or ECDSA key\n", c->file, s->line, s->col,
			    s->site.name);
		if (s->poll_ms == 0 && s->secret_file == NULL)
			fprintf(fp, "%s:%d:%d: warning: site '%s' has neither polling nor a "
			    "webhook secret: it deploys only at start-up and on demand\n",
			    c->file, s->line, s->col, s->site.name);
	}
}

/* [a-z0-9_-]+, at most 64: a site's name is part of URLs, paths and log lines. */
int
config_valid_name(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '-' || *s == '_'))
			return 0;
	}
	return n > 0 && n <= 64;
}

const struct site_config *
config_site(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; c != NULL && i < c->nsites; i++)
		if (strcmp(c->sites[i].site.name, name) == 0)
			return &c->sites[i];
	return NULL;
}

/* A "whsec_" secret is a GitLab signing key: one that cannot be decoded fails every delivery. */
static int
config_check_hook_secret(const char *path, struct error *e)
{
	unsigned char *buf, key[256];
	size_t len, keylen;
	int rc;

	if ((rc = secret_read(path, &buf, &len, e)) != E_OK)
		return rc;
	rc = E_OK;
	if (len >= 6 && memcmp(buf, "whsec_", 6) == 0 &&
	    gitlab_signing_key(buf, len, key, sizeof(key), &keylen) != E_OK)
		rc = util_error(e, E_SECRET, "%s: a \"whsec_\" signing key must be followed by "
		    "canonical base64 (at most %zu bytes once decoded)", path, sizeof(key));
	sodium_memzero(key, sizeof(key));
	secret_free(buf, len);
	return rc;
}

/* The flat list of documented key names ("limits.max_body", "sites.hooks.timeout"). */
static int
config_walk_keys(const struct key *keys, const char *prefix, int want, const char **out,
    char *buf, size_t len)
{
	const struct key *k;
	int count = 0;

	for (k = keys; k->name != NULL; k++) {
		char name[128];
		int sub;

		snprintf(name, sizeof(name), "%s%s", prefix, k->name);
		if (k->type == K_MAP || k->type == K_SITES) {
			char pfx[160];

			snprintf(pfx, sizeof(pfx), "%s.", name);
			sub = config_walk_keys(k->type == K_MAP ? k->sub : site_keys, pfx,
			    want - count, out, buf, len);
			count += sub;
			if (*out != NULL)
				return count;
			continue;
		}
		if (count == want) {
			util_strlcpy(buf, name, len);
			*out = buf;
			return count;
		}
		count++;
	}
	return count;
}

int
config_key_count(void)
{
	const char *out = NULL;
	char buf[128];

	return config_walk_keys(global_keys, "", -1, &out, buf, sizeof(buf));
}

const char *
config_key_name(int i)
{
	static __thread char buf[128];
	const char *out = NULL;

	config_walk_keys(global_keys, "", i, &out, buf, sizeof(buf));
	return out;
}
