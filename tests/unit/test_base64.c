/* test_base64.c: unit tests for the strict base64 decoder: every byte at every position, padding, lengths. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "lib/lib.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* libsodium's encoder is right; only its decoder is lenient. */
static void
encode(const unsigned char *bin, size_t n, char *out, size_t outlen)
{
	assert_true(outlen >= sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL));
	sodium_bin2base64(out, outlen, bin, n, sodium_base64_VARIANT_ORIGINAL);
}

static int
decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
	return base64_decode(s, n, NULL, out, cap, outlen);
}

/* Every length from 0 to 100, random bytes: decode(encode(x)) == x. */
static void
t_round_trip(void **st)
{
	unsigned char bin[100], out[100];
	char b64[160];
	size_t n, outlen;

	(void)st;
	for (n = 0; n <= sizeof(bin); n++) {
		randombytes_buf(bin, n);
		encode(bin, n, b64, sizeof(b64));
		assert_int_equal(decode(b64, strlen(b64), out, sizeof(out), &outlen), E_OK);
		assert_int_equal(outlen, n);
		assert_memory_equal(out, bin, n);
	}
}

/*
 * The property that matters for signatures: a string that decodes is the one canonical
 * spelling of its bytes. Every byte value (1..255, and NUL inside the length) at every
 * position of valid strings of each padding shape either fails, or decodes to bytes whose
 * encoding is that same string; and a byte outside the alphabet always fails.
 */
static void
t_every_byte_every_position(void **st)
{
	static const size_t lens[] = { 1, 2, 3, 31, 32, 33 };
	unsigned char bin[40], out[40];
	char b64[64], mutated[64], again[64];
	size_t li, pos, len, outlen, accepted = 0, refused = 0;
	int b;

	(void)st;
	for (li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		randombytes_buf(bin, lens[li]);
		encode(bin, lens[li], b64, sizeof(b64));
		len = strlen(b64);
		for (pos = 0; pos < len; pos++) {
			for (b = 0; b < 256; b++) {
				if (b == (unsigned char)b64[pos])
					continue;
				memcpy(mutated, b64, len + 1);
				mutated[pos] = (char)b;
				if (decode(mutated, len, out, sizeof(out), &outlen) != E_OK) {
					refused++;
					continue;
				}
				/* only the alphabet, or '=' that makes a shorter canonical string */
				assert_true(b != 0 && (strchr(alphabet, b) != NULL || b == '='));
				encode(out, outlen, again, sizeof(again));
				assert_int_equal(strlen(again), len);
				assert_memory_equal(again, mutated, len);
				accepted++;
			}
		}
	}
	/* both outcomes happened: the loop tested something */
	assert_true(accepted > 0);
	assert_true(refused > 0);
}

/* The bytes libsodium 1.0.18 took for '/' (0x80..0xff), in the GitLab signature. */
static void
t_high_bytes(void **st)
{
	unsigned char out[64];
	char s[] = "AAAA/AAA";
	size_t outlen;
	int b;

	(void)st;
	assert_int_equal(decode(s, 8, out, sizeof(out), &outlen), E_OK);
	for (b = 0x80; b <= 0xff; b++) {
		s[4] = (char)b;
		assert_int_equal(decode(s, 8, out, sizeof(out), &outlen), E_INVAL);
	}
}

