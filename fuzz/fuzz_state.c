/* fuzz_state.c: libFuzzer target: the state file loader (state_load, state_from_json) and its round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static char *fuzz_state_dir, *fuzz_state_file;

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *site;

	(void)argc;
	(void)argv;
	fuzz_state_dir = fuzz_util_tmpdir("state");
	if (asprintf(&site, "%s/www", fuzz_state_dir) < 0 || mkdir(site, 0700) != 0 ||
	    asprintf(&fuzz_state_file, "%s/state.json", site) < 0)
		abort();
	free(site);
	log_init(LOG_LVL_ERROR, 0);
	return 0;
}

/* What deployd writes, it must read back: the state file survives every save. */
static void
fuzz_state_round_trip(const struct site_state *st)
{
	struct site_state back;
	struct error e;
	json_error_t je;
	json_t *o, *again;
	char *text;

	o = state_to_json(st);
	if (o == NULL || (text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL)
		fuzz_util_die("state_to_json produced nothing printable");
	json_decref(o);
	if ((again = json_loads(text, JSON_REJECT_DUPLICATES, &je)) == NULL)
		fuzz_util_die("the saved state is not JSON: %s", je.text);
	if (state_from_json(again, &back, &e) != E_OK)
		fuzz_util_die("the saved state does not load: %s", e.msg);
	/*
	 * Strings cut mid-character are saved empty (json_string refuses them), so two
	 * release names may merge; the counts of the rest must not change.
	 */
	if (back.nreleases > st->nreleases || back.nhistory != st->nhistory ||
	    back.paused != st->paused || back.next_id != st->next_id)
		fuzz_util_die("the state changed on a save and load");
	state_free(&back);
	json_decref(again);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct site_state st;
	struct error e = { 0, "" };
	json_error_t je;
	json_t *o;
	int rc;

	/* Straight from bytes, as a corrupt or hostile state.json would come. */
	o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
	if (o != NULL) {
		rc = state_from_json(o, &st, &e);
		if (rc == E_OK) {
			if (st.nhistory > HISTORY_MAX)
				fuzz_util_die("%zu history records kept", st.nhistory);
			if (st.next_id < 1)
				fuzz_util_die("next_id %lld", (long long)st.next_id);
			fuzz_state_round_trip(&st);
		} else if (st.releases != NULL || st.history != NULL || st.nreleases != 0) {
			fuzz_util_die("a failed load left records behind");
		}
		state_free(&st);
		json_decref(o);
	}

	/* And through the file, the way the daemon reads it at start-up. */
	fuzz_util_write(fuzz_state_file, data, size, 0600);
	e.msg[0] = '\0';
	rc = state_load(fuzz_state_dir, "www", &st, &e);
	if (rc != E_OK && e.msg[0] == '\0')
		fuzz_util_die("state_load failed (%d) without a message", rc);
	state_free(&st);
	return 0;
}
