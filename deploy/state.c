/* state.c: the per-site record of desired, attempted and applied commits, releases and history. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "deploy/deploy.h"

#define STATE_FILE	"state.json"

enum state_kind {
	SK_STR,		/* char array */
	SK_INT64,
	SK_INT,
	SK_BOOL,	/* int, stored as a JSON boolean */
	SK_TRIGGER,	/* int, stored by name */
};

/* One row per JSON field: the names are the file format, so they never change. */
struct state_field {
	const char	*name;
	enum state_kind	 kind;
	size_t		 off;
	size_t		 size;
};

#define SF(type, field, kind) \
	{ #field, kind, offsetof(type, field), sizeof(((type *)0)->field) }

static const struct state_field state_fields[] = {
	SF(struct site_state, desired, SK_STR),
	SF(struct site_state, attempted, SK_STR),
	SF(struct site_state, applied, SK_STR),
	SF(struct site_state, release, SK_STR),
	SF(struct site_state, applied_at, SK_INT64),
	SF(struct site_state, subject, SK_STR),
	SF(struct site_state, author, SK_STR),
	SF(struct site_state, trigger, SK_TRIGGER),
	SF(struct site_state, last_error, SK_STR),
	SF(struct site_state, last_error_at, SK_INT64),
	SF(struct site_state, paused, SK_BOOL),
	SF(struct site_state, pause_reason, SK_STR),
	SF(struct site_state, next_id, SK_INT64),
	SF(struct site_state, note, SK_STR),
	SF(struct site_state, upkeep_at, SK_INT64),
};

static const struct state_field state_release_fields[] = {
	SF(struct release_rec, name, SK_STR),
	SF(struct release_rec, commit, SK_STR),
	SF(struct release_rec, activated_at, SK_INT64),
	SF(struct release_rec, bad, SK_BOOL),
	SF(struct release_rec, written_ns, SK_INT64),
	SF(struct release_rec, files_written, SK_INT64),
	SF(struct release_rec, files_reused, SK_INT64),
	SF(struct release_rec, reuse, SK_STR),
};

static const struct state_field state_history_fields[] = {
	SF(struct history_rec, id, SK_INT64),
	SF(struct history_rec, trigger, SK_TRIGGER),
	SF(struct history_rec, provider, SK_STR),
	SF(struct history_rec, delivery, SK_STR),
	SF(struct history_rec, started_at, SK_INT64),
	SF(struct history_rec, duration_ms, SK_INT64),
	SF(struct history_rec, ok, SK_BOOL),
	SF(struct history_rec, commit, SK_STR),
	SF(struct history_rec, release, SK_STR),
	SF(struct history_rec, error, SK_STR),
	SF(struct history_rec, output, SK_STR),
};

static const struct state_field state_prepared_fields[] = {
	SF(struct prepared_rec, name, SK_STR),
	SF(struct prepared_rec, commit, SK_STR),
	SF(struct prepared_rec, ref, SK_STR),
	SF(struct prepared_rec, subject, SK_STR),
	SF(struct prepared_rec, author, SK_STR),
	SF(struct prepared_rec, prepared_at, SK_INT64),
	SF(struct prepared_rec, written_ns, SK_INT64),
	SF(struct prepared_rec, files_written, SK_INT64),
	SF(struct prepared_rec, files_reused, SK_INT64),
	SF(struct prepared_rec, reuse, SK_STR),
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *
state_trigger_name(int trigger)
{
	static const char *const names[] = {
		[TRIG_POLL] = "poll", [TRIG_WEBHOOK] = "webhook", [TRIG_MANUAL] = "manual",
		[TRIG_ROLLBACK] = "rollback", [TRIG_STARTUP] = "startup",
		[TRIG_FLEET] = "fleet",
	};

	if (trigger < 0 || (size_t)trigger >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[trigger];
}

static int
state_trigger_from_name(const char *s)
{
	int t;

	for (t = TRIG_POLL; t <= TRIG_FLEET; t++)
		if (strcmp(state_trigger_name(t), s) == 0)
			return t;
	return -1;
}

static json_t *
state_obj_to_json(const void *base, const struct state_field *f, size_t n)
{
	const char *p = base;
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < n; i++) {
		const void *v = p + f[i].off;
		json_t *j = NULL;

		switch (f[i].kind) {
		case SK_STR:
			j = json_string(v);
			break;
		case SK_INT64:
			j = json_integer(*(const int64_t *)v);
			break;
		case SK_INT:
			j = json_integer(*(const int *)v);
			break;
		case SK_BOOL:
			j = json_boolean(*(const int *)v);
			break;
		case SK_TRIGGER:
			j = json_string(state_trigger_name(*(const int *)v));
			break;
		}
		/* json_string refuses invalid UTF-8; keep the record rather than lose the file. */
		if (j == NULL)
			j = json_string("");
		json_object_set_new(o, f[i].name, j);
	}
	return o;
}

/* Absent fields keep their zero value, so files written by older versions still load. */
static int
state_obj_from_json(json_t *o, void *base, const struct state_field *f, size_t n,
    const char *what, struct error *e)
{
	char *p = base;
	size_t i;

	if (!json_is_object(o))
		return util_error(e, E_INVAL, "%s: not an object", what);
	for (i = 0; i < n; i++) {
		json_t *j = json_object_get(o, f[i].name);
		void *v = p + f[i].off;

		if (j == NULL || json_is_null(j))
			continue;
		switch (f[i].kind) {
		case SK_STR:
			if (!json_is_string(j))
				goto type;
			util_strlcpy(v, json_string_value(j), f[i].size);
			break;
		case SK_INT64:
			if (!json_is_integer(j))
				goto type;
			*(int64_t *)v = json_integer_value(j);
			break;
		case SK_INT:
			if (!json_is_integer(j) || json_integer_value(j) < INT_MIN ||
			    json_integer_value(j) > INT_MAX)
				goto type;
			*(int *)v = (int)json_integer_value(j);
			break;
		case SK_BOOL:
			if (!json_is_boolean(j))
				goto type;
			*(int *)v = json_is_true(j);
			break;
		case SK_TRIGGER:
			if (!json_is_string(j) ||
			    (*(int *)v = state_trigger_from_name(json_string_value(j))) < 0)
				goto type;
			break;
		}
	}
	return E_OK;
type:
	return util_error(e, E_INVAL, "%s: field '%s' has the wrong type or value", what,
	    f[i].name);
}

json_t *
state_to_json(const struct site_state *st)
{
	json_t *o, *a;
	size_t i;

	o = state_obj_to_json(st, state_fields, NELEM(state_fields));
	/* The same for a note: files without one stay as older versions wrote them. */
	if (st->note[0] == '\0')
		json_object_del(o, "note");
	if (st->upkeep_at == 0)
		json_object_del(o, "upkeep_at");
	a = json_array();
	for (i = 0; i < st->nreleases; i++)
		json_array_append_new(a, state_obj_to_json(&st->releases[i],
		    state_release_fields, NELEM(state_release_fields)));
	json_object_set_new(o, "releases", a);
	a = json_array();
	for (i = 0; i < st->nhistory; i++)
		json_array_append_new(a, state_obj_to_json(&st->history[i],
		    state_history_fields, NELEM(state_history_fields)));
	json_object_set_new(o, "history", a);
	/* Only while there is one: a file without it is what older versions read and wrote. */
	if (st->prepared.name[0] != '\0')
		json_object_set_new(o, "prepared", state_obj_to_json(&st->prepared,
		    state_prepared_fields, NELEM(state_prepared_fields)));
	return o;
}

/* Fills *st from scratch; on failure *st is left empty. */
int
state_from_json(json_t *o, struct site_state *st, struct error *e)
{
	json_t *a, *j;
	size_t i;
	int rc;

	memset(st, 0, sizeof(*st));
	st->next_id = 1;
	if ((rc = state_obj_from_json(o, st, state_fields, NELEM(state_fields), "state",
	    e)) != E_OK)
		return rc;
	if ((a = json_object_get(o, "releases")) != NULL && !json_is_array(a))
		return util_error(e, E_INVAL, "state: 'releases' is not an array");
	json_array_foreach(a, i, j) {
		struct release_rec r = { 0 };

		if ((rc = state_obj_from_json(j, &r, state_release_fields,
		    NELEM(state_release_fields), "state: releases[]", e)) != E_OK)
			goto fail;
		state_add_release(st, &r);
	}
	if ((a = json_object_get(o, "history")) != NULL && !json_is_array(a)) {
		rc = util_error(e, E_INVAL, "state: 'history' is not an array");
		goto fail;
	}
	json_array_foreach(a, i, j) {
		struct history_rec h = { 0 };

		if ((rc = state_obj_from_json(j, &h, state_history_fields,
		    NELEM(state_history_fields), "state: history[]", e)) != E_OK)
			goto fail;
		state_add_history(st, &h);
	}
	if ((j = json_object_get(o, "prepared")) != NULL && !json_is_null(j) &&
	    (rc = state_obj_from_json(j, &st->prepared, state_prepared_fields,
	    NELEM(state_prepared_fields), "state: prepared", e)) != E_OK)
		goto fail;
	if (st->next_id < 1)
		st->next_id = 1;
	return E_OK;
fail:
	state_free(st);
	st->next_id = 1;
	return rc;
}

/* A missing file is a site never deployed: an empty state, not an error. */
int
state_load(const char *state_dir, const char *site, struct site_state *st, struct error *e)
{
	struct stat sb;
	char *path;
	json_error_t je;
	json_t *o;
	int rc;

	memset(st, 0, sizeof(*st));
	st->next_id = 1;
	path = util_xasprintf("%s/%s/" STATE_FILE, state_dir, site);
	if (stat(path, &sb) != 0 && errno == ENOENT) {
		free(path);
		return E_OK;
	}
	if ((o = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		if (json_error_code(&je) == json_error_cannot_open_file)
			rc = util_error(e, E_SYS, "%s: %s", path, je.text);
		else
			rc = util_error(e, E_INVAL, "%s is corrupt: line %d column %d: %s",
			    path, je.line, je.column, je.text);
		free(path);
		return rc;
	}
	if ((rc = state_from_json(o, st, e)) != E_OK) {
		char msg[sizeof(e->msg)];

		util_strlcpy(msg, e->msg, sizeof(msg));
		util_error(e, rc, "%s: %s", path, msg);
	}
	json_decref(o);
	free(path);
	return rc;
}

int
state_save(const char *state_dir, const char *site, const struct site_state *st,
    struct error *e)
{
	char *dir, *path, *text;
	json_t *o;
	int rc;

	dir = util_xasprintf("%s/%s", state_dir, site);
	if (util_mkdir_p(dir, 0700) != E_OK) {
		rc = util_error_sys(e, "creating %s", dir);
		free(dir);
		return rc;
	}
	path = util_xasprintf("%s/" STATE_FILE, dir);
	o = state_to_json(st);
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text == NULL)
		rc = util_error(e, E_NOMEM, "%s: cannot encode state", path);
	else
		rc = util_write_file_atomic(path, text, strlen(text), 0600, e);
	free(text);
	free(path);
	free(dir);
	return rc;
}

void
state_free(struct site_state *st)
{
	free(st->releases);
	free(st->history);
	st->releases = NULL;
	st->history = NULL;
	st->nreleases = 0;
	st->nhistory = 0;
}

/* Keeps the newest HISTORY_MAX records: the file stays small however often a site deploys. */
void
state_add_history(struct site_state *st, const struct history_rec *h)
{
	if (st->nhistory >= HISTORY_MAX) {
		memmove(st->history, st->history + 1,
		    (HISTORY_MAX - 1) * sizeof(*st->history));
		st->nhistory = HISTORY_MAX - 1;
	} else
		st->history = util_xrealloc(st->history, st->nhistory + 1,
		    sizeof(*st->history));
	st->history[st->nhistory++] = *h;
}

/* Releases stay in activation order: re-activating one moves it to the end. */
void
state_add_release(struct site_state *st, const struct release_rec *r)
{
	size_t i;

	for (i = 0; i < st->nreleases; i++) {
		if (strcmp(st->releases[i].name, r->name) == 0) {
			memmove(&st->releases[i], &st->releases[i + 1],
			    (st->nreleases - i - 1) * sizeof(*st->releases));
			st->nreleases--;
			break;
		}
	}
	st->releases = util_xrealloc(st->releases, st->nreleases + 1, sizeof(*st->releases));
	st->releases[st->nreleases++] = *r;
}
