/* sshsig.c: verify SSH-signed commits (PROTOCOL.sshsig): the armored envelope and its checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>
#include <sodium.h>

#include "deploy/deploy.h"

#define SSHSIG_MAGIC		"SSHSIG"
#define SSHSIG_VERSION		1
#define SSHSIG_BEGIN		"-----BEGIN SSH SIGNATURE-----"
#define SSHSIG_END		"-----END SSH SIGNATURE-----"

/* A parsed SSHSIG blob; the readers point into blob. */
struct sshsig_parsed {
	unsigned char		*blob;
	size_t			 bloblen;
	struct wire		 key, ns, reserved, hashalg, sig;
};

/* The digests a signature may name for the message (PROTOCOL.sshsig allows these two). */
struct sshsig_hash {
	const char	*name;
	size_t		 len;
	int		(*fn)(unsigned char *, const unsigned char *, unsigned long long);
};

static const struct sshsig_hash sshsig_hashes[] = {
	{ "sha256", crypto_hash_sha256_BYTES, crypto_hash_sha256 },
	{ "sha512", crypto_hash_sha512_BYTES, crypto_hash_sha512 },
};

static int
sshsig_starts(const char *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len >= n && memcmp(p, lit, n) == 0;
}

/* Armored text to the raw blob: the markers, then base64 with line breaks. */
static int
sshsig_dearmor(const char *what, const char *armored, size_t len, unsigned char **blob,
    size_t *bloblen, struct error *e)
{
	const char *p = armored, *end = armored + len, *body, *stop;
	size_t cap;

	while (p < end && strchr(" \t\r\n", *p) != NULL && *p != '\0')
		p++;
	if (sshsig_starts(p, (size_t)(end - p), "-----BEGIN PGP SIGNATURE-----"))
		return util_error(e, E_INVAL, "%s has a PGP signature; allowed_signers accepts "
		    "only SSH signatures", what);
	if (sshsig_starts(p, (size_t)(end - p), "-----BEGIN SIGNED MESSAGE-----"))
		return util_error(e, E_INVAL, "%s has an X.509 signature; allowed_signers "
		    "accepts only SSH signatures", what);
	if (!sshsig_starts(p, (size_t)(end - p), SSHSIG_BEGIN))
		return util_error(e, E_INVAL, "%s: the signature is not an SSH signature", what);
	body = p + strlen(SSHSIG_BEGIN);
	if ((stop = memmem(body, (size_t)(end - body), SSHSIG_END, strlen(SSHSIG_END))) ==
	    NULL)
		return util_error(e, E_INVAL, "%s: malformed SSH signature: no end marker", what);
	for (p = stop + strlen(SSHSIG_END); p < end; p++)
		if (strchr(" \t\r\n", *p) == NULL || *p == '\0')
			return util_error(e, E_INVAL, "%s: malformed SSH signature: text after "
			    "the end marker", what);
	cap = (size_t)(stop - body) / 4 * 3 + 3;
	*blob = util_xmalloc(cap);
	if (base64_decode(body, (size_t)(stop - body), " \t\r\n", *blob, cap, bloblen) !=
	    E_OK) {
		free(*blob);
		*blob = NULL;
		return util_error(e, E_INVAL, "%s: malformed SSH signature: bad base64", what);
	}
	return E_OK;
}

/* MAGIC_PREAMBLE, version, then five strings and nothing after them. */
static int
sshsig_parse(const char *what, const char *armored, size_t len, struct sshsig_parsed *ps,
    struct error *e)
{
	struct wire r;
	uint32_t version;
	const char *why = NULL;
	int rc;

