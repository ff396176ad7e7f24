/* test_cidr.c: unit tests for address ranges: parsing, matching, mapped addresses and X-Forwarded-For. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/lib.h"

/* Parse one range, failing the test with the input when it is refused. */
static struct cidr
parse_ok(const char *s)
{
	struct cidr c;
	struct error e;

	if (cidr_parse(s, &c, &e) != E_OK)
		fail_msg("'%s' refused: %s", s, e.msg);
	return c;
}

static int
in(const char *range, const char *addr)
{
	struct cidr c = parse_ok(range);
	unsigned char a[CIDR_ADDR_LEN];

	if (cidr_addr(addr, a) != E_OK)
		fail_msg("address '%s' refused", addr);
	return cidr_match(&c, a);
}

static void
t_parse_good(void **st)
{
	static const struct { const char *in; unsigned bits; const char *net; } cases[] = {
		{ "140.82.112.0/20", 96 + 20, "140.82.112.0" },
		{ "10.0.0.0/8", 96 + 8, "10.0.0.0" },
		{ "0.0.0.0/0", 96, "0.0.0.0" },
		{ "192.0.2.7/32", 128, "192.0.2.7" },
		{ "192.0.2.7", 128, "192.0.2.7" },		/* a bare address is a /32 */
		{ "2a0a:a440::/29", 29, "2a0a:a440::" },
		{ "::/0", 0, "::" },
		{ "::1", 128, "::1" },			/* a bare address is a /128 */
		{ "2001:db8::1/128", 128, "2001:db8::1" },
		{ "fe80::/10", 10, "fe80::" },
		{ "::ffff:10.0.0.0/104", 104, "10.0.0.0" },	/* a mapped range is IPv4 */
	};
	char text[64];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c = parse_ok(cases[i].in);

		if (c.bits != cases[i].bits)
			fail_msg("'%s': %u bits, want %u", cases[i].in, c.bits, cases[i].bits);
		cidr_addr_text(c.addr, text, sizeof(text));
		assert_string_equal(text, cases[i].net);
	}
}

static void
t_parse_bad(void **st)
{
	static const struct { const char *in; const char *msg; } cases[] = {
		{ "", "empty" },
		{ "abc", "not an IPv4 or IPv6" },
		{ "300.1.1.1", "not an IPv4 or IPv6" },
		{ "10.0.0.0/33", "0 to 32" },
		{ "fe80::/129", "0 to 128" },
		{ "10.0.0.0/", "0 to 32" },
		{ "/8", "not an IPv4" },
		{ "10.0.0.0/8/8", "0 to 32" },
		{ "10.0.0.0/-1", "0 to 32" },
		{ "10.0.0.0/+8", "0 to 32" },
		{ "10.0.0.0/ 8", "0 to 32" },
		{ "10.0.0.0/0x8", "0 to 32" },
		{ "10.0.0.0/99999999999999999999999", "0 to 32" },
		{ "10.1/16", "not an IPv4" },		/* no inet_aton shorthand */
		{ "010.0.0.0/8", "not an IPv4" },	/* no octal */
		{ "0x0a.0.0.0/8", "not an IPv4" },
		{ " 10.0.0.0/8", "not an IPv4" },
		{ "10.0.0.0 /8", "not an IPv4" },
		{ "fe80::1%eth0", "not an IPv4" },	/* no zones */
		{ "[::1]", "not an IPv4" },
		{ "10.0.0.1/24", "the range is 10.0.0.0/24" },	/* host bits set */
		{ "2001:db8::1/32", "the range is 2001:db8::/32" },
		{ "1.2.3.4/0", "the range is 0.0.0.0/0" },
		{ "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff:1/64", "not an IPv4" },
		{ "1234567890123456789012345678901234567890123456789/8", "not an IPv4" },
	};
	struct cidr c;
	struct error e;
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&e, 0, sizeof(e));
		if (cidr_parse(cases[i].in, &c, &e) != E_INVAL)
			fail_msg("'%s' accepted", cases[i].in);
		if (strstr(e.msg, cases[i].msg) == NULL)
			fail_msg("'%s': message '%s' lacks '%s'", cases[i].in, e.msg, cases[i].msg);
	}
	assert_int_equal(cidr_parse(NULL, &c, &e), E_INVAL);
}

