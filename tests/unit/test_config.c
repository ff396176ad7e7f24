/* test_config.c: unit tests for the configuration loader: every good and bad case, with positions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "server/deployd.h"

static char tmpdir[64];
static char cfgpath[128];
static char secret[128];

static int
setup(void **st)
{
	FILE *fp;

	(void)st;
	strcpy(tmpdir, "/tmp/deployd-test-config-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cfgpath, sizeof(cfgpath), "%s/deployd.yaml", tmpdir);
	snprintf(secret, sizeof(secret), "%s/www.secret", tmpdir);
	if ((fp = fopen(secret, "w")) == NULL)
		return -1;
	fputs("s3cret\r\n", fp);
	fclose(fp);
	chmod(secret, 0640);
	return sodium_init() < 0 ? -1 : 0;
}

static int
teardown(void **st)
{
	char *cmd;

	(void)st;
	cmd = util_xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	free(cmd);
	return 0;
}

/* Write text (with @S@ standing for the secret's path) and load it. */
static int
load(const char *text, struct config **c, struct strv *errors)
{
	FILE *fp = fopen(cfgpath, "w");
	const char *p;

	assert_non_null(fp);
	for (p = text; *p; p++) {
		if (strncmp(p, "@S@", 3) == 0) {
			fputs(secret, fp);
			p += 2;
		} else if (strncmp(p, "@D@", 3) == 0) {
			fputs(tmpdir, fp);
			p += 2;
		} else
			fputc(*p, fp);
	}
	fclose(fp);
	errors->v = NULL;
	errors->n = 0;
	return config_load(cfgpath, c, errors);
}

/* The config must fail with exactly one error at line:col containing the words. */
static void
expect_error(const char *text, int line, int col, const char *words)
{
	struct strv errors;
	struct config *c = NULL;
	char *want;

	assert_int_equal(load(text, &c, &errors), E_CONFIG);
	assert_null(c);
	if (errors.n < 1)
		fail_msg("no error reported");
	want = util_xasprintf("%s:%d:%d: ", cfgpath, line, col);
	if (strncmp(errors.v[0], want, strlen(want)) != 0 ||
	    strstr(errors.v[0], words) == NULL)
		fail_msg("got \"%s\", want prefix \"%s\" and \"%s\"", errors.v[0], want, words);
	free(want);
	util_strv_free(&errors);
}

