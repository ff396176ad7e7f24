/* engine.c: the engine's entry points: prepare, activate, deploy (both) and discard. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <git2.h>

#include "deploy/deploy.h"

int
engine_init(void)
{
	if (repo_init() != E_OK)
		return E_GIT;
	/* Once, before any thread: health checks use libcurl from the deploy threads. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return E_SYS;
	return E_OK;
}

void
engine_shutdown(void)
{
	curl_global_cleanup();
	git_libgit2_shutdown();
}

const char *
engine_phase_name(int phase)
{
	static const char *const names[] = {
		[PHASE_IDLE] = "idle", [PHASE_FETCHING] = "fetching",
		[PHASE_WRITING] = "writing", [PHASE_HOOK] = "hook",
		[PHASE_ACTIVATING] = "activating", [PHASE_HEALTH] = "health-check",
		[PHASE_UPKEEP] = "cache-upkeep",
	};

	if (phase < 0 || (size_t)phase >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[phase];
}

/* A failure before the swap: `current` is as it was; drop what this run wrote. */
static void
engine_fail(struct run *r, int rc, struct error *e)
{
	struct error se = { 0 };
	char clean[sizeof(e->msg)];

	if (!r->live) {
		if (r->wrote)
			util_rm_rf_at(r->releases_fd, r->tmpname);
		if (r->renamed && !r->kept)
			util_rm_rf_at(r->releases_fd, r->name);
	}
	r->res->rc = rc;
	util_strlcpy(r->res->error, e->msg, sizeof(r->res->error));
	util_sanitize(e->msg, clean, sizeof(clean));
	log_error("site=%s commit=%.12s deploy failed: %s", r->site->name,
	    r->commit[0] ? r->commit : "-", clean);
	if (!r->state_ok || r->live)
		return;
	run_on_failure(r, rc, e->msg, NULL);
	util_strlcpy(r->st.last_error, e->msg, sizeof(r->st.last_error));
	r->st.last_error_at = util_now_ms() / 1000;
	run_history(r, 0, e->msg);
	if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
		log_error("site=%s saving state: %s", r->site->name, se.msg);
}

/* Open the deploy root, take the site's lock and load its state. */
static int
engine_begin(struct run *r, const struct site *site, const struct deploy_request *req,
    struct deploy_result *res, engine_phase_cb cb, void *cbarg, struct error *e)
{
	int rc;

	memset(res, 0, sizeof(*res));
	memset(r, 0, sizeof(*r));
	r->site = site;
	r->req = req;
	r->res = res;
	r->cb = cb;
	r->cbarg = cbarg;
	r->path_fd = r->releases_fd = r->lock_fd = -1;
	r->started_at = util_now_ms();
	r->t0 = util_mono_ms();
	r->cache = fetch_cache_path(site);
	if ((rc = run_open_site(site, 1, &r->path_fd, &r->releases_fd, e)) != E_OK ||
	    (rc = run_lock(site, &r->lock_fd, e)) != E_OK ||
	    (rc = state_load(site->state_dir, site->name, &r->st, e)) != E_OK)
		return rc;
	r->state_ok = 1;
	r->before = r->st;
	r->before.releases = NULL;
	r->before.history = NULL;
	r->before.nreleases = r->before.nhistory = 0;
	return E_OK;
}

/* Record a failure if there was one, then give back the lock and everything else. */
static int
engine_end(struct run *r, int rc, struct error *e)
{
	if (rc != E_OK && r->res->rc == E_OK && r->res->error[0] == '\0')
		engine_fail(r, rc, e);
	r->res->rc = rc;
	r->res->duration_ms = util_mono_ms() - r->t0;
	if (r->state_ok)
		util_strlcpy(r->res->live, r->st.applied, sizeof(r->res->live));
	lock_release(r->lock_fd);
	if (r->releases_fd >= 0)
		close(r->releases_fd);
	if (r->path_fd >= 0)
		close(r->path_fd);
	state_free(&r->st);
	free(r->output);
	free(r->cache);
	return rc;
}

/* "Prepare site S at the tip, or at revision R": a release that is complete and not live. */
int
engine_prepare(const struct site *site, const struct deploy_request *req,
    struct deploy_result *res, engine_phase_cb cb, void *cbarg)
{
	struct run run;
	struct error e = { 0 };
	int rc;

