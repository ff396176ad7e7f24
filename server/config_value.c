/* config_value.c: one value of deployd.yaml, read and checked by the type of its key. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yaml.h>

#include "server/deployd.h"

static int config_value_hook_secret(const char *, struct error *);
static int config_value_relpath(const char *);
static int config_value_url(const char *);
static int config_value_cidrs(struct config_loader *, const struct config_key *,
    yaml_node_t *, struct cidr_list *);

/* Parse one scalar of a simple type. NULL node: parse the default string instead. */
int
config_value_scalar(struct config_loader *l, const struct config_key *k,
    const yaml_node_t *n, const char *s, void *field)
{
	struct stat st;
	struct error e;
	uint64_t u, port;
	int64_t v;
	int i;

	if (s == NULL) {
		config_yaml_err(l, n, "%s: expected a single value", k->name);
		return E_CONFIG;
	}
	if (*s == '\0') {
		config_yaml_err(l, n, "%s: empty value", k->name);
		return E_CONFIG;
	}
	switch (k->type) {
	case K_STR:
		break;
	case K_NAME:
		if (!config_value_name(s)) {
			config_yaml_err(l, n, "%s: '%s' is not a valid site name ([a-z0-9_-]+, "
			    "at most 64)", k->name, s);
			return E_CONFIG;
		}
		break;
	case K_ABSPATH:
	case K_SECRET:
	case K_HOOKSECRET:
	case K_FILE:
		if (*s != '/') {
			config_yaml_err(l, n, "%s: '%s' must be an absolute path", k->name, s);
			return E_CONFIG;
		}
		if (strlen(s) >= PATH_MAX - 128) {
			config_yaml_err(l, n, "%s: path too long", k->name);
			return E_CONFIG;
		}
		if ((k->type == K_SECRET || k->type == K_HOOKSECRET) && n != NULL &&
		    l->check_files && secret_check_file(s, &e) != E_OK) {
			config_yaml_err(l, n, "%s: %s", k->name, e.msg);
			return E_CONFIG;
		}
		if (k->type == K_HOOKSECRET && n != NULL && l->check_files &&
		    config_value_hook_secret(s, &e) != E_OK) {
			config_yaml_err(l, n, "%s: %s", k->name, e.msg);
			return E_CONFIG;
		}
		errno = 0;
		if (k->type == K_FILE && n != NULL && l->check_files &&
		    (stat(s, &st) != 0 ||
		    !S_ISREG(st.st_mode) || access(s, R_OK) != 0)) {
			config_yaml_err(l, n, "%s: %s: %s", k->name, s, errno != 0 ?
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
			config_yaml_err(l, n, "%s: '%s' is not a repository URL (ssh://, "
			    "user@host:path, https://, git://, file:// or an absolute path)",
			    k->name, s);
			return E_CONFIG;
		}
		break;
	case K_LISTEN:
		if (strncmp(s, "unix:", 5) == 0) {
			if (s[5] != '/') {
				config_yaml_err(l, n, "%s: unix socket path must be absolute",
				    k->name);
				return E_CONFIG;
			}
		} else {
			const char *colon = strrchr(s, ':');

			if (colon == NULL || colon == s || colon[1] == '\0' ||
			    util_parse_uint(colon + 1, 65535, &port) != E_OK || port == 0 ||
			    (s[0] == '[' && colon[-1] != ']')) {
				config_yaml_err(l, n, "%s: '%s' is not host:port, [addr]:port "
				    "or unix:/path", k->name, s);
				return E_CONFIG;
			}
		}
		break;
	case K_RELPATH:
		if (!config_value_relpath(s)) {
			config_yaml_err(l, n, "%s: '%s' must be a relative path inside the "
			    "repository (no leading /, no . or .. or .git)", k->name, s);
			return E_CONFIG;
		}
		break;
	case K_URL:
		if (!config_value_url(s)) {
			config_yaml_err(l, n, "%s: '%s' is not an absolute http:// or https:// URL",
			    k->name, s);
			return E_CONFIG;
		}
		break;
	case K_BRANCH:
	case K_GLOB:
		if (s[0] == '-' || strstr(s, "..") != NULL || strchr(s, ' ') != NULL ||
		    strchr(s, ':') != NULL || strchr(s, '\\') != NULL ||
		    (k->type == K_BRANCH && (strchr(s, '*') != NULL ||
		    strchr(s, '?') != NULL || strchr(s, '[') != NULL)) ||
		    strncmp(s, "refs/", 5) == 0) {
			config_yaml_err(l, n, "%s: '%s' is not a valid %s", k->name, s,
			    k->type == K_BRANCH ? "branch name" : "tag pattern");
			return E_CONFIG;
		}
		break;
	case K_DURATION:
		if (util_parse_duration(s, &v) != E_OK) {
			config_yaml_err(l, n, "%s: '%s' is not a duration (like 30s, 5m, 2h)",
			    k->name, s);
			return E_CONFIG;
		}
		if (v != 0 && (v < k->min || v > k->max)) {
			config_yaml_err(l, n, "%s: %s is out of range", k->name, s);
			return E_CONFIG;
		}
		if (v == 0 && strcmp(k->name, "poll") != 0 &&
		    strcmp(k->name, "webhook_grace") != 0) {
			config_yaml_err(l, n, "%s: 0 is not allowed here", k->name);
			return E_CONFIG;
		}
		*(int64_t *)field = v;
		return E_OK;
	case K_SIZE:
		if (util_parse_size(s, &v) != E_OK) {
			config_yaml_err(l, n, "%s: '%s' is not a size (like 512KiB, 25MiB)",
			    k->name, s);
			return E_CONFIG;
		}
		if (v < k->min || v > k->max) {
			config_yaml_err(l, n, "%s: %s is out of range", k->name, s);
			return E_CONFIG;
		}
		*(int64_t *)field = v;
		return E_OK;
	case K_INT:
		/* Every count is positive: digits only, so "", " 5" and "+5" are refused. */
		if (util_parse_uint(s, INT64_MAX, &u) != E_OK) {
			config_yaml_err(l, n, "%s: '%s' is not a whole number", k->name, s);
			return E_CONFIG;
		}
		v = (int64_t)u;
		if (v < k->min || v > k->max) {
			config_yaml_err(l, n, "%s: %lld is out of range (%lld to %lld)", k->name,
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
			config_yaml_err(l, n, "%s: '%s' is not true or false", k->name, s);
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
		config_yaml_err(l, n, "%s: '%s' is not one of the allowed values", k->name, s);
		return E_CONFIG;
	default:
		config_yaml_err(l, n, "%s: expected a list or mapping", k->name);
		return E_CONFIG;
	}
	free(*(char **)field);
	*(char **)field = util_xstrdup(s);
	/* "public/" names the same directory as "public", and messages should say it once. */
	if (k->type == K_RELPATH && s[strlen(s) - 1] == '/')
		(*(char **)field)[strlen(s) - 1] = '\0';
	return E_OK;
}

/* Parse a sequence of scalars for the list types. */
int
config_value_list(struct config_loader *l, const struct config_key *k, yaml_node_t *n,
    void *field)
{
	yaml_node_item_t *it;
	struct strv sv = { NULL, 0 };
	unsigned bit, bits = 0;
	int rc = E_OK;

	if (n->type != YAML_SEQUENCE_NODE) {
		config_yaml_err(l, n, "%s: expected a list like [a, b]", k->name);
		return E_CONFIG;
	}
	if (k->type == K_CIDRS)
		return config_value_cidrs(l, k, n, field);
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(l->doc, *it);
		const char *s = item != NULL ? config_yaml_scalar(item) : NULL;

		if (s == NULL || *s == '\0') {
			config_yaml_err(l, item, "%s: list items must be non-empty strings", k->name);
			rc = E_CONFIG;
			continue;
		}
		if (k->type == K_PROVIDERS) {
			/* The providers' own table is the list of names. */
			if ((bit = provider_bit(s)) == 0) {
				config_yaml_err(l, item, "%s: unknown provider '%s' (github, gitea, "
				    "forgejo, gogs, gitlab, bitbucket)", k->name, s);
				rc = E_CONFIG;
			} else
				bits |= bit;
			continue;
		}
		if (k->type == K_ARGV && sv.n == 0 && *s != '/') {
			config_yaml_err(l, item, "%s: the command '%s' must be an absolute path "
			    "(hooks run without a shell or PATH search)", k->name, s);
			rc = E_CONFIG;
		}
		if (k->type == K_URLS && !config_value_url(s)) {
			config_yaml_err(l, item, "%s: '%s' is not an http:// or https:// URL",
			    k->name, s);
			rc = E_CONFIG;
		}
		if (k->type == K_INCLUDE) {
			if (config_value_include(l, k, item, s, &sv) != E_OK)
				rc = E_CONFIG;
			continue;
		}
		if (k->type == K_RELPATHS && !config_value_relpath(s)) {
			config_yaml_err(l, item, "%s: '%s' must be a relative path inside the "
			    "release", k->name, s);
			rc = E_CONFIG;
		}
		util_strv_push(&sv, s);
	}
	if (k->type == K_PROVIDERS) {
		if (rc == E_OK && bits == 0) {
			config_yaml_err(l, n, "%s: the list is empty; no webhook could be accepted",
			    k->name);
			rc = E_CONFIG;
		}
		*(unsigned *)field = bits;
		return rc;
	}
	if (k->type == K_ARGV && sv.n == 0) {
		config_yaml_err(l, n, "%s: the command is empty", k->name);
		rc = E_CONFIG;
	}
	if (k->type == K_URLS && sv.n == 0 && rc == E_OK) {
		config_yaml_err(l, n, "%s: the list is empty", k->name);
		rc = E_CONFIG;
	}
	util_strv_free((struct strv *)field);
	*(struct strv *)field = sv;
	return rc;
}

/*
 * A list of address ranges, each checked by lib/cidr.c; an error names the item. k->min
 * is the fewest items: an empty allow_from would refuse every request, surely a mistake.
 */
static int
config_value_cidrs(struct config_loader *l, const struct config_key *k, yaml_node_t *n,
    struct cidr_list *field)
{
	struct cidr_list list = { NULL, 0, 0 };
	yaml_node_item_t *it;
	struct error e;
	struct cidr c;
	int rc = E_OK;

	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(l->doc, *it);
		const char *s = item != NULL ? config_yaml_scalar(item) : NULL;

		if (s == NULL) {
			config_yaml_err(l, item, "%s: list items must be addresses or ranges like "
			    "192.0.2.0/24", k->name);
			rc = E_CONFIG;
		} else if ((k->flags & F_UNIX) && strcmp(s, "unix") == 0) {
			list.unix_peer = 1;
		} else if (cidr_parse(s, &c, &e) != E_OK) {
			config_yaml_err(l, item, "%s: %s%s", k->name, e.msg, (k->flags & F_UNIX) ?
			    " (or the word unix)" : "");
			rc = E_CONFIG;
		} else
			cidr_list_push(&list, &c);
	}
	if (rc == E_OK && (int64_t)(list.n + (size_t)list.unix_peer) < k->min) {
		config_yaml_err(l, n, "%s: the list is empty; it would refuse every request "
		    "(leave the key out to allow every address)", k->name);
		rc = E_CONFIG;
	}
	cidr_list_free(field);
	*field = list;
	return rc;
}

/* A "whsec_" secret is a GitLab signing key: one that cannot be decoded fails every delivery. */
static int
config_value_hook_secret(const char *path, struct error *e)
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

/*
 * A path that stays inside a tree: no leading '/', and no component that is empty, '.', '..'
 * or '.git' (a trailing '/' is allowed). Paths name directories in commits and releases.
 */
static int
config_value_relpath(const char *s)
{
	const char *c = s, *end;
	size_t len;

	if (*s == '/' || strlen(s) >= PATH_MAX / 2)
		return 0;
	while (*c != '\0') {
		end = strchr(c, '/');
		len = end != NULL ? (size_t)(end - c) : strlen(c);
		if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && strncmp(c, "..", 2) == 0) ||
		    (len == 4 && strncasecmp(c, ".git", 4) == 0))
			return 0;
		if (end == NULL)
			break;
		c = end + 1;
	}
	return 1;
}

