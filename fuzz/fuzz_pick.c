/* fuzz_pick.c: libFuzzer target: pick_members against jansson's parse of the whole body. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const fuzz_pick_sets[][5] = {
	{ "ref", "before", "after", "deleted", NULL },
	{ "push", "changes", NULL },
};

/*
 * Invariants, for both providers' member lists: what the cut-out object holds equals what
 * the whole body holds under those keys, whenever jansson takes the whole body; a body
 * jansson takes, with no backslash, no NUL (jansson stops reading at one) and fewer than 64
 * members, is always cut (the scan gives up only on what it is unsure of); and the cut-out object always parses when the body did.
 */
static void
fuzz_pick_one(const uint8_t *data, size_t size, const char *const *keys, json_t *whole)
{
	json_t *cut = NULL;
	char *out = NULL;
	size_t len = 0, k;
	int rc;

	rc = pick_members(data, size, keys, &out, &len);
	if (rc != E_OK && rc != PICK_WHOLE)
		fuzz_util_die("pick_members returned %d", rc);
	if (rc != E_OK) {
		if (whole != NULL && json_is_object(whole) && json_object_size(whole) < 64 &&
		    memchr(data, '\\', size) == NULL && memchr(data, '\0', size) == NULL)
			fuzz_util_die("gave up on a body jansson takes");
		if (out != NULL)
			fuzz_util_die("gave up but left output behind");
		return;
	}
	if (out == NULL || strlen(out) != len)
		fuzz_util_die("the cut-out object is not a string of its length");
	cut = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
	if (whole != NULL) {
		if (cut == NULL || !json_is_object(cut))
			fuzz_util_die("the cut-out object does not parse: %.200s", out);
		for (k = 0; keys[k] != NULL; k++)
			if (!json_equal(json_object_get(whole, keys[k]),
			    json_object_get(cut, keys[k])) &&
			    (json_object_get(whole, keys[k]) != NULL ||
			    json_object_get(cut, keys[k]) != NULL))
				fuzz_util_die("member %s differs", keys[k]);
		if (json_object_size(cut) > json_object_size(whole))
			fuzz_util_die("the cut-out object has more members than the body");
	}
	json_decref(cut);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *whole;
	size_t i;

	whole = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	for (i = 0; i < sizeof(fuzz_pick_sets) / sizeof(fuzz_pick_sets[0]); i++)
		fuzz_pick_one(data, size, fuzz_pick_sets[i], whole);
	json_decref(whole);
	return 0;
}
