/* prepare.c: the first half of a deploy: fetch, pick the commit, check it, write its release, pre_activate. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

#define PREPARE_TMP_PREFIX ".tmp-"
#define PREPARE_TIP_FRESH_MS	1000	/* a webhook's deploy trusts a tip this recent */

/* The fetch helper's download progress, passed on to whoever watches the deploy. */
static void
prepare_fetch_progress(void *arg, const struct deploy_progress *p)
{
	struct run *r = arg;

	if (r->cb != NULL)
		r->cb(r->cbarg, PHASE_FETCHING, NULL, p);
}

/* Pick the target commit in the cache (the tip, or req->rev) and read its subject and author. */
static int
prepare_resolve(struct run *r, const char *tip, struct error *e)
{
	const char *rev = r->req->rev;
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_oid oid;
	size_t len = strlen(rev), i;
	int rc = E_OK, grc;

	if (repo_open(&repo, r->cache) != 0)
		return repo_error(e, "opening %s", r->cache);
	if (len == 0) {
		if (git_oid_fromstr(&oid, tip) != 0 || git_commit_lookup(&c, repo, &oid) != 0)
			rc = repo_error(e, "reading commit %.12s", tip);
	} else {
		for (i = 0; i < len; i++)
			if (strchr("0123456789abcdefABCDEF", rev[i]) == NULL)
				break;
		if (i < len || len < 4 || len > 40)
			rc = util_error(e, E_INVAL, "revision must be a commit id (4 to 40 hex "
			    "digits)");
		else if (git_oid_fromstrn(&oid, rev, len) != 0)
			rc = repo_error(e, "revision %s", rev);
		else if ((grc = git_commit_lookup_prefix(&c, repo, &oid, len)) != 0) {
			if (grc == GIT_EAMBIGUOUS)
				rc = util_error(e, E_INVAL, "revision %s is ambiguous", rev);
			else if (grc == GIT_ENOTFOUND)
				rc = util_error(e, E_NOTFOUND, "revision %s is not a commit "
				    "fetched from %s", rev, r->fr.ref);
			else
				rc = repo_error(e, "revision %s", rev);
		}
	}
	if (rc == E_OK) {
		git_oid_tostr(r->commit, sizeof(r->commit), git_commit_id(c));
		run_describe(c, r->subject, sizeof(r->subject), r->author,
		    sizeof(r->author));
	}
	git_commit_free(c);
	git_repository_free(repo);
	return rc;
}

/*
 * Nothing to do when the target is applied and `current` names an existing release of it,
 * or (subdir) the release that state says is live, which a later commit did not change.
 */
