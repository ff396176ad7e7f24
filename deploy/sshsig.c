/* sshsig.c: verify SSH-signed commits (PROTOCOL.sshsig) against an allowed_signers file. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <git2.h>
#include <openssl/opensslv.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#endif
#include <sodium.h>

#include "deploy/deploy.h"

#define SSHSIG_MAGIC		"SSHSIG"
#define SSHSIG_VERSION		1
#define SSHSIG_BEGIN		"-----BEGIN SSH SIGNATURE-----"
#define SSHSIG_END		"-----END SSH SIGNATURE-----"
#define SSHSIG_CERT_SUFFIX	"-cert-v01@openssh.com"
#define SSHSIG_RSA_MIN_BITS	2048
#define SSHSIG_RSA_MAX_BYTES	(16384 / 8)	/* OpenSSH's largest bignum */
#define SSHSIG_RSA_E_MAX_BYTES	8		/* a huge exponent only slows verifying */
#define SSHSIG_SHOW_MAX		64		/* untrusted names quoted in messages */

/* What a verify function found. */
enum { SSHSIG_GOOD, SSHSIG_BAD, SSHSIG_MALFORMED };

/* A window on untrusted bytes: every read checks the length left first. */
struct sshsig_reader {
	const unsigned char	*p;
	size_t			 len;
};

/* A parsed SSHSIG blob; the readers point into blob. */
struct sshsig_parsed {
	unsigned char		*blob;
	size_t			 bloblen;
	struct sshsig_reader	 key, ns, reserved, hashalg, sig;
};

struct sshsig_keytype;
typedef int (*sshsig_verify_fn)(const struct sshsig_keytype *, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen);

/* One row per key type a signature may name. */
struct sshsig_keytype {
	const char		*name;
	const char		*curve;		/* ECDSA: the curve named in the key */
	const char		*group;		/* ECDSA: OpenSSL's name for it */
	size_t			 field;		/* ECDSA: bytes of a coordinate */
	const EVP_MD		*(*md)(void);	/* ECDSA: the digest the curve uses */
	sshsig_verify_fn	 verify;
	const char		*refuse;	/* a type known but not verified, and why */
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

/* The RSA signature types; "ssh-rsa" (SHA-1) is not one: OpenSSH refuses it for SSHSIG too. */
struct sshsig_rsa_alg {
	const char	*name;
	const EVP_MD	*(*md)(void);
};

static const struct sshsig_rsa_alg sshsig_rsa_algs[] = {
	{ "rsa-sha2-256", EVP_sha256 },
	{ "rsa-sha2-512", EVP_sha512 },
};

static int sshsig_verify_ed25519(const struct sshsig_keytype *, struct sshsig_reader,
    struct sshsig_reader, struct sshsig_reader, const unsigned char *, size_t, char *,
    size_t);
static int sshsig_verify_ecdsa(const struct sshsig_keytype *, struct sshsig_reader,
    struct sshsig_reader, struct sshsig_reader, const unsigned char *, size_t, char *,
    size_t);
static int sshsig_verify_rsa(const struct sshsig_keytype *, struct sshsig_reader,
    struct sshsig_reader, struct sshsig_reader, const unsigned char *, size_t, char *,
    size_t);

static const struct sshsig_keytype sshsig_keytypes[] = {
	{ "ssh-ed25519", NULL, NULL, 0, NULL, sshsig_verify_ed25519, NULL },
	{ "ecdsa-sha2-nistp256", "nistp256", "prime256v1", 32, EVP_sha256,
	    sshsig_verify_ecdsa, NULL },
	{ "ecdsa-sha2-nistp384", "nistp384", "secp384r1", 48, EVP_sha384,
	    sshsig_verify_ecdsa, NULL },
	{ "ecdsa-sha2-nistp521", "nistp521", "secp521r1", 66, EVP_sha512,
	    sshsig_verify_ecdsa, NULL },
	{ "ssh-rsa", NULL, NULL, 0, NULL, sshsig_verify_rsa, NULL },
	{ "sk-ssh-ed25519@openssh.com", NULL, NULL, 0, NULL, NULL,
	    "security-key (FIDO) signatures are not supported" },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", NULL, NULL, 0, NULL, NULL,
	    "security-key (FIDO) signatures are not supported" },
	{ "ssh-dss", NULL, NULL, 0, NULL, NULL, "DSA keys are not supported" },
};

/* ---- reading the SSH wire format ---- */

