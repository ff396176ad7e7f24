/* config.c: deployd.yaml as a whole: load it, check across keys and sites, warn, find a site. */
#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "server/deployd.h"

/* Client commands only need control_socket; they may not be allowed to read secrets. */
static int config_check_files = 1;

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
config_check_site(struct config_loader *l, struct config *c, size_t idx, yaml_node_t *sn)
{
	const struct site *ss = &c->sites[idx].site, *os;
	size_t i, a, b;
	int rc = E_OK;

	if (ss->branch != NULL && ss->tags != NULL) {
		config_yaml_err(l, config_yaml_find(l, sn, "tags", 0),
		    "site '%s': branch and tags cannot both be set", ss->name);
		rc = E_CONFIG;
	} else if (ss->branch == NULL && ss->tags == NULL) {
		config_yaml_err(l, sn, "site '%s': one of branch or tags is required",
		    ss->name ? ss->name : "?");
		rc = E_CONFIG;
	}
	if (ss->token_file != NULL && ss->ssh_key != NULL) {
		config_yaml_err(l, config_yaml_find(l, sn, "token_file", 0),
		    "site '%s': ssh_key and token_file cannot both be set", ss->name);
		rc = E_CONFIG;
	}
	for (i = 0; i < idx; i++) {
		os = &c->sites[i].site;
		if (os->name != NULL && ss->name != NULL && strcmp(os->name, ss->name) == 0) {
			config_yaml_err(l, config_yaml_find(l, sn, "name", 1),
			    "duplicate site name '%s' (first defined at %s:%d)", ss->name,
			    c->sites[i].file, c->sites[i].line);
			rc = E_CONFIG;
		}
		if (os->path == NULL || ss->path == NULL)
			continue;
		a = config_pathlen(os->path);
		b = config_pathlen(ss->path);
		/* One deploy root inside another would let one site prune the other. */
		if ((a == b && strncmp(os->path, ss->path, a) == 0) ||
		    (a < b && strncmp(os->path, ss->path, a) == 0 && ss->path[a] == '/') ||
		    (b < a && strncmp(os->path, ss->path, b) == 0 && os->path[b] == '/')) {
			config_yaml_err(l, config_yaml_find(l, sn, "path", 1),
			    "site '%s': path %s overlaps site '%s' (%s:%d)", ss->name,
			    ss->path, os->name, c->sites[i].file, c->sites[i].line);
			rc = E_CONFIG;
		}
	}
	return rc;
}

static int
config_parse_sites(struct config_loader *l, struct config *c, yaml_node_t *seq)
{
	yaml_node_item_t *it;
	size_t n;
	int rc = E_OK;

	if (seq->type == YAML_SCALAR_NODE && *config_yaml_scalar(seq) == '\0')
		return E_OK;	/* "sites:" with nothing */
	if (seq->type != YAML_SEQUENCE_NODE) {
		config_yaml_err(l, seq, "sites: expected a list of sites");
		return E_CONFIG;
	}
	n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	/* Included files add to the sites already read. */
	c->sites = util_xrealloc(c->sites, c->nsites + n + 1, sizeof(*c->sites));
	memset(c->sites + c->nsites, 0, (n + 1) * sizeof(*c->sites));
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *sn = yaml_document_get_node(l->doc, *it);
		struct site_config *s = &c->sites[c->nsites++];

		s->file = util_xstrdup(l->file);
		if (config_key_site(l, sn, s) != E_OK)
			rc = E_CONFIG;
		if (sn == NULL)
			continue;
		s->line = (int)sn->start_mark.line + 1;
		s->col = (int)sn->start_mark.column + 1;
		if (config_check_site(l, c, c->nsites - 1, sn) != E_OK)
			rc = E_CONFIG;
	}
	return rc;
}

/* One YAML file into doc; a syntax error goes to the list as FILE:LINE:COL. */
static int
config_read(struct config_loader *l, yaml_document_t *doc)
{
	yaml_parser_t parser;
	FILE *fp;

	if ((fp = fopen(l->file, "r")) == NULL) {
		config_yaml_err(l, NULL, "cannot open: %s", strerror(errno));
		return E_CONFIG;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, doc)) {
		char *line = util_xasprintf("%s:%zu:%zu: YAML syntax error: %s%s%s", l->file,
		    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		    parser.problem ? parser.problem : "unknown",
		    parser.context ? " " : "", parser.context ? parser.context : "");

		util_strv_push(l->errors, line);
		free(line);
		yaml_parser_delete(&parser);
		fclose(fp);
		return E_CONFIG;
	}
	yaml_parser_delete(&parser);
	fclose(fp);
	l->doc = doc;
	return E_OK;
}

