/* engine.c: the engine's entry points (prepare, activate, deploy, discard) and what their steps share. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

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

/* Tell whoever watches the deploy that it entered a new phase. */
void
engine_step(struct engine_run *r, enum phase phase)
{
	if (r->cb != NULL)
		r->cb(r->cbarg, phase, r->commit[0] != '\0' ? r->commit : NULL, NULL);
}

/*
 * Open <path> and <path>/releases as directory descriptors, creating them if create is set. An
 * unexpected `current` or `releases` is refused before anything else is created.
 */
int
engine_open_site(const struct site *site, int create, int *path_fdp, int *releases_fdp,
    struct error *e)
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

int
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
void
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

void
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
char *
engine_release_path(const struct engine_run *r)
{
	return util_xasprintf("%s/releases/%s", r->site->path, r->name);
}

/*
 * Run one of the site's hooks in cwd (phase PHASE_HOOK), log its output line by line and keep
 * the end of it for the history. error is DEPLOYD_ERROR, for on_failure.
 */
int
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
	engine_step(r, PHASE_HOOK);
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

/* A hook of the release (pre_activate, post_activate), run inside it; none set is success. */
int
engine_release_hook(struct engine_run *r, const char *what, const struct strv *argv,
    struct error *e)
{
	char *release;
	int rc;

	if (argv->n == 0)
		return E_OK;
	release = engine_release_path(r);
	rc = engine_hook(r, what, argv, release, release, NULL, e);
	free(release);
	return rc;
}

/*
 * on_failure after a failed deploy. A poll that keeps failing the same way (a remote down for
 * an hour) notifies once rather than once a poll: a failure is new when its message changed.
 */
void
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

/* A failure before the swap: `current` is as it was; drop what this run wrote. */
static void
engine_fail(struct engine_run *r, int rc, struct error *e)
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
	engine_on_failure(r, rc, e->msg, NULL);
	util_strlcpy(r->st.last_error, e->msg, sizeof(r->st.last_error));
	r->st.last_error_at = util_now_ms() / 1000;
	engine_history(r, 0, e->msg);
	if (state_save(r->site->state_dir, r->site->name, &r->st, &se) != E_OK)
		log_error("site=%s saving state: %s", r->site->name, se.msg);
}

/* Open the deploy root, take the site's lock and load its state. */
static int
engine_begin(struct engine_run *r, const struct site *site, const struct deploy_request *req,
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
	if ((rc = engine_open_site(site, 1, &r->path_fd, &r->releases_fd, e)) != E_OK ||
	    (rc = engine_lock(site, &r->lock_fd, e)) != E_OK ||
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
engine_end(struct engine_run *r, int rc, struct error *e)
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
	struct engine_run run;
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
	struct engine_run run, *r = &run;
	const struct prepared_rec *p;
	struct error e = { 0 };
	struct stat sb;
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
	else if (fstatat(r->releases_fd, p->name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISDIR(sb.st_mode))
		rc = util_error(&e, E_NOTFOUND, "the prepared release %s is gone from %s/releases",
		    p->name, site->path);
	if (rc != E_OK) {
		/* Not a failed deploy: nothing was attempted, so state and history stay. */
		util_strlcpy(res->error, e.msg, sizeof(res->error));
		res->rc = rc;
		return engine_end(r, rc, &e);
	}
	util_strlcpy(r->name, p->name, sizeof(r->name));
	util_strlcpy(r->commit, p->commit, sizeof(r->commit));
	util_strlcpy(r->fr.tip, p->commit, sizeof(r->fr.tip));
	util_strlcpy(r->fr.ref, p->ref, sizeof(r->fr.ref));
	util_strlcpy(r->subject, p->subject, sizeof(r->subject));
	util_strlcpy(r->author, p->author, sizeof(r->author));
	util_strlcpy(r->reuse, p->reuse, sizeof(r->reuse));
	r->written_ns = p->written_ns;
	r->written = (size_t)p->files_written;
	r->reused = (size_t)p->files_reused;
	r->renamed = r->kept = 1;
	util_strlcpy(res->commit, r->commit, sizeof(res->commit));
	rc = activate_run(r, &e);
	return engine_end(r, rc, &e);
}

/* "Bring site S to the tip, or to revision R": prepare and activate under one lock. */
int
engine_deploy(const struct site *site, const struct deploy_request *req,
    struct deploy_result *res, engine_phase_cb cb, void *cbarg)
{
	struct engine_run run;
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
	struct engine_run run;
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
