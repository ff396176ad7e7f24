/* test_util.c: unit tests for the floor's helpers: numbers, durations, sizes and sanitising. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "lib/lib.h"

static void
t_durations(void **st)
{
	static const struct { const char *in; int rc; int64_t ms; } cases[] = {
		{ "0", E_OK, 0 }, { "500ms", E_OK, 500 }, { "30s", E_OK, 30000 },
		{ "5m", E_OK, 300000 }, { "2h", E_OK, 7200000 }, { "1s", E_OK, 1000 },
		{ "", E_INVAL, 0 }, { "s", E_INVAL, 0 }, { "5", E_INVAL, 0 },
		{ "-5s", E_INVAL, 0 }, { "5 s", E_INVAL, 0 }, { "5d", E_INVAL, 0 },
		{ "1.5s", E_INVAL, 0 }, { "99999999999999999999s", E_INVAL, 0 },
		{ "9223372036854775807h", E_INVAL, 0 }, { "5S", E_INVAL, 0 },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = -1;
		int rc = util_parse_duration(cases[i].in, &ms);

		assert_int_equal(rc, cases[i].rc);
		if (rc == E_OK)
			assert_int_equal(ms, cases[i].ms);
	}
}

/* Numbers from outside: digits only, bounded, nothing around them. */
static void
t_parse_uint(void **st)
{
	static const struct { const char *in; uint64_t max; int rc; uint64_t v; } cases[] = {
		{ "0", 10, E_OK, 0 }, { "7", 10, E_OK, 7 }, { "10", 10, E_OK, 10 },
		{ "007", 10, E_OK, 7 }, { "65535", 65535, E_OK, 65535 },
		{ "18446744073709551615", UINT64_MAX, E_OK, UINT64_MAX },
		{ "18446744073709551616", UINT64_MAX, E_INVAL, 0 },
		{ "99999999999999999999999", UINT64_MAX, E_INVAL, 0 },
		{ "11", 10, E_INVAL, 0 }, { "65536", 65535, E_INVAL, 0 },
		{ "", 10, E_INVAL, 0 }, { " 7", 10, E_INVAL, 0 }, { "7 ", 10, E_INVAL, 0 },
		{ "+7", 10, E_INVAL, 0 }, { "-1", UINT64_MAX, E_INVAL, 0 },
		{ "7a", 10, E_INVAL, 0 }, { "0x7", 100, E_INVAL, 0 }, { "\xd5", 10, E_INVAL, 0 },
	};
	size_t i;

	(void)st;
	assert_int_equal(util_parse_uint(NULL, 10, &(uint64_t){ 0 }), E_INVAL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = util_parse_uint(cases[i].in, cases[i].max, &v);

		if (rc != cases[i].rc)
			fail_msg("'%s': got %d, want %d", cases[i].in, rc, cases[i].rc);
		assert_int_equal(v, rc == E_OK ? cases[i].v : 12345);
	}
}

static void
t_sizes(void **st)
{
	static const struct { const char *in; int rc; int64_t b; } cases[] = {
		{ "0", E_OK, 0 }, { "512", E_OK, 512 }, { "16KiB", E_OK, 16384 },
		{ "25MiB", E_OK, 25 * 1024 * 1024 }, { "1GiB", E_OK, 1073741824 },
		{ "10B", E_OK, 10 }, { "1KB", E_INVAL, 0 }, { "MiB", E_INVAL, 0 },
		{ "-1KiB", E_INVAL, 0 }, { "1 MiB", E_INVAL, 0 },
		{ "9223372036854775807GiB", E_INVAL, 0 },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t b = -1;
		int rc = util_parse_size(cases[i].in, &b);

		assert_int_equal(rc, cases[i].rc);
		if (rc == E_OK)
			assert_int_equal(b, cases[i].b);
	}
}

static void
t_format_duration(void **st)
{
	char buf[32];

	(void)st;
	util_format_duration(250, buf, sizeof(buf));
	assert_string_equal(buf, "250ms");
	util_format_duration(1500, buf, sizeof(buf));
	assert_string_equal(buf, "1.5s");
	util_format_duration(125000, buf, sizeof(buf));
	assert_string_equal(buf, "2m05s");
	util_format_duration(3 * 3600000 + 60000, buf, sizeof(buf));
	assert_string_equal(buf, "3h01m");
	assert_int_equal(util_format_duration(125000, buf, 3), E_INVAL);
}

static void
t_sanitize(void **st)
{
	char out[64];

	(void)st;
	util_sanitize("plain text", out, sizeof(out));
	assert_string_equal(out, "plain text");
	util_sanitize("evil\nINFO forged line\r", out, sizeof(out));
	assert_string_equal(out, "evil\\x0aINFO forged line\\x0d");
	util_sanitize("back\\slash \x1b[31m", out, sizeof(out));
	assert_string_equal(out, "back\\x5cslash \\x1b[31m");
	util_sanitize("abcdefgh", out, 5);
	assert_string_equal(out, "abcd");
	util_sanitize("\x01\x02", out, 6);
	assert_string_equal(out, "\\x01");
}

static void
t_strlcpy(void **st)
{
	char buf[4];

	(void)st;
	assert_int_equal(util_strlcpy(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(util_strlcpy(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_durations),
		cmocka_unit_test(t_parse_uint),
		cmocka_unit_test(t_sizes),
		cmocka_unit_test(t_format_duration),
		cmocka_unit_test(t_sanitize),
		cmocka_unit_test(t_strlcpy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