/* An included file: a list of sites, like the value of "sites:". */
static int
config_include_file(struct config_loader *parent, struct config *c, const char *path)
{
	struct config_loader l = { path, NULL, parent->errors, parent->check_files };
	yaml_document_t doc;
	yaml_node_t *root;
	int rc;

	if ((rc = config_read(&l, &doc)) != E_OK)
		return rc;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL)
		rc = E_OK;	/* an empty file: no sites */
	else if (root->type != YAML_SEQUENCE_NODE) {
		config_yaml_err(&l, root, "an included file holds a list of sites (\"- name: "
		    "...\"), nothing else");
		rc = E_CONFIG;
	} else
		rc = config_parse_sites(&l, c, root);
	yaml_document_delete(&doc);
	return rc;
}

/* A directory of the pattern that is missing matches nothing; one that cannot be read is
 * an error, or a node would silently run without the sites it holds. */
static int
config_glob_error(const char *path, int err)
{
	(void)path;
	return err != ENOENT && err != ENOTDIR;
}

/*
 * Each include pattern's files in name order, so that every node reads its sites in the same
 * order. A pattern without wildcards names one file, which must exist; one with wildcards
 * may match nothing (an empty sites.d).
 */
static int
config_includes(struct config_loader *l, struct config *c, yaml_node_t *at)
{
	size_t i, j;
	int rc = E_OK, grc;

	for (i = 0; i < c->include.n; i++) {
		const char *pat = c->include.v[i];
		glob_t g;

		memset(&g, 0, sizeof(g));
		grc = glob(pat, 0, config_glob_error, &g);
		if (grc == GLOB_NOMATCH && strpbrk(pat, "*?[") != NULL) {
			globfree(&g);
			continue;
		}
		if (grc != 0) {
			config_yaml_err(l, at, "include: %s: %s", pat, grc == GLOB_NOMATCH ?
			    "no such file" : grc == GLOB_ABORTED ? "a directory cannot be read" :
			    "cannot expand the pattern");
			globfree(&g);
			rc = E_CONFIG;
			continue;
		}
		for (j = 0; j < g.gl_pathc; j++)
			if (config_include_file(l, c, g.gl_pathv[j]) != E_OK)
				rc = E_CONFIG;
		globfree(&g);
	}
	return rc;
}

/* A node name is a host name's letters: it is part of etcd keys and status lines. */
static int
config_node_name(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return n > 0 && n <= 64;
}

/* "all", a count of at least one, or a percentage from 1% to 100%. */
static int
config_min_ready(const char *s)
{
	uint64_t v;
	size_t n = strlen(s);
	char num[24];

	if (strcmp(s, "all") == 0)
		return 1;
	if (n > 1 && s[n - 1] == '%') {
		if (n - 1 >= sizeof(num))
			return 0;
		memcpy(num, s, n - 1);
		num[n - 1] = '\0';
		return util_parse_uint(num, 100, &v) == E_OK && v >= 1;
	}
	return util_parse_uint(s, 100000, &v) == E_OK && v >= 1;
}

/* fleet: what one key alone cannot say; the node's name defaults to the host's. */
static int
config_check_fleet(struct config_loader *l, struct config *c, yaml_node_t *fn)
{
	struct fleet_config *f = &c->fleet;
	int rc = E_OK;

	if (fn == NULL || f->etcd.n == 0)
		return E_OK;
	if (f->node == NULL) {
		char host[256] = "";

		if (gethostname(host, sizeof(host) - 1) != 0 || !config_node_name(host)) {
			config_yaml_err(l, fn, "fleet: the host name '%s' cannot be a node name; "
			    "set node", host);
			return E_CONFIG;
		}
		f->node = util_xstrdup(host);
	} else if (!config_node_name(f->node)) {
		config_yaml_err(l, config_yaml_find(l, fn, "node", 1), "fleet: node '%s' must be "
		    "letters, digits, '.', '-' or '_', at most 64", f->node);
		rc = E_CONFIG;
	}
	if (f->prefix[0] != '/' || f->prefix[strlen(f->prefix) - 1] != '/' ||
	    strpbrk(f->prefix, " \t\r\n") != NULL) {
		config_yaml_err(l, config_yaml_find(l, fn, "prefix", 1), "fleet: prefix '%s' "
		    "must start and end with '/' and hold no spaces", f->prefix);
		rc = E_CONFIG;
	}
	if ((f->cert_file == NULL) != (f->key_file == NULL)) {
		config_yaml_err(l, config_yaml_find(l, fn, f->cert_file ? "cert_file" : "key_file",
		    0), "fleet: cert_file and key_file must be set together");
		rc = E_CONFIG;
	}
	if ((f->user == NULL) != (f->password_file == NULL)) {
		config_yaml_err(l, config_yaml_find(l, fn, f->user ? "user" : "password_file", 0),
		    "fleet: user and password_file must be set together");
		rc = E_CONFIG;
	}
	if (!config_min_ready(f->min_ready)) {
		config_yaml_err(l, config_yaml_find(l, fn, "min_ready", 1), "fleet: min_ready "
		    "'%s' must be all, a count (3) or a percentage (60%%)", f->min_ready);
		rc = E_CONFIG;
	}
	return rc;
}