static int
sshsig_get_u32(struct sshsig_reader *r, uint32_t *v)
{
	if (r->len < 4)
		return -1;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 |
	    (uint32_t)r->p[3];
	r->p += 4;
	r->len -= 4;
	return 0;
}

/* A length-prefixed string; r does not move on failure. */
static int
sshsig_get_string(struct sshsig_reader *r, struct sshsig_reader *out)
{
	struct sshsig_reader save = *r;
	uint32_t n;

	if (sshsig_get_u32(r, &n) != 0 || n > r->len) {
		*r = save;
		return -1;
	}
	out->p = r->p;
	out->len = n;
	r->p += n;
	r->len -= n;
	return 0;
}

/* A positive bignum in its shortest form; *out is its magnitude, without the sign byte. */
static int
sshsig_get_mpint(struct sshsig_reader *r, size_t maxlen, struct sshsig_reader *out)
{
	struct sshsig_reader s;

	if (sshsig_get_string(r, &s) != 0 || s.len == 0)
		return -1;
	if (s.p[0] & 0x80)
		return -1;	/* negative */
	if (s.p[0] == 0) {
		if (s.len == 1 || !(s.p[1] & 0x80))
			return -1;	/* zero, or a needless leading zero */
		s.p++;
		s.len--;
	}
	if (s.len > maxlen)
		return -1;
	*out = s;
	return 0;
}

static int
sshsig_is(const struct sshsig_reader *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len == n && memcmp(s->p, lit, n) == 0;
}

/* Untrusted bytes made safe to quote in a one-line message. */
static void
sshsig_show(const struct sshsig_reader *s, char *out, size_t outlen)
{
	size_t i, n = s->len < SSHSIG_SHOW_MAX ? s->len : SSHSIG_SHOW_MAX;
	char raw[SSHSIG_SHOW_MAX + 4];

	for (i = 0; i < n; i++)
		raw[i] = s->p[i] >= 0x20 && s->p[i] < 0x7f ? (char)s->p[i] : '?';
	if (n < s->len) {
		memcpy(raw + n, "...", 3);
		n += 3;
	}
	raw[n] = '\0';
	util_sanitize(raw, out, outlen);
}

static const struct sshsig_keytype *
sshsig_keytype(const struct sshsig_reader *name)
{
	size_t i;

	for (i = 0; i < sizeof(sshsig_keytypes) / sizeof(sshsig_keytypes[0]); i++)
		if (sshsig_is(name, sshsig_keytypes[i].name))
			return &sshsig_keytypes[i];
	return NULL;
}

/* ---- the three kinds of key ---- */

static int
sshsig_verify_ed25519(const struct sshsig_keytype *kt, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen)
{
	struct sshsig_reader name, pk;

	if (sshsig_get_string(&key, &name) != 0 || sshsig_get_string(&key, &pk) != 0 ||
	    key.len != 0 || pk.len != crypto_sign_PUBLICKEYBYTES) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SSHSIG_MALFORMED;
	}
	if (!sshsig_is(&sigtype, kt->name) || sig.len != crypto_sign_BYTES)
		return SSHSIG_BAD;
	if (crypto_sign_verify_detached(sig.p, data, len, pk.p) != 0)
		return SSHSIG_BAD;
	return SSHSIG_GOOD;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/*
 * A public key from OpenSSL parameters. An EC point is checked to be on its curve; RSA's
 * check costs a gcd over many primes and adds nothing here: the key is listed by the admin.
 */
static EVP_PKEY *
sshsig_pkey(const char *type, OSSL_PARAM_BLD *bld, int check)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL, *cctx = NULL;
	EVP_PKEY *pkey = NULL;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	if (check && ((cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(cctx) != 1)) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(cctx);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

/* 1: the signature holds; 0: it does not. */
static int
sshsig_evp_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *sig, size_t siglen,
    const unsigned char *data, size_t len)
{
	EVP_MD_CTX *mctx;
	int ok = 0;

	if ((mctx = EVP_MD_CTX_new()) == NULL)
		return 0;
	if (EVP_DigestVerifyInit(mctx, NULL, md, NULL, pkey) == 1 &&
	    EVP_DigestVerify(mctx, sig, siglen, data, len) == 1)
		ok = 1;
	EVP_MD_CTX_free(mctx);
	return ok;
}

