/* config_key.c: the key table of deployd.yaml, a row per key, and the walk of a YAML mapping against it. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "server/deployd.h"

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const reuse_modes[] = { "auto", "reflink", "hardlink", "copy", NULL };

#define DAY_MS (86400LL * 1000)
#define GIB (1024LL * 1024 * 1024)

#define LK(n, t, f, d, lo, hi, h) \
	{ n, t, offsetof(struct limits, f), d, lo, hi, NULL, 0, NULL, h }
static const struct config_key limits_keys[] = {
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
static const struct config_key hooks_keys[] = {
	HK("pre_activate", K_ARGV, pre_activate, NULL, 0, 0,
	    "command run in the new release before it goes live; failure aborts"),
	HK("post_activate", K_ARGV, post_activate, NULL, 0, 0,
	    "command run after the new release went live"),
	HK("on_failure", K_ARGV, on_failure, NULL, 0, 0,
	    "command run after any failed deploy, with DEPLOYD_ERROR set"),
	HK("run_once", K_ARGV, run_once, NULL, 0, 0,
	    "fleet mode: command run once per commit for the whole fleet, on the coordinator in "
	    "its prepared release, before the cutover"),
	HK("timeout", K_DURATION, timeout_ms, "5m", 1000, DAY_MS,
	    "a hook running longer is killed with its process group"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define HC(n, t, f, d, lo, hi, fl, h) \
	{ n, t, offsetof(struct site_health, f), d, lo, hi, NULL, fl, NULL, h }
static const struct config_key health_keys[] = {
	HC("url", K_URL, url, NULL, 0, 0, F_REQUIRED,
	    "asked after every swap: http:// or https://"),
	HC("expect", K_INT, expect, "200", 100, 599, 0,
	    "the HTTP status that means the release is healthy"),
	HC("timeout", K_DURATION, timeout_ms, "10s", 1000, 300 * 1000, 0,
	    "deadline of one request"),
	HC("retries", K_INT, retries, "3", 0, 100, 0,
	    "requests made after the first one fails, before the check fails"),
	HC("interval", K_DURATION, interval_ms, "1s", 1000, 60 * 1000, 0,
	    "wait between two requests"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define SK(n, t, f, d, lo, hi, e, fl, h) \
	{ n, t, offsetof(struct site_config, f), d, lo, hi, e, fl, NULL, h }
static const struct config_key site_keys[] = {
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
	SK("subdir", K_RELPATH, site.subdir, NULL, 0, 0, NULL, 0,
	    "deploy only this directory of the repository, as the release's root"),
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
	    "swap back to the previous release when post_activate or health_check fails"),
	SK("allow_external_symlinks", K_BOOL, site.allow_external_symlinks, "false", 0, 0,
	    NULL, 0, "allow symlinks that point outside the release"),
	{ "hooks", K_MAP, offsetof(struct site_config, site.hooks), NULL, 0, 0, NULL, 0,
	    hooks_keys, "deploy hooks" },
	{ "health_check", K_MAP, offsetof(struct site_config, site.health), NULL, 0, 0, NULL,
	    0, health_keys, "a request after every swap; failing it fails the deploy" },
	SK("shared", K_RELPATHS, site.shared, NULL, 0, 0, NULL, 0,
	    "paths linked from path/shared into every release"),
	SK("allow_from", K_CIDRS, allow_from, NULL, 1, 0, NULL, 0,
	    "addresses (CIDR) that may send this site's webhooks, within the global list"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define FK(n, t, f, d, lo, hi, fl, h) \
	{ n, t, offsetof(struct fleet_config, f), d, lo, hi, NULL, fl, NULL, h }
static const struct config_key fleet_keys[] = {
	FK("etcd", K_URLS, etcd, NULL, 0, 0, F_REQUIRED,
	    "etcd endpoints, http:// or https://, tried in turn"),
	FK("prefix", K_STR, prefix, "/deployd/", 0, 0, 0,
	    "every key of the fleet lives under it; fleets may share one etcd"),
	FK("node", K_STR, node, NULL, 0, 0, 0,
	    "this node's name, unique in the fleet (default: the host name)"),
	FK("zone", K_STR, zone, NULL, 0, 0, 0,
	    "free text shown in status: the cloud, region or rack"),
	FK("ca_file", K_FILE, ca_file, NULL, 0, 0, 0,
	    "CA certificates that etcd's server certificate is checked against"),
	FK("cert_file", K_FILE, cert_file, NULL, 0, 0, 0,
	    "client certificate for etcd (with key_file)"),
	FK("key_file", K_SECRET, key_file, NULL, 0, 0, 0,
	    "private key of the client certificate"),
	FK("user", K_STR, user, NULL, 0, 0, 0,
	    "etcd user (with password_file)"),
	FK("password_file", K_SECRET, password_file, NULL, 0, 0, 0,
	    "file holding the etcd user's password"),
	FK("lease_ttl", K_DURATION, lease_ttl_ms, "10s", 2000, 600 * 1000, 0,
	    "a node that stops renewing its lease for this long has left the fleet"),
	FK("prepare_timeout", K_DURATION, prepare_timeout_ms, "10m", 1000, DAY_MS, 0,
	    "how long a cutover waits for the nodes to prepare"),
	FK("min_ready", K_STR, min_ready, "all", 0, 0, 0,
	    "nodes that must have prepared: all, a count, or a percentage of the live ones"),
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

#define GK(n, t, f, d, lo, hi, e, h) \
	{ n, t, offsetof(struct config, f), d, lo, hi, e, 0, NULL, h }
static const struct config_key global_keys[] = {
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
	GK("user", K_STR, user, "deployd", 0, 0, NULL,
	    "user the engine, its helpers and hooks run as when deployd starts as root"),
	GK("listener_user", K_STR, listener_user, "nobody", 0, 0, NULL,
	    "user the webhook listener process runs as when deployd starts as root"),
	GK("allow_from", K_CIDRS, allow_from, NULL, 1, 0, NULL,
	    "addresses (CIDR) that may send any request to the listener; others get 403"),
	{ "trusted_proxies", K_CIDRS, offsetof(struct config, trusted_proxies), NULL, 0, 0,
	    NULL, F_UNIX, NULL, "proxies (CIDR, or unix) whose X-Forwarded-For names the client" },
	{ "sites", K_SITES, offsetof(struct config, sites), NULL, 0, 0, NULL, 0, NULL,
	    "the sites to deploy" },
	GK("include", K_INCLUDE, include, NULL, 0, 0, NULL,
	    "files (patterns, in name order) that each hold a list of more sites"),
	{ "fleet", K_MAP, offsetof(struct config, fleet), NULL, 0, 0, NULL, 0, fleet_keys,
	    "fleet mode: nodes that move together, coordinated through etcd" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, NULL }
};

static void
config_key_defaults(const struct config_key *keys, void *base)
{
	struct config_loader quiet = { "(defaults)", NULL, NULL, 0 };
	struct strv sink = { NULL, 0 };
	const struct config_key *k;

	quiet.errors = &sink;
	for (k = keys; k->name != NULL; k++) {
		if (k->type == K_MAP)
			config_key_defaults(k->sub, (char *)base + k->off);
		else if (k->type == K_PROVIDERS)
			*(unsigned *)((char *)base + k->off) = PROV_ALL;
		else if (k->def != NULL)
			config_value_scalar(&quiet, k, NULL, k->def, (char *)base + k->off);
	}
	util_strv_free(&sink);
}

static int config_key_map(struct config_loader *, const struct config_key *, yaml_node_t *,
    void *, const char *);

static int
config_key_value(struct config_loader *l, const struct config_key *k, yaml_node_t *v,
    void *field)
{
	switch (k->type) {
	case K_PROVIDERS:
	case K_ARGV:
	case K_RELPATHS:
	case K_CIDRS:
	case K_URLS:
		return config_value_list(l, k, v, field);
	case K_INCLUDE:
		if (config_yaml_scalar(v) != NULL)
			return config_value_include(l, k, v, config_yaml_scalar(v), field);
		return config_value_list(l, k, v, field);
	case K_MAP:
		return config_key_map(l, k->sub, v, field, k->name);
	case K_SITES:
		return E_INVAL;		/* config.c walks the sites */
	default:
		return config_value_scalar(l, k, v, config_yaml_scalar(v), field);
	}
}