static void
t_padding(void **st)
{
	static const struct { const char *in; int rc; const char *out; } cases[] = {
		{ "Zg==", E_OK, "f" }, { "Zm8=", E_OK, "fo" }, { "Zm9v", E_OK, "foo" },
		{ "Zm9vYg==", E_OK, "foob" }, { "Zm9vYmE=", E_OK, "fooba" },
		{ "Zm9vYmFy", E_OK, "foobar" },
		{ "Zg=", E_INVAL, NULL }, { "Zg", E_INVAL, NULL }, { "Zg===", E_INVAL, NULL },
		{ "Zm8", E_INVAL, NULL }, { "Zm8==", E_INVAL, NULL }, { "Zm9v=", E_INVAL, NULL },
		{ "Zm9v====", E_INVAL, NULL }, { "=", E_INVAL, NULL }, { "==", E_INVAL, NULL },
		{ "====", E_INVAL, NULL }, { "Z===", E_INVAL, NULL }, { "Z", E_INVAL, NULL },
		{ "Zg==Zg==", E_INVAL, NULL }, { "Zg=a", E_INVAL, NULL }, { "Z=g=", E_INVAL, NULL },
		/* unused low bits set: non-canonical spellings of "f" and "fo" */
		{ "Zh==", E_INVAL, NULL }, { "Zv==", E_INVAL, NULL }, { "Zm9=", E_INVAL, NULL },
		{ "Zm/=", E_INVAL, NULL },
		/* the URL-safe alphabet is another format */
		{ "-_-_", E_INVAL, NULL },
	};
	unsigned char out[16];
	size_t i, outlen;
	int rc;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		outlen = 99;
		rc = decode(cases[i].in, strlen(cases[i].in), out, sizeof(out), &outlen);
		if (rc != cases[i].rc)
			fail_msg("'%s': got %d, want %d", cases[i].in, rc, cases[i].rc);
		if (rc == E_OK) {
			assert_int_equal(outlen, strlen(cases[i].out));
			assert_memory_equal(out, cases[i].out, outlen);
		} else {
			assert_int_equal(outlen, 0);
		}
	}
}

static void
t_empty(void **st)
{
	unsigned char out[4];
	size_t outlen = 99;

	(void)st;
	assert_int_equal(decode("", 0, out, sizeof(out), &outlen), E_OK);
	assert_int_equal(outlen, 0);
	assert_int_equal(decode("", 0, NULL, 0, &outlen), E_OK);
	/* only characters to ignore: still zero bytes, nothing else */
	assert_int_equal(base64_decode("\n\n", 2, "\n", out, sizeof(out), &outlen), E_OK);
	assert_int_equal(outlen, 0);
}

/* Output that would not fit is refused, at every length around the limit; nothing overruns. */
static void
t_overlong(void **st)
{
	unsigned char bin[64], *out;
	char b64[128], *huge;
	size_t n, cap, outlen;

	(void)st;
	for (n = 1; n <= 40; n++) {
		randombytes_buf(bin, n);
		encode(bin, n, b64, sizeof(b64));
		for (cap = 0; cap <= n + 1; cap++) {
			/* an exact-size heap buffer, so ASan sees any write past it */
			out = malloc(cap > 0 ? cap : 1);
			assert_int_equal(decode(b64, strlen(b64), out, cap, &outlen),
			    cap >= n ? E_OK : E_INVAL);
			if (cap >= n)
				assert_memory_equal(out, bin, n);
			free(out);
		}
	}
	/* a megabyte of valid base64 into a small buffer */
	huge = malloc(1 << 20);
	memset(huge, 'A', 1 << 20);
	out = malloc(32);
	assert_int_equal(decode(huge, 1 << 20, out, 32, &outlen), E_INVAL);
	free(out);
	free(huge);
}

/* Armored text: the given characters are skipped wherever they are; a NUL never is. */
static void
t_ignore(void **st)
{
	static const char wrapped[] = "Zm9v\nYmFy\r\nYg\n==\n";
	unsigned char out[16];
	size_t outlen;

	(void)st;
	assert_int_equal(base64_decode(wrapped, strlen(wrapped), " \t\r\n", out, sizeof(out),
	    &outlen), E_OK);
	assert_int_equal(outlen, 7);
	assert_memory_equal(out, "foobarb", 7);
	assert_int_equal(decode(wrapped, strlen(wrapped), out, sizeof(out), &outlen), E_INVAL);
	/* a NUL inside the length: libsodium skipped it, as strchr(ignore, 0) matches */
	assert_int_equal(base64_decode("Zm9v\0Ymfy", 9, " \t\r\n", out, sizeof(out), &outlen),
	    E_INVAL);
	assert_int_equal(base64_decode("Zm9v YmFy", 9, "\n", out, sizeof(out), &outlen),
	    E_INVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_round_trip),
		cmocka_unit_test(t_every_byte_every_position),
		cmocka_unit_test(t_high_bytes),
		cmocka_unit_test(t_padding),
		cmocka_unit_test(t_empty),
		cmocka_unit_test(t_overlong),
		cmocka_unit_test(t_ignore),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