static int
sshsig_verify_ecdsa(const struct sshsig_keytype *kt, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen)
{
	struct sshsig_reader name, curve, q, r, s;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	unsigned char *der = NULL, *dp;
	int derlen, rc = SSHSIG_BAD;

	if (sshsig_get_string(&key, &name) != 0 || sshsig_get_string(&key, &curve) != 0 ||
	    sshsig_get_string(&key, &q) != 0 || key.len != 0 ||
	    !sshsig_is(&curve, kt->curve) || q.len != 1 + 2 * kt->field || q.p[0] != 0x04) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SSHSIG_MALFORMED;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, kt->group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q.p, q.len) != 1 ||
	    (pkey = sshsig_pkey("EC", bld, 1)) == NULL) {
		snprintf(why, whylen, "bad %s public key (not a point of the curve)", kt->name);
		rc = SSHSIG_MALFORMED;
		goto out;
	}
	/* The signature blob is mpint r, mpint s; OpenSSL wants DER. */
	if (!sshsig_is(&sigtype, kt->name) || sshsig_get_mpint(&sig, kt->field, &r) != 0 ||
	    sshsig_get_mpint(&sig, kt->field, &s) != 0 || sig.len != 0)
		goto out;
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (br = BN_bin2bn(r.p, (int)r.len, NULL)) == NULL ||
	    (bs = BN_bin2bn(s.p, (int)s.len, NULL)) == NULL || ECDSA_SIG_set0(es, br, bs) != 1)
		goto out;
	br = bs = NULL;
	if ((derlen = i2d_ECDSA_SIG(es, NULL)) <= 0)
		goto out;
	der = dp = util_xmalloc((size_t)derlen);
	if (i2d_ECDSA_SIG(es, &dp) != derlen)
		goto out;
	if (sshsig_evp_verify(pkey, kt->md(), der, (size_t)derlen, data, len))
		rc = SSHSIG_GOOD;
out:
	free(der);
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	EVP_PKEY_free(pkey);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

static int
sshsig_verify_rsa(const struct sshsig_keytype *kt, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen)
{
	const struct sshsig_rsa_alg *alg = NULL;
	struct sshsig_reader name, e, n;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *be = NULL, *bn = NULL;
	unsigned char *padded = NULL;
	size_t i, modlen;
	int bits, rc = SSHSIG_MALFORMED;

	if (sshsig_get_string(&key, &name) != 0 ||
	    sshsig_get_mpint(&key, SSHSIG_RSA_E_MAX_BYTES, &e) != 0 ||
	    sshsig_get_mpint(&key, SSHSIG_RSA_MAX_BYTES, &n) != 0 || key.len != 0) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SSHSIG_MALFORMED;
	}
	if ((be = BN_bin2bn(e.p, (int)e.len, NULL)) == NULL ||
	    (bn = BN_bin2bn(n.p, (int)n.len, NULL)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if ((bits = BN_num_bits(bn)) < SSHSIG_RSA_MIN_BITS) {
		snprintf(why, whylen, "RSA key of %d bits is too small (%d minimum)", bits,
		    SSHSIG_RSA_MIN_BITS);
		goto out;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1 ||
	    (pkey = sshsig_pkey("RSA", bld, 0)) == NULL) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		goto out;
	}
	rc = SSHSIG_BAD;
	for (i = 0; i < sizeof(sshsig_rsa_algs) / sizeof(sshsig_rsa_algs[0]); i++)
		if (sshsig_is(&sigtype, sshsig_rsa_algs[i].name))
			alg = &sshsig_rsa_algs[i];
	if (alg == NULL) {
		if (sshsig_is(&sigtype, "ssh-rsa")) {
			snprintf(why, whylen, "RSA signatures with SHA-1 (ssh-rsa) are refused");
			rc = SSHSIG_MALFORMED;
		}
		goto out;
	}
	/* Like OpenSSH, accept a signature shorter than the modulus by padding it. */
	modlen = (size_t)(bits + 7) / 8;
	if (sig.len == 0 || sig.len > modlen)
		goto out;
	padded = util_xcalloc(1, modlen);
	memcpy(padded + (modlen - sig.len), sig.p, sig.len);
	if (sshsig_evp_verify(pkey, alg->md(), padded, modlen, data, len))
		rc = SSHSIG_GOOD;
out:
	free(padded);
	BN_free(be);
	BN_free(bn);
	EVP_PKEY_free(pkey);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}
