/* knownhosts.c: check an SSH host key against a pinned known_hosts file (libgit2 does not). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "deploy/deploy.h"

#define KNOWNHOSTS_LINE_MAX	16384
#define KNOWNHOSTS_HASH_MAGIC	"|1|"

/* What the lines for one host said about the key offered. */
struct knownhosts_scan {
	int		 match;		/* a line pins exactly this key */
	int		 revoked;	/* an @revoked line names this key */
	int		 same_type;	/* a line pins another key of the offered type */
	char		 types[256];	/* key types pinned for the host, for the message */
};

/* "host" for port 22, else "[host]:port": the name form known_hosts uses. */
void
knownhosts_name(const char *host, int port, char *buf, size_t len)
{
	if (port <= 0 || port == 22)
		snprintf(buf, len, "%s", host);
	else
		snprintf(buf, len, "[%s]:%d", host, port);
}

/* |1|base64(salt)|base64(HMAC-SHA1(salt, name)), as ssh-keygen -H writes. */
static int
knownhosts_hashed_match(const char *entry, const char *name)
{
	unsigned char salt[64], want[64], mac[EVP_MAX_MD_SIZE];
	char b64[128];
	const char *sep;
	size_t saltlen, wantlen;
	unsigned int maclen = 0;

	entry += strlen(KNOWNHOSTS_HASH_MAGIC);
	if ((sep = strchr(entry, '|')) == NULL || (size_t)(sep - entry) >= sizeof(b64))
		return 0;
	memcpy(b64, entry, (size_t)(sep - entry));
	b64[sep - entry] = '\0';
	if (base64_decode(b64, strlen(b64), NULL, salt, sizeof(salt), &saltlen) != E_OK)
		return 0;
	if (base64_decode(sep + 1, strlen(sep + 1), NULL, want, sizeof(want), &wantlen) !=
	    E_OK || wantlen != 20)
		return 0;
	if (HMAC(EVP_sha1(), salt, (int)saltlen, (const unsigned char *)name, strlen(name),
	    mac, &maclen) == NULL || maclen != 20)
		return 0;
	return memcmp(mac, want, 20) == 0;
}

