/* sched.c: the deploy queue and poll timer: one deploy running and one pending per site. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

/* The scheduler's one instance; poll.c reads and moves its timers under S.mu. */
struct sched S = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

struct sched_site *
sched_find(const char *name)
{
	size_t i;

	for (i = 0; i < S.nsites; i++)
		if (strcmp(S.sites[i].cfg->site.name, name) == 0)
			return &S.sites[i];
	return NULL;
}

static void	sched_site_init(struct sched_site *, const struct site_config *, int64_t);

/*
 * A fleet's node never deploys on its own clock: no start-up deploy and no polling; the
 * fleet asks for every job (server/fleet.c).
 */
static int64_t
sched_poll_start(const struct site_config *cfg, int64_t now)
{
	return cfg->poll_ms > 0 && !S.fleet ? now + poll_jitter(cfg->poll_ms) : 0;
}

/* The scheduler calls nothing above it: what the daemon wants to hear, it asks for here. */
int
sched_init(const struct config *cfg, sched_notify_fn notify)
{
	pthread_condattr_t ca;
	size_t i;

	S.cfg = cfg;
	S.fleet = cfg->fleet.etcd.n > 0;
	S.notify = notify;
	S.nsites = cfg->nsites;
	S.sites = util_xcalloc(cfg->nsites, sizeof(*S.sites));
	for (i = 0; i < cfg->nsites; i++)
		sched_site_init(&S.sites[i], &cfg->sites[i], 0);
	S.next_id = 1;
	srandom((unsigned)(util_now_ms() ^ getpid()));
	/* The poll timer waits on the monotonic clock, so clock jumps do not matter. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&S.timer, &ca);
	pthread_cond_init(&S.event, &ca);
	pthread_condattr_destroy(&ca);
	return E_OK;
}

void
sched_free(void)
{
	free(S.sites);
	S.sites = NULL;
	S.nsites = 0;
	pthread_cond_destroy(&S.timer);
	pthread_cond_destroy(&S.event);
}

/*
 * Call with the mutex held: wake whoever watches the site's events, and tell the
 * listener's keeper when what a webhook sees of the site changed (not on every file a
 * deploy writes).
 */
static void
sched_moved(struct sched_site *s)
{
	int key = s->paused | (s->running || s->queued || s->pending) << 1 |
	    (s->queued || s->pending) << 2;

	s->seq = ++S.seq;
	pthread_cond_broadcast(&S.event);
	if (key != s->view_key || strcmp(s->live, s->view_live) != 0) {
		s->view_key = key;
		memcpy(s->view_live, s->live, sizeof(s->view_live));
		if (S.moved_fn != NULL)
			S.moved_fn();
	}
}

void
sched_set_moved(void (*fn)(void))
{
	pthread_mutex_lock(&S.mu);
	S.moved_fn = fn;
	pthread_mutex_unlock(&S.mu);
}

size_t
sched_views(struct sched_view *v, size_t max)
{
	struct sched_site *s;
	size_t i;

	pthread_mutex_lock(&S.mu);
	for (i = 0; i < S.nsites && i < max; i++) {
		s = &S.sites[i];
		util_strlcpy(v[i].site, s->cfg->site.name, sizeof(v[i].site));
		v[i].paused = s->paused;
		v[i].busy = s->running || s->queued || s->pending;
		v[i].waiting = s->queued || s->pending;
		memcpy(v[i].live, s->live, sizeof(v[i].live));
	}
	i = S.nsites;
	pthread_mutex_unlock(&S.mu);
	return i;
}

/* Call with the mutex held. */
static void
sched_enqueue(struct sched_site *s)
{
	s->queued = 1;
	s->qnext = NULL;
	if (S.qtail != NULL)
		S.qtail->qnext = s;
	else
		S.qhead = s;
	S.qtail = s;
	sched_moved(s);
	pthread_cond_signal(&S.work);
}

static int
sched_automatic(const struct deploy_request *req)
{
	return req->action == ACT_DEPLOY && req->rev[0] == '\0' &&
	    (req->trigger == TRIG_POLL || req->trigger == TRIG_WEBHOOK ||
	    req->trigger == TRIG_STARTUP);
}

/*
 * Call with the mutex held. Coalesces: a newer request replaces a waiting one, except
 * that an automatic deploy never replaces what an operator asked for.
 */
int64_t
sched_request_locked(struct sched_site *s, const struct deploy_request *req)
{
	if (s->running || s->queued) {
		if (s->running && !s->pending) {
			s->req_id = S.next_id++;
			s->pending = 1;
			s->req = *req;
			sched_moved(s);	/* a deploy waits now: pushes join it */
		} else if (!sched_automatic(req) || sched_automatic(&s->req))
			s->req = *req;
		return s->req_id;
	}
	s->req = *req;
	s->req_id = S.next_id++;
	sched_enqueue(s);
	return s->req_id;
}

int
sched_request(const char *site, const struct deploy_request *req, int64_t *id)
{
	struct sched_site *s;
	int64_t got;

	pthread_mutex_lock(&S.mu);
	if (S.stopping) {
		pthread_mutex_unlock(&S.mu);
		return E_STOPPED;
	}
	if ((s = sched_find(site)) == NULL) {
		pthread_mutex_unlock(&S.mu);
		return E_NOTFOUND;
	}
	got = sched_request_locked(s, req);
	pthread_mutex_unlock(&S.mu);
	if (id != NULL)
		*id = got;
	return E_OK;
}

void
sched_note_webhook(const char *site)
{
	struct sched_site *s;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL)
		s->last_webhook_at = util_now_ms();
	pthread_mutex_unlock(&S.mu);
}

