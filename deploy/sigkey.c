/* sigkey.c: one row per SSH key type, and the signature check each one needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define SIGKEY_CERT_SUFFIX	"-cert-v01@openssh.com"
#define SIGKEY_RSA_MIN_BITS	2048
#define SIGKEY_RSA_MAX_BYTES	(16384 / 8)	/* OpenSSH's largest bignum */
#define SIGKEY_RSA_E_MAX_BYTES	8		/* a huge exponent only slows verifying */

/* A key type's check: SIGKEY_GOOD, SIGKEY_BAD, or SIGKEY_MALFORMED with why set. */
typedef int (*sigkey_verify_fn)(const struct sigkey *, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen);

/* One row per key type a signature may name. */
struct sigkey {
	const char		*name;
	const char		*curve;		/* ECDSA: the curve named in the key */
	const char		*group;		/* ECDSA: OpenSSL's name for it */
	size_t			 field;		/* ECDSA: bytes of a coordinate */
	const EVP_MD		*(*md)(void);	/* ECDSA: the digest the curve uses */
	sigkey_verify_fn	 verify;
	const char		*refuse;	/* a type known but not verified, and why */
};

/* The RSA signature types; "ssh-rsa" (SHA-1) is not one: OpenSSH refuses it for SSHSIG too. */
struct sigkey_rsa_alg {
	const char	*name;
	const EVP_MD	*(*md)(void);
};

static const struct sigkey_rsa_alg sigkey_rsa_algs[] = {
	{ "rsa-sha2-256", EVP_sha256 },
	{ "rsa-sha2-512", EVP_sha512 },
};

static int sigkey_ed25519(const struct sigkey *, struct wire, struct wire, struct wire,
    const unsigned char *, size_t, char *, size_t);
static int sigkey_ecdsa(const struct sigkey *, struct wire, struct wire, struct wire,
    const unsigned char *, size_t, char *, size_t);
static int sigkey_rsa(const struct sigkey *, struct wire, struct wire, struct wire,
    const unsigned char *, size_t, char *, size_t);

static const struct sigkey sigkey_types[] = {
	{ "ssh-ed25519", NULL, NULL, 0, NULL, sigkey_ed25519, NULL },
	{ "ecdsa-sha2-nistp256", "nistp256", "prime256v1", 32, EVP_sha256,
	    sigkey_ecdsa, NULL },
	{ "ecdsa-sha2-nistp384", "nistp384", "secp384r1", 48, EVP_sha384,
	    sigkey_ecdsa, NULL },
	{ "ecdsa-sha2-nistp521", "nistp521", "secp521r1", 66, EVP_sha512,
	    sigkey_ecdsa, NULL },
	{ "ssh-rsa", NULL, NULL, 0, NULL, sigkey_rsa, NULL },
	{ "sk-ssh-ed25519@openssh.com", NULL, NULL, 0, NULL, NULL,
	    "security-key (FIDO) signatures are not supported" },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", NULL, NULL, 0, NULL, NULL,
	    "security-key (FIDO) signatures are not supported" },
	{ "ssh-dss", NULL, NULL, 0, NULL, NULL, "DSA keys are not supported" },
};

static const struct sigkey *
sigkey_lookup(const struct wire *name)
{
	size_t i;

	for (i = 0; i < sizeof(sigkey_types) / sizeof(sigkey_types[0]); i++)
		if (wire_is(name, sigkey_types[i].name))
			return &sigkey_types[i];
	return NULL;
}

/* ---- the three kinds of key ---- */

static int
sigkey_ed25519(const struct sigkey *kt, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen)
{
	struct wire name, pk;

	if (wire_get_string(&key, &name) != 0 || wire_get_string(&key, &pk) != 0 ||
	    key.len != 0 || pk.len != crypto_sign_PUBLICKEYBYTES) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SIGKEY_MALFORMED;
	}
	if (!wire_is(&sigtype, kt->name) || sig.len != crypto_sign_BYTES)
		return SIGKEY_BAD;
	if (crypto_sign_verify_detached(sig.p, data, len, pk.p) != 0)
		return SIGKEY_BAD;
	return SIGKEY_GOOD;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/*
 * A public key from OpenSSL parameters. An EC point is checked to be on its curve; RSA's
 * check costs a gcd over many primes and adds nothing here: the key is listed by the admin.
 */