static void
t_match_v4(void **st)
{
	(void)st;
	assert_true(in("140.82.112.0/20", "140.82.112.0"));
	assert_true(in("140.82.112.0/20", "140.82.127.255"));
	assert_false(in("140.82.112.0/20", "140.82.128.0"));
	assert_false(in("140.82.112.0/20", "140.82.111.255"));
	assert_true(in("0.0.0.0/0", "1.2.3.4"));
	assert_true(in("0.0.0.0/0", "255.255.255.255"));
	assert_false(in("0.0.0.0/0", "::1"));		/* all of IPv4, not IPv6 */
	assert_false(in("0.0.0.0/0", "2001:db8::1"));
	assert_true(in("127.0.0.1", "127.0.0.1"));
	assert_false(in("127.0.0.1", "127.0.0.2"));
	assert_true(in("127.0.0.0/31", "127.0.0.1"));
	assert_false(in("127.0.0.0/31", "127.0.0.2"));
	assert_true(in("10.0.0.0/8", "10.255.0.1"));
	assert_false(in("10.0.0.0/8", "11.0.0.1"));
}

static void
t_match_v6(void **st)
{
	(void)st;
	assert_true(in("2a0a:a440::/29", "2a0a:a440::1"));
	assert_true(in("2a0a:a440::/29", "2a0a:a447:ffff::1"));
	assert_false(in("2a0a:a440::/29", "2a0a:a448::"));
	assert_true(in("::1/128", "::1"));
	assert_false(in("::1/128", "::2"));
	assert_false(in("::1", "127.0.0.1"));
	assert_true(in("::/0", "2001:db8::1"));
	/* ::/0 is every address: IPv4 clients are ::ffff:a.b.c.d to an IPv6 socket. */
	assert_true(in("::/0", "1.2.3.4"));
	assert_true(in("2001:db8::/127", "2001:db8::1"));
	assert_false(in("2001:db8::/127", "2001:db8::2"));
}

/* What an IPv6 socket reports for an IPv4 client must match IPv4 ranges. */
static void
t_mapped(void **st)
{
	unsigned char a[CIDR_ADDR_LEN], b[CIDR_ADDR_LEN];
	char text[64];

	(void)st;
	assert_true(in("140.82.112.0/20", "::ffff:140.82.112.9"));
	assert_true(in("140.82.112.0/20", "::ffff:8c52:7009"));
	assert_false(in("140.82.112.0/20", "::ffff:140.82.128.9"));
	assert_true(in("127.0.0.1", "::ffff:127.0.0.1"));
	assert_true(in("::ffff:127.0.0.1", "127.0.0.1"));
	/* The IPv4-compatible form ::a.b.c.d is another address, not an IPv4 client. */
	assert_false(in("127.0.0.1", "::127.0.0.1"));
	assert_int_equal(cidr_addr("::ffff:1.2.3.4", a), E_OK);
	assert_int_equal(cidr_addr("1.2.3.4", b), E_OK);
	assert_memory_equal(a, b, CIDR_ADDR_LEN);
	cidr_addr_text(a, text, sizeof(text));
	assert_string_equal(text, "1.2.3.4");
	cidr_addr_text((const unsigned char *)"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", text,
	    sizeof(text));
	assert_string_equal(text, "2001:db8::1");
}

static void
t_overlap_and_text(void **st)
{
	static const struct { const char *a, *b; int overlap; } cases[] = {
		{ "10.0.0.0/8", "10.1.0.0/16", 1 }, { "10.1.0.0/16", "10.0.0.0/8", 1 },
		{ "10.0.0.0/8", "11.0.0.0/8", 0 }, { "0.0.0.0/0", "192.0.2.1", 1 },
		{ "::/0", "10.0.0.0/8", 1 }, { "0.0.0.0/0", "2001:db8::/32", 0 },
		{ "2001:db8::/32", "2001:db8:1::/48", 1 }, { "2001:db8::/32", "2001:db9::/32", 0 },
		{ "127.0.0.1", "127.0.0.1", 1 }, { "127.0.0.1", "127.0.0.2", 0 },
	};
	static const char *const texts[] = {
		"10.0.0.0/8", "0.0.0.0/0", "192.0.2.1/32", "2001:db8::/32", "::/0", "::1/128",
	};
	char buf[64];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr a = parse_ok(cases[i].a), b = parse_ok(cases[i].b);

		if (cidr_overlap(&a, &b) != cases[i].overlap)
			fail_msg("%s and %s: overlap %d", cases[i].a, cases[i].b, !cases[i].overlap);
	}
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct cidr c = parse_ok(texts[i]);

		cidr_text(&c, buf, sizeof(buf));
		assert_string_equal(buf, texts[i]);
	}
}