#else
/* OpenSSL 1.1's key-building API is deprecated and untested here: Ed25519 only. */
static int
sshsig_verify_ecdsa(const struct sshsig_keytype *kt, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s signatures need OpenSSL 3", kt->name);
	return SSHSIG_MALFORMED;
}

static int
sshsig_verify_rsa(const struct sshsig_keytype *kt, struct sshsig_reader key,
    struct sshsig_reader sigtype, struct sshsig_reader sig, const unsigned char *data,
    size_t len, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s signatures need OpenSSL 3", kt->name);
	return SSHSIG_MALFORMED;
}
#endif

/* ---- the SSHSIG envelope ---- */

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
	struct sshsig_reader r;
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
		if (sshsig_get_u32(&r, &version) != 0)
			why = "truncated";
		else if (version != SSHSIG_VERSION)
			why = "unknown version";
		else if (sshsig_get_string(&r, &ps->key) != 0 ||
		    sshsig_get_string(&r, &ps->ns) != 0 ||
		    sshsig_get_string(&r, &ps->reserved) != 0 ||
		    sshsig_get_string(&r, &ps->hashalg) != 0 ||
		    sshsig_get_string(&r, &ps->sig) != 0)
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

/* The key type named in a public key blob, or a message saying why it will not do. */
static const struct sshsig_keytype *
sshsig_key_type(const char *what, struct sshsig_reader key, struct error *e)
{
	const struct sshsig_keytype *kt;
	struct sshsig_reader name;
	char shown[SSHSIG_SHOW_MAX * 4 + 8];
	size_t sl = strlen(SSHSIG_CERT_SUFFIX);

	if (sshsig_get_string(&key, &name) != 0) {
		util_error(e, E_INVAL, "%s: malformed SSH signature: bad public key", what);
		return NULL;
	}
	sshsig_show(&name, shown, sizeof(shown));
	if (name.len > sl && memcmp(name.p + name.len - sl, SSHSIG_CERT_SUFFIX, sl) == 0) {
		util_error(e, E_INVAL, "%s is signed with an SSH certificate (%s); certificates "
		    "are not supported, list the key itself", what, shown);
		return NULL;
	}
	if ((kt = sshsig_keytype(&name)) == NULL) {
		util_error(e, E_INVAL, "%s is signed with an unsupported key type '%s'", what,
		    shown);
		return NULL;
	}
	if (kt->refuse != NULL) {
		util_error(e, E_INVAL, "%s is signed with a %s key: %s", what, kt->name,
		    kt->refuse);
		return NULL;
	}
	return kt;
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
	const struct sshsig_keytype *kt;
	const struct sshsig_hash *hash = NULL;
	struct sshsig_parsed ps;
	struct sshsig_reader sig, sigtype, sigbytes;
	unsigned char h[crypto_hash_sha512_BYTES], *data = NULL;
	char shown[SSHSIG_SHOW_MAX * 4 + 8], why[256] = "";
	size_t i, datalen;
	int rc, v;

	if (signer != NULL && signerlen > 0)
		signer[0] = '\0';
	if (sodium_init() < 0)
		return util_error(e, E_SYS, "libsodium failed to initialise");
	if ((rc = sshsig_parse(what, armored, len, &ps, e)) != E_OK)
		return rc;
	if (!sshsig_is(&ps.ns, pol->ns)) {
		sshsig_show(&ps.ns, shown, sizeof(shown));
		rc = util_error(e, E_INVAL, "%s: signature namespace is '%s', expected '%s'",
		    what, shown, pol->ns);
		goto out;
	}
	for (i = 0; i < sizeof(sshsig_hashes) / sizeof(sshsig_hashes[0]); i++)
		if (sshsig_is(&ps.hashalg, sshsig_hashes[i].name))
			hash = &sshsig_hashes[i];
	if (hash == NULL) {
		sshsig_show(&ps.hashalg, shown, sizeof(shown));
		rc = util_error(e, E_INVAL, "%s: unsupported signature hash algorithm '%s'", what,
		    shown);
		goto out;
	}
	if ((kt = sshsig_key_type(what, ps.key, e)) == NULL) {
		rc = E_INVAL;
		goto out;
	}
	if ((rc = sshsig_allowed(what, pol, ps.key.p, ps.key.len, signer, signerlen, e)) !=
	    E_OK)
		goto out;
	sig = ps.sig;
	if (sshsig_get_string(&sig, &sigtype) != 0 || sshsig_get_string(&sig, &sigbytes) != 0 ||
	    sig.len != 0) {
		rc = util_error(e, E_INVAL, "bad signature on %s (malformed signature blob)", what);
		goto out;
	}
	hash->fn(h, msg, msglen);
	data = sshsig_signed_data(&ps, h, hash->len, &datalen);
	v = kt->verify(kt, ps.key, sigtype, sigbytes, data, datalen, why, sizeof(why));
	ERR_clear_error();
	if (v == SSHSIG_MALFORMED)
		rc = util_error(e, E_INVAL, "%s: %s", what, why);
	else if (v != SSHSIG_GOOD)
		rc = util_error(e, E_INVAL, "bad signature on %s", what);
out:
	if (rc != E_OK && signer != NULL && signerlen > 0)
		signer[0] = '\0';
	free(data);
	free(ps.blob);
	return rc;
}