static void
t_full_config(void **st)
{
	struct strv errors;
	struct config *c = NULL;
	const struct site_config *s;

	(void)st;
	if (load("listen: '[::1]:9000'\n"
	    "control_socket: @D@/ctl.sock\n"
	    "state_dir: @D@/state\n"
	    "log_level: debug\n"
	    "max_parallel_deploys: 3\n"
	    "limits:\n"
	    "  max_body: 1MiB\n"
	    "  max_header: 8KiB\n"
	    "  request_timeout: 10s\n"
	    "  max_connections: 100\n"
	    "  max_connections_per_ip: 4\n"
	    "  signature_tolerance: 2m\n"
	    "sites:\n"
	    "  - name: www\n"
	    "    repo: git@github.com:acme/www.git\n"
	    "    branch: main\n"
	    "    path: @D@/www\n"
	    "    keep: 7\n"
	    "    reuse: copy\n"
	    "    secret_file: @S@\n"
	    "    providers: [github, gitlab]\n"
	    "    allow_sha1: true\n"
	    "    poll: 0\n"
	    "    webhook_grace: 30s\n"
	    "    hooks:\n"
	    "      pre_activate: [/usr/bin/make, -C, ., build]\n"
	    "      timeout: 1m\n"
	    "    shared: [uploads, .env]\n"
	    "    subdir: dist/site/\n"
	    "    health_check: {url: 'https://u:p@127.0.0.1/ok', retries: 0, interval: 2s}\n"
	    "  - name: docs\n"
	    "    repo: /srv/git/docs.git\n"
	    "    tags: \"v*\"\n"
	    "    path: @D@/docs\n", &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_string_equal(c->listen, "[::1]:9000");
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_int_equal(c->max_parallel_deploys, 3);
	assert_int_equal(c->limits.max_body, 1024 * 1024);
	assert_int_equal(c->limits.max_header, 8192);
	assert_int_equal(c->limits.request_timeout_ms, 10000);
	assert_int_equal(c->limits.max_connections_per_ip, 4);
	assert_int_equal(c->limits.signature_tolerance_ms, 120000);
	assert_int_equal(c->nsites, 2);
	s = config_site(c, "www");
	assert_non_null(s);
	assert_string_equal(s->site.branch, "main");
	assert_int_equal(s->site.keep, 7);
	assert_int_equal(s->site.reuse, REUSE_COPY);
	assert_int_equal(s->providers, PROV_GITHUB | PROV_GITLAB);
	assert_true(s->allow_sha1);
	assert_int_equal(s->poll_ms, 0);
	assert_int_equal(s->webhook_grace_ms, 30000);
	assert_int_equal(s->site.hooks.pre_activate.n, 4);
	assert_string_equal(s->site.hooks.pre_activate.v[3], "build");
	assert_null(s->site.hooks.pre_activate.v[4]);
	assert_int_equal(s->site.hooks.timeout_ms, 60000);
	assert_int_equal(s->site.shared.n, 2);
	assert_string_equal(s->site.token_user, "x-access-token");
	/* the trailing '/' of a subdir is dropped; unset health keys keep their defaults */
	assert_string_equal(s->site.subdir, "dist/site");
	assert_string_equal(s->site.health.url, "https://u:p@127.0.0.1/ok");
	assert_int_equal(s->site.health.expect, 200);
	assert_int_equal(s->site.health.retries, 0);
	assert_int_equal(s->site.health.interval_ms, 2000);
	assert_int_equal(s->site.health.timeout_ms, 10000);
	assert_int_equal(s->line, 14);
	s = config_site(c, "docs");
	assert_non_null(s);
	assert_string_equal(s->site.tags, "v*");
	assert_null(s->site.branch);
	assert_int_equal(s->site.keep, 5);
	assert_int_equal(s->poll_ms, 60000);
	assert_int_equal(s->providers, PROV_ALL);
	assert_int_equal(s->site.hooks.timeout_ms, 300000);
	assert_null(s->site.subdir);
	assert_null(s->site.health.url);
	assert_null(config_site(c, "nope"));
	config_free(c);
}

static void
t_defaults_and_empty(void **st)
{
	struct strv errors;
	struct config *c = NULL;

	(void)st;
	assert_int_equal(load("", &c, &errors), E_OK);
	assert_string_equal(c->listen, "127.0.0.1:8090");
	assert_string_equal(c->control_socket, "/run/deployd/deployd.sock");
	assert_string_equal(c->state_dir, "/var/lib/deployd");
	assert_int_equal(c->limits.max_body, 25 * 1024 * 1024);
	assert_int_equal(c->limits.max_header, 16 * 1024);
	assert_int_equal(c->limits.request_timeout_ms, 30000);
	assert_int_equal(c->limits.max_connections, 256);
	assert_int_equal(c->max_parallel_deploys, 2);
	assert_int_equal(c->nsites, 0);
	config_free(c);
	assert_int_equal(load("# only a comment\nsites: []\n", &c, &errors), E_OK);
	assert_int_equal(c->nsites, 0);
	config_free(c);
}

#define SITE_HEAD "sites:\n  - name: www\n    repo: /srv/git/www.git\n"

static void
t_unknown_key(void **st)
{
	(void)st;
	expect_error("listen: 127.0.0.1:1\nlisen: x\n", 2, 1, "unknown key 'lisen'");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    kepe: 3\n", 6, 5,
	    "unknown key 'kepe' in site");
	expect_error("limits:\n  max_bodyy: 1MiB\n", 2, 3, "unknown key 'max_bodyy'");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    hooks:\n"
	    "      pre_activte: [/bin/true]\n", 7, 7, "unknown key 'pre_activte'");
}

