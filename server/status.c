/* status.c: what `deployd status` and the events stream show of a site: the scheduler's view and the state file, as JSON. */
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

static json_t *
status_str(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

/* "idle", a phase, "starting", "queued", "paused" or "failed". */
static const char *
status_state(const struct sched_view *v, const struct site_state *st)
{
	if (v->running)
		return v->phase == PHASE_IDLE ? "starting" : engine_phase_name(v->phase);
	if (st == NULL)
		return v->waiting ? "queued" : "idle";
	if (st->paused)
		return "paused";
	return st->last_error[0] != '\0' ? "failed" : "idle";
}

/* One site: the scheduler's view merged with the engine's state file. */
static json_t *
status_site_json(const struct sched_view *v)
{
	const struct site *site = &v->cfg->site;
	const struct history_rec *h;
	struct site_state st;
	struct error e;
	json_t *o, *d;
	size_t i;

	memset(&st, 0, sizeof(st));
	if (state_load(site->state_dir, site->name, &st, &e) != E_OK)
		util_strlcpy(st.last_error, e.msg, sizeof(st.last_error));
	/* A deploy can fail before the engine could record it (an unusable path). */
	if (v->last_error[0] != '\0' && v->last_error_at >= st.last_error_at) {
		util_strlcpy(st.last_error, v->last_error, sizeof(st.last_error));
		st.last_error_at = v->last_error_at;
	}
	o = json_object();
	json_object_set_new(o, "name", json_string(site->name));
	json_object_set_new(o, "state", json_string(status_state(v, &st)));
	json_object_set_new(o, "paused", json_boolean(st.paused));
	json_object_set_new(o, "pause_reason", status_str(st.paused ? st.pause_reason : NULL));
	json_object_set_new(o, "release", status_str(st.release));
	json_object_set_new(o, "commit", status_str(st.applied));
	json_object_set_new(o, "subject", status_str(st.subject));
	json_object_set_new(o, "author", status_str(st.author));
	json_object_set_new(o, "deployed_at", util_json_time(st.applied_at));
	json_object_set_new(o, "trigger", st.applied[0] != '\0' ?
	    json_string(state_trigger_name(st.trigger)) : json_null());
	/* A webhook's provider and delivery id, from the history entry that made it live. */
	for (h = NULL, i = st.nhistory; i-- > 0 && h == NULL;)
		if (st.history[i].ok && strcmp(st.history[i].release, st.release) == 0)
			h = &st.history[i];
	json_object_set_new(o, "trigger_provider", status_str(h != NULL ? h->provider : NULL));
	json_object_set_new(o, "trigger_delivery", status_str(h != NULL ? h->delivery : NULL));
	json_object_set_new(o, "last_webhook_at", util_json_time(v->last_webhook_at / 1000));
	json_object_set_new(o, "last_error", status_str(st.last_error));
	json_object_set_new(o, "last_error_at", util_json_time(st.last_error_at));
	json_object_set_new(o, "next_poll_at", util_json_time(v->next_poll_at / 1000));
	json_object_set_new(o, "failures", json_integer(v->failures));
	json_object_set_new(o, "webhooks_missed", json_integer(v->missed_count));
	json_object_set_new(o, "last_missed_at", util_json_time(v->last_missed_at / 1000));
	json_object_set_new(o, "desired", status_str(st.desired));
	json_object_set_new(o, "attempted", status_str(st.attempted));
	json_object_set_new(o, "branch", status_str(site->branch));
	json_object_set_new(o, "path", json_string(site->path));

	/* Request bookkeeping, so that `deploy --wait` knows when its request is done. */
	d = json_object();
	json_object_set_new(d, "running_id", json_integer(v->run_id));
	json_object_set_new(d, "queued_id", json_integer(v->queued_id));
	json_object_set_new(d, "done_id", json_integer(v->done_id));
	json_object_set_new(d, "done_ok", json_boolean(v->done_ok));
	json_object_set_new(d, "done_changed", json_boolean(v->done_changed));
	json_object_set_new(d, "done_commit", status_str(v->done_commit));
	json_object_set_new(d, "done_error", status_str(v->done_error));
	json_object_set_new(o, "deploy", d);
	state_free(&st);
	return o;
}

/* One site by name; NULL if there is no such site. */
json_t *
status_site(const char *name)
{
	struct sched_view v;

	if (sched_view(name, &v) != E_OK)
		return NULL;
	return status_site_json(&v);
}

json_t *
status_sites(void)
{
	struct sched_view *v;
	json_t *arr = json_array();
	size_t i, n;

	n = sched_views(&v);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, status_site_json(&v[i]));
	free(v);
	return arr;
}

/* Where the site's jobs stand, from memory only: one line of the events stream. */
static json_t *
status_event_json(const struct sched_view *v)
{
	const struct deploy_progress *p = &v->progress;
	json_t *o;

	o = json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "site", v->cfg->site.name, "seq",
	    (json_int_t)v->seq, "state", status_state(v, NULL),
	    "running_id", (json_int_t)v->run_id, "queued_id", (json_int_t)v->queued_id,
	    "done_id", (json_int_t)v->done_id);
	json_object_set_new(o, "commit", status_str(v->run_commit));
	json_object_set_new(o, "done_ok", json_boolean(v->done_ok));
	json_object_set_new(o, "done_changed", json_boolean(v->done_changed));
	json_object_set_new(o, "done_commit", status_str(v->done_commit));
	json_object_set_new(o, "done_release", status_str(v->done_release));
	json_object_set_new(o, "done_error", status_str(v->done_error));
	json_object_set_new(o, "paused", json_boolean(v->paused));
	json_object_set_new(o, "progress", v->running ? json_pack("{s:I,s:I,s:I,s:I,s:I}",
	    "objects", (json_int_t)p->objects, "objects_total", (json_int_t)p->objects_total,
	    "bytes", (json_int_t)p->bytes, "files", (json_int_t)p->files,
	    "files_total", (json_int_t)p->files_total) : json_null());
	return o;
}

/*
 * The events stream: wait up to timeout_ms for the site's jobs to move on from *seq, then
 * describe them. E_NOTFOUND: no such site (any more); E_STOPPED: the daemon is stopping,
 * and *out is the site's last word.
 */
int
status_event(const char *site, int64_t *seq, int64_t timeout_ms, json_t **out)
{
	struct sched_view v;
	int rc;

	*out = NULL;
	if ((rc = sched_wait(site, seq, timeout_ms, &v)) != E_NOTFOUND)
		*out = status_event_json(&v);
	return rc;
}