static void
sched_phase_cb(void *arg, enum phase phase, const char *commit,
    const struct deploy_progress *progress)
{
	struct sched_site *s = arg;

	pthread_mutex_lock(&S.mu);
	s->phase = phase;
	if (commit != NULL)
		util_strlcpy(s->run_commit, commit, sizeof(s->run_commit));
	if (progress != NULL && phase == PHASE_FETCHING) {
		s->progress.objects = progress->objects;
		s->progress.objects_total = progress->objects_total;
		s->progress.bytes = progress->bytes;
	} else if (progress != NULL) {
		s->progress.files = progress->files;
		s->progress.files_total = progress->files_total;
	}
	sched_moved(s);
	pthread_mutex_unlock(&S.mu);
}

/* Run one job outside the mutex; everything that changes a site goes through here. */
static void
sched_run(struct sched_site *s, struct deploy_request *req, struct deploy_result *res)
{
	struct deploy_request next;
	struct error e;
	char reason[256];
	int paused;

	pthread_mutex_lock(&S.mu);
	paused = s->paused;
	pthread_mutex_unlock(&S.mu);
	switch (req->action) {
	case ACT_ROLLBACK:
		if (rollback_run(&s->cfg->site, req, res) == E_OK && req->trigger != TRIG_FLEET)
			paused = 1;
		break;
	case ACT_PAUSE:
	case ACT_RESUME:
		res->rc = rollback_pause(&s->cfg->site, req->action == ACT_PAUSE,
		    "paused by `deployd pause`", &e);
		if (res->rc != E_OK)
			util_strlcpy(res->error, e.msg, sizeof(res->error));
		else
			paused = req->action == ACT_PAUSE;
		break;
	case ACT_PREPARE:
		engine_prepare(&s->cfg->site, req, res, sched_phase_cb, s);
		break;
	case ACT_ACTIVATE:
		engine_activate(&s->cfg->site, NULL, req, res, sched_phase_cb, s);
		break;
	default:
		if (paused && sched_automatic(req)) {
			log_debug("site=%s %s deploy skipped: paused", s->cfg->site.name,
			    state_trigger_name(req->trigger));
			res->rc = E_OK;
			break;
		}
		if (sched_automatic(req))
			req->skip_bad = 1;
		engine_deploy(&s->cfg->site, req, res, sched_phase_cb, s);
		/* A pinned revision holds until resume, like a rollback; a fleet's cutover
		 * is the fleet's to hold. */
		if (res->rc == E_OK && req->rev[0] != '\0' && req->trigger != TRIG_FLEET) {
			snprintf(reason, sizeof(reason), "pinned to %.12s by `deployd deploy "
			    "--rev`; automatic deploys paused until `deployd resume %s`",
			    res->commit, s->cfg->site.name);
			if (rollback_pause(&s->cfg->site, 1, reason, &e) == E_OK)
				paused = 1;
		}
		break;
	}
	pthread_mutex_lock(&S.mu);
	s->paused = paused;
	pthread_mutex_unlock(&S.mu);
	/* Resuming catches up with the remote at once. */
	if (req->action == ACT_RESUME && res->rc == E_OK) {
		memset(&next, 0, sizeof(next));
		next.trigger = TRIG_MANUAL;
		next.skip_bad = 1;
		pthread_mutex_lock(&S.mu);
		s->pending = 1;
		s->req = next;
		s->req_id = S.next_id++;
		pthread_mutex_unlock(&S.mu);
	}
}