/* ---- allowed_signers ---- */

/* What one line of allowed_signers said about the key. */
enum { SSHSIG_LINE_OTHER, SSHSIG_LINE_ALLOWS, SSHSIG_LINE_REFUSES, SSHSIG_LINE_BAD };

/* The options of one line. */
struct sshsig_options {
	int		 cert_authority;
	char		*namespaces;
	int64_t		 valid_after;	/* 0: none */
	int64_t		 valid_before;
};

static const char *
sshsig_skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* The end of a token: whitespace outside double quotes; NULL if a quote is left open. */
static const char *
sshsig_token_end(const char *p)
{
	int quoted = 0;

	for (; *p != '\0'; p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (!quoted && (*p == ' ' || *p == '\t'))
			break;
	}
	return quoted ? NULL : p;
}

/* "keytype base64" at *pp into a key blob; the blob must name the same type. */
static int
sshsig_line_key(const char **pp, unsigned char **blob, size_t *bloblen)
{
	const char *p = *pp, *type = p, *b64, *end;
	struct sshsig_reader r, name;
	size_t tlen, cap;

	*blob = NULL;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	tlen = (size_t)(p - type);
	b64 = sshsig_skip_ws(p);
	for (end = b64; *end != '\0' && *end != ' ' && *end != '\t'; end++)
		;
	if (tlen == 0 || end == b64)
		return -1;
	cap = (size_t)(end - b64) / 4 * 3 + 3;
	*blob = util_xmalloc(cap);
	if (base64_decode(b64, (size_t)(end - b64), NULL, *blob, cap, bloblen) != E_OK)
		goto bad;
	r.p = *blob;
	r.len = *bloblen;
	if (sshsig_get_string(&r, &name) != 0 || name.len != tlen ||
	    memcmp(name.p, type, tlen) != 0)
		goto bad;
	*pp = end;
	return 0;
bad:
	free(*blob);
	*blob = NULL;
	return -1;
}

/* n decimal digits at s; the caller checked they are digits. */
static int
sshsig_digits(const char *s, int n)
{
	int v = 0;

	while (n-- > 0)
		v = v * 10 + (*s++ - '0');
	return v;
}

