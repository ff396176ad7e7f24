/* engine.c: one deploy from fetch to a live `current`, and the repair of a site at start-up. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

#define ENGINE_TMP_PREFIX ".tmp-"

/* One deploy's working set, so every failure can clean up from one place. */
struct engine_run {
	const struct site *site;
	const struct deploy_request *req;
	struct deploy_result	 *res;
	int			  path_fd;
	int			  releases_fd;
	int			  lock_fd;
	int			  state_ok;	/* state loaded: failures are recorded */
	struct site_state	  st;
	struct site_state	  before;	/* st's scalars as loaded: what was live */
	struct fetch_result	  fr;
	engine_phase_cb		  cb;
	void			 *cbarg;
	char			 *output;	/* the end of the hooks' output, for history */
	char			 *cache;
	char			  commit[SHA_HEX];
	char			  subject[256];
	char			  author[128];
	char			  name[RELEASE_NAME_MAX];
	char			  tmpname[RELEASE_NAME_MAX + 8];
	struct release_stats	  stats;	/* of the release written */
	int64_t			  written_ns;	/* its stamp, for the next deploy's reuse */
	int			  wrote;	/* tmpname exists */
	int			  renamed;	/* name exists but is not live */
	int			  live;
	int64_t			  started_at;	/* unix ms */
	int64_t			  t0;		/* monotonic ms */
};

int
engine_init(void)
{
	if (git_libgit2_init() < 0)
		return E_GIT;
	return E_OK;
}

void
engine_shutdown(void)
{
	git_libgit2_shutdown();
}