/*
 * What became of request id, without touching the disk (the webhook path asks): waiting
 * or running, done well, failed, or too old to know. *paused tells if the site is paused.
 */
int
sched_request_state(const char *site, int64_t id, int *paused)
{
	struct sched_site *s;
	int st = REQ_UNKNOWN;
	size_t i;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL) {
		*paused = s->paused;
		if (id > 0 && (((s->queued || s->pending) && s->req_id == id) ||
		    (s->running && s->run_id == id)))
			st = REQ_WAITING;
		for (i = 0; st == REQ_UNKNOWN && i < sizeof(s->recent) / sizeof(s->recent[0]);
		    i++)
			if (id > 0 && s->recent[i].id == id)
				st = s->recent[i].ok ? REQ_OK : REQ_FAILED;
	}
	pthread_mutex_unlock(&S.mu);
	return st;
}

/*
 * Is commit live, with no job running or waiting that could change that? Then a webhook
 * announcing it has nothing to do. Were a job under way, the push might be a revert to the
 * live commit while the job deploys the one before it. *job gets the last job's id if it
 * succeeded (0 if not): a push told it joined a deploy is remembered as that deploy's.
 */
int
sched_is_live(const char *site, const char *commit, int64_t *job)
{
	struct sched_site *s;
	int live = 0;

	*job = 0;
	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL && !s->running && !s->queued && !s->pending) {
		live = s->live[0] != '\0' && strcmp(s->live, commit) == 0;
		if (live && s->done_ok)
			*job = s->done_id;
	}
	pthread_mutex_unlock(&S.mu);
	return live;
}

int
sched_is_paused(const char *site)
{
	struct sched_site *s;
	int paused = 0;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL)
		paused = s->paused;
	pthread_mutex_unlock(&S.mu);
	return paused;
}

/* `systemctl status deployd` shows the last deploy that did something. */
static void
sched_notify_status(const struct sched_site *s, const struct deploy_request *req,
    const struct deploy_result *res)
{
	char msg[768], err[200];

	if (S.notify == NULL)
		return;
	util_sanitize(res->error, err, sizeof(err));
	if (res->rc == E_OK)
		snprintf(msg, sizeof(msg), "STATUS=%s: %.12s live (%s, %s)", s->cfg->site.name,
		    res->commit, res->release, state_trigger_name(req->trigger));
	else
		snprintf(msg, sizeof(msg), "STATUS=%s: deploy failed: %s", s->cfg->site.name, err);
	S.notify(msg);
}