/* OpenSSH's absolute time: YYYYMMDD[HHMM[SS]], UTC with a trailing Z, else local time. */
static int
sshsig_parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	size_t n = strlen(s), i;
	int utc = 0;
	time_t t;

	if (n > 0 && (s[n - 1] == 'Z' || s[n - 1] == 'z')) {
		utc = 1;
		n--;
	}
	if (n != 8 && n != 12 && n != 14)
		return -1;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = sshsig_digits(s, 4) - 1900;
	tm.tm_mon = sshsig_digits(s + 4, 2) - 1;
	tm.tm_mday = sshsig_digits(s + 6, 2);
	if (n >= 12) {
		tm.tm_hour = sshsig_digits(s + 8, 2);
		tm.tm_min = sshsig_digits(s + 10, 2);
	}
	if (n == 14)
		tm.tm_sec = sshsig_digits(s + 12, 2);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_isdst = -1;
	if ((t = utc ? timegm(&tm) : mktime(&tm)) == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

/* Comma-separated options, values in double quotes; unknown ones make the line bad. */
static int
sshsig_line_options(const char *text, size_t len, struct sshsig_options *o, char *why,
    size_t whylen)
{
	char *copy = util_xmalloc(len + 1), *p, *name, *val, *q;
	int rc = 0;

	memcpy(copy, text, len);
	copy[len] = '\0';
	for (p = copy; rc == 0 && *p != '\0';) {
		name = p;
		while (*p != '\0' && *p != ',' && *p != '=')
			p++;
		val = NULL;
		if (*p == '=') {
			*p++ = '\0';
			if (*p == '"') {
				val = ++p;
				if ((q = strchr(p, '"')) == NULL) {
					snprintf(why, whylen, "unterminated quote in options");
					rc = -1;
					break;
				}
				*q = '\0';
				p = q + 1;
			} else {
				val = p;
				while (*p != '\0' && *p != ',')
					p++;
			}
		}
		if (*p == ',')
			*p++ = '\0';
		else if (*p != '\0') {
			snprintf(why, whylen, "bad options");
			rc = -1;
			break;
		}
		if (strcasecmp(name, "cert-authority") == 0 && val == NULL)
			o->cert_authority = 1;
		else if (strcasecmp(name, "namespaces") == 0 && val != NULL) {
			free(o->namespaces);
			o->namespaces = util_xstrdup(val);
		} else if (strcasecmp(name, "valid-after") == 0 && val != NULL) {
			if (sshsig_parse_time(val, &o->valid_after) != 0) {
				snprintf(why, whylen, "bad valid-after time");
				rc = -1;
			}
		} else if (strcasecmp(name, "valid-before") == 0 && val != NULL) {
			if (sshsig_parse_time(val, &o->valid_before) != 0) {
				snprintf(why, whylen, "bad valid-before time");
				rc = -1;
			}
		} else {
			char cut[32], shown[sizeof(cut) * 4];

			util_strlcpy(cut, name, sizeof(cut));
			util_sanitize(cut, shown, sizeof(shown));
			snprintf(why, whylen, "unknown option '%s'", shown);
			rc = -1;
		}
	}
	free(copy);
	return rc;
}

/* A time for messages: ISO 8601 UTC. */
static const char *
sshsig_utc(int64_t secs, char *buf, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%" PRId64, secs);
	return buf;
}

/* A namespaces= pattern list: any match allows, unless a negated pattern ("!x") matches. */
static int
sshsig_ns_allowed(const char *list, const char *ns)
{
	char *copy = util_xstrdup(list), *save = NULL, *pat;
	int allowed = 0, denied = 0;

	for (pat = strtok_r(copy, ",", &save); pat != NULL; pat = strtok_r(NULL, ",", &save)) {
		if (*pat == '!') {
			if (fnmatch(pat + 1, ns, FNM_NOESCAPE) == 0)
				denied = 1;
		} else if (fnmatch(pat, ns, FNM_NOESCAPE) == 0)
			allowed = 1;
	}
	free(copy);
	return allowed && !denied;
}

/* principals [options] keytype base64 [comment]: does this line allow this key? */
static int
sshsig_line(const char *line, const unsigned char *key, size_t keylen,
    const struct sshsig_policy *pol, char *principals, size_t plen, char *why, size_t whylen)
{
	struct sshsig_options o = { 0 };
	const char *p = line, *pr, *opt, *end;
	unsigned char *blob = NULL;
	size_t prlen, bloblen = 0;
	char ta[32], tb[32];
	int rc = SSHSIG_LINE_BAD;

	if (*p == '"') {
		pr = ++p;
		if ((end = strchr(p, '"')) == NULL) {
			snprintf(why, whylen, "unterminated quote in principals");
			return SSHSIG_LINE_BAD;
		}
		p = end + 1;
	} else {
		pr = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		end = p;
	}
	prlen = (size_t)(end - pr);
	if (prlen == 0 || (*p != ' ' && *p != '\t')) {
		snprintf(why, whylen, "no principals");
		return SSHSIG_LINE_BAD;
	}
	p = sshsig_skip_ws(p);
	/* Options come before the key, so a first token that is not a key is options. */
	if (sshsig_line_key(&p, &blob, &bloblen) != 0) {
		opt = p;
		if ((end = sshsig_token_end(p)) == NULL) {
			snprintf(why, whylen, "unterminated quote in options");
			return SSHSIG_LINE_BAD;
		}
		p = sshsig_skip_ws(end);
		if (sshsig_line_key(&p, &blob, &bloblen) != 0) {
			snprintf(why, whylen, "no valid public key");
			return SSHSIG_LINE_BAD;
		}
		if (sshsig_line_options(opt, (size_t)(end - opt), &o, why, whylen) != 0)
			goto out;
	}
	rc = SSHSIG_LINE_OTHER;
	if (bloblen != keylen || memcmp(blob, key, keylen) != 0)
		goto out;
	rc = SSHSIG_LINE_REFUSES;
	if (o.cert_authority)
		snprintf(why, whylen, "is a cert-authority there, and certificates are not "
		    "supported");
	else if (o.namespaces != NULL && !sshsig_ns_allowed(o.namespaces, pol->ns))
		snprintf(why, whylen, "is allowed there only for namespaces \"%.64s\"",
		    o.namespaces);
	else if (o.valid_after != 0 && pol->when < o.valid_after)
		snprintf(why, whylen, "is valid there only from %s; the commit is dated %s",
		    sshsig_utc(o.valid_after, ta, sizeof(ta)), sshsig_utc(pol->when, tb,
		    sizeof(tb)));
	else if (o.valid_before != 0 && pol->when > o.valid_before)
		snprintf(why, whylen, "expired there at %s; the commit is dated %s",
		    sshsig_utc(o.valid_before, ta, sizeof(ta)), sshsig_utc(pol->when, tb,
		    sizeof(tb)));
	else {
		rc = SSHSIG_LINE_ALLOWS;
		if (principals != NULL && plen > 0) {
			if (prlen >= plen)
				prlen = plen - 1;
			memcpy(principals, pr, prlen);
			principals[prlen] = '\0';
		}
	}
out:
	free(o.namespaces);
	free(blob);
	return rc;
}

/*
 * Is key (a public key blob) allowed by the policy's allowed_signers text? On success the
 * line's principals go to signer. A refusal names the key's fingerprint, and why a line
 * that lists the key did not allow it, or the first line that could not be read.
 */
int
sshsig_allowed(const char *what, const struct sshsig_policy *pol, const unsigned char *key,
    size_t keylen, char *signer, size_t signerlen, struct error *e)
{
	const char *p = pol->text, *end = pol->text + pol->len, *nl;
	char fp[64], why[256], note[384] = "", *line;
	size_t n, lineno = 0;
	int rc, found = 0;

	for (; p < end; p = nl + 1) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		line = util_xmalloc(n + 1);
		memcpy(line, p, n);
		line[n] = '\0';
		p = sshsig_skip_ws(line);
		rc = SSHSIG_LINE_OTHER;
		why[0] = '\0';
		if (*p != '\0' && *p != '#')
			rc = sshsig_line(p, key, keylen, pol, signer, signerlen, why, sizeof(why));
		free(line);
		if (rc == SSHSIG_LINE_ALLOWS) {
			found = 1;
			break;
		}
		if (rc == SSHSIG_LINE_REFUSES && note[0] == '\0')
			snprintf(note, sizeof(note), "; the key %s (%s:%zu)", why, pol->file,
			    lineno);
		else if (rc == SSHSIG_LINE_BAD && note[0] == '\0')
			snprintf(note, sizeof(note), "; %s:%zu was ignored: %s", pol->file, lineno,
			    why);
		if (nl == end)
			break;
	}
	if (found)
		return E_OK;
	if (signer != NULL && signerlen > 0)
		signer[0] = '\0';
	knownhosts_fingerprint(key, keylen, fp, sizeof(fp));
	return util_error(e, E_INVAL, "%s is signed by a key not in %s (%s)%s", what, pol->file,
	    fp, note);
}

/* The whole allowed_signers file, NUL-terminated, within SSHSIG_ALLOWED_MAX. */
static int
sshsig_read_file(const char *path, char **text, size_t *len, struct error *e)
{
	FILE *fp;
	size_t n;
	char *buf;

	if ((fp = fopen(path, "re")) == NULL)
		return util_error(e, E_CONFIG, "allowed_signers %s: %s", path, strerror(errno));
	buf = util_xmalloc(SSHSIG_ALLOWED_MAX + 1);
	n = fread(buf, 1, SSHSIG_ALLOWED_MAX + 1, fp);
	if (ferror(fp)) {
		fclose(fp);
		free(buf);
		return util_error(e, E_CONFIG, "allowed_signers %s: read error", path);
	}
	fclose(fp);
	if (n > SSHSIG_ALLOWED_MAX) {
		free(buf);
		return util_error(e, E_CONFIG, "allowed_signers %s: over %d bytes", path,
		    SSHSIG_ALLOWED_MAX);
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return E_OK;
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
	if ((rc = sshsig_read_file(allowed_signers, &text, &pol.len, e)) != E_OK)
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
