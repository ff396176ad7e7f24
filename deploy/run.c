/* run.c: what the steps of one deploy share: its phase, its hooks and their output, its record, the site's lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

/* Tell whoever watches the deploy that it entered a new phase. */
void
run_step(struct run *r, enum phase phase)
{
	if (r->cb != NULL)
		r->cb(r->cbarg, phase, r->commit[0] != '\0' ? r->commit : NULL, NULL);
}

/*
 * Open <path> and <path>/releases as directory descriptors, creating them if create is set. An
 * unexpected `current` or `releases` is refused before anything else is created.
 */
int
run_open_site(const struct site *site, int create, int *path_fdp, int *releases_fdp,
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
run_lock(const struct site *site, int *fd, struct error *e)
{
	char *path = util_xasprintf("%s/.deployd.lock", site->path);
	int rc = lock_acquire(path, 0, fd, e);

	free(path);
	return rc;
}

/* Copy up to the first newline, never cutting a UTF-8 sequence in half. */
static void
run_copy_line(char *dst, const char *src, size_t len)
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
run_describe(git_commit *c, char *subject, size_t sublen, char *author, size_t authlen)
{
	const git_signature *sig = git_commit_author(c);
	char *who;

	run_copy_line(subject, git_commit_message(c) ? git_commit_message(c) : "", sublen);
	who = util_xasprintf("%s <%s>", sig->name ? sig->name : "",
	    sig->email ? sig->email : "");
	run_copy_line(author, who, authlen);
	free(who);
}

void
run_history(struct run *r, int ok, const char *error)
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
run_add_output(struct run *r, const char *what, const struct hookrun_result *hr)
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
run_release_path(const struct run *r)
{
	return util_xasprintf("%s/releases/%s", r->site->path, r->name);
}

/*
 * Run one of the site's hooks in cwd (phase PHASE_HOOK), log its output line by line and keep
 * the end of it for the history. error is DEPLOYD_ERROR, for on_failure.
 */
int
run_hook(struct run *r, const char *what, const struct strv *argv, const char *cwd,
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
	run_step(r, PHASE_HOOK);
	log_info("site=%s commit=%.12s running %s hook %s", r->site->name,
	    r->commit[0] ? r->commit : "-", what, argv->v[0]);
	rc = hookrun_run(what, argv, cwd, &env, r->site->hooks.timeout_ms, &hr, e);
	hookrun_log(r->site->name, what, &hr);
	run_add_output(r, what, &hr);
	hookrun_result_free(&hr);
	if (rc == E_OK)
		log_info("site=%s commit=%.12s %s hook succeeded in %lld ms", r->site->name,
		    r->commit[0] ? r->commit : "-", what, (long long)(util_mono_ms() - t));
	return rc;
}

/*
 * Make the site's prepared release this run's release, if it is still a directory: what
 * activation needs of it, and a failure keeps it. 0 if it is gone.
 */
int
run_take_prepared(struct run *r)
{
	const struct prepared_rec *p = &r->st.prepared;
	struct stat sb;

	if (fstatat(r->releases_fd, p->name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISDIR(sb.st_mode))
		return 0;
	util_strlcpy(r->name, p->name, sizeof(r->name));
	util_strlcpy(r->reuse, p->reuse, sizeof(r->reuse));
	r->written_ns = p->written_ns;
	r->written = (size_t)p->files_written;
	r->reused = (size_t)p->files_reused;
	r->renamed = r->kept = 1;
	return 1;
}

/* A hook of the release (pre_activate, post_activate), run inside it; none set is success. */
int
run_release_hook(struct run *r, const char *what, const struct strv *argv,
    struct error *e)
{
	char *release;
	int rc;

	if (argv->n == 0)
		return E_OK;
	release = run_release_path(r);
	rc = run_hook(r, what, argv, release, release, NULL, e);
	free(release);
	return rc;
}

/*
 * on_failure after a failed deploy. A poll that keeps failing the same way (a remote down for
 * an hour) notifies once rather than once a poll: a failure is new when its message changed.
 */
void
run_on_failure(struct run *r, int rc, const char *msg, const char *release)
{
	const struct strv *argv = &r->site->hooks.on_failure;
	struct error he = { 0 };
	char clean[sizeof(he.msg)];

	if (argv->n == 0 || !r->state_ok || rc == E_BUSY || rc == E_STOPPED)
		return;
	if (r->req->trigger == TRIG_POLL && strcmp(r->before.last_error, msg) == 0)
		return;
	if (run_hook(r, "on_failure", argv, r->site->path, release, msg, &he) != E_OK) {
		util_sanitize(he.msg, clean, sizeof(clean));
		log_error("site=%s %s", r->site->name, clean);
	}
}