int
config_load(const char *file, struct config **out, struct strv *errors)
{
	struct config_loader l = { file, NULL, errors, config_check_files };
	yaml_document_t doc;
	yaml_node_t *root, *sites;
	struct config *c;
	size_t i;
	int rc = E_OK;

	*out = NULL;
	if (config_read(&l, &doc) != E_OK)
		return E_CONFIG;

	c = util_xcalloc(1, sizeof(*c));
	c->file = util_xstrdup(file);
	root = yaml_document_get_root_node(&doc);
	if (config_key_global(&l, root, c) != E_OK)
		rc = E_CONFIG;
	if (root != NULL && (sites = config_yaml_find(&l, root, "sites", 1)) != NULL &&
	    config_parse_sites(&l, c, sites) != E_OK)
		rc = E_CONFIG;
	/* A client command needs control_socket only: a broken site file must not keep
	 * `deployd status` from asking the daemon what it runs. */
	if (c->include.n > 0 && l.check_files &&
	    config_includes(&l, c, config_yaml_find(&l, root, "include", 1)) != E_OK)
		rc = E_CONFIG;
	if (config_check_fleet(&l, c, config_yaml_find(&l, root, "fleet", 1)) != E_OK)
		rc = E_CONFIG;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		config_yaml_err(&l, config_yaml_find(&l, root, c->tls_cert ? "tls_cert" : "tls_key", 0),
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

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	config_key_free(c);
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
config_rsa_key(const char *path)
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

/* A site's allow_from range that no global range overlaps lets nobody through. */
static void
config_warn_ranges(const struct config *c, const struct site_config *s, FILE *fp)
{
	char text[INET6_ADDRSTRLEN + 8];
	size_t i, j;

	for (i = 0; i < s->allow_from.n && c->allow_from.n > 0; i++) {
		for (j = 0; j < c->allow_from.n; j++)
			if (cidr_overlap(&s->allow_from.v[i], &c->allow_from.v[j]))
				break;
		if (j < c->allow_from.n)
			continue;
		cidr_text(&s->allow_from.v[i], text, sizeof(text));
		fprintf(fp, "%s:%d:%d: warning: site '%s': allow_from %s is outside the global "
		    "allow_from; no request from it reaches the site\n", s->file, s->line, s->col,
		    s->site.name, text);
	}
}

void
config_warnings(const struct config *c, FILE *fp)
{
	size_t i;

	for (i = 0; i < c->nsites; i++)
		config_warn_ranges(c, &c->sites[i], fp);

	/* A Unix socket's peer has no address: only a trusted proxy's X-Forwarded-For has one. */
	if (strncmp(c->listen, "unix:", 5) == 0 && !c->trusted_proxies.unix_peer) {
		if (c->allow_from.n > 0)
			fprintf(fp, "%s: warning: allow_from with a Unix socket listener refuses "
			    "every request unless trusted_proxies lists unix\n", c->file);
		for (i = 0; i < c->nsites && c->allow_from.n == 0; i++)
			if (c->sites[i].allow_from.n > 0)
				fprintf(fp, "%s:%d:%d: warning: site '%s': allow_from with a Unix "
				    "socket listener refuses every webhook unless trusted_proxies "
				    "lists unix\n", c->sites[i].file, c->sites[i].line, c->sites[i].col,
				    c->sites[i].site.name);
	}

	for (i = 0; i < c->nsites; i++) {
		const struct site_config *s = &c->sites[i];

		if (s->site.ssh_key != NULL && config_rsa_key(s->site.ssh_key))
			fprintf(fp, "%s:%d:%d: warning: site '%s': ssh_key is an RSA key; "
			    "Debian's libssh2 cannot sign with rsa-sha2 and servers refuse "
			    "ssh-rsa: use an ed25519 or ECDSA key\n", s->file, s->line, s->col,
			    s->site.name);
		if (s->site.hooks.run_once.n > 0 && c->fleet.etcd.n == 0)
			fprintf(fp, "%s:%d:%d: warning: site '%s': hooks.run_once runs only in "
			    "fleet mode; without fleet: it is never run\n", s->file, s->line, s->col,
			    s->site.name);
		if (s->poll_ms == 0 && s->secret_file == NULL)
			fprintf(fp, "%s:%d:%d: warning: site '%s' has neither polling nor a "
			    "webhook secret: it deploys only at start-up and on demand\n",
			    s->file, s->line, s->col, s->site.name);
	}
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
