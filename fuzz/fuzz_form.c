/* fuzz_form.c: libFuzzer target: hook_form_payload, the x-www-form-urlencoded payload= decoder. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
fuzz_form_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The reference: the first '&'-separated field that starts with "payload=", with '+'
 * as a space and %XX (either case) as a byte; a '%' without two hex digits is an error.
 */
static int
fuzz_form_reference(const uint8_t *data, size_t size, unsigned char *out, size_t *outlen)
{
	size_t i = 0, end, n = 0;
	int hi, lo;

	for (;;) {
		if (i > size)
			return E_NOTFOUND;
		for (end = i; end < size && data[end] != '&'; end++)
			;
		if (end - i >= 8 && memcmp(data + i, "payload=", 8) == 0)
			break;
		i = end + 1;
	}
	for (i += 8; i < end; i++) {
		if (data[i] == '+') {
			out[n++] = ' ';
		} else if (data[i] != '%') {
			out[n++] = data[i];
		} else {
			if (end - i < 3 || (hi = fuzz_form_hex(data[i + 1])) < 0 ||
			    (lo = fuzz_form_hex(data[i + 2])) < 0)
				return E_INVAL;
			out[n++] = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
	}
	*outlen = n;
	return E_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *out = NULL, *want;
	size_t outlen = 99, wantlen = 0;
	int rc, wrc;

	want = malloc(size + 1);
	wrc = fuzz_form_reference(data, size, want, &wantlen);
	rc = hook_form_payload(data, size, &out, &outlen);
	if (rc != wrc)
		fuzz_util_die("returned %d, the reference decoder %d", rc, wrc);
	if (rc != E_OK && (out != NULL || outlen != 0))
		fuzz_util_die("failure %d left output behind", rc);
	if (rc == E_OK && (out == NULL || outlen != wantlen ||
	    (outlen > 0 && memcmp(out, want, outlen) != 0)))
		fuzz_util_die("decoded %zu bytes that differ from the reference's %zu", outlen,
		    wantlen);
	free(out);
	free(want);
	return 0;
}