/*
 * After a deploy that fetched: keep the site's repository cache small. It runs in this
 * worker while the site still counts as running, so its next deploy waits for it rather
 * than racing it, and status shows the phase "cache-upkeep".
 */
static void
sched_upkeep(struct sched_site *s)
{
	const char *name = s->cfg->site.name;
	struct upkeep_stats before, after;
	struct error e;
	int64_t t0 = util_mono_ms();
	int rc;

	sched_phase_cb(s, PHASE_UPKEEP, NULL, NULL);
	rc = upkeep_site(&s->cfg->site, &before, &after, &e);
	if (rc > 0)
		log_info("site=%s cache upkeep: %lld packs, %lld loose objects, %lld KiB -> "
		    "%lld packs, %lld loose objects, %lld KiB (%s, %lld objects packed) in %lld ms",
		    name, (long long)before.packs, (long long)before.loose,
		    (long long)(before.bytes / 1024), (long long)after.packs,
		    (long long)after.loose, (long long)(after.bytes / 1024),
		    after.full ? "full" : "incremental", (long long)after.objects,
		    (long long)(util_mono_ms() - t0));
	else if (rc < 0)
		log_warn("site=%s cache upkeep failed: %s", name, e.msg);
	metrics_cache(name, rc, rc < 0 ? before.packs : after.packs,
	    rc < 0 ? before.loose : after.loose, rc < 0 ? before.bytes : after.bytes);
}

static void *
sched_worker(void *arg)
{
	struct deploy_request req;
	struct deploy_result res;
	struct sched_site *s;
	int64_t id;
	int upkeep;

	(void)arg;
	pthread_mutex_lock(&S.mu);
	for (;;) {
		while ((S.qhead == NULL || S.holding) && !S.stopping)
			pthread_cond_wait(&S.work, &S.mu);
		if (S.stopping)
			break;
		s = S.qhead;
		S.qhead = s->qnext;
		if (S.qhead == NULL)
			S.qtail = NULL;
		s->queued = 0;
		s->running = 1;
		s->run_id = id = s->req_id;
		req = s->req;
		s->run_commit[0] = '\0';
		memset(&s->progress, 0, sizeof(s->progress));
		sched_moved(s);
		pthread_mutex_unlock(&S.mu);

		memset(&res, 0, sizeof(res));
		sched_run(s, &req, &res);

		if (req.action == ACT_DEPLOY || req.action == ACT_ROLLBACK ||
		    req.action == ACT_ACTIVATE)
			metrics_deploy(s->cfg->site.name, res.rc == E_OK, res.duration_ms);
		if (res.changed)
			metrics_live(s->cfg->site.name, util_now_ms() / 1000);
		if (res.rc != E_OK && req.trigger == TRIG_POLL)
			metrics_poll_error(s->cfg->site.name);

		if (res.changed || res.rc != E_OK)
			sched_notify_status(s, &req, &res);
		if (S.done_fn != NULL)
			S.done_fn(s->cfg->site.name, &req, &res);
		/* Only a fetch adds objects; a poll that found nothing new added none. A fleet's
		 * prepare leaves it to the activate, so as not to hold up the cutover. */
		upkeep = (req.action == ACT_DEPLOY || req.action == ACT_ACTIVATE) &&
		    res.rc == E_OK && (res.changed || res.note[0] != '\0');

		pthread_mutex_lock(&S.mu);
		if (poll_after_deploy(s, &req, &res))
			pthread_cond_signal(&S.timer);
		s->done_id = id;
		s->done_ok = res.rc == E_OK;
		s->recent[s->recent_next].id = id;
		s->recent[s->recent_next].ok = s->done_ok;
		s->recent_next = (s->recent_next + 1) % (sizeof(s->recent) / sizeof(s->recent[0]));
		s->done_changed = res.changed;
		util_strlcpy(s->done_error, res.error, sizeof(s->done_error));
		util_strlcpy(s->done_commit, res.commit, sizeof(s->done_commit));
		util_strlcpy(s->done_release, res.changed ? res.release : "",
		    sizeof(s->done_release));
		util_strlcpy(s->done_note, res.note, sizeof(s->done_note));
		/* A rollback's outcome is not tracked here: forget, rather than guess. */
		if ((req.action == ACT_DEPLOY || req.action == ACT_ACTIVATE) && res.live[0] != '\0')
			util_strlcpy(s->live, res.live, sizeof(s->live));
		else if (req.action == ACT_ROLLBACK)
			s->live[0] = '\0';
		/*
		 * The deploy is done (`deploy --wait` returns), but the site stays running
		 * through the upkeep: its next deploy waits rather than finding the lock taken.
		 */
		if (upkeep) {
			sched_moved(s);
			pthread_cond_broadcast(&S.done);
			pthread_mutex_unlock(&S.mu);
			sched_upkeep(s);
			pthread_mutex_lock(&S.mu);
		}
		s->running = 0;
		s->phase = PHASE_IDLE;
		sched_moved(s);
		if (s->pending && !S.stopping) {
			s->pending = 0;
			sched_enqueue(s);
		}
		pthread_cond_broadcast(&S.done);
	}
	pthread_mutex_unlock(&S.mu);
	fetch_stop_helper();
	return NULL;
}