const char *
engine_phase_name(int phase)
{
	static const char *const names[] = {
		[PHASE_IDLE] = "idle", [PHASE_FETCHING] = "fetching",
		[PHASE_WRITING] = "writing", [PHASE_HOOK] = "hook",
		[PHASE_ACTIVATING] = "activating",
	};

	if (phase < 0 || (size_t)phase >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[phase];
}

static void
engine_phase(engine_phase_cb cb, void *arg, enum phase phase, const char *commit)
{
	if (cb != NULL)
		cb(arg, phase, commit, NULL);
}

/* The fetch helper's download progress, passed on to whoever watches the deploy. */
static void
engine_fetch_progress(void *arg, const struct deploy_progress *p)
{
	struct engine_run *r = arg;

	if (r->cb != NULL)
		r->cb(r->cbarg, PHASE_FETCHING, NULL, p);
}

/*
 * Open <path> and <path>/releases as directory descriptors, creating them if create is set. An
 * unexpected `current` or `releases` is refused before anything else is created.
 */
static int
engine_open_site(const struct site *site, int create, int *path_fdp,
    int *releases_fdp, struct error *e)
{
	struct stat st;
	int path_fd, releases_fd;

	*path_fdp = *releases_fdp = -1;
	if (create && util_mkdir_p(site->path, 0755) != E_OK)
		return util_error_sys(e, "creating %s", site->path);
	if ((path_fd = open(site->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return util_error_sys(e, "opening %s", site->path);
	if (fstatat(path_fd, "current", &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode)) {
		close(path_fd);
		return util_error(e, E_INVAL, "%s/current is a %s, not a symlink; move it away",
		    site->path, S_ISDIR(st.st_mode) ? "directory" : "file");
	}
	if (fstatat(path_fd, "releases", &st, 0) != 0) {
		if (errno != ENOENT || !create) {
			util_error_sys(e, "%s/releases", site->path);
			close(path_fd);
			return E_SYS;
		}
		/* fchmodat: the web server must traverse releases/ whatever our umask is. */
		if ((mkdirat(path_fd, "releases", 0755) != 0 && errno != EEXIST) ||
		    fchmodat(path_fd, "releases", 0755, 0) != 0) {
			util_error_sys(e, "creating %s/releases", site->path);
			close(path_fd);
			return E_SYS;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		close(path_fd);
		return util_error(e, E_INVAL, "%s/releases is not a directory; move it away",
		    site->path);
	}
	releases_fd = openat(path_fd, "releases", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (releases_fd < 0) {
		util_error_sys(e, "opening %s/releases", site->path);
		close(path_fd);
		return E_SYS;
	}
	*path_fdp = path_fd;
	*releases_fdp = releases_fd;
	return E_OK;
}

static int
engine_lock(const struct site *site, int *fd, struct error *e)
{
	char *path = util_xasprintf("%s/.deployd.lock", site->path);
	int rc = lock_acquire(path, 0, fd, e);

	free(path);
	return rc;
}

/* Copy up to the first newline, never cutting a UTF-8 sequence in half. */
static void
engine_copy_line(char *dst, const char *src, size_t len)
{
	size_t n = strcspn(src, "\r\n");

	if (n >= len) {
		n = len - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* A commit's subject line and "Name <email>", for status. */
static void
engine_describe(git_commit *c, char *subject, size_t sublen, char *author, size_t authlen)
{
	const git_signature *sig = git_commit_author(c);
	char *who;

	engine_copy_line(subject, git_commit_message(c) ? git_commit_message(c) : "", sublen);
	who = util_xasprintf("%s <%s>", sig->name ? sig->name : "",
	    sig->email ? sig->email : "");
	engine_copy_line(author, who, authlen);
	free(who);
}

/* Pick the target commit in the cache (the tip, or req->rev) and read its subject and author. */
static int
engine_resolve(struct engine_run *r, const char *tip, struct error *e)
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
		engine_describe(c, r->subject, sizeof(r->subject), r->author,
		    sizeof(r->author));
	}
	git_commit_free(c);
	git_repository_free(repo);
	return rc;
}

/* Nothing to do when the target is applied and `current` names an existing release of it. */
static int
engine_is_live(struct engine_run *r, char *cur, size_t len)
{
	char c12[13];
	struct stat st;

	return strcmp(r->commit, r->st.applied) == 0 &&
	    swap_read_current(r->path_fd, cur, len) == E_OK &&
	    release_parse_name(cur, NULL, c12) == E_OK &&
	    strncmp(c12, r->commit, 12) == 0 &&
	    fstatat(r->releases_fd, cur, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

/* A name no existing release has: a second deploy within the same second moves a second on. */
static int
engine_pick_name(struct engine_run *r, struct error *e)
{
	int64_t secs = util_now_ms() / 1000;
	struct stat st;
	int i;

	for (i = 0; i < 3600; i++, secs++) {
		if (release_name(secs, r->commit, r->name, sizeof(r->name)) != E_OK)
			return util_error(e, E_INVAL, "cannot name a release for %s", r->commit);
		if (fstatat(r->releases_fd, r->name, &st, AT_SYMLINK_NOFOLLOW) != 0 &&
		    errno == ENOENT) {
			snprintf(r->tmpname, sizeof(r->tmpname), ENGINE_TMP_PREFIX "%s",
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
engine_refetch(struct engine_run *r, struct error *e)
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
 */
static void
engine_base(struct engine_run *r, struct release_opts *o)
{
	char cur[RELEASE_NAME_MAX];
	size_t i;

	memset(o, 0, sizeof(*o));
	o->allow_external = r->site->allow_external_symlinks;
	o->reuse = r->site->reuse;
	/* design.md: a build hook could write into files shared with older releases. */
	o->auto_hardlink = r->site->hooks.pre_activate.n == 0;
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
}

/* Files written into the release so far, passed on to whoever watches the deploy. */
static void
engine_write_progress(void *arg, size_t done, size_t total)
{
	struct engine_run *r = arg;
	struct deploy_progress p = { 0 };

	p.files = (int64_t)done;
	p.files_total = (int64_t)total;
	if (r->cb != NULL)
		r->cb(r->cbarg, PHASE_WRITING, r->commit, &p);
}

/* Write the release under its temporary name, make it durable, then give it its name. */
static int
engine_write(struct engine_run *r, struct error *e)
{
	int64_t t = util_mono_ms();
	struct release_opts o;
	struct release_stats *s = &r->stats;
	int rc;

	if ((rc = engine_pick_name(r, e)) != E_OK)
		return rc;
	if (util_rm_rf_at(r->releases_fd, r->tmpname) != E_OK)
		return util_error_sys(e, "removing old %s", r->tmpname);
	r->wrote = 1;
	engine_base(r, &o);
	o.progress = engine_write_progress;
	o.progress_arg = r;
	rc = release_write_incr(r->cache, r->commit, r->releases_fd, r->tmpname, &o, s, e);
	/* E_GIT: an object did not read; a refusal (E_INVAL) or a full disk is something else. */
	if (rc == E_GIT && (rc = engine_refetch(r, e)) == E_OK)
		rc = release_write_incr(r->cache, r->commit, r->releases_fd, r->tmpname, &o, s,
		    e);
	if (rc != E_OK)
		return rc;
	if ((rc = shared_link(r->site, r->releases_fd, r->tmpname, e)) != E_OK)
		return rc;
	log_debug("site=%s commit=%.12s wrote %s in %lld ms; syncing", r->site->name,
	    r->commit, r->tmpname, (long long)(util_mono_ms() - t));
	/* One syncfs is far cheaper than an fsync per file, and makes the whole tree durable. */
	if (syncfs(r->releases_fd) != 0)
		return util_error_sys(e, "syncing %s", r->tmpname);
	release_settle(r->releases_fd, r->tmpname);
	if (renameat(r->releases_fd, r->tmpname, r->releases_fd, r->name) != 0)
		return util_error_sys(e, "renaming %s", r->tmpname);
	r->wrote = 0;
	r->renamed = 1;
	/* Before any hook runs: what changes in the release from now on is not reused. */
	r->written_ns = release_stamp(r->releases_fd, r->name);
	if (fsync(r->releases_fd) != 0)
		return util_error_sys(e, "fsync %s/releases", r->site->path);
	r->res->files_written = (int64_t)s->written;
	r->res->files_reused = (int64_t)s->reused;
	util_strlcpy(r->res->reuse, s->method, sizeof(r->res->reuse));
	log_info("site=%s commit=%.12s wrote release %s (%zu files: %zu written, %zu reused "
	    "by %s%s%s) in %lld ms", r->site->name, r->commit, r->name, s->nfiles, s->written,
	    s->reused, s->method, o.base != NULL ? " from " : "", o.base != NULL ? o.base : "",
	    (long long)(util_mono_ms() - t));
	return E_OK;
}

static void
engine_history(struct engine_run *r, int ok, const char *error)
{
	struct history_rec h = { 0 };

	h.id = r->st.next_id++;
	h.trigger = r->req->trigger;
	util_strlcpy(h.provider, r->req->provider, sizeof(h.provider));
	util_strlcpy(h.delivery, r->req->delivery, sizeof(h.delivery));
	h.started_at = r->started_at;
	h.duration_ms = util_mono_ms() - r->t0;
	h.ok = ok;
	util_strlcpy(h.commit, r->commit, sizeof(h.commit));
	/* A release is named only if it went live, even when the deploy failed after. */
	if (ok || r->live)
		util_strlcpy(h.release, r->name, sizeof(h.release));
	util_strlcpy(h.error, error != NULL ? error : "", sizeof(h.error));
	if (r->output != NULL)
		util_strlcpy(h.output, r->output, sizeof(h.output));
	state_add_history(&r->st, &h);
}

/* Keep the last HISTORY_OUTPUT_MAX - 1 bytes of everything the hooks printed. */
static void
engine_add_output(struct engine_run *r, const char *what, const struct hookrun_result *hr)
{
	char *tail = util_xmalloc(HISTORY_OUTPUT_MAX), *all;
	size_t len, cut;

	hookrun_tail(hr, tail, HISTORY_OUTPUT_MAX);
	all = util_xasprintf("%s[%s]\n%s", r->output != NULL ? r->output : "", what, tail);
	free(tail);
	len = strlen(all);
	if (len >= HISTORY_OUTPUT_MAX) {
		cut = len - (HISTORY_OUTPUT_MAX - 1);
		while (((unsigned char)all[cut] & 0xc0) == 0x80)
			cut++;		/* never start inside a UTF-8 character */
		memmove(all, all + cut, len - cut + 1);
	}
	free(r->output);
	r->output = all;
}

/* The release of this deploy by absolute path: what DEPLOYD_RELEASE names. */
static char *
engine_release_path(const struct engine_run *r)
{
	return util_xasprintf("%s/releases/%s", r->site->path, r->name);
}

/*
 * Run one of the site's hooks in cwd (phase PHASE_HOOK), log its output line by line and keep
 * the end of it for the history. error is DEPLOYD_ERROR, for on_failure.
 */
static int
engine_hook(struct engine_run *r, const char *what, const struct strv *argv, const char *cwd,
    const char *release, const char *error, struct error *e)
{
	struct hookrun_env env;
	struct hookrun_result hr;
	int64_t t = util_mono_ms();
	int rc;

	memset(&env, 0, sizeof(env));
	env.site = r->site->name;
	env.release = release != NULL ? release : "";
	env.commit = r->commit;
	env.previous_commit = r->before.applied;
	env.ref = r->fr.ref;
	env.error = error;
	engine_phase(r->cb, r->cbarg, PHASE_HOOK, r->commit[0] ? r->commit : NULL);
	log_info("site=%s commit=%.12s running %s hook %s", r->site->name,
	    r->commit[0] ? r->commit : "-", what, argv->v[0]);
	rc = hookrun_run(what, argv, cwd, &env, r->site->hooks.timeout_ms, &hr, e);
	hookrun_log(r->site->name, what, &hr);
	engine_add_output(r, what, &hr);
	hookrun_result_free(&hr);
	if (rc == E_OK)
		log_info("site=%s commit=%.12s %s hook succeeded in %lld ms", r->site->name,
		    r->commit[0] ? r->commit : "-", what, (long long)(util_mono_ms() - t));
	return rc;
}

/*
 * on_failure after a failed deploy. A poll that keeps failing the same way (a remote down for
 * an hour) notifies once rather than once a poll: a failure is new when its message changed.
 */
static void
engine_on_failure(struct engine_run *r, int rc, const char *msg, const char *release)
{
	const struct strv *argv = &r->site->hooks.on_failure;
	struct error he = { 0 };
	char clean[sizeof(he.msg)];

	if (argv->n == 0 || !r->state_ok || rc == E_BUSY || rc == E_STOPPED)
		return;
	if (r->req->trigger == TRIG_POLL && strcmp(r->before.last_error, msg) == 0)
		return;
	if (engine_hook(r, "on_failure", argv, r->site->path, release, msg, &he) != E_OK) {
		util_sanitize(he.msg, clean, sizeof(clean));
		log_error("site=%s %s", r->site->name, clean);
	}
}

/* pre_activate in the finished release, before the swap; what it writes is made durable. */
static int
engine_pre_activate(struct engine_run *r, struct error *e)
{
	const struct strv *argv = &r->site->hooks.pre_activate;
	char *release;
	int rc;

	if (argv->n == 0)
		return E_OK;
	release = engine_release_path(r);
	rc = engine_hook(r, "pre_activate", argv, release, release, NULL, e);
	free(release);
	if (rc == E_OK && syncfs(r->releases_fd) != 0)
		rc = util_error_sys(e, "syncing %s after pre_activate", r->name);
	return rc;
}

static int
engine_is_bad(const struct site_state *st, const char *commit)
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
engine_failure_stands(const struct engine_run *r)
{
	const struct history_rec *h;

	if (r->st.nhistory == 0 || r->st.last_error[0] == '\0')
		return 0;
	h = &r->st.history[r->st.nhistory - 1];
	return !h->ok && h->release[0] != '\0' && strcmp(h->commit, r->commit) == 0;
}

/* The new release is live: record it, prune, and save. */
static int
engine_record(struct engine_run *r, struct error *e)
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
	util_strlcpy(rec.name, r->name, sizeof(rec.name));
	util_strlcpy(rec.commit, r->commit, sizeof(rec.commit));
	rec.activated_at = r->st.applied_at;
	rec.written_ns = r->written_ns;
	rec.files_written = (int64_t)r->stats.written;
	rec.files_reused = (int64_t)r->stats.reused;
	util_strlcpy(rec.reuse, r->stats.method != NULL ? r->stats.method : "",
	    sizeof(rec.reuse));
	state_add_release(&r->st, &rec);
	before = r->st.nreleases;
	if (release_prune(r->releases_fd, &r->st, r->site->keep, r->name, &pe) != E_OK)
		log_warn("site=%s pruning releases: %s", r->site->name, pe.msg);
	if (r->st.nreleases < before)
		log_info("site=%s pruned %zu old release(s)", r->site->name,
		    before - r->st.nreleases);
	engine_history(r, 1, NULL);
	return state_save(r->site->state_dir, r->site->name, &r->st, e);
}

static void
engine_fail(struct engine_run *r, int rc, struct error *e)
{
	struct error se = { 0 };
	char clean[sizeof(e->msg)];

	if (!r->live) {
		/* Nothing before the swap touched `current`; drop what this deploy wrote. */
		if (r->wrote)
			util_rm_rf_at(r->releases_fd, r->tmpname);
		if (r->renamed)
			util_rm_rf_at(r->releases_fd, r->name);
	}
	r->res->rc = rc;
	util_strlcpy(r->res->error, e->msg, sizeof(r->res->error));
	util_sanitize(e->msg, clean, sizeof(clean));
	log_error("site=%s commit=%.12s deploy failed: %s", r->site->name,
	    r->commit[0] ? r->commit : "-", clean);
	if (!r->state_ok || r->live)
		return;
	engine_on_failure(r, rc, e->msg, NULL);
	util_strlcpy(r->st.last_error, e->msg, sizeof(r->st.last_error));
	r->st.last_error_at = util_now_ms() / 1000;
	engine_history(r, 0, e->msg);
	if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
		log_error("site=%s saving state: %s", r->site->name, se.msg);
}

/*
 * post_activate failed with the new release live: a failed deploy. With rollback_on_failure,
 * `current` goes back to the release that was live before, and the new one is marked bad so
 * that no poll deploys that commit again (releases.md: rollback marks the release bad).
 */
static void
engine_post_failed(struct engine_run *r, int rc, struct error *e)
{
	struct error se = { 0 }, me = { 0 };
	char clean[sizeof(e->msg)], *release, *msg = me.msg;
	struct stat sb;
	size_t i;
	int back = 0;

	util_strlcpy(msg, e->msg, sizeof(me.msg));
	if (r->site->rollback_on_failure) {
		if (r->before.release[0] == '\0' || fstatat(r->releases_fd, r->before.release,
		    &sb, 0) != 0 || !S_ISDIR(sb.st_mode))
			util_error(&me, rc, "%s; no previous release to roll back to", e->msg);
		else if (swap_current(r->path_fd, r->before.release, &se) != E_OK)
			util_error(&me, rc, "%s; rolling back failed: %s", e->msg, se.msg);
		else {
			back = 1;
			util_error(&me, rc, "%s; rolled back to %s", e->msg,
			    r->before.release);
		}
	}
	r->res->rc = rc;
	util_strlcpy(r->res->error, msg, sizeof(r->res->error));
	util_sanitize(msg, clean, sizeof(clean));
	log_error("site=%s commit=%.12s deploy failed: %s", r->site->name, r->commit, clean);
	if (back) {
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
	}
	release = engine_release_path(r);
	engine_on_failure(r, rc, msg, release);
	free(release);
	util_strlcpy(r->st.last_error, msg, sizeof(r->st.last_error));
	r->st.last_error_at = util_now_ms() / 1000;
	/* engine_record wrote this deploy's record as a success; it was not one. */
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

/*
 * Nothing to deploy: the target is live already, or a rollback marked it bad (only deploy
 * --rev deploys such a commit again). No history record: a poll every minute would flood it.
 * Returns 1 when settled, with *rcp the result of saving what changed.
 */
static int
engine_settled(struct engine_run *r, int dirty, int *rcp, struct error *e)
{
	char cur[RELEASE_NAME_MAX];
	int bad = (r->req->rev[0] == '\0' || r->req->skip_bad) &&
	    engine_is_bad(&r->st, r->commit);

	*rcp = E_OK;
	if (bad) {
		log_msg(r->req->trigger == TRIG_POLL ? LOG_LVL_DEBUG : LOG_LVL_INFO,
		    "site=%s commit=%.12s was rolled back (marked bad); not deploying it again",
		    r->site->name, r->commit);
		util_strlcpy(r->res->release, r->st.release, sizeof(r->res->release));
	} else if (engine_is_live(r, cur, sizeof(cur))) {
		log_debug("site=%s commit=%.12s already live as %s", r->site->name, r->commit,
		    cur);
		util_strlcpy(r->res->release, cur, sizeof(r->res->release));
	} else
		return 0;
	/* An earlier failure (a remote that was down) is over; one of this commit is not. */
	if (r->st.last_error[0] != '\0' && !engine_failure_stands(r)) {
		r->st.last_error[0] = '\0';
		r->st.last_error_at = 0;
		dirty = 1;
	}
	/* Only when something changed: polls should not fsync every minute. */
	if (dirty)
		*rcp = state_save(r->site->state_dir, r->site->name, &r->st, e);
	return 1;
}

/* Ask the remote for its tip first (ls-remote): a tip already handled needs no fetch. */
static int
engine_poll_check(struct engine_run *r, int *rcp, struct error *e)
{
	int dirty;

	if ((*rcp = fetch_remote_tip(r->site, &r->fr, e)) != E_OK)
		return 1;
	if (strcmp(r->fr.tip, r->st.applied) != 0 && !engine_is_bad(&r->st, r->fr.tip))
		return 0;
	dirty = strcmp(r->st.desired, r->fr.tip) != 0;
	util_strlcpy(r->st.desired, r->fr.tip, sizeof(r->st.desired));
	util_strlcpy(r->commit, r->fr.tip, sizeof(r->commit));
	util_strlcpy(r->res->commit, r->commit, sizeof(r->res->commit));
	if (engine_settled(r, dirty, rcp, e))
		return 1;
	/* Applied, but `current` does not show it (removed by hand?): deploy it again. */
	r->commit[0] = '\0';
	r->res->commit[0] = '\0';
	return 0;
}

/* post_activate, with the new release live; its failure is a failed deploy. */
static int
engine_post_activate(struct engine_run *r, struct error *e)
{
	const struct strv *argv = &r->site->hooks.post_activate;
	struct error se = { 0 };
	char *release;
	int rc;

	if (argv->n == 0)
		return E_OK;
	release = engine_release_path(r);
	rc = engine_hook(r, "post_activate", argv, release, release, NULL, e);
	free(release);
	if (rc == E_OK && r->st.nhistory > 0) {
		/* The success record was written before the hook ran; add what it printed. */
		util_strlcpy(r->st.history[r->st.nhistory - 1].output, r->output,
		    sizeof(r->st.history[0].output));
		if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
			log_error("site=%s saving state: %s", r->site->name, se.msg);
	}
	return rc;
}

/* "Bring site S to the tip, or to revision R": fetch, write, hooks, swap, record. */
int
engine_deploy(const struct site *site,
    const struct deploy_request *req, struct deploy_result *res, engine_phase_cb cb,
    void *cbarg)
{
	struct engine_run run, *r = &run;
	struct error e = { 0 };
	int rc, dirty;

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

	if ((rc = engine_open_site(site, 1, &r->path_fd, &r->releases_fd, &e)) != E_OK ||
	    (rc = engine_lock(site, &r->lock_fd, &e)) != E_OK ||
	    (rc = state_load(site->state_dir, site->name, &r->st, &e)) != E_OK)
		goto fail;
	r->state_ok = 1;
	r->before = r->st;
	r->before.releases = NULL;
	r->before.history = NULL;
	r->before.nreleases = r->before.nhistory = 0;

	engine_phase(cb, cbarg, PHASE_FETCHING, NULL);
	/*
	 * Polls, and webhooks (a flood of them, or one for a commit polling already deployed),
	 * first ask the remote for its tip through the long-lived helper: when it is live, no
	 * fetch helper is started at all.
	 */
	if ((req->trigger == TRIG_POLL || req->trigger == TRIG_WEBHOOK) && req->rev[0] == '\0' &&
	    engine_poll_check(r, &rc, &e)) {
		if (rc != E_OK)
			goto fail;
		goto out;
	}
	if ((rc = fetch_site(site, &r->fr, engine_fetch_progress, r, &e)) != E_OK)
		goto fail;
	dirty = strcmp(r->st.desired, r->fr.tip) != 0;
	/* A poll that finds the same tip says so only at debug level. */
	log_msg(dirty ? LOG_LVL_INFO : LOG_LVL_DEBUG, "site=%s commit=%.12s fetched (%s)",
	    site->name, r->fr.tip, r->fr.ref);
	util_strlcpy(r->st.desired, r->fr.tip, sizeof(r->st.desired));
	if ((rc = engine_resolve(r, r->fr.tip, &e)) != E_OK)
		goto fail;
	util_strlcpy(res->commit, r->commit, sizeof(res->commit));
	if (engine_settled(r, dirty, &rc, &e)) {
		if (rc != E_OK)
			goto fail;
		goto out;
	}

	util_strlcpy(r->st.attempted, r->commit, sizeof(r->st.attempted));
	/* With allowed_signers, only a commit SSH-signed by a listed key may go live. */
	if (site->allowed_signers != NULL) {
		char signer[256];

		if ((rc = sshsig_verify_commit(r->cache, r->commit, site->allowed_signers,
		    signer, sizeof(signer), &e)) != E_OK)
			goto fail;
		log_info("site=%s commit=%.12s signed by %s", site->name, r->commit, signer);
	}
	engine_phase(cb, cbarg, PHASE_WRITING, r->commit);
	if ((rc = engine_write(r, &e)) != E_OK)
		goto fail;
	if ((rc = engine_pre_activate(r, &e)) != E_OK)
		goto fail;

	engine_phase(cb, cbarg, PHASE_ACTIVATING, r->commit);
	if ((rc = swap_current(r->path_fd, r->name, &e)) != E_OK)
		goto fail;
	r->live = 1;
	r->renamed = 0;
	res->changed = 1;
	util_strlcpy(res->release, r->name, sizeof(res->release));
	log_info("site=%s commit=%.12s release %s live", site->name, r->commit, r->name);
	if ((rc = engine_record(r, &e)) != E_OK) {
		char msg[sizeof(e.msg)];

		util_strlcpy(msg, e.msg, sizeof(msg));
		util_error(&e, rc, "release %s is live, but saving state failed: %s", r->name,
		    msg);
		goto fail;
	}
	if ((rc = engine_post_activate(r, &e)) != E_OK)
		engine_post_failed(r, rc, &e);
	goto out;
fail:
	engine_fail(r, rc, &e);
out:
	res->rc = rc;
	res->duration_ms = util_mono_ms() - r->t0;
	if (r->state_ok)
		util_strlcpy(res->live, r->st.applied, sizeof(res->live));
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

/* The release `current` should name after a crash: the recorded one, else the newest good. */
static int
engine_pick_good(int releases_fd, const struct site_state *st, char *name, size_t len)
{
	struct strv disk = { 0 };
	struct stat sb;
	size_t i;
	int found = 0;

	if (st->release[0] != '\0' && fstatat(releases_fd, st->release, &sb, 0) == 0 &&
	    S_ISDIR(sb.st_mode)) {
		util_strlcpy(name, st->release, len);
		return 1;
	}
	for (i = st->nreleases; i-- > 0 && !found;) {
		if (st->releases[i].bad || fstatat(releases_fd, st->releases[i].name, &sb,
		    0) != 0 || !S_ISDIR(sb.st_mode))
			continue;
		util_strlcpy(name, st->releases[i].name, len);
		found = 1;
	}
	if (!found && release_list(releases_fd, &disk, NULL) == E_OK && disk.n > 0) {
		util_strlcpy(name, disk.v[disk.n - 1], len);
		found = 1;
	}
	util_strv_free(&disk);
	return found;
}

/* The full id, subject and author of the commit a release name's 12 digits abbreviate. */
static int
engine_commit_of(const char *cache, const char *c12, char *commit, char *subject,
    size_t sublen, char *author, size_t authlen)
{
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_oid oid;
	int rc = E_NOTFOUND;

	if (repo_open(&repo, cache) == 0 && git_oid_fromstrn(&oid, c12, 12) == 0 &&
	    git_commit_lookup_prefix(&c, repo, &oid, 12) == 0) {
		git_oid_tostr(commit, SHA_HEX, git_commit_id(c));
		engine_describe(c, subject, sublen, author, authlen);
		rc = E_OK;
	}
	git_commit_free(c);
	git_repository_free(repo);
	return rc;
}

/*
 * A crash between the swap and the state save leaves `current` naming a release that
 * state.json does not record as live. The link is the truth: record it, so that status tells
 * what is live and the next prune counts from it instead of deleting around it.
 */
static void
engine_adopt(const struct site *site, int path_fd,
    int releases_fd, struct site_state *st)
{
	struct release_rec rec = { 0 };
	struct error se = { 0 };
	struct stat sb;
	char cur[RELEASE_NAME_MAX], c12[13];
	int64_t secs;
	char *cache;
	size_t i;
	int known = 0;

	if (swap_read_current(path_fd, cur, sizeof(cur)) != E_OK ||
	    release_parse_name(cur, &secs, c12) != E_OK ||
	    fstatat(releases_fd, cur, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode) ||
	    strcmp(st->release, cur) == 0)
		return;
	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, cur) == 0) {
			util_strlcpy(rec.commit, st->releases[i].commit, sizeof(rec.commit));
			known = 1;
		}
	cache = fetch_cache_path(site);
	if (engine_commit_of(cache, c12, st->applied, st->subject, sizeof(st->subject),
	    st->author, sizeof(st->author)) != E_OK) {
		if (!known) {
			log_warn("site=%s current names releases/%s, which the state does not "
			    "record and whose commit is not in the cache; left as it is",
			    site->name, cur);
			free(cache);
			return;
		}
		util_strlcpy(st->applied, rec.commit, sizeof(st->applied));
		st->subject[0] = st->author[0] = '\0';
	}
	free(cache);
	log_warn("site=%s current names releases/%s (commit %.12s) but the state said %s: "
	    "the daemon stopped between the swap and saving state; recording it as live",
	    site->name, cur, st->applied, st->release[0] != '\0' ? st->release : "none");
	util_strlcpy(st->release, cur, sizeof(st->release));
	st->applied_at = secs;
	if (!known) {
		util_strlcpy(rec.name, cur, sizeof(rec.name));
		util_strlcpy(rec.commit, st->applied, sizeof(rec.commit));
		rec.activated_at = secs;
		state_add_release(st, &rec);
	}
	if (state_save(site->state_dir, site->name, st, &se) != E_OK)
		log_error("site=%s saving state: %s", site->name, se.msg);
}

/* At start-up: drop unfinished releases and a half-made link, and repair a missing `current`. */
int
engine_recover(const struct site *site, struct error *e)
{
	struct site_state st;
	struct error se = { 0 };
	struct stat sb;
	char cur[RELEASE_NAME_MAX], name[RELEASE_NAME_MAX];
	const char *what;
	size_t i;
	int path_fd = -1, releases_fd = -1, lock_fd = -1, rc, n;

	char *releases = util_xasprintf("%s/releases", site->path);

	memset(&st, 0, sizeof(st));
	rc = lstat(releases, &sb);
	free(releases);
	if (rc != 0 && errno == ENOENT)
		return E_OK;	/* never deployed: nothing to repair */
	if ((rc = engine_open_site(site, 0, &path_fd, &releases_fd, e)) != E_OK)
		return rc;
	if ((rc = engine_lock(site, &lock_fd, e)) != E_OK)
		goto out;
	if (unlinkat(path_fd, ".current.tmp", 0) == 0)
		log_info("site=%s removed a leftover .current.tmp", site->name);
	if ((n = release_cleanup_tmp(releases_fd)) > 0)
		log_info("site=%s removed %d unfinished release(s)", site->name, n);

	if (fstatat(path_fd, "current", &sb, 0) == 0) {
		if (state_load(site->state_dir, site->name, &st, &se) == E_OK)
			engine_adopt(site, path_fd, releases_fd, &st);
		goto out;	/* current resolves: no link to repair */
	}
	what = fstatat(path_fd, "current", &sb, AT_SYMLINK_NOFOLLOW) == 0 ? "dangling" :
	    "missing";
	if (swap_read_current(path_fd, cur, sizeof(cur)) != E_OK)
		util_strlcpy(cur, "-", sizeof(cur));
	if (state_load(site->state_dir, site->name, &st, &se) != E_OK) {
		log_warn("site=%s %s; repairing from the release directories alone",
		    site->name, se.msg);
		memset(&st, 0, sizeof(st));
	}
	if (!engine_pick_good(releases_fd, &st, name, sizeof(name))) {
		log_warn("site=%s current is %s and no release is left to point it at",
		    site->name, what);
		goto out;
	}
	if ((rc = swap_current(path_fd, name, e)) != E_OK)
		goto out;
	log_warn("site=%s current was %s (%s); repaired: current -> releases/%s", site->name,
	    what, cur, name);
	for (i = 0; i < st.nreleases; i++) {
		if (strcmp(st.releases[i].name, name) != 0 || strcmp(st.release, name) == 0)
			continue;
		util_strlcpy(st.release, name, sizeof(st.release));
		util_strlcpy(st.applied, st.releases[i].commit, sizeof(st.applied));
		if (state_save(site->state_dir, site->name, &st, &se) != E_OK)
			log_error("site=%s saving state: %s", site->name, se.msg);
		break;
	}
out:
	state_free(&st);
	lock_release(lock_fd);
	if (releases_fd >= 0)
		close(releases_fd);
	if (path_fd >= 0)
		close(path_fd);
	return rc;
}
