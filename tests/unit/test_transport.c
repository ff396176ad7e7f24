/* test_transport.c: pinned SSH host keys, SSH URL parsing, version order of tags, .gitmodules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "deploy/deploy.h"

/* Two ed25519 keys and an ECDSA key, as ssh-keygen printed them. */
#define K1 "AAAAC3NzaC1lZDI1NTE5AAAAIEHgn4fCjI3VO7BWrz/0bk6pggM+0M1TYSMmi7GD0Tlk"
#define K2 "AAAAC3NzaC1lZDI1NTE5AAAAIADpo89nqh+74r/tjzCzQuN52zgNZYHr84Dqb9JTROTQ"
#define K3 "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMbJwSQjQpyEbL/Pr83JhJKP1jSLZI/" \
	"lCmbcu+lHc5eL79saarEJPK8VgUO0MFDSr2HLyz3Yl0QMAmV51ZQUjiQ="
/* `ssh-keygen -H` of "[127.0.0.1]:2222 ssh-ed25519 K1". */
#define K1_HASHED_2222 "|1|cz1JX9gMNpArrQ7x4CcUgiVBVxk=|/4BokCntCb7kQE9Ld1BuPKYsm+4="

struct khfix {
	char	dir[128];
	char	file[160];
};

static int
kh_setup(void **state)
{
	struct khfix *f = util_xcalloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	snprintf(f->dir, sizeof(f->dir), "%s/deployd-test-kh-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->file, sizeof(f->file), "%s/known_hosts", f->dir);
	*state = f;
	return 0;
}

static int
kh_teardown(void **state)
{
	struct khfix *f = *state;

	util_rm_rf_at(AT_FDCWD, f->dir);
	free(f);
	return 0;
}

static void
kh_write(struct khfix *f, const char *text)
{
	FILE *fp = fopen(f->file, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* The raw key blob of a base64 key, as libssh2 hands it over. */
static size_t
blob(const char *b64, unsigned char *out, size_t len)
{
	size_t n = 0;

	assert_int_equal(sodium_base642bin(out, len, b64, strlen(b64), NULL, &n, NULL,
	    sodium_base64_VARIANT_ORIGINAL), 0);
	return n;
}

static int
check(struct khfix *f, const char *host, int port, const char *key, struct error *e)
{
	unsigned char raw[256];
	size_t n = blob(key, raw, sizeof(raw));

	memset(e, 0, sizeof(*e));
	return knownhosts_check(f->file, host, port, raw, n, e);
}

static void
t_knownhosts_plain(void **state)
{
	struct khfix *f = *state;
	struct error e;

	kh_write(f, "# pinned\n\n127.0.0.1 ssh-ed25519 " K1 " comment\n"
	    "[127.0.0.1]:2222 ecdsa-sha2-nistp256 " K3 "\n"
	    "[127.0.0.1]:2222 ssh-ed25519 " K2 "\n");
	assert_int_equal(check(f, "127.0.0.1", 22, K1, &e), E_OK);
	assert_int_equal(check(f, "127.0.0.1", 2222, K2, &e), E_OK);
	/* Every key type line for the host counts: libssh2 prefers ECDSA. */
	assert_int_equal(check(f, "127.0.0.1", 2222, K3, &e), E_OK);
	/* Port 22's key does not vouch for port 2222's, nor the other way round. */
	assert_int_equal(check(f, "127.0.0.1", 2222, K1, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "host key for 127.0.0.1:2222 has CHANGED"));
	assert_int_equal(check(f, "127.0.0.1", 22, K2, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "host key for 127.0.0.1:22 has CHANGED"));
	/* A host that is not in the file at all: never trusted on first use. */
	assert_int_equal(check(f, "127.0.0.2", 22, K1, &e), E_NOTFOUND);
	assert_non_null(strstr(e.msg, "host key for 127.0.0.2:22 is not in "));
	assert_non_null(strstr(e.msg, f->file));
	/* Only an ed25519 key is pinned for port 22; an ECDSA key offered is unknown. */
	assert_int_equal(check(f, "127.0.0.1", 22, K3, &e), E_NOTFOUND);
	assert_non_null(strstr(e.msg, "pins only ssh-ed25519 for it"));
	assert_non_null(strstr(e.msg, "ecdsa-sha2-nistp256 SHA256:"));
}

static void
t_knownhosts_hashed(void **state)
{
	struct khfix *f = *state;
	struct error e;

	kh_write(f, K1_HASHED_2222 " ssh-ed25519 " K1 "\n");
	assert_int_equal(check(f, "127.0.0.1", 2222, K1, &e), E_OK);
	assert_int_equal(check(f, "127.0.0.1", 2222, K2, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "CHANGED"));
	assert_int_equal(check(f, "127.0.0.1", 22, K1, &e), E_NOTFOUND);
	assert_int_equal(check(f, "127.0.0.2", 2222, K1, &e), E_NOTFOUND);
	/* A damaged hash matches nothing. */
	kh_write(f, "|1|cz1JX9gMNpArrQ7x4CcUgiVBVxk=|/4BokCntCb7kQE9Ld1BuPKYsm+5= ssh-ed25519 "
	    K1 "\n|1|not base64|x ssh-ed25519 " K1 "\n");
	assert_int_equal(check(f, "127.0.0.1", 2222, K1, &e), E_NOTFOUND);
}

/* A pinned key or hash spelled with a byte outside base64 pins nothing (libsodium took 0x80..0xff for '/'). */
static void
t_knownhosts_strict(void **state)
{
	struct khfix *f = *state;
	struct error e;
	char line[512], *p;
	int b;

	for (b = 0x80; b <= 0xff; b++) {
		snprintf(line, sizeof(line), "[127.0.0.1]:2222 ecdsa-sha2-nistp256 %s\n", K3);
		p = strchr(line, '/');
		assert_non_null(p);
		*p = (char)b;
		kh_write(f, line);
		assert_int_equal(check(f, "127.0.0.1", 2222, K3, &e), E_NOTFOUND);
		snprintf(line, sizeof(line), "%s ssh-ed25519 %s\n", K1_HASHED_2222, K1);
		p = strchr(line + 4, '/');
		assert_non_null(p);
		*p = (char)b;
		kh_write(f, line);
		assert_int_equal(check(f, "127.0.0.1", 2222, K1, &e), E_NOTFOUND);
	}
	/* and the same lines, spelled right, do pin */
	kh_write(f, "[127.0.0.1]:2222 ecdsa-sha2-nistp256 " K3 "\n" K1_HASHED_2222 " ssh-ed25519 "
	    K1 "\n");
	assert_int_equal(check(f, "127.0.0.1", 2222, K3, &e), E_OK);
	assert_int_equal(check(f, "127.0.0.1", 2222, K1, &e), E_OK);
}

static void
t_knownhosts_patterns(void **state)
{
	struct khfix *f = *state;
	struct error e;

	kh_write(f, "*.Example.org,!bad.example.org,git?.example.net ssh-ed25519 " K1 "\n"
	    "@cert-authority *.ca.example ssh-ed25519 " K2 "\n"
	    "@revoked old.example.org ssh-ed25519 " K1 "\n");
	assert_int_equal(check(f, "www.example.org", 22, K1, &e), E_OK);
	assert_int_equal(check(f, "WWW.EXAMPLE.ORG", 22, K1, &e), E_OK);
	assert_int_equal(check(f, "git1.example.net", 22, K1, &e), E_OK);
	assert_int_equal(check(f, "git12.example.net", 22, K1, &e), E_NOTFOUND);
	/* A negated pattern wins over the wildcard. */
	assert_int_equal(check(f, "bad.example.org", 22, K1, &e), E_NOTFOUND);
	/* A CA line pins no key (libssh2 has no certificates). */
	assert_int_equal(check(f, "x.ca.example", 22, K2, &e), E_NOTFOUND);
	assert_int_equal(check(f, "www.example.org", 22, K2, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "CHANGED"));
	/* A revoked key is refused even though the wildcard line pins it. */
	assert_int_equal(check(f, "old.example.org", 22, K1, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "REVOKED"));
	/* Garbage lines are skipped. */
	kh_write(f, "nonsense\nhost only-two\n127.0.0.1 ssh-ed25519 !!!notbase64\n"
	    "127.0.0.1 ssh-ed25519 " K1 "\r\n");
	assert_int_equal(check(f, "127.0.0.1", 22, K1, &e), E_OK);
	assert_int_equal(knownhosts_host_match("a,b,c", "b"), 1);
	assert_int_equal(knownhosts_host_match("a,,c", "b"), 0);
	assert_int_equal(knownhosts_host_match("[127.0.0.1]:*", "[127.0.0.1]:2222"), 1);
}

static void
t_knownhosts_missing(void **state)
{
	struct khfix *f = *state;
	char fp[80];
	unsigned char raw[256];
	size_t n;
	struct error e;

	assert_int_equal(check(f, "127.0.0.1", 22, K1, &e), E_SYS);
	assert_non_null(strstr(e.msg, "No such file"));
	/* The fingerprint ssh-keygen -l prints for K1. */
	n = blob(K1, raw, sizeof(raw));
	knownhosts_fingerprint(raw, n, fp, sizeof(fp));
	assert_string_equal(fp, "SHA256:NUXZ3VUu3Balau3oqhD2MtpTLSMLL7cywNK1+spvnOg");
	knownhosts_name("h", 22, fp, sizeof(fp));
	assert_string_equal(fp, "h");
	knownhosts_name("h", 2022, fp, sizeof(fp));
	assert_string_equal(fp, "[h]:2022");
}

static void
t_url_ssh(void **state)
{
	static const struct {
		const char	*url;
		int		 ssh;
		const char	*host;
		int		 port;
	} cases[] = {
		{ "ssh://git@127.0.0.1:2222/srv/git/www.git", 1, "127.0.0.1", 2222 },
		{ "ssh://127.0.0.1/www.git", 1, "127.0.0.1", 22 },
		{ "ssh://git@[::1]:2200/www.git", 1, "::1", 2200 },
		{ "git+ssh://deploy@git.example.org/x", 1, "git.example.org", 22 },
		{ "ssh+git://a@b@host:7/x", 1, "host", 7 },
		{ "git@github.com:acme/www.git", 1, "github.com", 22 },
		{ "host:path/repo.git", 1, "host", 22 },
		{ "https://github.com/acme/www.git", 0, "", 22 },
		{ "git://127.0.0.1:9418/www.git", 0, "", 22 },
		{ "file:///srv/git/www.git", 0, "", 22 },
		{ "/srv/git/www.git", 0, "", 22 },
		{ "./rel/dir:x", 0, "", 22 },
		{ "dir/with:colon", 0, "", 22 },
	};
	char host[256];
	size_t i;
	int port;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(cred_url_ssh(cases[i].url, host, sizeof(host), &port),
		    cases[i].ssh);
		assert_string_equal(host, cases[i].host);
		assert_int_equal(port, cases[i].port);
	}
}

static void
t_vercmp(void **state)
{
	/* Each is lower than the next, as `sort -V` orders them. */
	static const char *const order[] = {
		"v0.9", "v1", "v1.0~rc1", "v1.0", "v1.0.0", "v1.0.0-rc1", "v1.2", "v1.9",
		"v1.10", "v1.10a", "v1.10.1", "v2", "v10.0",
	};
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		for (j = 0; j < sizeof(order) / sizeof(order[0]); j++) {
			int c = tags_vercmp(order[i], order[j]);

			if (i < j)
				assert_true(c < 0);
			else if (i > j)
				assert_true(c > 0);
			else
				assert_int_equal(c, 0);
		}
	assert_int_equal(tags_vercmp("v01.2", "v1.2"), 0);
	assert_true(tags_vercmp("", "0") == 0);
	assert_true(tags_vercmp("a", "") > 0);
}

static void
t_tags_pick(void **state)
{
	static const char *const names[] = {
		"v1.2.0", "v1.10.0", "release-3", "v1.9.9", "v2.0.0-beta", "x1", "v0.1",
	};
	static const char *const none[] = { "a", "b" };

	(void)state;
	assert_int_equal(tags_pick("v*", names, 7), 4);		/* v2.0.0-beta */
	assert_int_equal(tags_pick("v1.*", names, 7), 1);	/* v1.10.0, not v1.9.9 */
	assert_int_equal(tags_pick("release-*", names, 7), 2);
	assert_int_equal(tags_pick("v[0-9]*.[0-9]*.[0-9]", names, 7), 1);
	assert_int_equal(tags_pick("v*", none, 2), -1);
	assert_int_equal(tags_pick("v*", names, 0), -1);
	assert_true(tags_match("v*", "v1"));
	assert_false(tags_match("v*", "x1"));
}

static void
t_gitmodules_parse(void **state)
{
	static const char text[] =
	    "# a comment\n"
	    "[submodule \"lib\"]\n"
	    "\tpath = vendor/lib/\n"
	    "\turl = ../lib.git\r\n"
	    "\tbranch = main\n"
	    "[submodule \"with space\"]\n"
	    "  Path = \"a b\"\n"
	    "  URL=https://example.org/x.git ; trailing\n"
	    "[core]\n"
	    "\tpath = not/a/submodule\n"
	    "[submodule \"nourl\"]\n"
	    "\tpath = nourl\n";
	struct submodule *m;
	size_t n;

	(void)state;
	assert_int_equal(submodule_parse(text, sizeof(text) - 1, &m, &n), E_OK);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].name, "lib");
	assert_string_equal(m[0].path, "vendor/lib");
	assert_string_equal(m[0].url, "../lib.git");
	assert_string_equal(m[1].name, "with space");
	assert_string_equal(m[1].path, "a b");
	assert_string_equal(m[1].url, "https://example.org/x.git ; trailing");
	assert_non_null(submodule_find(m, n, "a b"));
	assert_null(submodule_find(m, n, "nourl"));
	submodule_free(m, n);
	assert_int_equal(submodule_parse("[submodule broken\n", 18, &m, &n), E_INVAL);
	assert_int_equal(n, 0);
	assert_int_equal(submodule_parse("", 0, &m, &n), E_OK);
	assert_int_equal(n, 0);
	submodule_free(m, n);
}

