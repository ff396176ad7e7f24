/* tags.c: pick the tag to deploy in `tags:` mode: the highest version matching the glob. */
#include <ctype.h>
#include <fnmatch.h>
#include <string.h>

#include "deploy/deploy.h"

/* Order of a non-digit character: '~' before the end, letters before other characters. */
static int
tags_order(int c)
{
	if (c == '\0')
		return 0;
	if (c == '~')
		return -1;
	if (isalpha(c))
		return c;
	return c + 256;
}

/*
 * Version order, as `sort -V` and dpkg compare: runs of digits numerically, everything else
 * character by character, and '~' sorting before the end so that "1.0~rc1" < "1.0".
 */
int
tags_vercmp(const char *a, const char *b)
{
	while (*a != '\0' || *b != '\0') {
		int first_diff = 0;

		while ((*a != '\0' && !isdigit((unsigned char)*a)) ||
		    (*b != '\0' && !isdigit((unsigned char)*b))) {
			int ac = tags_order(isdigit((unsigned char)*a) ? 0 : (unsigned char)*a);
			int bc = tags_order(isdigit((unsigned char)*b) ? 0 : (unsigned char)*b);

			if (ac != bc)
				return ac < bc ? -1 : 1;
			a++;
			b++;
		}
		while (*a == '0')
			a++;
		while (*b == '0')
			b++;
		while (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			if (first_diff == 0)
				first_diff = *a - *b;
			a++;
			b++;
		}
		if (isdigit((unsigned char)*a))
			return 1;
		if (isdigit((unsigned char)*b))
			return -1;
		if (first_diff != 0)
			return first_diff < 0 ? -1 : 1;
	}
	return 0;
}

/* Does a tag name (without refs/tags/) match the site's `tags` glob? */
int
tags_match(const char *glob, const char *name)
{
	return fnmatch(glob, name, 0) == 0;
}

/* The index of the highest-versioned name matching glob, or -1 if none does. */
int
tags_pick(const char *glob, const char *const *names, size_t n)
{
	size_t i;
	int best = -1;

	for (i = 0; i < n; i++) {
		if (!tags_match(glob, names[i]))
			continue;
		if (best < 0 || tags_vercmp(names[i], names[best]) > 0)
			best = (int)i;
	}
	return best;
}