static void
t_wrong_type(void **st)
{
	(void)st;
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    keep: many\n", 6, 11,
	    "not a whole number");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    keep: 1\n", 6, 11,
	    "out of range");
	expect_error("max_parallel_deploys: [1, 2]\n", 1, 23, "expected a single value");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    allow_sha1: maybe\n",
	    6, 17, "not true or false");
	expect_error("log_level: loud\n", 1, 12, "not one of the allowed values");
	expect_error("limits: 5\n", 1, 9, "expected a mapping");
	expect_error("sites:\n  name: www\n", 2, 3, "expected a list of sites");
	expect_error(SITE_HEAD "    branch: main\n    path: srv/www\n", 5, 11,
	    "must be an absolute path");
	expect_error("limits:\n  max_body: 25MB\n", 2, 13, "not a size");
	expect_error("listen: localhost\n", 1, 9, "not host:port");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    providers: [github, "
	    "gitlub]\n", 6, 25, "unknown provider 'gitlub'");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    hooks:\n"
	    "      post_activate: [systemctl, reload, nginx]\n", 7, 23, "absolute path");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    shared: [../etc]\n",
	    6, 14, "relative path inside the release");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    subdir: a//b\n",
	    6, 13, "relative path inside the repository");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    health_check:\n"
	    "      url: http://\n", 7, 12, "not an absolute http");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    health_check:\n"
	    "      url: http://x/\n      timeout: 0\n", 8, 16, "0 is not allowed");
	expect_error("sites:\n  - name: WWW\n", 2, 11, "not a valid site name");
	expect_error("sites:\n  - name: www\n    repo: not a url\n    branch: main\n"
	    "    path: /srv/www\n", 3, 11, "not a repository URL");
}

static void
t_missing_required(void **st)
{
	(void)st;
	expect_error("sites:\n  - name: www\n    branch: main\n    path: /srv/www\n", 2, 5,
	    "required key 'repo' is missing");
	expect_error(SITE_HEAD "    path: /srv/www\n", 2, 5, "one of branch or tags");
	expect_error(SITE_HEAD "    branch: main\n    tags: v*\n    path: /srv/www\n", 5, 5,
	    "branch and tags cannot both be set");
}

static void
t_duplicates(void **st)
{
	(void)st;
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/a\n"
	    "  - name: www\n    repo: /srv/git/b.git\n    branch: main\n    path: /srv/b\n",
	    6, 11, "duplicate site name 'www'");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/a\n"
	    "  - name: two\n    repo: /srv/git/b.git\n    branch: main\n    path: /srv/a/\n",
	    9, 11, "overlaps site 'www'");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/a\n"
	    "  - name: two\n    repo: /srv/git/b.git\n    branch: main\n    path: /srv/a/b\n",
	    9, 11, "overlaps");
	expect_error("log_level: info\nlog_level: debug\n", 2, 1, "appears twice");
}

static void
t_secrets(void **st)
{
	const char *text = SITE_HEAD "    branch: main\n    path: /srv/www\n    secret_file: @S@\n";

	(void)st;
	chmod(secret, 0644);
	expect_error(text, 6, 18, "readable by others");
	chmod(secret, 0660);
	expect_error(text, 6, 18, "writable by group or others");
	chmod(secret, 0602);
	expect_error(text, 6, 18, "writable by group or others");
	chmod(secret, 0640);
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n"
	    "    secret_file: /nonexistent/deployd.secret\n", 6, 18, "No such file");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n"
	    "    secret_file: /tmp\n", 6, 18, "not a regular file");
}

static void
t_bad_duration(void **st)
{
	(void)st;
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    poll: 10 minutes\n",
	    6, 11, "not a duration");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    poll: 60\n",
	    6, 11, "not a duration");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    poll: 500ms\n",
	    6, 11, "out of range");
	expect_error("limits:\n  request_timeout: 0\n", 2, 20, "0 is not allowed");
}

