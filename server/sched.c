/* sched.c: the deploy queue and poll timer: one deploy running and one pending per site. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

/* What the scheduler knows about one site between deploys. */
struct sched_site {
	const struct site_config *cfg;
	int			 queued;	/* waiting in the run queue */
	int			 running;
	int			 pending;	/* one more deploy after the running one */
	struct deploy_request	 req;		/* for the queued or pending deploy */
	int64_t			 req_id;	/* id answering the queued or pending request */
	int64_t			 run_id;	/* id of the running deploy */
	int64_t			 done_id;	/* id of the last finished deploy */
	int			 done_ok;
	char			 done_error[512];
	char			 done_commit[SHA_HEX];
	char			 done_release[RELEASE_NAME_MAX];
	int			 done_changed;
	enum phase		 phase;
	char			 run_commit[SHA_HEX];	/* what the running deploy writes */
	char			 live[SHA_HEX];	/* live after the last deploy; "" unknown */
	struct deploy_progress	 progress;	/* of the running deploy */
	int64_t			 seq;		/* S.seq when the deploy last moved on */
	int64_t			 next_poll;	/* monotonic ms; 0: polling off */
	int64_t			 last_webhook_at;	/* unix ms */
	int			 failures;	/* consecutive failed deploys, for backoff */
	int64_t			 missed_check;	/* monotonic ms: judge a polled tip then */
	int64_t			 missed_since;	/* unix ms: a webhook after this announced it */
	char			 missed_commit[SHA_HEX];
	int64_t			 missed_count;
	int64_t			 last_missed_at;	/* unix ms */
	char			 last_error[512];	/* of the last deploy, if it failed */
	int64_t			 last_error_at;		/* unix seconds */
	int			 paused;	/* mirrors state.json; automatic deploys skipped */
	struct {
		int64_t		 id;
		int		 ok;
	}			 recent[16];	/* outcomes of the last jobs, for duplicates */
	size_t			 recent_next;
	struct sched_site	*qnext;
};

static struct {
	pthread_mutex_t		 mu;
	pthread_cond_t		 work;		/* the run queue changed, or stop */
	pthread_cond_t		 timer;		/* the poll schedule changed, or stop */
	pthread_cond_t		 done;		/* a deploy finished */
	pthread_cond_t		 event;		/* a site's seq moved on, or stop */
	int64_t			 seq;
	const struct config	*cfg;
	struct sched_site	*sites;
	size_t			 nsites;
	struct sched_site	*qhead, *qtail;
	pthread_t		*workers;
	size_t			 nworkers;
	pthread_t		 timer_thread;
	int			 started;
	int			 stopping;
	int			 holding;	/* a reload waits: start no new job */
	int64_t			 next_id;
	sched_notify_fn		 notify;	/* the daemon's ear; NULL: nobody listens */
} S = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

static struct sched_site *
sched_find(const char *name)
{
	size_t i;

	for (i = 0; i < S.nsites; i++)
		if (strcmp(S.sites[i].cfg->site.name, name) == 0)
			return &S.sites[i];
	return NULL;
}

static void	sched_site_init(struct sched_site *, const struct site_config *, int64_t);

/* Spread polls so a thousand sites do not fetch in the same second: +-10 %. */
static int64_t
sched_jitter(int64_t ms)
{
	int64_t span = ms / 5;

	if (span <= 0)
		return ms;
	return ms - span / 2 + (int64_t)(random() % (span + 1));
}

