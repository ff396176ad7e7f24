/* test_sshsig.c: SSH-signed commits made by git and ssh-keygen, and allowed_signers rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <git2.h>
#include <sodium.h>

#include "deploy/deploy.h"

/* Keys made once for the whole run by ssh-keygen. */
enum { K_A, K_B, K_P256, K_P384, K_P521, K_RSA, NKEYS };

static const struct {
	const char	*name;
	const char	*args;
} keyspecs[NKEYS] = {
	{ "a", "-t ed25519" },
	{ "b", "-t ed25519" },
	{ "p256", "-t ecdsa -b 256" },
	{ "p384", "-t ecdsa -b 384" },
	{ "p521", "-t ecdsa -b 521" },
	{ "rsa", "-t rsa -b 3072" },
};

struct fx {
	char	 dir[128];
	char	 work[192];		/* a git work tree */
	char	 gitdir[208];		/* the repository, as the engine passes it */
	char	 key[NKEYS][192];	/* private key paths; .pub next to them */
	char	*pub[NKEYS];		/* "type base64" of each */
	char	 allowed[192];
	char	 body[192];		/* scratch files for splicing signatures */
};

static struct fx F;

/* Run a shell command line; its exit status. */
static int
sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The first line a shell command prints, without its newline. */
static void
sh_line(char *buf, size_t len, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_non_null(p = popen(cmd, "r"));
	buf[0] = '\0';
	if (fgets(buf, (int)len, p) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	assert_int_equal(pclose(p), 0);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp;
	char *buf = util_xmalloc(1 << 20);
	size_t n;

	assert_non_null(fp = fopen(path, "r"));
	n = fread(buf, 1, (1 << 20) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

static void
spew(const char *path, const char *text)
{
	FILE *fp;

	assert_non_null(fp = fopen(path, "w"));
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

/* Write allowed_signers from printf-style text where %s stands for the key's "type b64". */
static void
allow(const char *fmt, ...)
{
	char text[16384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	spew(F.allowed, text);
}

static int
group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char *line;
	size_t i, n;

	snprintf(F.dir, sizeof(F.dir), "%s/deployd-test-sshsig-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(F.dir) == NULL)
		return -1;
	/* No user or system git configuration, no agent: only what the test sets. */
	setenv("HOME", F.dir, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	unsetenv("SSH_AUTH_SOCK");
	unsetenv("GIT_DIR");
	snprintf(F.work, sizeof(F.work), "%s/w", F.dir);
	snprintf(F.gitdir, sizeof(F.gitdir), "%s/.git", F.work);
	snprintf(F.allowed, sizeof(F.allowed), "%s/allowed_signers", F.dir);
	snprintf(F.body, sizeof(F.body), "%s/body", F.dir);
	for (i = 0; i < NKEYS; i++) {
		snprintf(F.key[i], sizeof(F.key[i]), "%s/key_%s", F.dir, keyspecs[i].name);
		if (sh("ssh-keygen -q %s -N '' -C %s@example.com -f %s", keyspecs[i].args,
		    keyspecs[i].name, F.key[i]) != 0)
			return -1;
		line = util_xasprintf("%s.pub", F.key[i]);
		F.pub[i] = slurp(line, &n);
		free(line);
		/* "type base64 comment": drop the comment. */
		if ((line = strchr(F.pub[i], ' ')) == NULL ||
		    (line = strchr(line + 1, ' ')) == NULL)
			return -1;
		*line = '\0';
	}
	if (sh("git init -q -b main %s && git -C %s config user.name Test && "
	    "git -C %s config user.email user@example.com && "
	    "git -C %s config gpg.format ssh", F.work, F.work, F.work, F.work) != 0)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		free(F.pub[i]);
	util_rm_rf_at(AT_FDCWD, F.dir);
	return 0;
}

/* A new commit in the work tree, signed with key k (or unsigned, k < 0); its id. */
static void
commit(int k, const char *msg, char id[SHA_HEX])
{
	if (k >= 0)
		assert_int_equal(sh("git -C %s -c user.signingkey=%s commit -q -S --allow-empty "
		    "-m '%s'", F.work, F.key[k], msg), 0);
	else
		assert_int_equal(sh("git -C %s commit -q --no-gpg-sign --allow-empty -m '%s'",
		    F.work, msg), 0);
	sh_line(id, SHA_HEX, "git -C %s rev-parse HEAD", F.work);
	assert_int_equal(strlen(id), 40);
}

/*
 * A commit with a signature made by ssh-keygen itself, spliced in as git would put it: the
 * unsigned commit id's object, signed with key k in namespace ns, under a gpgsig header.
 */
static void
splice_sig(const char *unsigned_id, int k, const char *ns, const char *extra, char id[SHA_HEX])
{
	assert_int_equal(sh("git -C %s cat-file commit %s >%s && rm -f %s.sig && "
	    "ssh-keygen -q -Y sign -n %s %s -f %s %s", F.work, unsigned_id, F.body, F.body, ns,
	    extra, F.key[k], F.body), 0);
	sh_line(id, SHA_HEX, "awk 'BEGIN { while ((getline l < \"%s.sig\") > 0) s[n++] = l } "
	    "!done && /^$/ { print \"gpgsig \" s[0]; for (i = 1; i < n; i++) print \" \" s[i]; "
	    "done = 1 } { print }' %s | git -C %s hash-object -t commit -w --stdin", F.body,
	    F.body, F.work);
	assert_int_equal(strlen(id), 40);
}

/* A commit with its gpgsig header replaced by the given armored text (one line each). */
static void
splice_text(const char *signed_id, const char *first, const char *rest, char id[SHA_HEX])
{
	sh_line(id, SHA_HEX, "git -C %s cat-file commit %s | awk '/^gpgsig / { skip = 1; "
	    "print \"gpgsig %s\"; print \" %s\"; next } skip && /^ / { next } { skip = 0; print }' "
	    "| git -C %s hash-object -t commit -w --stdin", F.work, signed_id, first, rest,
	    F.work);
	assert_int_equal(strlen(id), 40);
}

static int
verify(const char *id, char *signer, size_t len, struct error *e)
{
	memset(e, 0, sizeof(*e));
	return sshsig_verify_commit(F.gitdir, id, F.allowed, signer, len, e);
}

/* The fingerprint ssh-keygen prints for key k. */
static void
fingerprint(int k, char *buf, size_t len)
{
	sh_line(buf, len, "ssh-keygen -l -E sha256 -f %s.pub | cut -d ' ' -f 2", F.key[k]);
	assert_true(strncmp(buf, "SHA256:", 7) == 0);
}

static void
test_ed25519_signed(void **state)
{
	char id[SHA_HEX], signer[128];
	struct error e;

	allow("# deployers\n\nuser@example.com %s\n", F.pub[K_A]);
	commit(K_A, "signed by a", id);
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_OK);
	assert_string_equal(signer, "user@example.com");
	/* A signer buffer is optional. */
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
}

static void
test_unsigned(void **state)
{
	char id[SHA_HEX], want[128], signer[128] = "stale";
	struct error e;

	allow("user@example.com %s\n", F.pub[K_A]);
	commit(-1, "not signed", id);
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_INVAL);
	snprintf(want, sizeof(want), "commit %.12s is not signed", id);
	assert_string_equal(e.msg, want);
	assert_string_equal(signer, "");
}

static void
test_unlisted_key(void **state)
{
	char id[SHA_HEX], want[512], fp[128], signer[128];
	struct error e;

	allow("user@example.com %s\n", F.pub[K_A]);
	commit(K_B, "signed by b", id);
	fingerprint(K_B, fp, sizeof(fp));
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_INVAL);
	snprintf(want, sizeof(want), "commit %.12s is signed by a key not in %s (%s)", id,
	    F.allowed, fp);
	assert_string_equal(e.msg, want);
	assert_string_equal(signer, "");
	/* Listing both keys lets it through, and the second line's principal signs. */
	allow("user@example.com %s\nother@example.com %s\n", F.pub[K_A], F.pub[K_B]);
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_OK);
	assert_string_equal(signer, "other@example.com");
}

static void
test_tampered(void **state)
{
	char id[SHA_HEX], bad[SHA_HEX], want[128];
	struct error e;

	allow("user@example.com %s\n", F.pub[K_A]);
	commit(K_A, "the original message", id);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
	sh_line(bad, sizeof(bad), "git -C %s cat-file commit %s | "
	    "sed 's/the original message/an altered message/' | "
	    "git -C %s hash-object -t commit -w --stdin", F.work, id, F.work);
	assert_int_equal(strlen(bad), 40);
	assert_string_not_equal(bad, id);
	assert_int_equal(verify(bad, NULL, 0, &e), E_INVAL);
	snprintf(want, sizeof(want), "bad signature on commit %.12s", bad);
	assert_string_equal(e.msg, want);
}

static void
test_spliced(void **state)
{
	char base[SHA_HEX], id[SHA_HEX], want[256];
	struct error e;

	allow("user@example.com %s\n", F.pub[K_A]);
	commit(-1, "to be signed by ssh-keygen", base);
	/* The control: the same splice in namespace git, with either message hash, verifies. */
	splice_sig(base, K_A, "git", "", id);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
	splice_sig(base, K_A, "git", "-O hashalg=sha256", id);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
	splice_sig(base, K_A, "file", "", id);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	snprintf(want, sizeof(want), "commit %.12s: signature namespace is 'file', "
	    "expected 'git'", id);
	assert_string_equal(e.msg, want);
}

static void
test_key_types(void **state)
{
	static const int keys[] = { K_P256, K_P384, K_P521, K_RSA };
	char id[SHA_HEX], signer[128], want[64];
	struct error e;
	size_t i;

	allow("p256@example.com %s\np384@example.com %s\np521@example.com %s\n"
	    "rsa@example.com %s\n", F.pub[K_P256], F.pub[K_P384], F.pub[K_P521], F.pub[K_RSA]);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		commit(keys[i], keyspecs[keys[i]].name, id);
		assert_int_equal(verify(id, signer, sizeof(signer), &e), E_OK);
		snprintf(want, sizeof(want), "%s@example.com", keyspecs[keys[i]].name);
		assert_string_equal(signer, want);
	}
	/* A tampered ECDSA and RSA commit fail like an Ed25519 one. */
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i += 3) {
		char bad[SHA_HEX];

		commit(keys[i], "typed message", id);
		sh_line(bad, sizeof(bad), "git -C %s cat-file commit %s | "
		    "sed 's/typed message/typed massage/' | "
		    "git -C %s hash-object -t commit -w --stdin", F.work, id, F.work);
		assert_int_equal(verify(bad, NULL, 0, &e), E_INVAL);
		assert_non_null(strstr(e.msg, "bad signature on commit"));
	}
	/* Same key type, other key: still refused. */
	allow("p256@example.com %s\n", F.pub[K_P384]);
	commit(K_P256, "p256 unlisted", id);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "is signed by a key not in"));
}

