/* status.c: what `deployd status` and the events stream show of a site: the scheduler's view and the state file, as JSON. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/deployd.h"

/* A copy of what the scheduler knows of a site, taken under its lock and read without it. */
struct status_view {
	const struct site_config *cfg;
	int64_t		 seq;		/* moves on whenever the site's jobs do */
	int		 running;
	int		 waiting;	/* a job is queued or pending */
	enum phase	 phase;
	int64_t		 run_id, queued_id, done_id;	/* 0: none */
	int		 done_ok;
	int		 done_changed;
	char		 done_error[512];
	char		 done_commit[SHA_HEX];
	char		 done_release[RELEASE_NAME_MAX];
	char		 done_note[NOTE_MAX];
	char		 run_commit[SHA_HEX];
	struct deploy_progress progress;
	int		 paused;
	int64_t		 next_poll_at;	/* unix ms; 0: polling off */
	int64_t		 last_webhook_at;	/* unix ms */
	int		 failures;
	int64_t		 missed_count;
	int64_t		 last_missed_at;	/* unix ms */
	char		 last_error[512];
	int64_t		 last_error_at;	/* unix seconds */
};

/* Call with the mutex held: what status shows of a site, copied so it can be read unlocked. */
static void
status_copy(const struct sched_site *s, struct status_view *v)
{
	memset(v, 0, sizeof(*v));
	v->cfg = s->cfg;
	v->seq = s->seq;
	v->running = s->running;
	v->waiting = s->queued || s->pending;
	v->phase = s->phase;
	v->run_id = s->running ? s->run_id : 0;
	v->queued_id = v->waiting ? s->req_id : 0;
	v->done_id = s->done_id;
	v->done_ok = s->done_ok;
	v->done_changed = s->done_changed;
	util_strlcpy(v->done_error, s->done_error, sizeof(v->done_error));
	util_strlcpy(v->done_commit, s->done_commit, sizeof(v->done_commit));
	util_strlcpy(v->done_release, s->done_release, sizeof(v->done_release));
	util_strlcpy(v->done_note, s->done_note, sizeof(v->done_note));
	util_strlcpy(v->run_commit, s->running ? s->run_commit : "", sizeof(v->run_commit));
	v->progress = s->progress;
	v->paused = s->paused;
	v->next_poll_at = s->next_poll != 0 ? util_now_ms() + (s->next_poll - util_mono_ms()) : 0;
	v->last_webhook_at = s->last_webhook_at;
	v->failures = s->failures;
	v->missed_count = s->missed_count;
	v->last_missed_at = s->last_missed_at;
	util_strlcpy(v->last_error, s->last_error, sizeof(v->last_error));
	v->last_error_at = s->last_error_at;
}

/* One site as the scheduler sees it; E_NOTFOUND if there is no such site. */
static int
status_view(const char *site, struct status_view *v)
{
	struct sched_site *s;
	int rc = E_NOTFOUND;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL) {
		status_copy(s, v);
		rc = E_OK;
	}
	pthread_mutex_unlock(&S.mu);
	return rc;
}

/* Every site, in configuration order; free *out. */
static size_t
status_views(struct status_view **out)
{
	size_t i, n;

	pthread_mutex_lock(&S.mu);
	n = S.nsites;
	*out = util_xcalloc(n, sizeof(**out));
	for (i = 0; i < n; i++)
		status_copy(&S.sites[i], &(*out)[i]);
	pthread_mutex_unlock(&S.mu);
	return n;
}

/*
 * Wait up to timeout_ms for the site's jobs to move on from *seq, then describe them (also
 * when nothing moved, as a heartbeat). E_NOTFOUND: no such site (any more); E_STOPPED: the
 * daemon is stopping, and *v is the site's last word.
 */
static int
status_wait(const char *site, int64_t *seq, int64_t timeout_ms, struct status_view *v)
{
	struct sched_site *s;
	struct timespec ts;
	int64_t until = util_mono_ms() + timeout_ms;
	int rc = E_OK;

	pthread_mutex_lock(&S.mu);
	for (;;) {
		if ((s = sched_find(site)) == NULL) {
			rc = E_NOTFOUND;
			break;
		}
		/* Stopping lets a deploy in flight finish: its watchers see how it ends. */
		if (S.stopping && !s->running) {
			rc = E_STOPPED;
			break;
		}
		if (s->seq != *seq || util_mono_ms() >= until)
			break;
		ts.tv_sec = (time_t)(until / 1000);
		ts.tv_nsec = (long)(until % 1000) * 1000000;
		pthread_cond_timedwait(&S.event, &S.mu, &ts);
	}
	if (s != NULL) {
		*seq = s->seq;
		status_copy(s, v);
	}
	pthread_mutex_unlock(&S.mu);
	return rc;
}

