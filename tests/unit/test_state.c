/* test_state.c: the per-site state file: every field round-trips, bounds, and bad files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deploy/deploy.h"

struct fixture {
	char	dir[128];	/* the state_dir */
};

static int
setup(void **state)
{
	struct fixture *f = util_xcalloc(1, sizeof(*f));

	const char *tmp = getenv("TMPDIR");

	snprintf(f->dir, sizeof(f->dir), "%s/deployd-test-state-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	util_rm_rf_at(AT_FDCWD, f->dir);
	free(f);
	return 0;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

/* Every field gets a value no other field has, so a swapped or dropped field shows. */
/* Hook output as the history keeps it: UTF-8, quotes, newlines. */
#define HOOK_OUT "[pre_activate]\nnpm ERR! caf\xc3\xa9 \"quoted\"\n"

static void
fill(struct site_state *st)
{
	struct release_rec r = { 0 };
	struct history_rec h = { 0 };

	memset(st, 0, sizeof(*st));
	util_strlcpy(st->desired, "1111111111111111111111111111111111111111", SHA_HEX);
	util_strlcpy(st->attempted, "2222222222222222222222222222222222222222", SHA_HEX);
	util_strlcpy(st->applied, "3333333333333333333333333333333333333333", SHA_HEX);
	util_strlcpy(st->release, "20261125T224329Z-333333333333", RELEASE_NAME_MAX);
	st->applied_at = 1795646609;
	util_strlcpy(st->subject, "Fix the \"header\" \xc3\xa9t\xc3\xa9", sizeof(st->subject));
	util_strlcpy(st->author, "A. Author <a@example.org>", sizeof(st->author));
	st->trigger = TRIG_WEBHOOK;
	util_strlcpy(st->last_error, "fetching x: timed out", sizeof(st->last_error));
	st->last_error_at = 1795646000;
	st->paused = 1;
	util_strlcpy(st->pause_reason, "rollback to 20261125T224329Z-333333333333",
	    sizeof(st->pause_reason));
	st->next_id = 42;

	util_strlcpy(r.name, "20261124T000000Z-444444444444", sizeof(r.name));
	util_strlcpy(r.commit, "4444444444444444444444444444444444444444", sizeof(r.commit));
	r.activated_at = 1795564800;
	r.bad = 1;
	state_add_release(st, &r);
	util_strlcpy(r.name, "20261125T224329Z-333333333333", sizeof(r.name));
	util_strlcpy(r.commit, "3333333333333333333333333333333333333333", sizeof(r.commit));
	r.activated_at = 1795646609;
	r.bad = 0;
	state_add_release(st, &r);

	h.id = 40;
	h.trigger = TRIG_POLL;
	h.started_at = 1795646600123;
	h.duration_ms = 987;
	h.ok = 0;
	util_strlcpy(h.commit, "5555555555555555555555555555555555555555", sizeof(h.commit));
	util_strlcpy(h.error, "writing a/b: No space left on device", sizeof(h.error));
	util_strlcpy(h.output, HOOK_OUT, sizeof(h.output));
	state_add_history(st, &h);
	memset(&h, 0, sizeof(h));
	h.id = 41;
	h.trigger = TRIG_WEBHOOK;
	util_strlcpy(h.provider, "gitea", sizeof(h.provider));
	util_strlcpy(h.delivery, "f6a1-77", sizeof(h.delivery));
	h.started_at = 1795646609000;
	h.duration_ms = 123;
	h.ok = 1;
	util_strlcpy(h.commit, "3333333333333333333333333333333333333333", sizeof(h.commit));
	util_strlcpy(h.release, "20261125T224329Z-333333333333", sizeof(h.release));
	state_add_history(st, &h);
}

static void
t_round_trip(void **state)
{
	struct fixture *f = *state;
	struct site_state a, b;
	struct error e = { 0 };
	json_t *ja, *jb;

	fill(&a);
	assert_int_equal(state_save(f->dir, "www", &a, &e), E_OK);
	assert_int_equal(state_load(f->dir, "www", &b, &e), E_OK);

	assert_string_equal(b.desired, a.desired);
	assert_string_equal(b.attempted, a.attempted);
	assert_string_equal(b.applied, a.applied);
	assert_string_equal(b.release, a.release);
	assert_int_equal(b.applied_at, 1795646609);
	assert_string_equal(b.subject, a.subject);
	assert_string_equal(b.author, a.author);
	assert_int_equal(b.trigger, TRIG_WEBHOOK);
	assert_string_equal(b.last_error, a.last_error);
	assert_int_equal(b.last_error_at, 1795646000);
	assert_int_equal(b.paused, 1);
	assert_string_equal(b.pause_reason, a.pause_reason);
	assert_int_equal(b.next_id, 42);

	assert_int_equal(b.nreleases, 2);
	assert_string_equal(b.releases[0].name, "20261124T000000Z-444444444444");
	assert_string_equal(b.releases[0].commit, a.releases[0].commit);
	assert_int_equal(b.releases[0].activated_at, 1795564800);
	assert_int_equal(b.releases[0].bad, 1);
	assert_string_equal(b.releases[1].name, a.releases[1].name);
	assert_int_equal(b.releases[1].bad, 0);

	assert_int_equal(b.nhistory, 2);
	assert_int_equal(b.history[0].id, 40);
	assert_int_equal(b.history[0].trigger, TRIG_POLL);
	assert_int_equal(b.history[0].started_at, 1795646600123);
	assert_int_equal(b.history[0].duration_ms, 987);
	assert_int_equal(b.history[0].ok, 0);
	assert_string_equal(b.history[0].error, a.history[0].error);
	assert_string_equal(b.history[0].commit, a.history[0].commit);
	/* Hook output (valid UTF-8, quotes and newlines) survives the JSON file. */
	assert_string_equal(b.history[0].output, HOOK_OUT);
	assert_string_equal(b.history[1].output, "");
	assert_int_equal(b.history[1].id, 41);
	assert_int_equal(b.history[1].trigger, TRIG_WEBHOOK);
	assert_string_equal(b.history[1].provider, "gitea");
	assert_string_equal(b.history[1].delivery, "f6a1-77");
	assert_int_equal(b.history[1].ok, 1);
	assert_string_equal(b.history[1].release, a.history[1].release);

	/* And the whole document, so a field added to one side only is caught too. */
	ja = state_to_json(&a);
	jb = state_to_json(&b);
	assert_true(json_equal(ja, jb));
	assert_string_equal(json_string_value(json_object_get(ja, "trigger")), "webhook");
	assert_true(json_is_true(json_object_get(ja, "paused")));
	json_decref(ja);
	json_decref(jb);
	state_free(&a);
	state_free(&b);
	assert_null(b.releases);
	assert_int_equal(b.nhistory, 0);
}

/* The prepared release round-trips, and is written only while there is one. */
static void
t_prepared(void **state)
{
	struct fixture *f = *state;
	struct site_state a, b;
	struct error e = { 0 };
	json_t *ja, *jb;
	char path[256];

	fill(&a);
	ja = state_to_json(&a);
	assert_null(json_object_get(ja, "prepared"));
	json_decref(ja);
	util_strlcpy(a.prepared.name, "20261126T000000Z-666666666666", RELEASE_NAME_MAX);
	util_strlcpy(a.prepared.commit, "6666666666666666666666666666666666666666", SHA_HEX);
	util_strlcpy(a.prepared.ref, "refs/tags/v1.2", sizeof(a.prepared.ref));
	util_strlcpy(a.prepared.subject, "Prepare \xc3\xa9", sizeof(a.prepared.subject));
	util_strlcpy(a.prepared.author, "P <p@example.org>", sizeof(a.prepared.author));
	a.prepared.prepared_at = 1795650000;
	a.prepared.written_ns = 1795650000123456789;
	a.prepared.files_written = 7;
	a.prepared.files_reused = 8;
	util_strlcpy(a.prepared.reuse, "reflink", sizeof(a.prepared.reuse));
	assert_int_equal(state_save(f->dir, "www", &a, &e), E_OK);
	assert_int_equal(state_load(f->dir, "www", &b, &e), E_OK);
	assert_string_equal(b.prepared.name, a.prepared.name);
	assert_string_equal(b.prepared.commit, a.prepared.commit);
	assert_string_equal(b.prepared.ref, "refs/tags/v1.2");
	assert_string_equal(b.prepared.subject, a.prepared.subject);
	assert_string_equal(b.prepared.author, a.prepared.author);
	assert_int_equal(b.prepared.prepared_at, 1795650000);
	assert_int_equal(b.prepared.written_ns, 1795650000123456789);
	assert_int_equal(b.prepared.files_written, 7);
	assert_int_equal(b.prepared.files_reused, 8);
	assert_string_equal(b.prepared.reuse, "reflink");
	ja = state_to_json(&a);
	jb = state_to_json(&b);
	assert_true(json_equal(ja, jb));
	json_decref(ja);
	json_decref(jb);
	state_free(&a);
	state_free(&b);

	/* A wrong type is a corrupt file, not a silently empty record. */
	snprintf(path, sizeof(path), "%s/bad", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/bad/state.json", f->dir);
	write_file(path, "{\"prepared\": {\"name\": 7}}");
	assert_int_equal(state_load(f->dir, "bad", &b, &e), E_INVAL);
	assert_non_null(strstr(e.msg, "prepared"));
}

/* A state file written by deployd 0.1.0 (before prepared releases) loads as it was. */
static void
t_previous_version(void **state)
{
	struct fixture *f = *state;
	const char *data = getenv("TEST_DATA_DIR");
	char path[512], *text;
	struct site_state st;
	struct error e = { 0 };
	json_t *old, *now;
	FILE *fp;
	long n;

	snprintf(path, sizeof(path), "%s/state/v0.1.0-state.json",
	    data != NULL && *data != '\0' ? data : "../tests/unit/data");
	assert_non_null(fp = fopen(path, "r"));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	text = util_xcalloc(1, (size_t)n + 1);
	assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/www", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/www/state.json", f->dir);
	write_file(path, text);
	assert_non_null(old = json_loads(text, 0, NULL));
	free(text);
	assert_int_equal(state_load(f->dir, "www", &st, &e), E_OK);
	/* every field it had is read, and nothing is added while nothing is prepared */
	now = state_to_json(&st);
	assert_true(json_equal(old, now));
	json_decref(old);
	json_decref(now);
	assert_string_equal(st.applied, "1a7158cd5dbacddbb14063f86daea6cab2c0b542");
	assert_string_equal(st.release, "20261204T154943Z-1a7158cd5dba");
	assert_int_equal(st.trigger, TRIG_ROLLBACK);
	assert_int_equal(st.paused, 1);
	assert_int_equal(st.next_id, 4);
	assert_int_equal(st.nreleases, 2);
	assert_int_equal(st.releases[1].bad, 1);
	assert_int_equal(st.releases[1].written_ns, 1796399386676591398);
	assert_string_equal(st.releases[0].reuse, "hardlink");
	assert_int_equal(st.nhistory, 3);
	assert_int_equal(st.history[1].trigger, TRIG_POLL);
	assert_string_equal(st.prepared.name, "");
	state_free(&st);
}

static void
t_history_bound(void **state)
{
	struct fixture *f = *state;
	struct site_state st, back;
	struct history_rec h = { 0 };
	struct error e = { 0 };
	int i;

	memset(&st, 0, sizeof(st));
	for (i = 1; i <= HISTORY_MAX + 7; i++) {
		h.id = i;
		h.ok = i % 2;
		state_add_history(&st, &h);
		assert_true(st.nhistory <= HISTORY_MAX);
	}
	assert_int_equal(st.nhistory, HISTORY_MAX);
	assert_int_equal(st.history[0].id, 8);	/* the oldest seven went */
	assert_int_equal(st.history[HISTORY_MAX - 1].id, HISTORY_MAX + 7);
	assert_int_equal(state_save(f->dir, "www", &st, &e), E_OK);
	assert_int_equal(state_load(f->dir, "www", &back, &e), E_OK);
	assert_int_equal(back.nhistory, HISTORY_MAX);
	assert_int_equal(back.history[0].id, 8);
	state_free(&st);
	state_free(&back);
}

static void
t_release_order(void **state)
{
	struct site_state st;
	struct release_rec r = { 0 };

	(void)state;
	memset(&st, 0, sizeof(st));
	util_strlcpy(r.name, "A", sizeof(r.name));
	state_add_release(&st, &r);
	util_strlcpy(r.name, "B", sizeof(r.name));
	state_add_release(&st, &r);
	util_strlcpy(r.name, "A", sizeof(r.name));
	r.activated_at = 7;
	state_add_release(&st, &r);	/* re-activated: now the newest, and only once */
	assert_int_equal(st.nreleases, 2);
	assert_string_equal(st.releases[0].name, "B");
	assert_string_equal(st.releases[1].name, "A");
	assert_int_equal(st.releases[1].activated_at, 7);
	state_free(&st);
}

static void
t_missing_file(void **state)
{
	struct fixture *f = *state;
	struct site_state st;
	struct error e = { 0 };

	assert_int_equal(state_load(f->dir, "never-deployed", &st, &e), E_OK);
	assert_string_equal(st.applied, "");
	assert_int_equal(st.nreleases, 0);
	assert_int_equal(st.nhistory, 0);
	assert_int_equal(st.next_id, 1);
	state_free(&st);
}

static void
t_corrupt_file(void **state)
{
	struct fixture *f = *state;
	struct site_state st;
	struct error e = { 0 };
	char path[256];

	snprintf(path, sizeof(path), "%s/www", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/www/state.json", f->dir);
	write_file(path, "{\"desired\": \"abc\",\n  oops }\n");
	assert_int_not_equal(state_load(f->dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "line 2"));
	assert_int_equal(st.nreleases, 0);

	write_file(path, "{\"next_id\": \"seven\"}");
	assert_int_not_equal(state_load(f->dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(e.msg, "next_id"));

	write_file(path, "{\"releases\": [{\"name\": 5}]}");
	assert_int_not_equal(state_load(f->dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(e.msg, "name"));
	assert_null(st.releases);

	write_file(path, "{\"trigger\": \"carrier-pigeon\"}");
	assert_int_not_equal(state_load(f->dir, "www", &st, &e), E_OK);
	assert_non_null(strstr(e.msg, "trigger"));

	write_file(path, "[1, 2]");
	assert_int_not_equal(state_load(f->dir, "www", &st, &e), E_OK);
}

static void
t_atomic_write(void **state)
{
	struct fixture *f = *state;
	struct site_state st, back;
	struct error e = { 0 };
	struct dirent *de;
	struct stat sb;
	char path[256];
	DIR *d;
	int n = 0;

	fill(&st);
	assert_int_equal(state_save(f->dir, "www", &st, &e), E_OK);
	util_strlcpy(st.applied, "6666666666666666666666666666666666666666", SHA_HEX);
	assert_int_equal(state_save(f->dir, "www", &st, &e), E_OK);
	snprintf(path, sizeof(path), "%s/www", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_non_null(d = opendir(path));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    strcmp(de->d_name, "..") == 0))
			continue;
		assert_string_equal(de->d_name, "state.json");	/* no .tmp left over */
		n++;
	}
	closedir(d);
	assert_int_equal(n, 1);
	snprintf(path, sizeof(path), "%s/www/state.json", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(state_load(f->dir, "www", &back, &e), E_OK);
	assert_string_equal(back.applied, st.applied);
	state_free(&st);
	state_free(&back);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(t_prepared, setup, teardown),
		cmocka_unit_test_setup_teardown(t_previous_version, setup, teardown),
		cmocka_unit_test_setup_teardown(t_history_bound, setup, teardown),
		cmocka_unit_test(t_release_order),
		cmocka_unit_test_setup_teardown(t_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(t_corrupt_file, setup, teardown),
		cmocka_unit_test_setup_teardown(t_atomic_write, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