/* One thread for every poll schedule: wake at the earliest due site. */
static void *
sched_timer(void *arg)
{
	struct deploy_request req;
	struct timespec ts;
	int64_t now, next;
	size_t i;

	(void)arg;
	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_POLL;
	pthread_mutex_lock(&S.mu);
	while (!S.stopping) {
		now = util_mono_ms();
		next = now + 3600 * 1000;
		for (i = 0; i < S.nsites; i++) {
			struct sched_site *s = &S.sites[i];

			if (s->missed_check != 0) {
				if (s->missed_check <= now)
					poll_judge_missed(s);
				else if (s->missed_check < next)
					next = s->missed_check;
			}
			if (s->next_poll == 0)
				continue;
			if (s->next_poll <= now) {
				/* A running or waiting deploy fetches anyway. */
				if (!s->running && !s->queued)
					sched_request_locked(s, &req);
				s->next_poll = now + poll_delay(s);
			}
			if (s->next_poll < next)
				next = s->next_poll;
		}
		ts.tv_sec = next / 1000;
		ts.tv_nsec = (next % 1000) * 1000000;
		pthread_cond_timedwait(&S.timer, &S.mu, &ts);
	}
	pthread_mutex_unlock(&S.mu);
	return NULL;
}

int
sched_start(void)
{
	struct deploy_request req;
	int64_t now = util_mono_ms();
	size_t i;

	pthread_mutex_lock(&S.mu);
	/* Every site converges at start-up; polling takes over after one interval. */
	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_STARTUP;
	for (i = 0; i < S.nsites; i++) {
		struct sched_site *s = &S.sites[i];

		s->next_poll = sched_poll_start(s->cfg, now);
		if (!S.fleet)
			sched_request_locked(s, &req);
	}
	pthread_mutex_unlock(&S.mu);

	S.nworkers = (size_t)S.cfg->max_parallel_deploys;
	S.workers = util_xcalloc(S.nworkers, sizeof(*S.workers));
	for (i = 0; i < S.nworkers; i++)
		if (pthread_create(&S.workers[i], NULL, sched_worker, NULL) != 0)
			return E_SYS;
	if (pthread_create(&S.timer_thread, NULL, sched_timer, NULL) != 0)
		return E_SYS;
	S.started = 1;
	return E_OK;
}