	memset(ps, 0, sizeof(*ps));
	if (len > SSHSIG_ARMOR_MAX)
		return util_error(e, E_INVAL, "%s: the signature is over %d bytes", what,
		    SSHSIG_ARMOR_MAX);
	if ((rc = sshsig_dearmor(what, armored, len, &ps->blob, &ps->bloblen, e)) != E_OK)
		return rc;
	r.p = ps->blob;
	r.len = ps->bloblen;
	if (r.len < strlen(SSHSIG_MAGIC) || memcmp(r.p, SSHSIG_MAGIC, strlen(SSHSIG_MAGIC)))
		why = "no SSHSIG magic";
	else {
		r.p += strlen(SSHSIG_MAGIC);
		r.len -= strlen(SSHSIG_MAGIC);
		if (wire_get_u32(&r, &version) != 0)
			why = "truncated";
		else if (version != SSHSIG_VERSION)
			why = "unknown version";
		else if (wire_get_string(&r, &ps->key) != 0 ||
		    wire_get_string(&r, &ps->ns) != 0 ||
		    wire_get_string(&r, &ps->reserved) != 0 ||
		    wire_get_string(&r, &ps->hashalg) != 0 ||
		    wire_get_string(&r, &ps->sig) != 0)
			why = "truncated";
		else if (r.len != 0)
			why = "trailing data";
	}
	if (why != NULL) {
		free(ps->blob);
		memset(ps, 0, sizeof(*ps));
		return util_error(e, E_INVAL, "%s: malformed SSH signature: %s", what, why);
	}
	return E_OK;
}

static void
sshsig_put_string(unsigned char **p, const void *s, size_t len)
{
	(*p)[0] = (unsigned char)(len >> 24);
	(*p)[1] = (unsigned char)(len >> 16);
	(*p)[2] = (unsigned char)(len >> 8);
	(*p)[3] = (unsigned char)len;
	memcpy(*p + 4, s, len);
	*p += 4 + len;
}

/* What the key signed: "SSHSIG" || namespace || reserved || hash algorithm || H(message). */
static unsigned char *
sshsig_signed_data(const struct sshsig_parsed *ps, const unsigned char *h, size_t hlen,
    size_t *len)
{
	unsigned char *buf, *p;

	*len = strlen(SSHSIG_MAGIC) + 16 + ps->ns.len + ps->reserved.len + ps->hashalg.len +
	    hlen;
	buf = p = util_xmalloc(*len);
	memcpy(p, SSHSIG_MAGIC, strlen(SSHSIG_MAGIC));
	p += strlen(SSHSIG_MAGIC);
	sshsig_put_string(&p, ps->ns.p, ps->ns.len);
	sshsig_put_string(&p, ps->reserved.p, ps->reserved.len);
	sshsig_put_string(&p, ps->hashalg.p, ps->hashalg.len);
	sshsig_put_string(&p, h, hlen);
	return buf;
}

/*
 * Check an armored SSH signature over msg: its namespace, that its key is allowed by the
 * policy, and the signature itself. The allowed_signers lookup comes before the arithmetic,
 * so that a stranger's key costs no RSA work.
 */
int
sshsig_verify(const char *what, const char *armored, size_t len, const unsigned char *msg,
    size_t msglen, const struct sshsig_policy *pol, char *signer, size_t signerlen,
    struct error *e)
{
	const struct sigkey *kt;
	const struct sshsig_hash *hash = NULL;
	struct sshsig_parsed ps;
	struct wire sig, sigtype, sigbytes;
	unsigned char h[crypto_hash_sha512_BYTES], *data = NULL;
	char shown[WIRE_SHOW_MAX * 4 + 8], why[256] = "";
	size_t i, datalen;
	int rc, v;