/* Walk a mapping node against a key table; unknown and repeated keys are errors. */
static int
config_key_map(struct config_loader *l, const struct config_key *keys, yaml_node_t *n,
    void *base, const char *what)
{
	yaml_node_pair_t *p;
	const struct config_key *k;
	unsigned char seen[64] = { 0 };
	int rc = E_OK;

	if (n->type != YAML_MAPPING_NODE) {
		config_yaml_err(l, n, "%s: expected a mapping of keys", what);
		return E_CONFIG;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(l->doc, p->value);
		const char *name = kn != NULL ? config_yaml_scalar(kn) : NULL;

		if (name == NULL || vn == NULL) {
			config_yaml_err(l, kn, "%s: keys must be plain words", what);
			rc = E_CONFIG;
			continue;
		}
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, name) == 0)
				break;
		if (k->name == NULL) {
			config_yaml_err(l, kn, "unknown key '%s' in %s", name, what);
			rc = E_CONFIG;
			continue;
		}
		if (seen[k - keys]++) {
			config_yaml_err(l, kn, "key '%s' appears twice in %s", name, what);
			rc = E_CONFIG;
			continue;
		}
		if (k->type == K_SITES)
			continue;	/* config.c walks the sites once globals are known */
		if (config_key_value(l, k, vn, (char *)base + k->off) != E_OK)
			rc = E_CONFIG;
	}
	for (k = keys; k->name != NULL; k++) {
		if ((k->flags & F_REQUIRED) && !seen[k - keys]) {
			config_yaml_err(l, n, "%s: required key '%s' is missing", what, k->name);
			rc = E_CONFIG;
		}
	}
	return rc;
}