static void
t_list(void **st)
{
	static const char *const ranges[] = { "140.82.112.0/20", "2a0a:a440::/29", "::1" };
	struct cidr_list l = { NULL, 0, 0 };
	unsigned char a[CIDR_ADDR_LEN];
	size_t i;

	(void)st;
	assert_int_equal(cidr_addr("140.82.112.1", a), E_OK);
	assert_false(cidr_list_match(&l, a));		/* an empty list matches nothing */
	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		struct cidr c = parse_ok(ranges[i]);

		cidr_list_push(&l, &c);
	}
	assert_int_equal(l.n, 3);
	assert_true(cidr_list_match(&l, a));
	assert_int_equal(cidr_addr("::1", a), E_OK);
	assert_true(cidr_list_match(&l, a));
	assert_int_equal(cidr_addr("192.0.2.1", a), E_OK);
	assert_false(cidr_list_match(&l, a));
	cidr_list_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

static void
t_addr_bad(void **st)
{
	static const char *const bad[] = {
		"", "1.2.3", "1.2.3.4.5", "1.2.3.4:80", "[::1]", "[::1]:443", "::1%lo", "localhost",
		"1.2.3.4 ", " 1.2.3.4", "256.0.0.1", "01.2.3.4", ":::", "unix",
	};
	unsigned char a[CIDR_ADDR_LEN];
	size_t i;

	(void)st;
	assert_int_equal(cidr_addr(NULL, a), E_INVAL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cidr_addr(bad[i], a) != E_INVAL)
			fail_msg("'%s' accepted as an address", bad[i]);
}

/* The client behind trusted proxies, walking X-Forwarded-For from the right. */
static void
t_forwarded(void **st)
{
	static const struct { const char *xff; int rc; const char *client; } cases[] = {
		{ "203.0.113.7", E_OK, "203.0.113.7" },
		{ "203.0.113.7, 10.0.0.2", E_OK, "203.0.113.7" },	/* a trusted hop */
		{ "198.51.100.1, 203.0.113.7", E_OK, "203.0.113.7" },	/* forged left part */
		{ "198.51.100.1,203.0.113.7,10.0.0.2,10.0.0.3", E_OK, "203.0.113.7" },
		{ "10.0.0.2, 10.0.0.3", E_OK, "10.0.0.2" },		/* all trusted: leftmost */
		{ "10.0.0.2", E_OK, "10.0.0.2" },
		{ " \t203.0.113.7 \t", E_OK, "203.0.113.7" },
		{ "2001:db8::7, ::1", E_OK, "2001:db8::7" },
		{ "::ffff:203.0.113.7", E_OK, "203.0.113.7" },
		{ "garbage, 203.0.113.7", E_OK, "203.0.113.7" },	/* never reached */
		{ "", E_INVAL, "(empty)" },
		{ " ", E_INVAL, "(empty)" },
		{ "203.0.113.7,", E_INVAL, "(empty)" },
		{ "203.0.113.7, garbage", E_INVAL, "garbage" },
		{ "garbage, 10.0.0.2", E_INVAL, "garbage" },		/* past a trusted hop */
		{ ",10.0.0.2", E_INVAL, "(empty)" },
		{ "203.0.113.7:4711", E_INVAL, "203.0.113.7:4711" },	/* no ports */
		{ "[2001:db8::7]", E_INVAL, "[2001:db8::7]" },
		{ "unknown", E_INVAL, "unknown" },
		{ "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa", E_INVAL, "(too long)" },
	};
	static const char *const proxies[] = { "10.0.0.0/24", "::1" };
	struct cidr_list trusted = { NULL, 0, 0 };
	unsigned char a[CIDR_ADDR_LEN], want[CIDR_ADDR_LEN];
	char text[64];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++) {
		struct cidr c = parse_ok(proxies[i]);

		cidr_list_push(&trusted, &c);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		memset(a, 0xee, sizeof(a));
		text[0] = '\0';
		rc = cidr_forwarded(&trusted, cases[i].xff, a, text, sizeof(text));
		if (rc != cases[i].rc)
			fail_msg("'%s': got %d, want %d (%s)", cases[i].xff, rc, cases[i].rc, text);
		assert_string_equal(text, cases[i].client);
		if (rc == E_OK) {
			assert_int_equal(cidr_addr(cases[i].client, want), E_OK);
			assert_memory_equal(a, want, CIDR_ADDR_LEN);
		}
	}
	cidr_list_free(&trusted);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_parse_good),
		cmocka_unit_test(t_parse_bad),
		cmocka_unit_test(t_match_v4),
		cmocka_unit_test(t_match_v6),
		cmocka_unit_test(t_mapped),
		cmocka_unit_test(t_overlap_and_text),
		cmocka_unit_test(t_list),
		cmocka_unit_test(t_addr_bad),
		cmocka_unit_test(t_forwarded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