static void
t_submodule_url(void **state)
{
	static const struct {
		const char	*base;
		const char	*url;
		const char	*want;
	} cases[] = {
		{ "https://h/org/site.git", "../lib.git", "https://h/org/lib.git" },
		{ "https://h/org/site.git/", "../../other/lib.git", "https://h/other/lib.git" },
		{ "https://h/org/site.git", "../../../lib.git", "https://h/lib.git" },
		{ "https://h/org/site.git", "./sub", "https://h/org/site.git/sub" },
		{ "ssh://git@h:2222/srv/site.git", "../lib.git", "ssh://git@h:2222/srv/lib.git" },
		{ "git@github.com:acme/site.git", "../lib.git", "git@github.com:acme/lib.git" },
		{ "git@github.com:site.git", "../lib.git", "git@github.com:lib.git" },
		{ "/srv/git/site.git", "../lib.git", "/srv/git/lib.git" },
		{ "/srv/git/site.git", "https://x/y.git", "https://x/y.git" },
		{ "file:///srv/git/site.git", "../lib.git", "file:///srv/git/lib.git" },
	};
	size_t i;
	char *got;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		got = submodule_resolve_url(cases[i].base, cases[i].url);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
}

static void
t_submodule_dir(void **state)
{
	char *d;

	(void)state;
	d = submodule_dir("/var/lib/deployd/www/cache.git", "vendor/lib");
	assert_string_equal(d, "/var/lib/deployd/www/modules/vendor%2flib.git");
	free(d);
	/* Names from a repository cannot climb out of modules/. */
	d = submodule_dir("/s/www/cache.git", "../../etc");
	assert_string_equal(d, "/s/www/modules/%2e.%2f..%2fetc.git");
	free(d);
	d = submodule_dir("/s/www/cache.git", ".hidden");
	assert_string_equal(d, "/s/www/modules/%2ehidden.git");
	free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_knownhosts_plain, kh_setup, kh_teardown),
		cmocka_unit_test_setup_teardown(t_knownhosts_hashed, kh_setup, kh_teardown),
		cmocka_unit_test_setup_teardown(t_knownhosts_patterns, kh_setup, kh_teardown),
		cmocka_unit_test_setup_teardown(t_knownhosts_strict, kh_setup, kh_teardown),
		cmocka_unit_test_setup_teardown(t_knownhosts_missing, kh_setup, kh_teardown),
		cmocka_unit_test(t_url_ssh),
		cmocka_unit_test(t_vercmp),
		cmocka_unit_test(t_tags_pick),
		cmocka_unit_test(t_gitmodules_parse),
		cmocka_unit_test(t_submodule_url),
		cmocka_unit_test(t_submodule_dir),
	};

	if (sodium_init() < 0)
		return 1;
	log_init(LOG_LVL_ERROR, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
