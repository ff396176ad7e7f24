/* rollback.c: go back to an earlier good release, pause and resume; run by the deploy queue. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deploy/deploy.h"

/* The site's deploy root, locked like a deploy, with its state loaded. */
struct rollback_site {
	int		 lockfd;
	int		 path_fd;
	int		 releases_fd;
	struct site_state st;
};

static void
rollback_close(struct rollback_site *r)
{
	if (r->releases_fd >= 0)
		close(r->releases_fd);
	if (r->path_fd >= 0)
		close(r->path_fd);
	if (r->lockfd >= 0)
		lock_release(r->lockfd);
	state_free(&r->st);
}

/* What a caller needs opened: the state alone, or the releases too, under the lock or not. */
enum { ROLLBACK_STATE, ROLLBACK_LOCKED, ROLLBACK_LOOK };

static int
rollback_open(const struct site *site,
    struct rollback_site *r, int need, struct error *e)
{
	char *lock;
	int rc;

	memset(r, 0, sizeof(*r));
	r->lockfd = r->path_fd = r->releases_fd = -1;
	if ((rc = state_load(site->state_dir, site->name, &r->st, e)) != E_OK)
		return rc;
	if (need == ROLLBACK_STATE)
		return E_OK;
	if (need == ROLLBACK_LOCKED) {
		lock = util_xasprintf("%s/.deployd.lock", site->path);
		rc = lock_acquire(lock, 1, &r->lockfd, e);
		free(lock);
		if (rc != E_OK)
			return rc;
	}
	if ((r->path_fd = open(site->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return util_error_sys(e, "%s", site->path);
	if ((r->releases_fd = openat(r->path_fd, "releases", O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		return util_error_sys(e, "%s/releases", site->path);
	return E_OK;
}

static int
rollback_exists(int releases_fd, const char *name)
{
	struct stat st;

	return fstatat(releases_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The release to go back to: the named one (a release name or a commit prefix), or the
 * newest good release older than the live one. Bad releases are never targets.
 */
static struct release_rec *
rollback_pick(struct rollback_site *r, const char *want, struct error *e)
{
	struct release_rec *rec, *found = NULL;
	size_t i, n = r->st.nreleases, cur = n, wlen = want ? strlen(want) : 0;

	for (i = 0; i < n; i++)
		if (strcmp(r->st.releases[i].name, r->st.release) == 0)
			cur = i;
	if (want != NULL && *want != '\0') {
		for (i = n; i-- > 0;) {
			rec = &r->st.releases[i];
			if (strcmp(rec->name, want) != 0 &&
			    (wlen < 4 || strncmp(rec->commit, want, wlen) != 0))
				continue;
			if (rec->bad) {
				util_error(e, E_INVAL, "release %s is marked bad (it was rolled "
				    "back); deploy it with `deployd deploy --rev %.12s` if you "
				    "mean it", rec->name, rec->commit);
				return NULL;
			}
			if (!rollback_exists(r->releases_fd, rec->name))
				continue;
			found = rec;
			break;
		}
		if (found == NULL)
			util_error(e, E_NOTFOUND, "no good release named or matching '%s'", want);
		else if (i == cur)
			util_error(e, E_INVAL, "release %s is already live", found->name);
		return found != NULL && i != cur ? found : NULL;
	}
	for (i = cur; i-- > 0;) {
		rec = &r->st.releases[i];
		if (!rec->bad && rollback_exists(r->releases_fd, rec->name))
			return rec;
	}
	util_error(e, E_NOTFOUND, "no previous good release to roll back to");
	return NULL;
}

int
rollback_run(const struct site *site,
    const struct deploy_request *req, struct deploy_result *res)
{
	struct rollback_site r;
	struct release_rec *target;
	struct history_rec h;
	struct error e;
	int64_t start = util_mono_ms();
	char from[RELEASE_NAME_MAX];
	size_t i;
	int rc;

	memset(res, 0, sizeof(*res));
	memset(&h, 0, sizeof(h));
	h.started_at = util_now_ms();
	h.trigger = TRIG_ROLLBACK;
	if ((rc = rollback_open(site, &r, ROLLBACK_LOCKED, &e)) != E_OK)
		goto out;
	if ((target = rollback_pick(&r, req->target, &e)) == NULL) {
		rc = e.code;
		goto out;
	}
	util_strlcpy(from, r.st.release, sizeof(from));
	if ((rc = activate_swap(site->name, r.path_fd, target->name, req->at_ms,
	    &res->swapped_at_ms, &e)) != E_OK)
		goto out;
	/* The release rolled away from stays on disk for debugging, marked bad. */
	for (i = 0; i < r.st.nreleases; i++)
		if (strcmp(r.st.releases[i].name, from) == 0)
			r.st.releases[i].bad = 1;
	util_strlcpy(r.st.applied, target->commit, sizeof(r.st.applied));
	util_strlcpy(r.st.release, target->name, sizeof(r.st.release));
	r.st.applied_at = util_now_ms() / 1000;
	r.st.trigger = TRIG_ROLLBACK;
	r.st.subject[0] = r.st.author[0] = '\0';
	r.st.last_error[0] = '\0';
	r.st.last_error_at = 0;
	/* A fleet's rollback is paused in the fleet's store, and resumed there. */
	if (req->trigger != TRIG_FLEET) {
		r.st.paused = 1;
		snprintf(r.st.pause_reason, sizeof(r.st.pause_reason), "rolled back from %s to "
		    "%s; automatic deploys paused until `deployd resume %s`",
		    from[0] ? from : "(none)", target->name, site->name);
	}
	util_strlcpy(res->commit, target->commit, sizeof(res->commit));
	util_strlcpy(res->release, target->name, sizeof(res->release));
	res->changed = 1;
	log_info("site=%s commit=%.12s rolled back from %s to %s%s", site->name,
	    target->commit, from[0] ? from : "(none)", target->name,
	    req->trigger != TRIG_FLEET ? "; automatic deploys paused" : " (the fleet's)");
out:
	res->rc = rc;
	res->duration_ms = util_mono_ms() - start;
	if (rc != E_OK) {
		util_strlcpy(res->error, e.msg, sizeof(res->error));
		log_error("site=%s rollback failed: %s", site->name, e.msg);
	}
	h.id = r.st.next_id++;
	h.duration_ms = res->duration_ms;
	h.ok = rc == E_OK;
	util_strlcpy(h.commit, res->commit, sizeof(h.commit));
	util_strlcpy(h.release, res->release, sizeof(h.release));
	util_strlcpy(h.error, res->error, sizeof(h.error));
	if (r.lockfd >= 0) {
		state_add_history(&r.st, &h);
		if (state_save(site->state_dir, site->name, &r.st, &e) != E_OK)
			log_error("site=%s %s", site->name, e.msg);
	}
	rollback_close(&r);
	return rc;
}

int
rollback_pause(const struct site *site, int paused,
    const char *reason, struct error *e)
{
	struct rollback_site r;
	int rc;

	if ((rc = rollback_open(site, &r, ROLLBACK_STATE, e)) != E_OK) {
		rollback_close(&r);
		return rc;
	}
	r.st.paused = paused;
	util_strlcpy(r.st.pause_reason, paused && reason ? reason : "",
	    sizeof(r.st.pause_reason));
	rc = state_save(site->state_dir, site->name, &r.st, e);
	rollback_close(&r);
	if (rc == E_OK)
		log_info("site=%s automatic deploys %s%s%s", site->name,
		    paused ? "paused" : "resumed", paused && reason ? ": " : "",
		    paused && reason ? reason : "");
	return rc;
}

/* Every release directory on disk, newest first, with what the state knows of it. */
/* A release name and where it stands: its place in the activation order, 0 if unrecorded. */
struct rollback_rank {
	char		*name;
	size_t		 rank;
};

static int
rollback_rank_cmp(const void *a, const void *b)
{
	const struct rollback_rank *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? 1 : -1;
	return -strcmp(x->name, y->name);
}

/*
 * Newest first, by when each release went live (the state's order), not by name: names carry
 * the wall clock, which can jump backwards. Releases the state does not know come last.
 */
static void
rollback_order(const struct site_state *st, struct strv *names)
{
	struct rollback_rank *r = util_xcalloc(names->n ? names->n : 1, sizeof(*r));
	size_t i, j;

	for (i = 0; i < names->n; i++) {
		r[i].name = names->v[i];
		for (j = 0; j < st->nreleases; j++)
			if (strcmp(st->releases[j].name, names->v[i]) == 0)
				r[i].rank = j + 1;
	}
	qsort(r, names->n, sizeof(*r), rollback_rank_cmp);
	for (i = 0; i < names->n; i++)
		names->v[i] = r[i].name;
	free(r);
}

json_t *
rollback_releases_json(const struct site *site,
    struct error *e)
{
	struct site_state st;
	struct strv names = { NULL, 0 };
	char cur[RELEASE_NAME_MAX] = "";
	json_t *arr;
	size_t i, j;
	int fd, rfd;

	memset(&st, 0, sizeof(st));
	if (state_load(site->state_dir, site->name, &st, e) != E_OK)
		return NULL;
	arr = json_array();
	if ((fd = open(site->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		state_free(&st);
		return arr;	/* never deployed: no releases */
	}
	swap_read_current(fd, cur, sizeof(cur));
	rfd = openat(fd, "releases", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rfd >= 0 && release_list(rfd, &names, e) == E_OK) {
		rollback_order(&st, &names);
		for (i = 0; i < names.n; i++) {
			const struct release_rec *rec = NULL;
			char c12[13] = "";
			int64_t secs = 0;
			json_t *o;

			for (j = 0; j < st.nreleases; j++)
				if (strcmp(st.releases[j].name, names.v[i]) == 0)
					rec = &st.releases[j];
			release_parse_name(names.v[i], &secs, c12);
			o = json_pack("{s:s,s:s,s:b,s:b,s:b}", "name", names.v[i],
			    "commit", rec ? rec->commit : c12,
			    "current", strcmp(cur, names.v[i]) == 0,
			    "bad", rec != NULL && rec->bad,
			    "pinned", strcmp(cur, names.v[i]) == 0 && st.paused);
			json_object_set_new(o, "created_at", util_json_time(secs));
			json_object_set_new(o, "activated_at",
			    util_json_time(rec ? rec->activated_at : 0));
			json_object_set_new(o, "good", json_boolean(rec != NULL && !rec->bad));
			/* How the release was written: files from blobs, and reused. */
			if (rec != NULL && rec->reuse[0] != '\0') {
				json_object_set_new(o, "files_written",
				    json_integer(rec->files_written));
				json_object_set_new(o, "files_reused",
				    json_integer(rec->files_reused));
				json_object_set_new(o, "reuse", json_string(rec->reuse));
			}
			json_array_append_new(arr, o);
		}
	}
	util_strv_free(&names);
	if (rfd >= 0)
		close(rfd);
	close(fd);
	state_free(&st);
	return arr;
}

/*
 * Which commit a rollback to want (NULL: the previous good release) would make live, without
 * the lock or a swap: a fleet's coordinator names it before every node swaps to it.
 */
int
rollback_target(const struct site *site, const char *want, char commit[SHA_HEX],
    struct error *e)
{
	struct rollback_site r;
	struct release_rec *rec;
	int rc;

	if ((rc = rollback_open(site, &r, ROLLBACK_LOOK, e)) == E_OK) {
		if ((rec = rollback_pick(&r, want, e)) != NULL)
			util_strlcpy(commit, rec->commit, SHA_HEX);
		else
			rc = e->code != E_OK ? e->code : E_NOTFOUND;
	}
	rollback_close(&r);
	return rc;
}
