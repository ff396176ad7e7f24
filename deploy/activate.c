/* activate.c: the second half of a deploy: swap `current` to a prepared release, record it, post_activate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "deploy/deploy.h"

/* The new release is live: record it, forget it as prepared, prune, and save. */
static int
activate_record(struct run *r, struct error *e)
{
	struct release_rec rec = { 0 };
	struct error pe = { 0 };
	size_t before;

	util_strlcpy(r->st.applied, r->commit, sizeof(r->st.applied));
	util_strlcpy(r->st.release, r->name, sizeof(r->st.release));
	r->st.applied_at = util_now_ms() / 1000;
	util_strlcpy(r->st.subject, r->subject, sizeof(r->st.subject));
	util_strlcpy(r->st.author, r->author, sizeof(r->st.author));
	r->st.trigger = r->req->trigger;
	r->st.last_error[0] = '\0';
	r->st.last_error_at = 0;
	r->st.note[0] = '\0';
	if (strcmp(r->st.prepared.name, r->name) == 0)
		memset(&r->st.prepared, 0, sizeof(r->st.prepared));
	util_strlcpy(rec.name, r->name, sizeof(rec.name));
	util_strlcpy(rec.commit, r->commit, sizeof(rec.commit));
	rec.activated_at = r->st.applied_at;
	rec.written_ns = r->written_ns;
	rec.files_written = (int64_t)r->written;
	rec.files_reused = (int64_t)r->reused;
	util_strlcpy(rec.reuse, r->reuse, sizeof(rec.reuse));
	state_add_release(&r->st, &rec);
	before = r->st.nreleases;
	if (prune_releases(r->releases_fd, &r->st, r->site->keep, r->name, &pe) != E_OK)
		log_warn("site=%s pruning releases: %s", r->site->name, pe.msg);
	if (r->st.nreleases < before)
		log_info("site=%s pruned %zu old release(s)", r->site->name,
		    before - r->st.nreleases);
	run_history(r, 1, NULL);
	return state_save(r->site->state_dir, r->site->name, &r->st, e);
}

/* Back to what was live before, after the new release failed live; it is marked bad. */
static int
activate_undo(struct run *r, int rc, struct error *e, struct error *me)
{
	struct error se = { 0 };
	struct stat sb;
	size_t i;

	if (r->before.release[0] == '\0' || fstatat(r->releases_fd, r->before.release,
	    &sb, 0) != 0 || !S_ISDIR(sb.st_mode)) {
		util_error(me, rc, "%s; no previous release to roll back to", e->msg);
		return 0;
	}
	if (swap_current(r->path_fd, r->before.release, &se) != E_OK) {
		util_error(me, rc, "%s; rolling back failed: %s", e->msg, se.msg);
		return 0;
	}
	util_error(me, rc, "%s; rolled back to %s", e->msg, r->before.release);
	r->res->changed = 0;
	util_strlcpy(r->res->release, r->before.release, sizeof(r->res->release));
	util_strlcpy(r->st.applied, r->before.applied, sizeof(r->st.applied));
	util_strlcpy(r->st.release, r->before.release, sizeof(r->st.release));
	r->st.applied_at = r->before.applied_at;
	util_strlcpy(r->st.subject, r->before.subject, sizeof(r->st.subject));
	util_strlcpy(r->st.author, r->before.author, sizeof(r->st.author));
	r->st.trigger = r->before.trigger;
	for (i = 0; i < r->st.nreleases; i++)
		if (strcmp(r->st.releases[i].name, r->name) == 0)
			r->st.releases[i].bad = 1;
	return 1;
}

/*
 * post_activate or the health check failed with the new release live: a failed deploy. With
 * rollback_on_failure, `current` goes back to the release that was live before, and the new
 * one is marked bad so that no poll deploys that commit again (releases.md: rollback marks
 * the release bad).
 */
static void
activate_failed(struct run *r, int rc, struct error *e)
{
	struct error se = { 0 }, me = { 0 };
	char clean[sizeof(e->msg)], *release, *msg = me.msg;

	util_strlcpy(msg, e->msg, sizeof(me.msg));
	if (r->site->rollback_on_failure)
		activate_undo(r, rc, e, &me);
	r->res->rc = rc;
	util_strlcpy(r->res->error, msg, sizeof(r->res->error));
	util_sanitize(msg, clean, sizeof(clean));
	log_error("site=%s commit=%.12s deploy failed: %s", r->site->name, r->commit, clean);
	release = run_release_path(r);
	run_on_failure(r, rc, msg, release);
	free(release);
	util_strlcpy(r->st.last_error, msg, sizeof(r->st.last_error));
	r->st.last_error_at = util_now_ms() / 1000;
	/* activate_record wrote this deploy's record as a success; it was not one. */
	if (r->st.nhistory > 0) {
		struct history_rec *h = &r->st.history[r->st.nhistory - 1];

		h->ok = 0;
		util_strlcpy(h->error, msg, sizeof(h->error));
		util_strlcpy(h->output, r->output != NULL ? r->output : "", sizeof(h->output));
		h->duration_ms = util_mono_ms() - r->t0;
	}
	if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
		log_error("site=%s saving state: %s", r->site->name, se.msg);
}