/* http:// or https://, a host, and nothing a request line or a log line could be split by. */
static int
config_value_url(const char *s)
{
	const char *host, *p;

	if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else
		return 0;
	if (*host == '\0' || *host == '/' || *host == ':' || strlen(s) > 2048)
		return 0;
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return 0;
	return 1;
}

/* [a-z0-9_-]+, at most 64: a site's name is part of URLs, paths and log lines. */
int
config_value_name(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '-' || *s == '_'))
			return 0;
	}
	return n > 0 && n <= 64;
}

/*
 * One include pattern, added to the list: absolute, or relative to the directory of the
 * file that names it. What it matches is read once the whole file is (config.c).
 */
int
config_value_include(struct config_loader *l, const struct config_key *k,
    const yaml_node_t *n, const char *s, struct strv *field)
{
	const char *slash = strrchr(l->file, '/');
	char *path;

	if (*s == '\0') {
		config_yaml_err(l, n, "%s: empty pattern", k->name);
		return E_CONFIG;
	}
	if (*s == '/' || slash == NULL)
		path = util_xstrdup(s);
	else
		path = util_xasprintf("%.*s/%s", (int)(slash - l->file), l->file, s);
	if (strlen(path) >= PATH_MAX - 128) {
		config_yaml_err(l, n, "%s: pattern too long", k->name);
		free(path);
		return E_CONFIG;
	}
	util_strv_push(field, path);
	free(path);
	return E_OK;
}