static void
t_syntax_and_tls(void **st)
{
	struct strv errors;
	struct config *c = NULL;

	(void)st;
	assert_int_equal(load("sites:\n  - name: [unclosed\n", &c, &errors), E_CONFIG);
	assert_int_equal(errors.n, 1);
	assert_non_null(strstr(errors.v[0], "YAML syntax error"));
	assert_non_null(strstr(errors.v[0], cfgpath));
	util_strv_free(&errors);
	expect_error("tls_cert: @S@\n", 1, 1, "tls_cert and tls_key must be set together");
}

static void
t_many_errors(void **st)
{
	struct strv errors;
	struct config *c = NULL;

	(void)st;
	/* Every problem is reported, not only the first. */
	assert_int_equal(load("log_level: loud\nfoo: 1\nsites:\n  - name: x\n", &c, &errors),
	    E_CONFIG);
	assert_true(errors.n >= 4);
	util_strv_free(&errors);
}

static void
t_read_secret(void **st)
{
	unsigned char *buf;
	size_t len;
	struct error e;

	(void)st;
	chmod(secret, 0600);
	assert_int_equal(secret_read(secret, &buf, &len, &e), E_OK);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "s3cret", 6);
	secret_free(buf, len);
	chmod(secret, 0604);
	assert_int_equal(secret_read(secret, &buf, &len, &e), E_SECRET);
	assert_null(buf);
	/* The message names the file and the problem, never the content. */
	assert_null(strstr(e.msg, "s3cret"));
	chmod(secret, 0640);
}

static void
t_key_names(void **st)
{
	int i, n = config_key_count();
	int found_body = 0, found_timeout = 0;

	(void)st;
	assert_true(n > 30);
	for (i = 0; i < n; i++) {
		const char *k = config_key_name(i);

		assert_non_null(k);
		found_body |= strcmp(k, "limits.max_body") == 0;
		found_timeout |= strcmp(k, "sites.hooks.timeout") == 0;
	}
	assert_true(found_body);
	assert_true(found_timeout);
	assert_null(config_key_name(n));
}

static void
t_site_names(void **st)
{
	(void)st;
	assert_true(config_value_name("www"));
	assert_true(config_value_name("a-b_c9"));
	assert_false(config_value_name(""));
	assert_false(config_value_name("WWW"));
	assert_false(config_value_name("a/b"));
	assert_false(config_value_name(".."));
	assert_false(config_value_name("a b"));
	assert_false(config_value_name(
	    "a1234567890123456789012345678901234567890123456789012345678901234"));
}

