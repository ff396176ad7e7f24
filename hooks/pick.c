/* pick.c: cut the top-level members a provider reads out of a push body, so that jansson parses those alone. */
#include <stdlib.h>
#include <string.h>

#include "hooks/hooks.h"

/*
 * A GitHub push is mostly its commits, repository and sender: 7 KB of which a provider
 * reads four short members. Building jansson's tree for all of it was most of the
 * listener's time. Here the body is only scanned, to find where each top-level member
 * starts and ends; the members the provider names are copied into a small object for
 * jansson, which checks them fully.
 *
 * The scan gives up (PICK_WHOLE) on anything it is not sure of: no object at the top, a
 * key with an escape, a key twice, unbalanced brackets, trailing bytes. The caller then
 * parses the whole body as before, so the answer to a malformed body is jansson's. What
 * the scan does not check is the inside of the members it skips (say, "[1,,2]" inside
 * "commits"): those bytes were signed by the git host, and nothing reads them.
 */

#define PICK_DEPTH	2048	/* as jansson's JSON_PARSER_MAX_DEPTH */
#define PICK_KEYS	64	/* more top-level members than this: parse the whole body */

struct pick_span {
	size_t	key, key_len;	/* the key, without its quotes */
	size_t	start, end;	/* the member: from the key's quote to the value's end */
};

static size_t
pick_ws(const unsigned char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is '"': the index after the closing quote, or 0. *esc: it held a backslash. */
static size_t
pick_string(const unsigned char *s, size_t len, size_t i, int *esc)
{
	for (i++; i < len; i++) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\') {
			*esc = 1;
			if (++i < len && s[i] < 0x20)
				return 0;
		} else if (s[i] < 0x20) {
			return 0;
		}
	}
	return 0;
}

/* A value from s[i]: the index after it, or 0. Only brackets and strings are checked. */
static size_t
pick_value(const unsigned char *s, size_t len, size_t i)
{
	char stack[PICK_DEPTH];
	size_t depth = 0, j;
	int esc;

	if (i >= len)
		return 0;
	if (s[i] == '"')
		return pick_string(s, len, i, &esc);
	if (s[i] != '{' && s[i] != '[') {
		for (j = i; j < len && strchr(",}] \t\n\r", s[j]) == NULL && s[j] != '\0'; j++)
			;
		return j > i ? j : 0;
	}
	while (i < len) {
		switch (s[i]) {
		case '"':
			if ((i = pick_string(s, len, i, &esc)) == 0)
				return 0;
			continue;
		case '{':
		case '[':
			if (depth == PICK_DEPTH)
				return 0;
			stack[depth++] = s[i] == '{' ? '}' : ']';
			break;
		case '}':
		case ']':
			if (depth == 0 || stack[--depth] != (char)s[i])
				return 0;
			if (depth == 0)
				return i + 1;
			break;
		default:
			if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
				return 0;
			break;
		}
		i++;
	}
	return 0;
}

static int
pick_wanted(const unsigned char *s, const struct pick_span *m, const char *const *keys)
{
	size_t k;

	for (k = 0; keys[k] != NULL; k++)
		if (strlen(keys[k]) == m->key_len && memcmp(s + m->key, keys[k], m->key_len) == 0)
			return 1;
	return 0;
}

/*
 * The object holding only the members of json named in keys (NULL-terminated), in *out
 * (malloc'd, *out_len bytes, NUL-terminated). Returns E_OK, or PICK_WHOLE: parse all of it.
 */
int
pick_members(const unsigned char *s, size_t len, const char *const *keys, char **out,
    size_t *out_len)
{
	struct pick_span m[PICK_KEYS];
	size_t i, j, n = 0, at;
	int esc = 0;
	char *buf;

	i = pick_ws(s, len, 0);
	if (i >= len || s[i] != '{')
		return PICK_WHOLE;
	i = pick_ws(s, len, i + 1);
	while (i < len && s[i] != '}') {
		if (n == PICK_KEYS || s[i] != '"')
			return PICK_WHOLE;
		m[n].start = i;
		m[n].key = i + 1;
		if ((j = pick_string(s, len, i, &esc)) == 0 || esc)
			return PICK_WHOLE;
		m[n].key_len = j - 1 - m[n].key;
		i = pick_ws(s, len, j);
		if (i >= len || s[i] != ':')
			return PICK_WHOLE;
		if ((i = pick_value(s, len, pick_ws(s, len, i + 1))) == 0)
			return PICK_WHOLE;
		m[n].end = i;
		for (j = 0; j < n; j++)
			if (m[j].key_len == m[n].key_len &&
			    memcmp(s + m[j].key, s + m[n].key, m[n].key_len) == 0)
				return PICK_WHOLE;
		n++;
		i = pick_ws(s, len, i);
		if (i < len && s[i] == ',') {
			i = pick_ws(s, len, i + 1);
			if (i < len && s[i] == '}')
				return PICK_WHOLE;
		} else if (i >= len || s[i] != '}') {
			return PICK_WHOLE;
		}
	}
	if (i >= len || pick_ws(s, len, i + 1) != len)
		return PICK_WHOLE;
	buf = util_xmalloc(len + 3);
	buf[0] = '{';
	at = 1;
	for (j = 0; j < n; j++) {
		if (!pick_wanted(s, &m[j], keys))
			continue;
		if (at > 1)
			buf[at++] = ',';
		memcpy(buf + at, s + m[j].start, m[j].end - m[j].start);
		at += m[j].end - m[j].start;
	}
	buf[at++] = '}';
	buf[at] = '\0';
	*out = buf;
	*out_len = at;
	return E_OK;
}