static json_t *
status_str(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

/* "idle", a phase, "starting", "queued", "paused" or "failed". */
static const char *
status_state(const struct status_view *v, const struct site_state *st)
{
	if (v->running)
		return v->phase == PHASE_IDLE ? "starting" : engine_phase_name(v->phase);
	if (st == NULL)
		return v->waiting ? "queued" : "idle";
	if (st->paused)
		return "paused";
	return st->last_error[0] != '\0' ? "failed" : "idle";
}

/* Where the site's jobs stand by id, so that `deploy --wait` knows when its request is done. */
static void
status_jobs(json_t *o, const struct status_view *v)
{
	json_object_set_new(o, "running_id", json_integer(v->run_id));
	json_object_set_new(o, "queued_id", json_integer(v->queued_id));
	json_object_set_new(o, "done_id", json_integer(v->done_id));
	json_object_set_new(o, "done_ok", json_boolean(v->done_ok));
	json_object_set_new(o, "done_changed", json_boolean(v->done_changed));
	json_object_set_new(o, "done_commit", status_str(v->done_commit));
	json_object_set_new(o, "done_error", status_str(v->done_error));
	json_object_set_new(o, "done_note", status_str(v->done_note));
}

/* The repository cache as it is now (a directory listing, no git), and its last upkeep. */
static json_t *
status_cache(const struct site *site, const struct site_state *st)
{
	struct upkeep_stats up;
	char *cache = fetch_cache_path(site);
	int ok = upkeep_survey(cache, &up) == E_OK;

	free(cache);
	return json_pack("{s:o,s:o,s:o,s:o}",
	    "packs", ok ? json_integer(up.packs) : json_null(),
	    "loose_objects", ok ? json_integer(up.loose) : json_null(),
	    "bytes", ok ? json_integer(up.bytes) : json_null(),
	    "last_upkeep_at", util_json_time(st->upkeep_at));
}

/* One site: the scheduler's view merged with the engine's state file. */
static json_t *
status_site_json(const struct status_view *v)
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
	json_object_set_new(o, "note", status_str(st.note));
	json_object_set_new(o, "last_error_at", util_json_time(st.last_error_at));
	json_object_set_new(o, "next_poll_at", util_json_time(v->next_poll_at / 1000));
	json_object_set_new(o, "failures", json_integer(v->failures));
	json_object_set_new(o, "webhooks_missed", json_integer(v->missed_count));
	json_object_set_new(o, "last_missed_at", util_json_time(v->last_missed_at / 1000));
	json_object_set_new(o, "desired", status_str(st.desired));
	json_object_set_new(o, "attempted", status_str(st.attempted));
	json_object_set_new(o, "branch", status_str(site->branch));
	json_object_set_new(o, "path", json_string(site->path));

	d = json_object();
	status_jobs(d, v);
	json_object_set_new(o, "deploy", d);
	json_object_set_new(o, "cache", status_cache(site, &st));
	state_free(&st);
	return o;
}

/* One site by name; NULL if there is no such site. */
json_t *
status_site(const char *name)
{
	struct status_view v;

	if (status_view(name, &v) != E_OK)
		return NULL;
	return status_site_json(&v);
}

json_t *
status_sites(void)
{
	struct status_view *v;
	json_t *arr = json_array();
	size_t i, n;

	n = status_views(&v);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, status_site_json(&v[i]));
	free(v);
	return arr;
}

/* Where the site's jobs stand, from memory only: one line of the events stream. */
static json_t *
status_event_json(const struct status_view *v)
{
	const struct deploy_progress *p = &v->progress;
	json_t *o;

	o = json_pack("{s:s,s:I,s:s}", "site", v->cfg->site.name, "seq", (json_int_t)v->seq,
	    "state", status_state(v, NULL));
	status_jobs(o, v);
	json_object_set_new(o, "commit", status_str(v->run_commit));
	json_object_set_new(o, "done_release", status_str(v->done_release));
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
	struct status_view v;
	int rc;

	*out = NULL;
	if ((rc = status_wait(site, seq, timeout_ms, &v)) != E_NOTFOUND)
		*out = status_event_json(&v);
	return rc;
}
