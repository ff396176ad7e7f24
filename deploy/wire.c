/* wire.c: reading the SSH wire format (RFC 4251 strings and mpints) from untrusted bytes. */
#include <string.h>

#include "deploy/deploy.h"

int
wire_get_u32(struct wire *r, uint32_t *v)
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
int
wire_get_string(struct wire *r, struct wire *out)
{
	struct wire save = *r;
	uint32_t n;

	if (wire_get_u32(r, &n) != 0 || n > r->len) {
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
int
wire_get_mpint(struct wire *r, size_t maxlen, struct wire *out)
{
	struct wire s;

	if (wire_get_string(r, &s) != 0 || s.len == 0)
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

int
wire_is(const struct wire *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len == n && memcmp(s->p, lit, n) == 0;
}

/* Untrusted bytes made safe to quote in a one-line message. */
void
wire_show(const struct wire *s, char *out, size_t outlen)
{
	size_t i, n = s->len < WIRE_SHOW_MAX ? s->len : WIRE_SHOW_MAX;
	char raw[WIRE_SHOW_MAX + 4];

	for (i = 0; i < n; i++)
		raw[i] = s->p[i] >= 0x20 && s->p[i] < 0x7f ? (char)s->p[i] : '?';
	if (n < s->len) {
		memcpy(raw + n, "...", 3);
		n += 3;
	}
	raw[n] = '\0';
	util_sanitize(raw, out, outlen);
}