/* allow_from (global and per site) and trusted_proxies: ranges checked, errors placed. */
static void
t_address_lists(void **st)
{
	struct strv errors;
	struct config *c = NULL;
	const struct site_config *s;
	unsigned char a[CIDR_ADDR_LEN];

	(void)st;
	if (load("allow_from: [140.82.112.0/20, 2a0a:a440::/29, 127.0.0.1]\n"
	    "trusted_proxies: [10.0.0.0/8, unix]\n"
	    SITE_HEAD "    branch: main\n    path: /srv/www\n"
	    "    allow_from: [140.82.112.0/24]\n"
	    "  - name: blog\n    repo: /srv/git/blog.git\n    branch: main\n"
	    "    path: /srv/blog\n", &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_int_equal(c->allow_from.n, 3);
	assert_int_equal(c->trusted_proxies.n, 1);
	assert_true(c->trusted_proxies.unix_peer);
	assert_false(c->allow_from.unix_peer);
	assert_int_equal(cidr_addr("140.82.127.1", a), E_OK);
	assert_true(cidr_list_match(&c->allow_from, a));
	s = config_site(c, "www");
	assert_int_equal(s->allow_from.n, 1);
	assert_false(cidr_list_match(&s->allow_from, a));
	assert_int_equal(config_site(c, "blog")->allow_from.n, 0);
	config_free(c);

	expect_error("allow_from: [10.0.0.0/33]\n", 1, 14, "prefix length must be 0 to 32");
	expect_error("allow_from: [10.0.0.0/8, 300.1.1.1]\n", 1, 26, "not an IPv4 or IPv6");
	expect_error("allow_from:\n  - fe80::/129\n", 2, 5, "0 to 128");
	expect_error("allow_from: [abc]\n", 1, 14, "'abc'");
	expect_error("allow_from: ['']\n", 1, 14, "empty address range");
	expect_error("allow_from: [10.0.0.1/24]\n", 1, 14, "the range is 10.0.0.0/24");
	expect_error("allow_from: []\n", 1, 13, "the list is empty");
	expect_error("allow_from: 10.0.0.0/8\n", 1, 13, "expected a list");
	expect_error("allow_from: [unix]\n", 1, 14, "'unix' is not");
	expect_error("trusted_proxies: [127.0.0.1, localhost]\n", 1, 30, "(or the word unix)");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    allow_from: [1.2.3.4/40]\n",
	    6, 18, "prefix length");
	expect_error(SITE_HEAD "    branch: main\n    path: /srv/www\n    allow_from: []\n",
	    6, 17, "the list is empty");
	/* An empty trusted_proxies is no proxy at all, which is harmless. */
	assert_int_equal(load("trusted_proxies: []\n", &c, &errors), E_OK);
	assert_int_equal(c->trusted_proxies.n, 0);
	config_free(c);
}

/* fleet: every key, the defaults, and each check that spans keys, at its line and column. */
static void
t_fleet(void **st)
{
	struct strv errors;
	struct config *c = NULL;
	char host[256] = "";

	(void)st;
	/* Without fleet: nothing of it is set, and the daemon is what it was. */
	assert_int_equal(load(SITE_HEAD "    branch: main\n    path: /srv/www\n", &c, &errors),
	    E_OK);
	assert_int_equal(c->fleet.etcd.n, 0);
	config_free(c);

	if (load("fleet:\n  etcd: [https://10.0.1.5:2379, 'https://10.8.0.5:2379']\n"
	    "  prefix: /acme/\n  node: web-aws-1\n  zone: aws-eu-west-1\n"
	    "  ca_file: @S@\n  cert_file: @S@\n  key_file: @S@\n"
	    "  user: deployd\n  password_file: @S@\n  lease_ttl: 5s\n"
	    "  prepare_timeout: 2m\n  min_ready: 60%\n", &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_int_equal(c->fleet.etcd.n, 2);
	assert_string_equal(c->fleet.etcd.v[1], "https://10.8.0.5:2379");
	assert_string_equal(c->fleet.prefix, "/acme/");
	assert_string_equal(c->fleet.node, "web-aws-1");
	assert_string_equal(c->fleet.zone, "aws-eu-west-1");
	assert_string_equal(c->fleet.key_file, secret);
	assert_int_equal(c->fleet.lease_ttl_ms, 5000);
	assert_int_equal(c->fleet.prepare_timeout_ms, 120000);
	assert_string_equal(c->fleet.min_ready, "60%");
	config_free(c);

	/* The defaults of fleet.md; the node is the host's name. */
	if (load("fleet:\n  etcd: [http://127.0.0.1:2379]\n", &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_string_equal(c->fleet.prefix, "/deployd/");
	assert_int_equal(c->fleet.lease_ttl_ms, 10000);
	assert_int_equal(c->fleet.prepare_timeout_ms, 600000);
	assert_string_equal(c->fleet.min_ready, "all");
	assert_null(c->fleet.zone);
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	assert_string_equal(c->fleet.node, host);
	config_free(c);

	expect_error("fleet:\n  zone: x\n", 2, 3, "required key 'etcd' is missing");
	expect_error("fleet:\n  etcd: []\n", 2, 9, "the list is empty");
	expect_error("fleet:\n  etcd: http://a:2379\n", 2, 9, "expected a list");
	expect_error("fleet:\n  etcd: [http://a:2379, 'ftp://b']\n", 2, 25, "'ftp://b' is not");
	expect_error("fleet:\n  etcd: [http://a]\n  node: 'web 1'\n", 3, 9, "node 'web 1'");
	expect_error("fleet:\n  etcd: [http://a]\n  prefix: deployd/\n", 3, 11,
	    "must start and end with '/'");
	expect_error("fleet:\n  etcd: [http://a]\n  cert_file: @S@\n", 3, 3,
	    "cert_file and key_file must be set together");
	expect_error("fleet:\n  etcd: [http://a]\n  password_file: @S@\n", 3, 3,
	    "user and password_file must be set together");
	expect_error("fleet:\n  etcd: [http://a]\n  min_ready: 0\n", 3, 14, "min_ready '0'");
	expect_error("fleet:\n  etcd: [http://a]\n  min_ready: 101%\n", 3, 14, "percentage");
	expect_error("fleet:\n  etcd: [http://a]\n  min_ready: most\n", 3, 14, "min_ready");
	expect_error("fleet:\n  etcd: [http://a]\n  lease_ttl: 1s\n", 3, 14, "out of range");
	expect_error("fleet:\n  etcd: [http://a]\n  colour: red\n", 3, 3, "unknown key 'colour'");
	expect_error("fleet:\n  etcd: [http://a]\n  key_file: /nonexistent/k\n  "
	    "cert_file: @S@\n", 3, 13, "/nonexistent/k");
}

/* write_file DIR/NAME with text; the test's temporary directory holds it. */
static void
write_file(const char *name, const char *text)
{
	char *path = util_xasprintf("%s/%s", tmpdir, name);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	free(path);
}

/* include: files in name order, relative to the config's directory; errors name the file. */
static void
t_include(void **st)
{
	struct strv errors;
	struct config *c = NULL;
	char *dir = util_xasprintf("%s/sites.d", tmpdir), *want;

	(void)st;
	assert_int_equal(mkdir(dir, 0755), 0);
	write_file("sites.d/20-shop.yaml", "- name: shop\n  repo: /srv/git/shop.git\n"
	    "  branch: main\n  path: /srv/shop\n");
	write_file("sites.d/10-blog.yaml", "# blog\n- name: blog\n  repo: /srv/git/blog.git\n"
	    "  branch: main\n  path: /srv/blog\n");
	write_file("sites.d/README", "not yaml: [\n");
	write_file("sites.d/30-empty.yaml", "");
	if (load("include: sites.d/*.yaml\n" SITE_HEAD "    branch: main\n    path: /srv/www\n",
	    &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_int_equal(c->nsites, 3);
	assert_string_equal(c->sites[0].site.name, "www");
	assert_string_equal(c->sites[1].site.name, "blog");
	assert_string_equal(c->sites[2].site.name, "shop");
	want = util_xasprintf("%s/sites.d/10-blog.yaml", tmpdir);
	assert_string_equal(c->sites[1].file, want);
	free(want);
	assert_int_equal(c->sites[1].line, 2);
	assert_string_equal(c->sites[0].file, cfgpath);
	config_free(c);

	/* A list of patterns; one that matches nothing is an empty sites.d, not an error. */
	if (load("include: [@D@/sites.d/1*.yaml, '@D@/none.d/*.yaml']\n", &c, &errors) != E_OK)
		fail_msg("%s", errors.n ? errors.v[0] : "?");
	assert_int_equal(c->nsites, 1);
	assert_string_equal(c->sites[0].site.name, "blog");
	config_free(c);

	expect_error("include: @D@/absent.yaml\n", 1, 10, "no such file");
	expect_error("include: ''\n", 1, 10, "empty");

	/* Errors inside an included file name that file, its line and column. */
	write_file("sites.d/40-bad.yaml", "- name: api\n  repo: /srv/git/api.git\n"
	    "  branch: main\n  path: /srv/api\n  keep: 1\n");
	assert_int_equal(load("include: sites.d/*.yaml\n", &c, &errors), E_CONFIG);
	want = util_xasprintf("%s/sites.d/40-bad.yaml:5:9: keep", tmpdir);
	if (errors.n != 1 || strncmp(errors.v[0], want, strlen(want)) != 0)
		fail_msg("got \"%s\", want \"%s\"", errors.n ? errors.v[0] : "", want);
	free(want);
	util_strv_free(&errors);

	/* A site defined twice, across files: both places are named. */
	write_file("sites.d/40-bad.yaml", "- name: blog\n  repo: /srv/git/b2.git\n"
	    "  branch: main\n  path: /srv/blog2\n");
	assert_int_equal(load("include: sites.d/*.yaml\n", &c, &errors), E_CONFIG);
	if (errors.n != 1 || strstr(errors.v[0], "40-bad.yaml:1:9: duplicate site name 'blog' "
	    "(first defined at ") == NULL || strstr(errors.v[0], "10-blog.yaml:2)") == NULL)
		fail_msg("got \"%s\"", errors.n ? errors.v[0] : "");
	util_strv_free(&errors);

	write_file("sites.d/40-bad.yaml", "sites:\n  - name: api\n");
	assert_int_equal(load("include: sites.d/*.yaml\n", &c, &errors), E_CONFIG);
	if (errors.n != 1 || strstr(errors.v[0], "40-bad.yaml:1:1: an included file holds a "
	    "list of sites") == NULL)
		fail_msg("got \"%s\"", errors.n ? errors.v[0] : "");
	util_strv_free(&errors);

	write_file("sites.d/40-bad.yaml", "- name: api\n  repo: [\n");
	assert_int_equal(load("include: sites.d/*.yaml\n", &c, &errors), E_CONFIG);
	if (errors.n != 1 || strstr(errors.v[0], "40-bad.yaml:3:1: YAML syntax error") == NULL)
		fail_msg("got \"%s\"", errors.n ? errors.v[0] : "");
	util_strv_free(&errors);
	free(dir);
}

/* min_ready read against the live members: "all", a count (capped), a percentage (rounded up). */
static void
t_fleet_need(void **st)
{
	static const struct {
		const char	*min_ready;
		int64_t		 members, need;
	} cases[] = {
		{ "all", 3, 3 }, { "all", 1, 1 }, { "all", 0, 1 },
		{ "2", 3, 2 }, { "2", 1, 1 }, { "5", 3, 3 }, { "1", 6, 1 },
		{ "50%", 3, 2 }, { "50%", 4, 2 }, { "34%", 3, 2 }, { "100%", 3, 3 }, { "1%", 3, 1 },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (fleet_coord_need(cases[i].min_ready, cases[i].members) != cases[i].need)
			fail_msg("min_ready %s of %lld: got %lld, want %lld", cases[i].min_ready,
			    (long long)cases[i].members, (long long)fleet_coord_need(
			    cases[i].min_ready, cases[i].members), (long long)cases[i].need);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_site_names),
		cmocka_unit_test(t_full_config),
		cmocka_unit_test(t_defaults_and_empty),
		cmocka_unit_test(t_unknown_key),
		cmocka_unit_test(t_wrong_type),
		cmocka_unit_test(t_missing_required),
		cmocka_unit_test(t_duplicates),
		cmocka_unit_test(t_secrets),
		cmocka_unit_test(t_bad_duration),
		cmocka_unit_test(t_syntax_and_tls),
		cmocka_unit_test(t_many_errors),
		cmocka_unit_test(t_read_secret),
		cmocka_unit_test(t_key_names),
		cmocka_unit_test(t_address_lists),
		cmocka_unit_test(t_fleet),
		cmocka_unit_test(t_include),
		cmocka_unit_test(t_fleet_need),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