	if ((rc = engine_begin(&run, site, req, res, cb, cbarg, &e)) == E_OK &&
	    (rc = prepare_run(&run, 1, &e)) == E_OK && !run.settled) {
		res->prepared = 1;
		util_strlcpy(res->release, run.name, sizeof(res->release));
	}
	return engine_end(&run, rc, &e);
}

/*
 * Make the prepared release live: the one named, or (release NULL) whatever is prepared.
 * With req->rev set, the prepared release must be of that commit.
 */
int
engine_activate(const struct site *site, const char *release, const struct deploy_request *req,
    struct deploy_result *res, engine_phase_cb cb, void *cbarg)
{
	struct run run, *r = &run;
	const struct prepared_rec *p;
	struct error e = { 0 };
	int rc;

	if ((rc = engine_begin(r, site, req, res, cb, cbarg, &e)) != E_OK)
		return engine_end(r, rc, &e);
	p = &r->st.prepared;
	if (p->name[0] == '\0' || (release != NULL && strcmp(release, p->name) != 0))
		rc = util_error(&e, E_NOTFOUND, "%s is not prepared%s%s", release != NULL ?
		    release : "no release", p->name[0] != '\0' ? "; prepared is " : "",
		    p->name);
	else if (req->rev[0] != '\0' && strncmp(p->commit, req->rev, strlen(req->rev)) != 0)
		rc = util_error(&e, E_INVAL, "the prepared release %s is of commit %.12s, not %s",
		    p->name, p->commit, req->rev);
	else if (!run_take_prepared(r))
		rc = util_error(&e, E_NOTFOUND, "the prepared release %s is gone from %s/releases",
		    p->name, site->path);
	if (rc != E_OK) {
		/* Not a failed deploy: nothing was attempted, so state and history stay. */
		util_strlcpy(res->error, e.msg, sizeof(res->error));
		res->rc = rc;
		return engine_end(r, rc, &e);
	}
	/* What the prepare knew of the commit: for the record and the hooks' environment. */
	util_strlcpy(r->commit, p->commit, sizeof(r->commit));
	util_strlcpy(r->fr.tip, p->commit, sizeof(r->fr.tip));
	util_strlcpy(r->fr.ref, p->ref, sizeof(r->fr.ref));
	util_strlcpy(r->subject, p->subject, sizeof(r->subject));
	util_strlcpy(r->author, p->author, sizeof(r->author));
	util_strlcpy(res->commit, r->commit, sizeof(res->commit));
	rc = activate_run(r, &e);
	return engine_end(r, rc, &e);
}

/* "Bring site S to the tip, or to revision R": prepare and activate under one lock. */
int
engine_deploy(const struct site *site, const struct deploy_request *req,
    struct deploy_result *res, engine_phase_cb cb, void *cbarg)
{
	struct run run;
	struct error e = { 0 };
	int rc;

	if ((rc = engine_begin(&run, site, req, res, cb, cbarg, &e)) == E_OK &&
	    (rc = prepare_run(&run, 0, &e)) == E_OK && !run.settled)
		rc = activate_run(&run, &e);
	return engine_end(&run, rc, &e);
}

/* A prepared release that will not go live is removed like a failed one. */
int
engine_discard(const struct site *site, const char *release, struct error *e)
{
	struct deploy_request req = { 0 };
	struct deploy_result res;
	struct run run;
	int rc;

	req.trigger = TRIG_MANUAL;
	if ((rc = engine_begin(&run, site, &req, &res, NULL, NULL, e)) != E_OK)
		goto out;
	if (run.st.prepared.name[0] == '\0' ||
	    (release != NULL && strcmp(release, run.st.prepared.name) != 0)) {
		rc = util_error(e, E_NOTFOUND, "%s is not prepared", release != NULL ? release :
		    "no release");
		goto out;
	}
	rc = prepare_drop(&run, "discarded", e);
out:
	/* A refusal here is the caller's answer, not a failed deploy to record. */
	res.rc = rc;
	util_strlcpy(res.error, rc != E_OK ? e->msg : "", sizeof(res.error));
	return engine_end(&run, rc, e);
}