/* post_activate, with the new release live; its failure is a failed deploy. */
static int
activate_post(struct run *r, struct error *e)
{
	const struct strv *argv = &r->site->hooks.post_activate;
	struct error se = { 0 };
	int rc;

	if ((rc = run_release_hook(r, "post_activate", argv, e)) == E_OK && argv->n > 0 &&
	    r->st.nhistory > 0) {
		/* The success record was written before the hook ran; add what it printed. */
		util_strlcpy(r->st.history[r->st.nhistory - 1].output, r->output,
		    sizeof(r->st.history[0].output));
		if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
			log_error("site=%s saving state: %s", r->site->name, se.msg);
	}
	return rc;
}

/* health_check, with the new release live and post_activate done; what it got is kept. */
static int
activate_health(struct run *r, struct error *e)
{
	struct error se = { 0 };
	int rc;

	run_step(r, PHASE_HEALTH);
	if ((rc = health_check(r->site->name, &r->site->health, r->st.note, sizeof(r->st.note),
	    e)) != E_OK)
		return rc;
	util_strlcpy(r->res->note, r->st.note, sizeof(r->res->note));
	if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
		log_error("site=%s saving state: %s", r->site->name, se.msg);
	return E_OK;
}

/*
 * A fleet's cutover names the instant every node swaps, so that the skew is the clocks'
 * offset rather than the distance to etcd. The lock is held and the state read already, and
 * the link is staged before the wait: nothing but the rename is left after it, and the timer's
 * slack is cut to a microsecond meanwhile (50 us is the default). A clock far ahead must not
 * hold a site for long, so the wait is bounded.
 *
 * A node that swapped on time then keeps still for ACTIVATE_SETTLE_MS before the fsync and
 * what follows (the record, pruning the oldest release, the fleet's records): the others' clocks
 * reach the instant a few milliseconds apart, and nodes that share a host or a disk (containers,
 * VMs, the test bed) woke up to 7 ms late behind the first ones' clean-up.
 */
#define ACTIVATE_WAIT_MAX_MS	5000
#define ACTIVATE_SETTLE_MS	20

static void
activate_sleep_until(int64_t at_ms, struct timespec *ts)
{
	ts->tv_sec = at_ms / 1000;
	ts->tv_nsec = (at_ms % 1000) * 1000000;
	while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, ts, NULL) == EINTR)
		;
}

int
activate_swap(const char *site, int path_fd, const char *release, int64_t at_ms,
    int64_t *swapped_ms, struct error *e)
{
	int64_t left, late_us = -1;
	struct timespec ts, woke;
	int rc, slack;

	if ((rc = swap_stage(path_fd, release, e)) != E_OK)
		return rc;
	left = at_ms - util_now_ms();
	/* Late means this node adds to the cutover's skew: say by how much, and that it is why. */
	if (at_ms > 0 && left < -1)
		log_info("site=%s swapping %lld ms after the cutover's instant (it came late, or "
		    "the site was busy)", site, (long long)-left);
	if (at_ms > 0 && left > 0) {
		if (left > ACTIVATE_WAIT_MAX_MS)
			at_ms = util_now_ms() + ACTIVATE_WAIT_MAX_MS;
		slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
		activate_sleep_until(at_ms, &ts);
		clock_gettime(CLOCK_REALTIME, &woke);
		if (slack > 0)
			prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
		late_us = (woke.tv_sec - ts.tv_sec) * 1000000 + (woke.tv_nsec - ts.tv_nsec) / 1000;
	}
	if ((rc = swap_commit(path_fd, e)) != E_OK)
		return rc;
	*swapped_ms = util_now_ms();
	if (late_us >= 0) {
		activate_sleep_until(at_ms + ACTIVATE_SETTLE_MS, &ts);
		/* The timer's part of the skew, as this node's clock sees it. */
		log_debug("site=%s woke %lld us after the cutover's instant", site,
		    (long long)late_us);
	}
	swap_sync(path_fd, release);
	return E_OK;
}

/*
 * Make r->name live: one renameat of `current`, then the record, post_activate and the health
 * check. A failure before the swap leaves `current` as it was.
 */
int
activate_run(struct run *r, struct error *e)
{
	int rc;

	run_step(r, PHASE_ACTIVATING);
	if ((rc = activate_swap(r->site->name, r->path_fd, r->name, r->req->at_ms,
	    &r->res->swapped_at_ms, e)) != E_OK)
		return rc;
	r->live = 1;
	r->renamed = 0;
	r->res->changed = 1;
	util_strlcpy(r->res->release, r->name, sizeof(r->res->release));
	util_strlcpy(r->res->commit, r->commit, sizeof(r->res->commit));
	log_info("site=%s commit=%.12s release %s live", r->site->name, r->commit, r->name);
	if ((rc = activate_record(r, e)) != E_OK) {
		char msg[sizeof(e->msg)];

		util_strlcpy(msg, e->msg, sizeof(msg));
		return util_error(e, rc, "release %s is live, but saving state failed: %s",
		    r->name, msg);
	}
	if ((rc = activate_post(r, e)) == E_OK && r->site->health.url != NULL)
		rc = activate_health(r, e);
	if (rc != E_OK)
		activate_failed(r, rc, e);
	return rc;
}
