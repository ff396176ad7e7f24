/* signers.c: allowed_signers: which key may sign as whom, for which namespaces, and when. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "deploy/deploy.h"

/* What one line of allowed_signers said about the key. */
enum { SIGNERS_LINE_OTHER, SIGNERS_LINE_ALLOWS, SIGNERS_LINE_REFUSES, SIGNERS_LINE_BAD };

/* The options of one line. */
struct signers_options {
	int		 cert_authority;
	char		*namespaces;
	int64_t		 valid_after;	/* 0: none */
	int64_t		 valid_before;
};

static const char *
signers_skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* The end of a token: whitespace outside double quotes; NULL if a quote is left open. */
static const char *
signers_token_end(const char *p)
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
signers_line_key(const char **pp, unsigned char **blob, size_t *bloblen)
{
	const char *p = *pp, *type = p, *b64, *end;
	struct wire r, name;
	size_t tlen, cap;

	*blob = NULL;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	tlen = (size_t)(p - type);
	b64 = signers_skip_ws(p);
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
	if (wire_get_string(&r, &name) != 0 || name.len != tlen ||
	    memcmp(name.p, type, tlen) != 0)
		goto bad;
	*pp = end;
	return 0;
bad:
	free(*blob);
	*blob = NULL;
	return -1;
}

/* OpenSSH's absolute time: YYYYMMDD[HHMM[SS]], UTC with a trailing Z, else local time. */
static int
signers_parse_time(const char *s, int64_t *out)
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
	tm.tm_year = util_digits(s, 4) - 1900;
	tm.tm_mon = util_digits(s + 4, 2) - 1;
	tm.tm_mday = util_digits(s + 6, 2);
	if (n >= 12) {
		tm.tm_hour = util_digits(s + 8, 2);
		tm.tm_min = util_digits(s + 10, 2);
	}
	if (n == 14)
		tm.tm_sec = util_digits(s + 12, 2);
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
signers_line_options(const char *text, size_t len, struct signers_options *o, char *why,
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
			if (signers_parse_time(val, &o->valid_after) != 0) {
				snprintf(why, whylen, "bad valid-after time");
				rc = -1;
			}
		} else if (strcasecmp(name, "valid-before") == 0 && val != NULL) {
			if (signers_parse_time(val, &o->valid_before) != 0) {
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
signers_utc(int64_t secs, char *buf, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%" PRId64, secs);
	return buf;
}

/* A namespaces= pattern list: any match allows, unless a negated pattern ("!x") matches. */
static int
signers_ns_allowed(const char *list, const char *ns)
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
signers_line(const char *line, const unsigned char *key, size_t keylen,
    const struct sshsig_policy *pol, char *principals, size_t plen, char *why, size_t whylen)
{
	struct signers_options o = { 0 };
	const char *p = line, *pr, *opt, *end;
	unsigned char *blob = NULL;
	size_t prlen, bloblen = 0;
	char ta[32], tb[32];
	int rc = SIGNERS_LINE_BAD;

	if (*p == '"') {
		pr = ++p;
		if ((end = strchr(p, '"')) == NULL) {
			snprintf(why, whylen, "unterminated quote in principals");
			return SIGNERS_LINE_BAD;
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
		return SIGNERS_LINE_BAD;
	}
	p = signers_skip_ws(p);
	/* Options come before the key, so a first token that is not a key is options. */
	if (signers_line_key(&p, &blob, &bloblen) != 0) {
		opt = p;
		if ((end = signers_token_end(p)) == NULL) {
			snprintf(why, whylen, "unterminated quote in options");
			return SIGNERS_LINE_BAD;
		}
		p = signers_skip_ws(end);
		if (signers_line_key(&p, &blob, &bloblen) != 0) {
			snprintf(why, whylen, "no valid public key");
			return SIGNERS_LINE_BAD;
		}
		if (signers_line_options(opt, (size_t)(end - opt), &o, why, whylen) != 0)
			goto out;
	}
	rc = SIGNERS_LINE_OTHER;
	if (bloblen != keylen || memcmp(blob, key, keylen) != 0)
		goto out;
	rc = SIGNERS_LINE_REFUSES;
	if (o.cert_authority)
		snprintf(why, whylen, "is a cert-authority there, and certificates are not "
		    "supported");
	else if (o.namespaces != NULL && !signers_ns_allowed(o.namespaces, pol->ns))
		snprintf(why, whylen, "is allowed there only for namespaces \"%.64s\"",
		    o.namespaces);
	else if (o.valid_after != 0 && pol->when < o.valid_after)
		snprintf(why, whylen, "is valid there only from %s; the commit is dated %s",
		    signers_utc(o.valid_after, ta, sizeof(ta)), signers_utc(pol->when, tb,
		    sizeof(tb)));
	else if (o.valid_before != 0 && pol->when > o.valid_before)
		snprintf(why, whylen, "expired there at %s; the commit is dated %s",
		    signers_utc(o.valid_before, ta, sizeof(ta)), signers_utc(pol->when, tb,
		    sizeof(tb)));
	else {
		rc = SIGNERS_LINE_ALLOWS;
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
signers_allowed(const char *what, const struct sshsig_policy *pol, const unsigned char *key,
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
		p = signers_skip_ws(line);
		rc = SIGNERS_LINE_OTHER;
		why[0] = '\0';
		if (*p != '\0' && *p != '#')
			rc = signers_line(p, key, keylen, pol, signer, signerlen, why,
			    sizeof(why));
		free(line);
		if (rc == SIGNERS_LINE_ALLOWS) {
			found = 1;
			break;
		}
		if (rc == SIGNERS_LINE_REFUSES && note[0] == '\0')
			snprintf(note, sizeof(note), "; the key %s (%s:%zu)", why, pol->file,
			    lineno);
		else if (rc == SIGNERS_LINE_BAD && note[0] == '\0')
			snprintf(note, sizeof(note), "; %s:%zu was ignored: %s", pol->file,
			    lineno, why);
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

/* The whole allowed_signers file, NUL-terminated, within SIGNERS_FILE_MAX. */
int
signers_read(const char *path, char **text, size_t *len, struct error *e)
{
	FILE *fp;
	size_t n;
	char *buf;

	if ((fp = fopen(path, "re")) == NULL)
		return util_error(e, E_CONFIG, "allowed_signers %s: %s", path, strerror(errno));
	buf = util_xmalloc(SIGNERS_FILE_MAX + 1);
	n = fread(buf, 1, SIGNERS_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		fclose(fp);
		free(buf);
		return util_error(e, E_CONFIG, "allowed_signers %s: read error", path);
	}
	fclose(fp);
	if (n > SIGNERS_FILE_MAX) {
		free(buf);
		return util_error(e, E_CONFIG, "allowed_signers %s: over %d bytes", path,
		    SIGNERS_FILE_MAX);
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return E_OK;
}