	if (signer != NULL && signerlen > 0)
		signer[0] = '\0';
	if (sodium_init() < 0)
		return util_error(e, E_SYS, "libsodium failed to initialise");
	if ((rc = sshsig_parse(what, armored, len, &ps, e)) != E_OK)
		return rc;
	if (!wire_is(&ps.ns, pol->ns)) {
		wire_show(&ps.ns, shown, sizeof(shown));
		rc = util_error(e, E_INVAL, "%s: signature namespace is '%s', expected '%s'",
		    what, shown, pol->ns);
		goto out;
	}
	for (i = 0; i < sizeof(sshsig_hashes) / sizeof(sshsig_hashes[0]); i++)
		if (wire_is(&ps.hashalg, sshsig_hashes[i].name))
			hash = &sshsig_hashes[i];
	if (hash == NULL) {
		wire_show(&ps.hashalg, shown, sizeof(shown));
		rc = util_error(e, E_INVAL, "%s: unsupported signature hash algorithm '%s'", what,
		    shown);
		goto out;
	}
	if ((kt = sigkey_find(what, ps.key, e)) == NULL) {
		rc = E_INVAL;
		goto out;
	}
	if ((rc = signers_allowed(what, pol, ps.key.p, ps.key.len, signer, signerlen,
	    e)) != E_OK)
		goto out;
	sig = ps.sig;
	if (wire_get_string(&sig, &sigtype) != 0 || wire_get_string(&sig, &sigbytes) != 0 ||
	    sig.len != 0) {
		rc = util_error(e, E_INVAL, "bad signature on %s (malformed signature blob)", what);
		goto out;
	}
	hash->fn(h, msg, msglen);
	data = sshsig_signed_data(&ps, h, hash->len, &datalen);
	v = sigkey_verify(kt, ps.key, sigtype, sigbytes, data, datalen, why, sizeof(why));
	if (v == SIGKEY_MALFORMED)
		rc = util_error(e, E_INVAL, "%s: %s", what, why);
	else if (v != SIGKEY_GOOD)
		rc = util_error(e, E_INVAL, "bad signature on %s", what);
out:
	if (rc != E_OK && signer != NULL && signerlen > 0)
		signer[0] = '\0';
	free(data);
	free(ps.blob);
	return rc;
}

/*
 * May this commit of the cache be deployed? Its gpgsig header must hold an SSH signature in
 * the "git" namespace, over the commit minus that header, by a key of allowed_signers.
 * valid-after and valid-before are compared with the committer date, as git does.
 */
int
sshsig_verify_commit(const char *cache_dir, const char *commit_hex,
    const char *allowed_signers, char *signer, size_t signerlen, struct error *e)
{
	struct sshsig_policy pol = { 0 };
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_buf sig = GIT_BUF_INIT, data = GIT_BUF_INIT;
	git_oid oid;
	char what[32], *text = NULL;
	int rc, grc;

	if (signer != NULL && signerlen > 0)
		signer[0] = '\0';
	snprintf(what, sizeof(what), "commit %.12s", commit_hex);
	if (git_oid_fromstr(&oid, commit_hex) != 0)
		return util_error(e, E_INVAL, "%s: not a full commit id", what);
	if ((rc = signers_read(allowed_signers, &text, &pol.len, e)) != E_OK)
		return rc;
	pol.text = text;
	pol.file = allowed_signers;
	pol.ns = SSHSIG_NAMESPACE;
	if (repo_open(&repo, cache_dir) != 0) {
		rc = repo_error(e, "opening %s", cache_dir);
		goto out;
	}
	if (git_commit_lookup(&c, repo, &oid) != 0) {
		rc = repo_error(e, "reading %s", what);
		goto out;
	}
	pol.when = (int64_t)git_commit_committer(c)->when.time;
	/* Found, so a GIT_ENOTFOUND here means no gpgsig header. */
	if ((grc = git_commit_extract_signature(&sig, &data, repo, &oid, "gpgsig")) != 0) {
		if (grc == GIT_ENOTFOUND)
			rc = util_error(e, E_INVAL, "%s is not signed", what);
		else
			rc = repo_error(e, "reading the signature of %s", what);
		goto out;
	}
	rc = sshsig_verify(what, sig.ptr, sig.size, (const unsigned char *)data.ptr, data.size,
	    &pol, signer, signerlen, e);
out:
	git_buf_dispose(&sig);
	git_buf_dispose(&data);
	git_commit_free(c);
	git_repository_free(repo);
	free(text);
	return rc;
}