/* Call with the mutex held: a site as it starts, with its state and a start-up deploy. */
static void
sched_site_init(struct sched_site *s, const struct site_config *cfg, int64_t now)
{
	struct site_state st;
	struct error e;

	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	memset(&st, 0, sizeof(st));
	if (state_load(S.cfg->state_dir, cfg->site.name, &st, &e) == E_OK) {
		s->paused = st.paused;
		util_strlcpy(s->live, st.applied, sizeof(s->live));
	}
	state_free(&st);
	s->next_poll = sched_poll_start(cfg, now);
}

/*
 * Take a new configuration: wait until no job runs, then carry each site's runtime over by
 * name. New sites deploy at once; removed sites are forgotten (their releases stay).
 * Webhooks keep being answered meanwhile; their requests wait in the queue.
 */
int
sched_reload(const struct config *cfg)
{
	struct deploy_request req;
	struct sched_site *old, *ns;
	size_t i, j, oldn, running;
	int64_t now;

	pthread_mutex_lock(&S.mu);
	S.holding = 1;
	for (;;) {
		for (i = running = 0; i < S.nsites; i++)
			running += S.sites[i].running;
		if (running == 0 || S.stopping)
			break;
		log_info("reload waits for %zu deploy%s in flight", running,
		    running == 1 ? "" : "s");
		pthread_cond_wait(&S.done, &S.mu);
	}
	old = S.sites;
	oldn = S.nsites;
	ns = util_xcalloc(cfg->nsites, sizeof(*ns));
	now = util_mono_ms();
	S.cfg = cfg;
	S.qhead = S.qtail = NULL;
	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_STARTUP;
	for (i = 0; i < cfg->nsites; i++) {
		for (j = 0; j < oldn; j++)
			if (strcmp(old[j].cfg->site.name, cfg->sites[i].site.name) == 0)
				break;
		if (j == oldn) {
			sched_site_init(&ns[i], &cfg->sites[i], now);
			continue;
		}
		ns[i] = old[j];
		ns[i].cfg = &cfg->sites[i];
		ns[i].qnext = NULL;
		ns[i].queued = 0;
		if (cfg->sites[i].poll_ms == 0 || S.fleet)
			ns[i].next_poll = 0;
		else if (ns[i].next_poll == 0 || cfg->sites[i].poll_ms != old[j].cfg->poll_ms)
			ns[i].next_poll = now + poll_jitter(cfg->sites[i].poll_ms);
	}
	S.sites = ns;
	S.nsites = cfg->nsites;
	/* Requests that were waiting keep waiting; new sites converge now. */
	for (i = 0; i < cfg->nsites; i++) {
		for (j = 0; j < oldn; j++)
			if (strcmp(old[j].cfg->site.name, cfg->sites[i].site.name) == 0)
				break;
		if (j == oldn && !S.fleet)
			sched_request_locked(&ns[i], &req);
		else if (old[j].queued)
			sched_enqueue(&ns[i]);
	}
	free(old);
	S.holding = 0;
	pthread_cond_broadcast(&S.work);
	pthread_cond_broadcast(&S.timer);
	pthread_mutex_unlock(&S.mu);
	return E_OK;
}

/* Deploys in flight finish (the engine leaves nothing half-live); waiting ones are dropped. */
void
sched_stop(void)
{
	size_t i;

	pthread_mutex_lock(&S.mu);
	S.stopping = 1;
	pthread_cond_broadcast(&S.work);
	pthread_cond_broadcast(&S.timer);
	pthread_cond_broadcast(&S.done);
	pthread_cond_broadcast(&S.event);
	pthread_mutex_unlock(&S.mu);
	if (!S.started)
		return;
	for (i = 0; i < S.nworkers; i++)
		pthread_join(S.workers[i], NULL);
	pthread_join(S.timer_thread, NULL);
	free(S.workers);
	S.workers = NULL;
	S.started = 0;
}

void
sched_set_done(sched_done_fn fn)
{
	pthread_mutex_lock(&S.mu);
	S.done_fn = fn;
	pthread_mutex_unlock(&S.mu);
}