/* The top level: every default, then the keys the file sets; the sites are config.c's. */
int
config_key_global(struct config_loader *l, yaml_node_t *root, struct config *c)
{
	config_key_defaults(global_keys, c);
	if (root == NULL)
		return E_OK;	/* an empty file: the defaults and no sites */
	return config_key_map(l, global_keys, root, c, "the top level");
}

/* One site: every default, then the keys the file sets for it. */
int
config_key_site(struct config_loader *l, yaml_node_t *sn, struct site_config *s)
{
	config_key_defaults(site_keys, s);
	if (sn == NULL)
		return E_OK;
	return config_key_map(l, site_keys, sn, s, "site");
}

static void
config_key_free_fields(const struct config_key *keys, void *base)
{
	const struct config_key *k;

	for (k = keys; k->name != NULL; k++) {
		void *field = (char *)base + k->off;

		switch (k->type) {
		case K_ARGV:
		case K_RELPATHS:
		case K_URLS:
		case K_INCLUDE:
			util_strv_free(field);
			break;
		case K_CIDRS:
			cidr_list_free(field);
			break;
		case K_MAP:
			config_key_free_fields(k->sub, field);
			break;
		case K_STR: case K_ABSPATH: case K_SECRET: case K_HOOKSECRET: case K_FILE:
		case K_REPO: case K_RELPATH: case K_URL:
		case K_LISTEN: case K_NAME: case K_BRANCH: case K_GLOB:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		default:
			break;
		}
	}
}


/* Everything the tables filled in, the sites included; the struct itself stays. */
void
config_key_free(struct config *c)
{
	size_t i;

	for (i = 0; i < c->nsites; i++) {
		config_key_free_fields(site_keys, &c->sites[i]);
		free(c->sites[i].file);
	}
	free(c->sites);
	c->sites = NULL;
	config_key_free_fields(global_keys, c);
}

static void
config_key_paths_of(const struct config_key *keys, const void *base, const char *site,
    config_path_fn fn, void *arg)
{
	const struct config_key *k;

	for (k = keys; k->name != NULL; k++) {
		const void *field = (const char *)base + k->off;
		const char *v = NULL;

		switch (k->type) {
		case K_MAP:
			config_key_paths_of(k->sub, field, site, fn, arg);
			break;
		case K_ARGV:
			if (((const struct strv *)field)->n > 0)
				v = ((const struct strv *)field)->v[0];
			break;
		case K_ABSPATH: case K_SECRET: case K_HOOKSECRET: case K_FILE: case K_REPO:
			v = *(char *const *)field;
			break;
		default:
			break;
		}
		if (v != NULL)
			fn(arg, site, k->name, k->type, v);
	}
}

/* Every file, directory and program the configuration names, with the key naming it. */
void
config_key_paths(const struct config *c, config_path_fn fn, void *arg)
{
	size_t i;

	config_key_paths_of(global_keys, c, NULL, fn, arg);
	for (i = 0; i < c->nsites; i++)
		config_key_paths_of(site_keys, &c->sites[i], c->sites[i].site.name, fn, arg);
}

/* The flat list of documented key names ("limits.max_body", "sites.hooks.timeout"). */
static int
config_key_walk(const struct config_key *keys, const char *prefix, int want, const char **out,
    char *buf, size_t len)
{
	const struct config_key *k;
	int count = 0;

	for (k = keys; k->name != NULL; k++) {
		char name[128];
		int sub;

		snprintf(name, sizeof(name), "%s%s", prefix, k->name);
		if (k->type == K_MAP || k->type == K_SITES) {
			char pfx[160];

			snprintf(pfx, sizeof(pfx), "%s.", name);
			sub = config_key_walk(k->type == K_MAP ? k->sub : site_keys, pfx,
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

	return config_key_walk(global_keys, "", -1, &out, buf, sizeof(buf));
}

const char *
config_key_name(int i)
{
	static __thread char buf[128];
	const char *out = NULL;

	config_key_walk(global_keys, "", i, &out, buf, sizeof(buf));
	return out;
}