static void
test_options(void **state)
{
	char id[SHA_HEX], signer[128];
	struct error e;

	commit(K_A, "options", id);

	allow("user@example.com namespaces=\"git\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
	allow("user@example.com namespaces=\"file,gi?\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);

	allow("user@example.com namespaces=\"file,mail\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "is allowed there only for namespaces \"file,mail\""));
	assert_non_null(strstr(e.msg, "allowed_signers:1)"));

	allow("user@example.com namespaces=\"*,!git\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);

	/* The committer date decides, as with git's verify-time. */
	allow("user@example.com valid-before=\"20000101Z\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "expired there at 2000-01-01T00:00:00Z"));
	allow("user@example.com valid-after=\"29990101000000Z\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "is valid there only from 2999-01-01T00:00:00Z"));
	allow("user@example.com valid-after=\"20000101\",valid-before=\"29990101\" %s\n",
	    F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);

	allow("user@example.com cert-authority %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "cert-authority"));

	/* A refusing line does not stop a later line that allows. */
	allow("old@example.com valid-before=\"20000101Z\" %s\nnew@example.com %s\n",
	    F.pub[K_A], F.pub[K_A]);
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_OK);
	assert_string_equal(signer, "new@example.com");

	/* Quoted principals, CRLF, case-insensitive option names, a comment after the key. */
	allow("\"a@example.com,b@example.com\" NAMESPACES=\"git\" %s the laptop\r\n",
	    F.pub[K_A]);
	assert_int_equal(verify(id, signer, sizeof(signer), &e), E_OK);
	assert_string_equal(signer, "a@example.com,b@example.com");

	/* A bad line is skipped, and named when nothing allows the key. */
	allow("user@example.com frobnicate=\"1\" %s\n  # indented comment\n"
	    "user@example.com %s\n", F.pub[K_A], F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_OK);
	allow("user@example.com frobnicate=\"1\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "allowed_signers:1 was ignored: unknown option "
	    "'frobnicate'"));
	allow("user@example.com valid-before=\"2000\" %s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "bad valid-before time"));
	allow("user@example.com\n%s\n", F.pub[K_A]);
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	allow("");
	assert_int_equal(verify(id, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "is signed by a key not in"));
}

static void
test_errors(void **state)
{
	char id[SHA_HEX], bad[SHA_HEX], want[256];
	struct error e;

	allow("user@example.com %s\n", F.pub[K_A]);
	commit(K_A, "errors", id);
	splice_text(id, "-----BEGIN PGP SIGNATURE-----", "iQEzBAABCAAdFiEE", bad);
	assert_int_equal(verify(bad, NULL, 0, &e), E_INVAL);
	snprintf(want, sizeof(want), "commit %.12s has a PGP signature; allowed_signers "
	    "accepts only SSH signatures", bad);
	assert_string_equal(e.msg, want);

	splice_text(id, "-----BEGIN SSH SIGNATURE-----", "U1NIU0lH", bad);
	assert_int_equal(verify(bad, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "malformed SSH signature: no end marker"));

	/* A missing file, a missing commit and a missing repository are told apart. */
	assert_int_equal(sshsig_verify_commit(F.gitdir, id, "/nonexistent/allowed", NULL, 0, &e),
	    E_CONFIG);
	assert_non_null(strstr(e.msg, "allowed_signers /nonexistent/allowed: No such file"));
	assert_int_equal(verify("0123456789abcdef0123456789abcdef01234567", NULL, 0, &e),
	    E_GIT);
	assert_int_equal(verify("xyz", NULL, 0, &e), E_INVAL);
	assert_int_equal(sshsig_verify_commit(F.dir, id, F.allowed, NULL, 0, &e), E_GIT);
}

/* ---- sshsig_verify on damaged signatures: every cut and every bit flip is refused ---- */

struct raw {
	char		*armored;
	size_t		 alen;
	char		*msg;
	size_t		 mlen;
	unsigned char	 blob[4096];
	size_t		 blen;
	struct sshsig_policy pol;
	char		*text;
};

static void
raw_load(struct raw *r, int k)
{
	const char *b, *end;
	char path[256];

	memset(r, 0, sizeof(*r));
	spew(F.body, "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nraw message\n");
	assert_int_equal(sh("rm -f %s.sig && ssh-keygen -q -Y sign -n git -f %s %s", F.body,
	    F.key[k], F.body), 0);
	r->msg = slurp(F.body, &r->mlen);
	snprintf(path, sizeof(path), "%s.sig", F.body);
	r->armored = slurp(path, &r->alen);
	b = strchr(r->armored, '\n') + 1;
	end = strstr(b, "-----END");
	assert_non_null(end);
	assert_int_equal(sodium_base642bin(r->blob, sizeof(r->blob), b, (size_t)(end - b),
	    "\r\n", &r->blen, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
	r->text = util_xasprintf("user@example.com %s\n", F.pub[k]);
	r->pol.file = "ALLOWED";
	r->pol.text = r->text;
	r->pol.len = strlen(r->text);
	r->pol.ns = "git";
}

static void
raw_free(struct raw *r)
{
	free(r->armored);
	free(r->msg);
	free(r->text);
}

/* Armor a blob (wrapped at 70 columns like ssh-keygen) and verify it against r's message. */
static int
raw_verify(struct raw *r, const unsigned char *blob, size_t len, struct error *e)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = util_xmalloc(cap), *arm = util_xmalloc(cap + cap / 70 + 128), *p;
	size_t i, n;
	int rc;

	sodium_bin2base64(b64, cap, blob, len, sodium_base64_VARIANT_ORIGINAL);
	p = arm + sprintf(arm, "-----BEGIN SSH SIGNATURE-----\n");
	for (i = 0, n = strlen(b64); i < n; i += 70)
		p += sprintf(p, "%.70s\n", b64 + i);
	sprintf(p, "-----END SSH SIGNATURE-----\n");
	memset(e, 0, sizeof(*e));
	rc = sshsig_verify("commit test", arm, strlen(arm), (const unsigned char *)r->msg,
	    r->mlen, &r->pol, NULL, 0, e);
	free(b64);
	free(arm);
	return rc;
}

static void
damage(int k)
{
	struct raw r;
	struct error e;
	unsigned char *copy;
	size_t i, bit, nbad = 0;

	raw_load(&r, k);
	/* The controls: as ssh-keygen wrote it, and re-armored, it verifies. */
	assert_int_equal(sshsig_verify("commit test", r.armored, r.alen,
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_OK);
	assert_int_equal(raw_verify(&r, r.blob, r.blen, &e), E_OK);
	copy = util_xmalloc(r.blen + 8);
	for (i = 0; i < r.blen; i++) {
		/* A copy of exactly i bytes, so ASan sees any read past the cut. */
		unsigned char *cut = util_xmalloc(i + 1);

		memcpy(cut, r.blob, i);
		assert_int_not_equal(raw_verify(&r, cut, i, &e), E_OK);
		free(cut);
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, r.blob, r.blen);
			copy[i] ^= (unsigned char)(1u << bit);
			if (raw_verify(&r, copy, r.blen, &e) == E_OK)
				nbad++;
		}
	}
	assert_int_equal(nbad, 0);
	memcpy(copy, r.blob, r.blen);
	memcpy(copy + r.blen, "\0\0\0\0", 4);
	assert_int_equal(raw_verify(&r, copy, r.blen + 4, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: trailing data");
	copy[0] = 'X';
	assert_int_equal(raw_verify(&r, copy, r.blen, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: no SSHSIG magic");
	memcpy(copy, r.blob, r.blen);
	copy[9] = 2;
	assert_int_equal(raw_verify(&r, copy, r.blen, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: unknown version");
	assert_int_equal(raw_verify(&r, r.blob, 20, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: truncated");
	/* Another message, same signature. */
	r.msg[0] ^= 1;
	assert_int_equal(raw_verify(&r, r.blob, r.blen, &e), E_INVAL);
	assert_string_equal(e.msg, "bad signature on commit test");
	free(copy);
	raw_free(&r);
}

static void
test_damage_ed25519(void **state)
{
	damage(K_A);
}

static void
test_damage_ecdsa(void **state)
{
	damage(K_P256);
}

static void
test_damage_rsa(void **state)
{
	damage(K_RSA);
}

static void
test_armor(void **state)
{
	struct raw r;
	struct error e;
	char *big, *txt;
	size_t n;

	raw_load(&r, K_A);
	/* Leading and trailing blank space is fine, text after the end marker is not. */
	txt = util_xasprintf("\n  %s\n\n", r.armored);
	assert_int_equal(sshsig_verify("commit test", txt, strlen(txt),
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_OK);
	free(txt);
	txt = util_xasprintf("%sx\n", r.armored);
	assert_int_equal(sshsig_verify("commit test", txt, strlen(txt),
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: text after the end "
	    "marker");
	free(txt);
	/* A character outside base64 inside the body. */
	txt = util_xstrdup(r.armored);
	txt[strlen("-----BEGIN SSH SIGNATURE-----\n") + 3] = '*';
	assert_int_equal(sshsig_verify("commit test", txt, strlen(txt),
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: malformed SSH signature: bad base64");
	free(txt);
	/* A NUL inside is not the end of it. */
	txt = util_xstrdup(r.armored);
	txt[strlen(txt) - 3] = '\0';
	assert_int_equal(sshsig_verify("commit test", txt, r.alen,
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	free(txt);
	assert_int_equal(sshsig_verify("commit test", "", 0, (const unsigned char *)r.msg,
	    r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: the signature is not an SSH signature");
	n = SSHSIG_ARMOR_MAX + 1;
	big = util_xmalloc(n);
	memset(big, 'A', n);
	assert_int_equal(sshsig_verify("commit test", big, n, (const unsigned char *)r.msg,
	    r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "the signature is over"));
	free(big);
	/* The policy's namespace is what is checked. */
	r.pol.ns = "file";
	assert_int_equal(sshsig_verify("commit test", r.armored, r.alen,
	    (const unsigned char *)r.msg, r.mlen, &r.pol, NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit test: signature namespace is 'git', expected 'file'");
	raw_free(&r);
}

/* ---- fixed vectors from tests/unit/data/sshsig (see its README) ---- */

static char *
fixture(const char *name, size_t *len)
{
	const char *dir = getenv("TEST_DATA_DIR");
	char path[4096];

	if (dir == NULL || *dir == '\0')
		dir = "../tests/unit/data";
	snprintf(path, sizeof(path), "%s/sshsig/%s", dir, name);
	if (access(path, R_OK) != 0)
		fail_msg("cannot open fixture %s (set TEST_DATA_DIR)", path);
	return slurp(path, len);
}

/* Verify fixture SIG over the fixture message with allowed_signers listing key PUB. */
static int
fixture_verify(const char *sig, const char *pub, char *signer, size_t slen, struct error *e)
{
	struct sshsig_policy pol = { .file = "ALLOWED", .ns = "git", .when = 1764064800 };
	char *arm, *msg, *key, *text;
	size_t alen, mlen;
	int rc;

	arm = fixture(sig, &alen);
	msg = fixture("message", &mlen);
	key = fixture(pub, NULL);
	key[strcspn(key, "\n")] = '\0';
	text = util_xasprintf("fixture@example.com %s\n", key);
	pol.text = text;
	pol.len = strlen(text);
	memset(e, 0, sizeof(*e));
	rc = sshsig_verify("commit fixture", arm, alen, (const unsigned char *)msg, mlen, &pol,
	    signer, slen, e);
	free(arm);
	free(msg);
	free(key);
	free(text);
	return rc;
}

static void
test_fixtures(void **state)
{
	static const char *const good[][2] = {
		{ "ed25519.sig", "ed25519.pub" },
		{ "ed25519-sha256.sig", "ed25519.pub" },
		{ "ecdsa-p256.sig", "ecdsa-p256.pub" },
		{ "rsa-2048.sig", "rsa-2048.pub" },
	};
	char signer[64];
	struct error e;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(fixture_verify(good[i][0], good[i][1], signer, sizeof(signer),
		    &e), E_OK);
		assert_string_equal(signer, "fixture@example.com");
	}
	assert_int_equal(fixture_verify("ed25519-file.sig", "ed25519.pub", NULL, 0, &e),
	    E_INVAL);
	assert_string_equal(e.msg, "commit fixture: signature namespace is 'file', expected "
	    "'git'");
	/* The fingerprint is the one ssh-keygen printed for the key. */
	assert_int_equal(fixture_verify("ed25519.sig", "ecdsa-p256.pub", NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit fixture is signed by a key not in ALLOWED "
	    "(SHA256:i1ATlux1vn2awXpt7Sfb5yq6H+r7rWzCHVg7UqHovIE)");
	assert_int_equal(fixture_verify("rsa-2048.sig", "ed25519.pub", NULL, 0, &e), E_INVAL);
	assert_string_equal(e.msg, "commit fixture is signed by a key not in ALLOWED "
	    "(SHA256:Q+O2yIApVbo2sb4toTmK0hNiMj6H8V3MMuq7fsjLYMo)");
}

/*
 * Strict base64 in both places deployd decodes it here: the armored signature and the
 * allowed_signers key. Every byte from 0x80 to 0xff in place of each '/' (libsodium 1.0.18
 * read them all as '/') and a non-canonical last character are refused; the untouched
 * fixture still verifies.
 */
static void
test_strict_base64(void **state)
{
	struct sshsig_policy pol = { .file = "ALLOWED", .ns = "git", .when = 1764064800 };
	char *arm, *msg, *key, *text, *p, signer[64];
	size_t alen, mlen, slashes = 0;
	struct error e;
	int b, last;

	(void)state;
	arm = fixture("ed25519.sig", &alen);
	msg = fixture("message", &mlen);
	key = fixture("ed25519.pub", NULL);
	key[strcspn(key, "\n")] = '\0';
	text = util_xasprintf("fixture@example.com %s\n", key);
	pol.text = text;
	pol.len = strlen(text);
	assert_int_equal(sshsig_verify("c", arm, alen, (const unsigned char *)msg, mlen, &pol,
	    signer, sizeof(signer), &e), E_OK);

	for (p = strchr(arm, '\n') + 1; (p = strchr(p, '/')) != NULL; p++, slashes++) {
		for (b = 0x80; b <= 0xff; b++) {
			*p = (char)b;
			assert_int_equal(sshsig_verify("c", arm, alen, (const unsigned char *)msg,
			    mlen, &pol, NULL, 0, &e), E_INVAL);
			assert_string_equal(e.msg, "c: malformed SSH signature: bad base64");
		}
		*p = '/';
	}
	for (p = text; (p = strchr(p, '/')) != NULL; p++, slashes++) {
		for (b = 0x80; b <= 0xff; b++) {
			*p = (char)b;
			assert_int_equal(sshsig_verify("c", arm, alen, (const unsigned char *)msg,
			    mlen, &pol, NULL, 0, &e), E_INVAL);
		}
		*p = '/';
	}
	assert_true(slashes >= 3);
	/* "...Fww=": 'w' ends a 2-byte group; 'x' sets an unused bit and spells the same bytes */
	p = strstr(arm, "w=\n");
	assert_non_null(p);
	last = *p;
	*p = 'x';
	assert_int_equal(sshsig_verify("c", arm, alen, (const unsigned char *)msg, mlen, &pol,
	    NULL, 0, &e), E_INVAL);
	*p = (char)last;
	assert_int_equal(sshsig_verify("c", arm, alen, (const unsigned char *)msg, mlen, &pol,
	    signer, sizeof(signer), &e), E_OK);
	free(arm);
	free(msg);
	free(key);
	free(text);
}

/* signers_allowed on text that is not NUL-terminated, and on hostile lines. */
static void
test_allowed_text(void **state)
{
	static const char *const junk[] = {
		"\"", "\"unterminated", "x", "x ", "x \"", "x a=\"", "x a=\"b\"", "x ssh-ed25519",
		"x ssh-ed25519 ", "x ssh-ed25519 AAAA", "x ssh-ed25519 !!!!", "x cert-authority",
		"x namespaces=git,", "x namespaces", "x valid-after=\"20000101Z\"",
		"x valid-after=\"99999999\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
		"x valid-before=\"2000010100000000\" ssh-ed25519 AAAA", "\t\t", "#", "\r",
	};
	struct sshsig_policy pol = { .file = "F", .ns = "git", .when = 1700000000 };
	unsigned char key[256];
	char *text, signer[64];
	const char *b64;
	struct error e;
	size_t i, klen;

	b64 = strchr(F.pub[K_A], ' ') + 1;
	assert_int_equal(sodium_base642bin(key, sizeof(key), b64, strlen(b64), NULL, &klen,
	    NULL, sodium_base64_VARIANT_ORIGINAL), 0);
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		/* Exactly the line's bytes on the heap, no NUL after them. */
		size_t n = strlen(junk[i]);

		text = util_xmalloc(n + 1);
		memcpy(text, junk[i], n);
		pol.text = text;
		pol.len = n;
		assert_int_equal(signers_allowed("k", &pol, key, klen, signer, sizeof(signer), &e),
		    E_INVAL);
		free(text);
	}
	/* The last line needs no newline; a long principal list is cut to the buffer. */
	text = util_xasprintf("%0100d %s", 7, F.pub[K_A]);
	pol.text = text;
	pol.len = strlen(text);
	assert_int_equal(signers_allowed("k", &pol, key, klen, signer, sizeof(signer), &e),
	    E_OK);
	assert_int_equal(strlen(signer), sizeof(signer) - 1);
	/* A length that cuts the key off is honoured. */
	pol.len = strlen(text) - 5;
	assert_int_equal(signers_allowed("k", &pol, key, klen, signer, sizeof(signer), &e),
	    E_INVAL);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ed25519_signed),
		cmocka_unit_test(test_unsigned),
		cmocka_unit_test(test_unlisted_key),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_spliced),
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_damage_ed25519),
		cmocka_unit_test(test_damage_ecdsa),
		cmocka_unit_test(test_damage_rsa),
		cmocka_unit_test(test_armor),
		cmocka_unit_test(test_allowed_text),
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_strict_base64),
	};
	int rc;

	git_libgit2_init();
	if (sodium_init() < 0)
		return 1;
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	git_libgit2_shutdown();
	return rc;
}