/* After failures, wait twice as long each time, up to 16 polls or 15 minutes. */
static int64_t
sched_poll_delay(const struct sched_site *s)
{
	int64_t d = s->cfg->poll_ms, cap = s->cfg->poll_ms * 16;
	int i;

	if (cap > 15 * 60 * 1000)
		cap = s->cfg->poll_ms > 15 * 60 * 1000 ? s->cfg->poll_ms : 15 * 60 * 1000;
	for (i = 0; i < s->failures && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	return sched_jitter(d);
}

/* The scheduler calls nothing above it: what the daemon wants to hear, it asks for here. */
int
sched_init(const struct config *cfg, sched_notify_fn notify)
{
	pthread_condattr_t ca;
	size_t i;

	S.cfg = cfg;
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

/* Call with the mutex held: wake whoever watches the site's events. */
static void
sched_moved(struct sched_site *s)
{
	s->seq = ++S.seq;
	pthread_cond_broadcast(&S.event);
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
static int64_t
sched_request_locked(struct sched_site *s, const struct deploy_request *req)
{
	if (s->running || s->queued) {
		if (s->running && !s->pending) {
			s->req_id = S.next_id++;
			s->pending = 1;
			s->req = *req;
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
		if (rollback_run(&s->cfg->site, req, res) == E_OK)
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
		/* A pinned revision holds until resume, like a rollback. */
		if (res->rc == E_OK && req->rev[0] != '\0') {
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
 * live commit while the job deploys the one before it.
 */
int
sched_is_live(const char *site, const char *commit)
{
	struct sched_site *s;
	int live = 0;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL && !s->running && !s->queued && !s->pending)
		live = s->live[0] != '\0' && strcmp(s->live, commit) == 0;
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

/* Call with the mutex held: backoff bookkeeping and the missed-webhook watch. */
static void
sched_after_deploy(struct sched_site *s, const struct deploy_request *req,
    const struct deploy_result *res)
{
	int64_t now = util_mono_ms();

	if (res->rc != E_OK) {
		util_strlcpy(s->last_error, res->error[0] ? res->error : "deploy failed",
		    sizeof(s->last_error));
		s->last_error_at = util_now_ms() / 1000;
		s->failures++;
		if (s->cfg->poll_ms > 0)
			s->next_poll = now + sched_poll_delay(s);
		return;
	}
	s->last_error[0] = '\0';
	s->last_error_at = 0;
	if (s->failures > 0 && s->cfg->poll_ms > 0)
		s->next_poll = now + sched_jitter(s->cfg->poll_ms);
	s->failures = 0;
	/*
	 * A poll that found a new tip: a webhook should announce it within the grace
	 * period around now. Judge that later, since the webhook may still be on its way.
	 */
	if (res->changed && req->trigger == TRIG_POLL && s->cfg->secret_file != NULL &&
	    s->cfg->webhook_grace_ms > 0) {
		s->missed_since = util_now_ms() - s->cfg->webhook_grace_ms;
		s->missed_check = now + s->cfg->webhook_grace_ms;
		util_strlcpy(s->missed_commit, res->commit, sizeof(s->missed_commit));
		pthread_cond_signal(&S.timer);
	}
}

/* Call with the mutex held, when a site's missed-webhook check is due. */
static void
sched_judge_missed(struct sched_site *s)
{
	s->missed_check = 0;
	if (s->last_webhook_at >= s->missed_since)
		return;
	s->missed_count++;
	s->last_missed_at = util_now_ms();
	log_warn("site=%s commit=%.12s webhook missed: polling found this commit and no "
	    "webhook announced it; check the webhook on the git host", s->cfg->site.name,
	    s->missed_commit);
	metrics_webhook_missed(s->cfg->site.name);
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

static void *
sched_worker(void *arg)
{
	struct deploy_request req;
	struct deploy_result res;
	struct sched_site *s;
	int64_t id;

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

		if (req.action == ACT_DEPLOY || req.action == ACT_ROLLBACK)
			metrics_deploy(s->cfg->site.name, res.rc == E_OK, res.duration_ms);
		if (res.changed)
			metrics_live(s->cfg->site.name, util_now_ms() / 1000);
		if (res.rc != E_OK && req.trigger == TRIG_POLL)
			metrics_poll_error(s->cfg->site.name);

		if (res.changed || res.rc != E_OK)
			sched_notify_status(s, &req, &res);

		pthread_mutex_lock(&S.mu);
		sched_after_deploy(s, &req, &res);
		s->running = 0;
		s->phase = PHASE_IDLE;
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
		/* A rollback's outcome is not tracked here: forget, rather than guess. */
		if (req.action == ACT_DEPLOY && res.live[0] != '\0')
			util_strlcpy(s->live, res.live, sizeof(s->live));
		else if (req.action == ACT_ROLLBACK)
			s->live[0] = '\0';
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
					sched_judge_missed(s);
				else if (s->missed_check < next)
					next = s->missed_check;
			}
			if (s->next_poll == 0)
				continue;
			if (s->next_poll <= now) {
				/* A running or waiting deploy fetches anyway. */
				if (!s->running && !s->queued)
					sched_request_locked(s, &req);
				s->next_poll = now + sched_poll_delay(s);
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

		s->next_poll = s->cfg->poll_ms > 0 ? now + sched_jitter(s->cfg->poll_ms) : 0;
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
	s->next_poll = cfg->poll_ms > 0 ? now + sched_jitter(cfg->poll_ms) : 0;
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
		if (cfg->sites[i].poll_ms == 0)
			ns[i].next_poll = 0;
		else if (ns[i].next_poll == 0 || cfg->sites[i].poll_ms != old[j].cfg->poll_ms)
			ns[i].next_poll = now + sched_jitter(cfg->sites[i].poll_ms);
	}
	S.sites = ns;
	S.nsites = cfg->nsites;
	/* Requests that were waiting keep waiting; new sites converge now. */
	for (i = 0; i < cfg->nsites; i++) {
		for (j = 0; j < oldn; j++)
			if (strcmp(old[j].cfg->site.name, cfg->sites[i].site.name) == 0)
				break;
		if (j == oldn)
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

static json_t *
sched_str_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

/* Status of one site: the scheduler's view merged with the engine's state file. */
static json_t *
sched_site_json_locked(struct sched_site *s)
{
	const struct history_rec *h;
	struct site_state st;
	struct error e;
	json_t *o, *d;
	const char *state;
	int64_t wall;
	size_t i;

	memset(&st, 0, sizeof(st));
	if (state_load(S.cfg->state_dir, s->cfg->site.name, &st, &e) != E_OK)
		util_strlcpy(st.last_error, e.msg, sizeof(st.last_error));
	/* A deploy can fail before the engine could record it (an unusable path). */
	if (s->last_error[0] != '\0' && s->last_error_at >= st.last_error_at) {
		util_strlcpy(st.last_error, s->last_error, sizeof(st.last_error));
		st.last_error_at = s->last_error_at;
	}
	if (s->running)
		state = s->phase == PHASE_IDLE ? "starting" : engine_phase_name(s->phase);
	else if (st.paused)
		state = "paused";
	else if (st.last_error[0] != '\0')
		state = "failed";
	else
		state = "idle";
	o = json_object();
	json_object_set_new(o, "name", json_string(s->cfg->site.name));
	json_object_set_new(o, "state", json_string(state));
	json_object_set_new(o, "paused", json_boolean(st.paused));
	json_object_set_new(o, "pause_reason", sched_str_or_null(st.paused ?
	    st.pause_reason : NULL));
	json_object_set_new(o, "release", sched_str_or_null(st.release));
	json_object_set_new(o, "commit", sched_str_or_null(st.applied));
	json_object_set_new(o, "subject", sched_str_or_null(st.subject));
	json_object_set_new(o, "author", sched_str_or_null(st.author));
	json_object_set_new(o, "deployed_at", util_json_time(st.applied_at));
	json_object_set_new(o, "trigger", st.applied[0] != '\0' ?
	    json_string(state_trigger_name(st.trigger)) : json_null());
	/* A webhook's provider and delivery id, from the history entry that made it live. */
	for (h = NULL, i = st.nhistory; i-- > 0 && h == NULL;)
		if (st.history[i].ok && strcmp(st.history[i].release, st.release) == 0)
			h = &st.history[i];
	json_object_set_new(o, "trigger_provider", sched_str_or_null(h != NULL ?
	    h->provider : NULL));
	json_object_set_new(o, "trigger_delivery", sched_str_or_null(h != NULL ?
	    h->delivery : NULL));
	json_object_set_new(o, "last_webhook_at", util_json_time(s->last_webhook_at / 1000));
	json_object_set_new(o, "last_error", sched_str_or_null(st.last_error));
	json_object_set_new(o, "last_error_at", util_json_time(st.last_error_at));
	wall = s->next_poll != 0 ? util_now_ms() + (s->next_poll - util_mono_ms()) : 0;
	json_object_set_new(o, "next_poll_at", util_json_time(wall / 1000));
	json_object_set_new(o, "failures", json_integer(s->failures));
	json_object_set_new(o, "webhooks_missed", json_integer(s->missed_count));
	json_object_set_new(o, "last_missed_at", util_json_time(s->last_missed_at / 1000));
	json_object_set_new(o, "desired", sched_str_or_null(st.desired));
	json_object_set_new(o, "attempted", sched_str_or_null(st.attempted));
	json_object_set_new(o, "branch", sched_str_or_null(s->cfg->site.branch));
	json_object_set_new(o, "path", json_string(s->cfg->site.path));

	/* Request bookkeeping, so that `deploy --wait` knows when its request is done. */
	d = json_object();
	json_object_set_new(d, "running_id", json_integer(s->running ? s->run_id : 0));
	json_object_set_new(d, "queued_id", json_integer(s->queued || s->pending ?
	    s->req_id : 0));
	json_object_set_new(d, "done_id", json_integer(s->done_id));
	json_object_set_new(d, "done_ok", json_boolean(s->done_ok));
	json_object_set_new(d, "done_changed", json_boolean(s->done_changed));
	json_object_set_new(d, "done_commit", sched_str_or_null(s->done_commit));
	json_object_set_new(d, "done_error", sched_str_or_null(s->done_error));
	json_object_set_new(o, "deploy", d);
	state_free(&st);
	return o;
}

json_t *
sched_site_json(const char *site)
{
	struct sched_site *s;
	json_t *o = NULL;

	pthread_mutex_lock(&S.mu);
	if ((s = sched_find(site)) != NULL)
		o = sched_site_json_locked(s);
	pthread_mutex_unlock(&S.mu);
	return o;
}

json_t *
sched_sites_json(void)
{
	json_t *arr = json_array();
	size_t i;

	pthread_mutex_lock(&S.mu);
	for (i = 0; i < S.nsites; i++)
		json_array_append_new(arr, sched_site_json_locked(&S.sites[i]));
	pthread_mutex_unlock(&S.mu);
	return arr;
}

/* Call with the mutex held: where the site's jobs stand, from memory only. */
static json_t *
sched_event_json_locked(const struct sched_site *s)
{
	const struct deploy_progress *p = &s->progress;
	const char *state;
	json_t *o;

	if (s->running)
		state = s->phase == PHASE_IDLE ? "starting" : engine_phase_name(s->phase);
	else if (s->queued || s->pending)
		state = "queued";
	else
		state = "idle";
	o = json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "site", s->cfg->site.name, "seq",
	    (json_int_t)s->seq, "state", state,
	    "running_id", (json_int_t)(s->running ? s->run_id : 0),
	    "queued_id", (json_int_t)(s->queued || s->pending ? s->req_id : 0),
	    "done_id", (json_int_t)s->done_id);
	json_object_set_new(o, "commit", sched_str_or_null(s->running ? s->run_commit : NULL));
	json_object_set_new(o, "done_ok", json_boolean(s->done_ok));
	json_object_set_new(o, "done_changed", json_boolean(s->done_changed));
	json_object_set_new(o, "done_commit", sched_str_or_null(s->done_commit));
	json_object_set_new(o, "done_release", sched_str_or_null(s->done_release));
	json_object_set_new(o, "done_error", sched_str_or_null(s->done_error));
	json_object_set_new(o, "paused", json_boolean(s->paused));
	json_object_set_new(o, "progress", s->running ? json_pack("{s:I,s:I,s:I,s:I,s:I}",
	    "objects", (json_int_t)p->objects, "objects_total", (json_int_t)p->objects_total,
	    "bytes", (json_int_t)p->bytes, "files", (json_int_t)p->files,
	    "files_total", (json_int_t)p->files_total) : json_null());
	return o;
}

/*
 * The events stream: wait up to timeout_ms for the site's jobs to move on from *seq, then
 * describe them (also when nothing moved, as a heartbeat). E_NOTFOUND: no such site (any
 * more); E_STOPPED: the daemon is stopping, and *out is the site's last word.
 */
int
sched_site_event(const char *site, int64_t *seq, int64_t timeout_ms, json_t **out)
{
	struct sched_site *s;
	struct timespec ts;
	int64_t until = util_mono_ms() + timeout_ms;
	int rc = E_OK;

	*out = NULL;
	pthread_mutex_lock(&S.mu);
	for (;;) {
		if ((s = sched_find(site)) == NULL) {
			rc = E_NOTFOUND;
			break;
		}
		/* Stopping lets a deploy in flight finish: its watchers see how it ends. */
		if (S.stopping && !s->running) {
			*seq = s->seq;
			*out = sched_event_json_locked(s);
			rc = E_STOPPED;
			break;
		}
		if (s->seq != *seq || util_mono_ms() >= until) {
			*seq = s->seq;
			*out = sched_event_json_locked(s);
			break;
		}
		ts.tv_sec = (time_t)(until / 1000);
		ts.tv_nsec = (long)(until % 1000) * 1000000;
		pthread_cond_timedwait(&S.event, &S.mu, &ts);
	}
	pthread_mutex_unlock(&S.mu);
	return rc;
}