static EVP_PKEY *
sigkey_pkey(const char *type, OSSL_PARAM_BLD *bld, int check)
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
sigkey_evp_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *sig, size_t siglen,
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
sigkey_ecdsa(const struct sigkey *kt, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen)
{
	struct wire name, curve, q, r, s;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	unsigned char *der = NULL, *dp;
	int derlen, rc = SIGKEY_BAD;

	if (wire_get_string(&key, &name) != 0 || wire_get_string(&key, &curve) != 0 ||
	    wire_get_string(&key, &q) != 0 || key.len != 0 ||
	    !wire_is(&curve, kt->curve) || q.len != 1 + 2 * kt->field || q.p[0] != 0x04) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SIGKEY_MALFORMED;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, kt->group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q.p, q.len) != 1 ||
	    (pkey = sigkey_pkey("EC", bld, 1)) == NULL) {
		snprintf(why, whylen, "bad %s public key (not a point of the curve)", kt->name);
		rc = SIGKEY_MALFORMED;
		goto out;
	}
	/* The signature blob is mpint r, mpint s; OpenSSL wants DER. */
	if (!wire_is(&sigtype, kt->name) || wire_get_mpint(&sig, kt->field, &r) != 0 ||
	    wire_get_mpint(&sig, kt->field, &s) != 0 || sig.len != 0)
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
	if (sigkey_evp_verify(pkey, kt->md(), der, (size_t)derlen, data, len))
		rc = SIGKEY_GOOD;
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
sigkey_rsa(const struct sigkey *kt, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen)
{
	const struct sigkey_rsa_alg *alg = NULL;
	struct wire name, e, n;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *be = NULL, *bn = NULL;
	unsigned char *padded = NULL;
	size_t i, modlen;
	int bits, rc = SIGKEY_MALFORMED;

	if (wire_get_string(&key, &name) != 0 ||
	    wire_get_mpint(&key, SIGKEY_RSA_E_MAX_BYTES, &e) != 0 ||
	    wire_get_mpint(&key, SIGKEY_RSA_MAX_BYTES, &n) != 0 || key.len != 0) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		return SIGKEY_MALFORMED;
	}
	if ((be = BN_bin2bn(e.p, (int)e.len, NULL)) == NULL ||
	    (bn = BN_bin2bn(n.p, (int)n.len, NULL)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if ((bits = BN_num_bits(bn)) < SIGKEY_RSA_MIN_BITS) {
		snprintf(why, whylen, "RSA key of %d bits is too small (%d minimum)", bits,
		    SIGKEY_RSA_MIN_BITS);
		goto out;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1 ||
	    (pkey = sigkey_pkey("RSA", bld, 0)) == NULL) {
		snprintf(why, whylen, "bad %s public key", kt->name);
		goto out;
	}
	rc = SIGKEY_BAD;
	for (i = 0; i < sizeof(sigkey_rsa_algs) / sizeof(sigkey_rsa_algs[0]); i++)
		if (wire_is(&sigtype, sigkey_rsa_algs[i].name))
			alg = &sigkey_rsa_algs[i];
	if (alg == NULL) {
		if (wire_is(&sigtype, "ssh-rsa")) {
			snprintf(why, whylen, "RSA signatures with SHA-1 (ssh-rsa) are refused");
			rc = SIGKEY_MALFORMED;
		}
		goto out;
	}
	/* Like OpenSSH, accept a signature shorter than the modulus by padding it. */
	modlen = (size_t)(bits + 7) / 8;
	if (sig.len == 0 || sig.len > modlen)
		goto out;
	padded = util_xcalloc(1, modlen);
	memcpy(padded + (modlen - sig.len), sig.p, sig.len);
	if (sigkey_evp_verify(pkey, alg->md(), padded, modlen, data, len))
		rc = SIGKEY_GOOD;
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
sigkey_ecdsa(const struct sigkey *kt, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s signatures need OpenSSL 3", kt->name);
	return SIGKEY_MALFORMED;
}

static int
sigkey_rsa(const struct sigkey *kt, struct wire key, struct wire sigtype,
    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s signatures need OpenSSL 3", kt->name);
	return SIGKEY_MALFORMED;
}
#endif

/* The key type named in a public key blob, or a message saying why it will not do. */
const struct sigkey *
sigkey_find(const char *what, struct wire key, struct error *e)
{
	const struct sigkey *kt;
	struct wire name;
	char shown[WIRE_SHOW_MAX * 4 + 8];
	size_t sl = strlen(SIGKEY_CERT_SUFFIX);

	if (wire_get_string(&key, &name) != 0) {
		util_error(e, E_INVAL, "%s: malformed SSH signature: bad public key", what);
		return NULL;
	}
	wire_show(&name, shown, sizeof(shown));
	if (name.len > sl && memcmp(name.p + name.len - sl, SIGKEY_CERT_SUFFIX, sl) == 0) {
		util_error(e, E_INVAL, "%s is signed with an SSH certificate (%s); certificates "
		    "are not supported, list the key itself", what, shown);
		return NULL;
	}
	if ((kt = sigkey_lookup(&name)) == NULL) {
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
 * Does sig (its type, then its bytes) by key hold over data? SIGKEY_GOOD, SIGKEY_BAD, or
 * SIGKEY_MALFORMED with why set. OpenSSL's error queue is left empty for the next caller.
 */
int
sigkey_verify(const struct sigkey *kt, struct wire key, struct wire sigtype, struct wire sig,
    const unsigned char *data, size_t len, char *why, size_t whylen)
{
	int v;

	v = kt->verify(kt, key, sigtype, sig, data, len, why, whylen);
	ERR_clear_error();
	return v;
}
