/* base64.c: the one strict base64 decoder for bytes deployd did not write itself. */
#include <string.h>

#include "lib/lib.h"

/*
 * Why not sodium_base642bin: libsodium 1.0.18 (Debian 12) maps every byte from 0x80 to 0xff
 * to '/' and treats a NUL as one of the characters to ignore, so one signature had 130
 * spellings. Here a string decodes only if it is the canonical RFC 4648 form of its bytes:
 * the standard alphabet, '=' padding exactly where the length needs it, and zero bits in the
 * unused low bits of the last character. Characters are classified without branches or
 * table lookups, because one of the inputs (a "whsec_" key) is a secret.
 */

/* -1 (all bits) when lo <= c <= hi, else 0; c, lo and hi are 0..255. */
static int
base64_in(int c, int lo, int hi)
{
	return ((lo - 1 - c) & (c - hi - 1)) >> 8;
}

/* The 6-bit value of a character of the standard alphabet, or -1. */
static int
base64_value(unsigned char ch)
{
	int c = ch, v = -1;

	v += base64_in(c, 'A', 'Z') & (c - 'A' + 1);
	v += base64_in(c, 'a', 'z') & (c - 'a' + 26 + 1);
	v += base64_in(c, '0', '9') & (c - '0' + 52 + 1);
	v += base64_in(c, '+', '+') & (62 + 1);
	v += base64_in(c, '/', '/') & (63 + 1);
	return v;
}

/* Characters of `ignore` (line breaks in an armored block) may stand anywhere; NUL never. */
static int
base64_ignored(unsigned char c, const char *ignore)
{
	return ignore != NULL && c != '\0' && strchr(ignore, c) != NULL;
}

/*
 * Decode in[0..inlen) into out (cap bytes). Returns E_OK with *outlen set, or E_INVAL for
 * anything that is not canonical base64, or that does not fit. The empty string is the
 * encoding of zero bytes; callers check the length they expect.
 */
int
base64_decode(const char *in, size_t inlen, const char *ignore, unsigned char *out,
    size_t cap, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)in;
	unsigned long acc = 0;
	size_t i, nchar = 0, npad = 0, o = 0;
	int bad = 0, v;

	*outlen = 0;
	for (i = 0; i < inlen; i++) {
		if (base64_ignored(p[i], ignore))
			continue;
		if (p[i] == '=') {
			npad++;
			continue;
		}
		if (npad > 0)
			return E_INVAL;		/* data after padding */
		v = base64_value(p[i]);
		bad |= v;			/* negative once any character was not base64 */
		acc = (acc << 6 | ((unsigned)v & 63u)) & 0xffffffu;
		if (++nchar % 4 == 0) {
			if (cap - o < 3)
				return E_INVAL;
			out[o++] = (unsigned char)(acc >> 16);
			out[o++] = (unsigned char)(acc >> 8);
			out[o++] = (unsigned char)acc;
		}
	}
	if (bad < 0)
		return E_INVAL;
	switch (nchar % 4) {
	case 0:
		if (npad != 0)
			return E_INVAL;
		break;
	case 2:		/* one byte: 12 bits given, the low 4 must be zero */
		if (npad != 2 || (acc & 0xf) != 0 || cap - o < 1)
			return E_INVAL;
		out[o++] = (unsigned char)(acc >> 4);
		break;
	case 3:		/* two bytes: 18 bits given, the low 2 must be zero */
		if (npad != 1 || (acc & 0x3) != 0 || cap - o < 2)
			return E_INVAL;
		out[o++] = (unsigned char)(acc >> 10);
		out[o++] = (unsigned char)(acc >> 2);
		break;
	default:	/* one character cannot hold a byte */
		return E_INVAL;
	}
	*outlen = o;
	return E_OK;
}
