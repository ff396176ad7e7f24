/* cidr.c: IPv4 and IPv6 address ranges: parse them strictly, match a client, and find the client behind trusted proxies. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lib.h"

/*
 * Every address is kept as 16 bytes: an IPv4 address as its IPv4-mapped IPv6 form
 * ::ffff:a.b.c.d, and an IPv4 range a.b.c.d/p as ::ffff:a.b.c.d/(96+p). A listener on
 * [::] sees IPv4 clients as exactly such mapped addresses, so they match IPv4 ranges
 * without a second code path.
 */
static const unsigned char cidr_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* A bare IPv4 or IPv6 address (no port, no zone, no brackets) as 16 bytes. */
int
cidr_addr(const char *s, unsigned char out[CIDR_ADDR_LEN])
{
	unsigned char v4[4];

	if (s == NULL || *s == '\0')
		return E_INVAL;
	if (strchr(s, ':') != NULL)
		return inet_pton(AF_INET6, s, out) == 1 ? E_OK : E_INVAL;
	/* glibc's inet_pton takes dotted decimal only: no "10.1", octal or hex forms. */
	if (inet_pton(AF_INET, s, v4) != 1)
		return E_INVAL;
	memcpy(out, cidr_mapped, sizeof(cidr_mapped));
	memcpy(out + 12, v4, sizeof(v4));
	return E_OK;
}

/* The address as text, IPv4 ones in dotted form. */
void
cidr_addr_text(const unsigned char a[CIDR_ADDR_LEN], char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];

	if (memcmp(a, cidr_mapped, sizeof(cidr_mapped)) == 0)
		inet_ntop(AF_INET, a + 12, tmp, sizeof(tmp));
	else
		inet_ntop(AF_INET6, a, tmp, sizeof(tmp));
	util_strlcpy(buf, tmp, len);
}

/* The mask of byte i of a /bits prefix. */
static unsigned char
cidr_mask(unsigned bits, size_t i)
{
	if (bits >= (i + 1) * 8)
		return 0xff;
	if (bits <= i * 8)
		return 0;
	return (unsigned char)(0xff << (8 - (bits - i * 8)));
}

/* Does a have the first `bits` bits of net? */
static int
cidr_prefix(const unsigned char *a, const unsigned char *net, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, net, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (net[whole] & mask);
}

/*
 * "a.b.c.d/p" (p 0 to 32), "v6/p" (p 0 to 128), or a bare address (/32 or /128).
 * A range with bits set past its prefix (10.0.0.1/24) is refused: it is most likely a
 * typo for a host or for another range, and the message names the network it would be.
 */
int
cidr_parse(const char *s, struct cidr *out, struct error *e)
{
	char addr[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 4];
	const char *slash;
	struct cidr c;
	uint64_t bits;
	size_t alen, i;
	int v4;

	if (s == NULL || *s == '\0')
		return util_error(e, E_INVAL, "empty address range");
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(addr))
		return util_error(e, E_INVAL, "'%s' is not an IPv4 or IPv6 address or range", s);
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	memset(&c, 0, sizeof(c));
	if (cidr_addr(addr, c.addr) != E_OK)
		return util_error(e, E_INVAL, "'%s' is not an IPv4 or IPv6 address or range", s);
	v4 = strchr(addr, ':') == NULL;
	if (slash == NULL)
		bits = v4 ? 32 : 128;
	else if (util_parse_uint(slash + 1, v4 ? 32 : 128, &bits) != E_OK)
		return util_error(e, E_INVAL, "'%s': the prefix length must be 0 to %d", s,
		    v4 ? 32 : 128);
	c.bits = (unsigned)bits + (v4 ? 96 : 0);
	for (i = 0; i < CIDR_ADDR_LEN; i++) {
		if ((c.addr[i] & (unsigned char)~cidr_mask(c.bits, i)) == 0)
			continue;
		for (; i < CIDR_ADDR_LEN; i++)
			c.addr[i] &= cidr_mask(c.bits, i);
		cidr_addr_text(c.addr, net, sizeof(net));
		return util_error(e, E_INVAL, "'%s' has bits set past its /%u prefix; the "
		    "range is %s/%u", s, (unsigned)bits, net, (unsigned)bits);
	}
	*out = c;
	return E_OK;
}

/* Is the address in the range? */
int
cidr_match(const struct cidr *c, const unsigned char a[CIDR_ADDR_LEN])
{
	return cidr_prefix(a, c->addr, c->bits);
}

/* Do the two ranges share an address? Two CIDR ranges overlap only if one holds the other. */
int
cidr_overlap(const struct cidr *a, const struct cidr *b)
{
	return a->bits <= b->bits ? cidr_match(a, b->addr) : cidr_match(b, a->addr);
}

/* The range as text, as it would be written: "10.0.0.0/8", "2001:db8::/32". */
void
cidr_text(const struct cidr *c, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	int v4 = c->bits >= 96 && memcmp(c->addr, cidr_mapped, sizeof(cidr_mapped)) == 0;

	cidr_addr_text(c->addr, addr, sizeof(addr));
	snprintf(buf, len, "%s/%u", addr, v4 ? c->bits - 96 : c->bits);
}

/* Is the address in one of the list's ranges? */
int
cidr_list_match(const struct cidr_list *l, const unsigned char a[CIDR_ADDR_LEN])
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (cidr_match(&l->v[i], a))
			return 1;
	return 0;
}

/*
 * The client behind a chain of trusted proxies, from an X-Forwarded-For value that the
 * last of them (the socket's peer, trusted by the caller) sent: walk the hops from the
 * right, skip those that are trusted proxies themselves, and stop at the first that is
 * not: every hop left of it could have been written by the client. If every hop is a
 * trusted proxy, the leftmost is the client. Hops are bare addresses separated by
 * commas, with optional spaces or tabs around them.
 *
 * E_OK: *client is set, and text holds it. E_INVAL: an empty hop, or one that is not an
 * address, was reached before the client; text holds that hop (raw: sanitise it before
 * logging) and *client is untouched.
 */
int
cidr_forwarded(const struct cidr_list *trusted, const char *xff,
    unsigned char client[CIDR_ADDR_LEN], char *text, size_t len)
{
	char hop[INET6_ADDRSTRLEN];
	unsigned char a[CIDR_ADDR_LEN];
	const char *end, *start, *b, *t;
	size_t n;

	end = xff + strlen(xff);
	for (;;) {
		for (start = end; start > xff && start[-1] != ','; start--)
			;
		for (b = start; b < end && (*b == ' ' || *b == '\t'); b++)
			;
		for (t = end; t > b && (t[-1] == ' ' || t[-1] == '\t'); t--)
			;
		n = (size_t)(t - b);
		if (n == 0 || n >= sizeof(hop)) {
			util_strlcpy(text, n == 0 ? "(empty)" : "(too long)", len);
			return E_INVAL;
		}
		memcpy(hop, b, n);
		hop[n] = '\0';
		if (cidr_addr(hop, a) != E_OK) {
			util_strlcpy(text, hop, len);
			return E_INVAL;
		}
		if (start == xff || !cidr_list_match(trusted, a)) {
			memcpy(client, a, CIDR_ADDR_LEN);
			cidr_addr_text(a, text, len);
			return E_OK;
		}
		end = start - 1;	/* the comma before this hop */
	}
}

void
cidr_list_push(struct cidr_list *l, const struct cidr *c)
{
	l->v = util_xrealloc(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = *c;
}

void
cidr_list_free(struct cidr_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
	l->unix_peer = 0;
}