/* OpenSSH's host patterns: only '*' and '?' are special ("[host]:port" is literal). */
static int
knownhosts_glob(const char *pat, const char *s)
{
	const char *star = NULL, *retry = NULL;

	while (*s != '\0') {
		if (*pat == '*') {
			star = ++pat;
			retry = s;
		} else if (*pat == '?' || *pat == *s) {
			pat++;
			s++;
		} else if (star != NULL) {
			pat = star;
			s = ++retry;
		} else
			return 0;
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/*
 * The hostnames field: comma-separated patterns (* and ?), "!" negates, and a negated match
 * wins over any other, as in OpenSSH's match_hostname. Names compare without case.
 */
int
knownhosts_host_match(const char *field, const char *name)
{
	char pat[1024], lname[1024];
	const char *p = field, *end;
	size_t n, i;
	int neg, found = 0;

	for (i = 0; name[i] != '\0' && i + 1 < sizeof(lname); i++)
		lname[i] = (char)tolower((unsigned char)name[i]);
	lname[i] = '\0';
	if (strncmp(field, KNOWNHOSTS_HASH_MAGIC, strlen(KNOWNHOSTS_HASH_MAGIC)) == 0)
		return knownhosts_hashed_match(field, name);
	while (*p != '\0') {
		end = strchr(p, ',');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		neg = n > 0 && *p == '!';
		if (neg) {
			p++;
			n--;
		}
		if (n > 0 && n < sizeof(pat)) {
			for (i = 0; i < n; i++)
				pat[i] = (char)tolower((unsigned char)p[i]);
			pat[n] = '\0';
			if (knownhosts_glob(pat, lname)) {
				if (neg)
					return 0;
				found = 1;
			}
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return found;
}

/* The key type a raw SSH key blob names (its first string), or "" if malformed. */
static void
knownhosts_blob_type(const unsigned char *blob, size_t len, char *type, size_t tlen)
{
	uint32_t n;

	type[0] = '\0';
	if (len < 4)
		return;
	n = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 |
	    blob[3];
	if (n == 0 || n > len - 4 || n >= tlen)
		return;
	memcpy(type, blob + 4, n);
	type[n] = '\0';
}

/* OpenSSH's fingerprint form: SHA256:<base64 without padding>. */
void
knownhosts_fingerprint(const unsigned char *key, size_t len, char *buf, size_t buflen)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES,
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];

	crypto_hash_sha256(h, key, len);
	sodium_bin2base64(b64, sizeof(b64), h, sizeof(h),
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	snprintf(buf, buflen, "SHA256:%s", b64);
}

static void
knownhosts_add_type(struct knownhosts_scan *sc, const char *type)
{
	size_t len = strlen(sc->types), tl = strlen(type);
	const char *p = sc->types;

	/* Listed once each. */
	while ((p = strstr(p, type)) != NULL) {
		if ((p == sc->types || p[-1] == ' ') && (p[tl] == '\0' || p[tl] == ','))
			return;
		p += tl;
	}
	if (len + tl + 3 < sizeof(sc->types))
		snprintf(sc->types + len, sizeof(sc->types) - len, "%s%s", len ? ", " : "",
		    type);
}

/* One line: [@marker] hostnames keytype base64 [comment]. */
static void
knownhosts_line(char *line, const char *name, const unsigned char *key, size_t keylen,
    const char *keytype, struct knownhosts_scan *sc)
{
	char *f[4], *save = NULL, *tok;
	unsigned char *blob;
	size_t nf = 0, bloblen;
	int revoked = 0;

	for (tok = strtok_r(line, " \t", &save); tok != NULL && nf < 4;
	    tok = strtok_r(NULL, " \t", &save))
		f[nf++] = tok;
	if (nf > 0 && f[0][0] == '@') {
		/* libssh2 knows nothing of certificates: a CA line pins no key here. */
		if (strcmp(f[0], "@revoked") != 0)
			return;
		revoked = 1;
		memmove(f, f + 1, --nf * sizeof(*f));
		if ((tok = strtok_r(NULL, " \t", &save)) != NULL)
			f[nf++] = tok;
	}
	if (nf < 3 || !knownhosts_host_match(f[0], name))
		return;
	bloblen = strlen(f[2]);
	blob = util_xmalloc(bloblen + 1);
	if (base64_decode(f[2], bloblen, NULL, blob, bloblen, &bloblen) != E_OK) {
		free(blob);
		return;
	}
	if (bloblen == keylen && memcmp(blob, key, keylen) == 0) {
		if (revoked)
			sc->revoked = 1;
		else
			sc->match = 1;
	} else if (!revoked) {
		if (strcmp(f[1], keytype) == 0)
			sc->same_type = 1;
		knownhosts_add_type(sc, f[1]);
	}
	free(blob);
}

/*
 * Is key (a raw SSH public key blob, as libssh2 reports it) pinned for host:port in file?
 * E_OK if a line pins it; E_NOTFOUND if the host, or this key type of it, is not in the file;
 * E_INVAL if the key changed or is revoked; E_SYS if the file cannot be read. Every line for
 * the host counts: libssh2 may negotiate any of the host's key types. Never trusts on first use.
 */
int
knownhosts_check(const char *file, const char *host, int port, const unsigned char *key,
    size_t keylen, struct error *e)
{
	struct knownhosts_scan sc;
	char name[600], shown[600], type[64], fp[80];
	char *line;
	FILE *fp_in;

	memset(&sc, 0, sizeof(sc));
	knownhosts_name(host, port, name, sizeof(name));
	snprintf(shown, sizeof(shown), "%s:%d", host, port > 0 ? port : 22);
	knownhosts_blob_type(key, keylen, type, sizeof(type));
	knownhosts_fingerprint(key, keylen, fp, sizeof(fp));
	if ((fp_in = fopen(file, "re")) == NULL)
		return util_error(e, E_SYS, "known_hosts %s: %s", file, strerror(errno));
	line = util_xmalloc(KNOWNHOSTS_LINE_MAX);
	while (fgets(line, KNOWNHOSTS_LINE_MAX, fp_in) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[strspn(line, " \t")] == '#' || line[strspn(line, " \t")] == '\0')
			continue;
		knownhosts_line(line + strspn(line, " \t"), name, key, keylen, type, &sc);
	}
	free(line);
	fclose(fp_in);
	if (sc.revoked)
		return util_error(e, E_INVAL, "host key for %s (%s %s) is REVOKED in %s; "
		    "refusing to connect", shown, type, fp, file);
	if (sc.match)
		return E_OK;
	if (sc.same_type)
		return util_error(e, E_INVAL, "host key for %s has CHANGED (now %s %s); "
		    "refusing to connect. If the change is expected, update %s", shown, type,
		    fp, file);
	if (sc.types[0] != '\0')
		return util_error(e, E_NOTFOUND, "host key for %s (%s %s) is not in %s, which "
		    "pins only %s for it; add every key type of the host (ssh-keyscan)", shown,
		    type, fp, file, sc.types);
	return util_error(e, E_NOTFOUND, "host key for %s is not in %s (offered %s %s); "
	    "pin it, e.g. ssh-keyscan -p %d %s >> %s", shown, file, type, fp,
	    port > 0 ? port : 22, host, file);
}