static int
prepare_is_live(struct run *r, char *cur, size_t len)
{
	char c12[13];
	struct stat st;

	return strcmp(r->commit, r->st.applied) == 0 &&
	    swap_read_current(r->path_fd, cur, len) == E_OK &&
	    release_parse_name(cur, NULL, c12) == E_OK &&
	    (strncmp(c12, r->commit, 12) == 0 || strcmp(cur, r->st.release) == 0) &&
	    fstatat(r->releases_fd, cur, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static int
prepare_is_bad(const struct site_state *st, const char *commit)
{
	size_t i;

	for (i = 0; i < st->nreleases; i++)
		if (st->releases[i].bad && strcmp(st->releases[i].commit, commit) == 0)
			return 1;
	return 0;
}

/*
 * A failure of this very commit after it went live (post_activate) stands until another
 * commit deploys: the next poll finds the commit live and must not report all is well.
 */
static int
prepare_failure_stands(const struct run *r)
{
	const struct history_rec *h;

	if (r->st.nhistory == 0 || r->st.last_error[0] == '\0')
		return 0;
	h = &r->st.history[r->st.nhistory - 1];
	return !h->ok && h->release[0] != '\0' && strcmp(h->commit, r->commit) == 0;
}

/*
 * Nothing to deploy: the target is live already, or a rollback marked it bad (only deploy
 * --rev deploys such a commit again). No history record: a poll every minute would flood it.
 * Sets r->settled and returns the result of saving what changed.
 */
static int
prepare_settled(struct run *r, int dirty, struct error *e)
{
	char cur[RELEASE_NAME_MAX];
	int bad = (r->req->rev[0] == '\0' || r->req->skip_bad) &&
	    prepare_is_bad(&r->st, r->commit);

	if (bad) {
		log_msg(r->req->trigger == TRIG_POLL ? LOG_LVL_DEBUG : LOG_LVL_INFO,
		    "site=%s commit=%.12s was rolled back (marked bad); not deploying it again",
		    r->site->name, r->commit);
		util_strlcpy(r->res->release, r->st.release, sizeof(r->res->release));
	} else if (prepare_is_live(r, cur, sizeof(cur))) {
		log_debug("site=%s commit=%.12s already live as %s", r->site->name, r->commit,
		    cur);
		util_strlcpy(r->res->release, cur, sizeof(r->res->release));
	} else
		return E_OK;
	r->settled = 1;
	/* An earlier failure (a remote that was down) is over; one of this commit is not. */
	if (r->st.last_error[0] != '\0' && !prepare_failure_stands(r)) {
		r->st.last_error[0] = '\0';
		r->st.last_error_at = 0;
		dirty = 1;
	}
	/* Only when something changed: polls should not fsync every minute. */
	if (dirty)
		return state_save(r->site->state_dir, r->site->name, &r->st, e);
	return E_OK;
}

/*
 * Ask the remote for its tip first (ls-remote): a tip already handled needs no fetch. A
 * webhook's deploy takes the tip the remote named less than a second ago instead: in a
 * flood, the deploy that waited behind the running one would only hear it again.
 */
static int
prepare_poll_check(struct run *r, struct error *e)
{
	int dirty, rc;

	if (r->req->trigger == TRIG_WEBHOOK &&
	    fetch_recent_tip(r->site, PREPARE_TIP_FRESH_MS, &r->fr)) {
		log_debug("site=%s commit=%.12s: the remote named it under %d ms ago; not asking"
		    " again", r->site->name, r->fr.tip, PREPARE_TIP_FRESH_MS);
	} else if ((rc = fetch_remote_tip(r->site, &r->fr, e)) != E_OK) {
		return rc;
	}
	if (strcmp(r->fr.tip, r->st.applied) != 0 && !prepare_is_bad(&r->st, r->fr.tip))
		return E_OK;
	dirty = strcmp(r->st.desired, r->fr.tip) != 0;
	util_strlcpy(r->st.desired, r->fr.tip, sizeof(r->st.desired));
	util_strlcpy(r->commit, r->fr.tip, sizeof(r->commit));
	util_strlcpy(r->res->commit, r->commit, sizeof(r->res->commit));
	if ((rc = prepare_settled(r, dirty, e)) != E_OK || r->settled)
		return rc;
	/* Applied, but `current` does not show it (removed by hand?): deploy it again. */
	r->commit[0] = '\0';
	r->res->commit[0] = '\0';
	return E_OK;
}

/*
 * The push named a commit that is not the applied one, nor a deleted branch's zeros. Only a
 * hint: the fetch still takes the branch's tip, whatever the push said.
 */
static int
prepare_news(const struct run *r)
{
	const char *after = r->req->after;

	return strlen(after) == 40 && strspn(after, "0") != 40 &&
	    strcmp(after, r->st.applied) != 0;
}

/* A name no existing release has: a second deploy within the same second moves a second on. */
static int
prepare_pick_name(struct run *r, struct error *e)
{
	int64_t secs = util_now_ms() / 1000;
	struct stat st;
	int i;

	for (i = 0; i < 3600; i++, secs++) {
		if (release_name(secs, r->commit, r->name, sizeof(r->name)) != E_OK)
			return util_error(e, E_INVAL, "cannot name a release for %s", r->commit);
		if (fstatat(r->releases_fd, r->name, &st, AT_SYMLINK_NOFOLLOW) != 0 &&
		    errno == ENOENT) {
			snprintf(r->tmpname, sizeof(r->tmpname), PREPARE_TMP_PREFIX "%s",
			    r->name);
			return E_OK;
		}
	}
	return util_error(e, E_INVAL, "no free release name for %.12s", r->commit);
}

/*
 * The fetch went well, yet an object of the commit does not read: the cache is damaged on disk
 * (a bad sector, a full disk in the past, someone's cleanup). Clone afresh, once.
 */
static int
prepare_refetch(struct run *r, struct error *e)
{
	struct fetch_result fr;
	struct error fe = { 0 };
	char clean[sizeof(e->msg)];
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_oid oid;
	int rc = E_OK;

	util_sanitize(e->msg, clean, sizeof(clean));
	log_warn("site=%s commit=%.12s the cache does not read (%s); cloning afresh",
	    r->site->name, r->commit, clean);
	if (util_rm_rf_at(r->releases_fd, r->tmpname) != E_OK)
		return util_error_sys(e, "removing %s", r->tmpname);
	if (fetch_site_fresh(r->site, &fr, &fe) != E_OK)
		return util_error(e, fe.code, "the cache was damaged and cloning afresh failed: %s",
		    fe.msg);
	if (repo_open(&repo, r->cache) != 0 || git_oid_fromstr(&oid, r->commit) != 0 ||
	    git_commit_lookup(&c, repo, &oid) != 0)
		rc = repo_error(e, "commit %.12s after cloning afresh", r->commit);
	git_commit_free(c);
	git_repository_free(repo);
	return rc;
}

/*
 * The release files may be reused from: the one `current` names, if state knows its commit and
 * when it was written (releases written by older versions have no stamp and are not used).
 * Its manifest, if whole and its own, lets one stat check each file; without one, git and
 * the stamp do, more slowly.
 */
static void
prepare_base(struct run *r, struct release_opts *o, struct manifest *mf)
{
	struct error me = { 0 };

	char cur[RELEASE_NAME_MAX];
	size_t i;

	memset(o, 0, sizeof(*o));
	o->allow_external = r->site->allow_external_symlinks;
	o->reuse = r->site->reuse;
	/* design.md: a build hook could write into files shared with older releases. */
	o->auto_hardlink = r->site->hooks.pre_activate.n == 0;
	o->subdir = r->site->subdir;
	if (swap_read_current(r->path_fd, cur, sizeof(cur)) != E_OK)
		return;
	for (i = 0; i < r->st.nreleases; i++) {
		const struct release_rec *rec = &r->st.releases[i];

		if (strcmp(rec->name, cur) != 0 || rec->written_ns <= 0)
			continue;
		o->base = rec->name;
		o->base_commit = rec->commit;
		o->base_written_ns = rec->written_ns;
	}
	if (o->base == NULL)
		return;
	if (manifest_load(r->site->state_dir, r->site->name, o->base, o->base_commit,
	    o->base_written_ns, mf, &me) == E_OK)
		o->base_manifest = mf;
	else
		log_info("site=%s release %s: %s; its files are checked against git", r->site->name,
		    o->base, me.msg);
}

/*
 * With subdir, a commit that changes nothing under it needs no release: the live one holds
 * that very tree. The site's commit moves on, and the history and status say why. A live
 * release that failed (post_activate, the health check) gets no such shortcut: a new push
 * is how an operator retries it.
 */
static int
prepare_unchanged(struct run *r, struct error *e)
{
	const char *subdir = r->site->subdir;
	const struct release_rec *rec = NULL;
	const struct history_rec *h;
	char cur[RELEASE_NAME_MAX], now[SHA_HEX], live[SHA_HEX];
	struct error ie = { 0 };
	struct stat sb;
	size_t i;

	if (subdir == NULL || swap_read_current(r->path_fd, cur, sizeof(cur)) != E_OK ||
	    strcmp(cur, r->st.release) != 0 || fstatat(r->releases_fd, cur, &sb, 0) != 0 ||
	    !S_ISDIR(sb.st_mode))
		return E_OK;
	h = r->st.nhistory > 0 ? &r->st.history[r->st.nhistory - 1] : NULL;
	if (h != NULL && !h->ok && strcmp(h->release, cur) == 0)
		return E_OK;
	for (i = 0; i < r->st.nreleases; i++)
		if (strcmp(r->st.releases[i].name, cur) == 0 && !r->st.releases[i].bad)
			rec = &r->st.releases[i];
	/* Any error here is the release write's to report: it meets the same commit. */
	if (rec == NULL ||
	    release_subtree_id(r->cache, rec->commit, subdir, live, &ie) != E_OK ||
	    release_subtree_id(r->cache, r->commit, subdir, now, &ie) != E_OK ||
	    strcmp(live, now) != 0)
		return E_OK;
	snprintf(r->st.note, sizeof(r->st.note), "commit %.12s changes nothing under %s/; "
	    "%s stays live", r->commit, subdir, cur);
	log_info("site=%s %s", r->site->name, r->st.note);
	util_strlcpy(r->res->note, r->st.note, sizeof(r->res->note));
	util_strlcpy(r->res->release, cur, sizeof(r->res->release));
	util_strlcpy(r->st.applied, r->commit, sizeof(r->st.applied));
	r->st.applied_at = util_now_ms() / 1000;
	util_strlcpy(r->st.subject, r->subject, sizeof(r->st.subject));
	util_strlcpy(r->st.author, r->author, sizeof(r->st.author));
	r->st.trigger = r->req->trigger;
	r->st.last_error[0] = '\0';
	r->st.last_error_at = 0;
	/* The history names the release that serves this commit. */
	util_strlcpy(r->name, cur, sizeof(r->name));
	run_history(r, 1, NULL);
	r->settled = 1;
	return state_save(r->site->state_dir, r->site->name, &r->st, e);
}

/* Files written into the release so far, passed on to whoever watches the deploy. */
static void
prepare_write_progress(void *arg, size_t done, size_t total)
{
	struct run *r = arg;
	struct deploy_progress p = { 0 };

	p.files = (int64_t)done;
	p.files_total = (int64_t)total;
	if (r->cb != NULL)
		r->cb(r->cbarg, PHASE_WRITING, r->commit, &p);
}

/* Write the release under its temporary name, make it durable, then give it its name. */
static int
prepare_write(struct run *r, struct error *e)
{
	int64_t t = util_mono_ms();
	struct manifest base = { 0 }, rec = { 0 };
	struct release_opts o;
	struct release_stats s;
	struct error me = { 0 };
	char folders[64] = "";
	int rc;

	if ((rc = prepare_pick_name(r, e)) != E_OK)
		return rc;
	if (util_rm_rf_at(r->releases_fd, r->tmpname) != E_OK)
		return util_error_sys(e, "removing old %s", r->tmpname);
	r->wrote = 1;
	prepare_base(r, &o, &base);
	o.progress = prepare_write_progress;
	o.progress_arg = r;
	o.record = &rec;
	rc = release_write_incr(r->cache, r->commit, r->releases_fd, r->tmpname, &o, &s, e);
	/* E_GIT: an object did not read; a refusal (E_INVAL) or a full disk is something else. */
	if (rc == E_GIT && (rc = prepare_refetch(r, e)) == E_OK) {
		manifest_free(&rec);
		rc = release_write_incr(r->cache, r->commit, r->releases_fd, r->tmpname, &o, &s,
		    e);
	}
	manifest_free(&base);
	if (rc == E_OK)
		rc = shared_link(r->site, r->releases_fd, r->tmpname, e);
	if (rc != E_OK) {
		manifest_free(&rec);
		return rc;
	}
	log_debug("site=%s commit=%.12s wrote %s in %lld ms; syncing", r->site->name,
	    r->commit, r->tmpname, (long long)(util_mono_ms() - t));
	/* One syncfs is far cheaper than an fsync per file, and makes the whole tree durable. */
	if (syncfs(r->releases_fd) != 0)
		return util_error_sys(e, "syncing %s", r->tmpname);
	release_settle(r->releases_fd, r->tmpname);
	if (renameat(r->releases_fd, r->tmpname, r->releases_fd, r->name) != 0) {
		manifest_free(&rec);
		return util_error_sys(e, "renaming %s", r->tmpname);
	}
	r->wrote = 0;
	r->renamed = 1;
	/* Before any hook runs: what changes in the release from now on is not reused. */
	r->written_ns = release_stamp(r->releases_fd, r->name);
	/*
	 * Without its manifest the next deploy checks every file against git: slower, never
	 * wrong. A crash here leaves at most a .tmp file, which the prune below removes.
	 */
	if (manifest_save(r->site->state_dir, r->site->name, r->name, r->commit, r->written_ns,
	    &rec, &me) != E_OK)
		log_warn("site=%s release %s: no manifest: %s", r->site->name, r->name, me.msg);
	manifest_free(&rec);
	manifest_prune(r->site->state_dir, r->site->name, r->releases_fd);
	if (fsync(r->releases_fd) != 0)
		return util_error_sys(e, "fsync %s/releases", r->site->path);
	r->written = s.written;
	r->reused = s.reused;
	util_strlcpy(r->reuse, s.method, sizeof(r->reuse));
	r->res->files_written = (int64_t)s.written;
	r->res->files_reused = (int64_t)s.reused;
	util_strlcpy(r->res->reuse, s.method, sizeof(r->res->reuse));
	if (s.folders_by_manifest > 0)
		snprintf(folders, sizeof(folders), ", %zu unchanged folder%s linked without git",
		    s.folders_by_manifest, s.folders_by_manifest == 1 ? "" : "s");
	log_info("site=%s commit=%.12s wrote release %s (%zu files: %zu written, %zu reused "
	    "by %s%s%s%s%s) in %lld ms", r->site->name, r->commit, r->name, s.nfiles, s.written,
	    s.reused, s.method, o.base != NULL ? " from " : "", o.base != NULL ? o.base : "",
	    s.by_manifest ? ", checked by its manifest" : "", folders,
	    (long long)(util_mono_ms() - t));
	return E_OK;
}

/* pre_activate in the finished release, before the swap; what it writes is made durable. */
static int
prepare_pre_activate(struct run *r, struct error *e)
{
	const struct strv *argv = &r->site->hooks.pre_activate;
	int rc;

	if ((rc = run_release_hook(r, "pre_activate", argv, e)) == E_OK && argv->n > 0 &&
	    syncfs(r->releases_fd) != 0)
		rc = util_error_sys(e, "syncing %s after pre_activate", r->name);
	return rc;
}

/* Forget the prepared release and remove it: discarded, or replaced by a newer one. */
int
prepare_drop(struct run *r, const char *why, struct error *e)
{
	struct prepared_rec *p = &r->st.prepared;
	char cur[RELEASE_NAME_MAX];

	if (p->name[0] == '\0')
		return E_OK;
	/* Never the live release: a crash may have swapped to it before state said so. */
	if (swap_read_current(r->path_fd, cur, sizeof(cur)) != E_OK || strcmp(cur, p->name) != 0)
		if (util_rm_rf_at(r->releases_fd, p->name) != E_OK)
			return util_error_sys(e, "removing the prepared release %s", p->name);
	log_info("site=%s commit=%.12s prepared release %s %s", r->site->name, p->commit,
	    p->name, why);
	memset(p, 0, sizeof(*p));
	return state_save(r->site->state_dir, r->site->name, &r->st, e);
}

/*
 * The prepared release is of this commit and still whole on disk: take it instead of writing
 * the same tree again (a prepare repeated, or a deploy after a prepare).
 */
static int
prepare_take(struct run *r)
{
	if (r->st.prepared.name[0] == '\0' || strcmp(r->st.prepared.commit, r->commit) != 0 ||
	    !run_take_prepared(r))
		return 0;
	log_info("site=%s commit=%.12s release %s was prepared already", r->site->name,
	    r->commit, r->name);
	return 1;
}

/* Record the release as prepared, so that activation can find it, even after a restart. */
static int
prepare_record(struct run *r, struct error *e)
{
	struct prepared_rec *p = &r->st.prepared;
	int rc;

	memset(p, 0, sizeof(*p));
	util_strlcpy(p->name, r->name, sizeof(p->name));
	util_strlcpy(p->commit, r->commit, sizeof(p->commit));
	util_strlcpy(p->ref, r->fr.ref, sizeof(p->ref));
	util_strlcpy(p->subject, r->subject, sizeof(p->subject));
	util_strlcpy(p->author, r->author, sizeof(p->author));
	p->prepared_at = util_now_ms() / 1000;
	p->written_ns = r->written_ns;
	p->files_written = (int64_t)r->written;
	p->files_reused = (int64_t)r->reused;
	util_strlcpy(p->reuse, r->reuse, sizeof(p->reuse));
	if ((rc = state_save(r->site->state_dir, r->site->name, &r->st, e)) != E_OK)
		return rc;
	r->kept = 1;
	log_info("site=%s commit=%.12s release %s prepared, not live", r->site->name,
	    r->commit, r->name);
	return E_OK;
}

/*
 * Everything before the swap. On success either r->settled (nothing to do), or r->name is a
 * complete release of r->commit that is not live; with record, state.json names it as the
 * site's prepared release.
 */
int
prepare_run(struct run *r, int record, struct error *e)
{
	const struct site *site = r->site;
	const struct deploy_request *req = r->req;
	int rc, dirty;

	run_step(r, PHASE_FETCHING);
	/*
	 * Polls, and webhooks (a flood of them, or one for a commit polling already deployed),
	 * first ask the remote for its tip through the long-lived helper: when it is live, no
	 * fetch helper is started at all. A webhook naming a commit not applied yet goes
	 * straight to the fetch: the remote would only say again what the host just said.
	 */
	if ((req->trigger == TRIG_POLL || (req->trigger == TRIG_WEBHOOK &&
	    !prepare_news(r))) && req->rev[0] == '\0' &&
	    ((rc = prepare_poll_check(r, e)) != E_OK || r->settled))
		return rc;
	if ((rc = fetch_site(site, &r->fr, prepare_fetch_progress, r, e)) != E_OK)
		return rc;
	dirty = strcmp(r->st.desired, r->fr.tip) != 0;
	/* A poll that finds the same tip says so only at debug level. */
	log_msg(dirty ? LOG_LVL_INFO : LOG_LVL_DEBUG, "site=%s commit=%.12s fetched (%s)",
	    site->name, r->fr.tip, r->fr.ref);
	util_strlcpy(r->st.desired, r->fr.tip, sizeof(r->st.desired));
	if ((rc = prepare_resolve(r, r->fr.tip, e)) != E_OK)
		return rc;
	util_strlcpy(r->res->commit, r->commit, sizeof(r->res->commit));
	if ((rc = prepare_settled(r, dirty, e)) != E_OK || r->settled)
		return rc;

	util_strlcpy(r->st.attempted, r->commit, sizeof(r->st.attempted));
	/* With allowed_signers, only a commit SSH-signed by a listed key may go live. */
	if (site->allowed_signers != NULL) {
		char signer[256];

		if ((rc = sshsig_verify_commit(r->cache, r->commit, site->allowed_signers,
		    signer, sizeof(signer), e)) != E_OK)
			return rc;
		log_info("site=%s commit=%.12s signed by %s", site->name, r->commit, signer);
	}
	if ((rc = prepare_unchanged(r, e)) != E_OK || r->settled)
		return rc;
	if (prepare_take(r))
		return E_OK;
	/* A newer target supersedes what was prepared for an older one. */
	if ((rc = prepare_drop(r, "replaced by a newer one", e)) != E_OK)
		return rc;
	run_step(r, PHASE_WRITING);
	if ((rc = prepare_write(r, e)) != E_OK ||
	    (rc = prepare_pre_activate(r, e)) != E_OK)
		return rc;
	return record ? prepare_record(r, e) : E_OK;
}
