/* recover.c: at start-up, a site's deploy root made whole: leftovers removed, `current` repaired or adopted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "deploy/deploy.h"

/* The release `current` should name after a crash: the recorded one, else the newest good. */
static int
recover_pick_good(int releases_fd, const struct site_state *st, char *name, size_t len)
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
	if (!found && release_list(releases_fd, &disk, NULL) == E_OK) {
		/* Never a prepared release: it goes live only when activated. */
		for (i = disk.n; i-- > 0 && !found;) {
			if (strcmp(disk.v[i], st->prepared.name) == 0)
				continue;
			util_strlcpy(name, disk.v[i], len);
			found = 1;
		}
	}
	util_strv_free(&disk);
	return found;
}

/* The full id, subject and author of the commit a release name's 12 digits abbreviate. */
static int
recover_commit_of(const char *cache, const char *c12, char *commit, char *subject,
    size_t sublen, char *author, size_t authlen)
{
	git_repository *repo = NULL;
	git_commit *c = NULL;
	git_oid oid;
	int rc = E_NOTFOUND;

	if (repo_open(&repo, cache) == 0 && git_oid_fromstrn(&oid, c12, 12) == 0 &&
	    git_commit_lookup_prefix(&c, repo, &oid, 12) == 0) {
		git_oid_tostr(commit, SHA_HEX, git_commit_id(c));
		run_describe(c, subject, sublen, author, authlen);
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
recover_adopt(const struct site *site, int path_fd,
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
	/* The crash came while activating a prepared release: its record says the rest. */
	if (!known && strcmp(st->prepared.name, cur) == 0) {
		util_strlcpy(rec.name, cur, sizeof(rec.name));
		util_strlcpy(rec.commit, st->prepared.commit, sizeof(rec.commit));
		rec.activated_at = secs;
		rec.written_ns = st->prepared.written_ns;
		rec.files_written = st->prepared.files_written;
		rec.files_reused = st->prepared.files_reused;
		util_strlcpy(rec.reuse, st->prepared.reuse, sizeof(rec.reuse));
		state_add_release(st, &rec);
		memset(&st->prepared, 0, sizeof(st->prepared));
		known = 1;
	}
	cache = fetch_cache_path(site);
	if (recover_commit_of(cache, c12, st->applied, st->subject, sizeof(st->subject),
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
	/* The activation that crashed would have pruned next; keep must hold after a crash too. */
	if (prune_releases(releases_fd, st, site->keep, cur, &se) != E_OK)
		log_warn("site=%s pruning releases: %s", site->name, se.msg);
	if (state_save(site->state_dir, site->name, st, &se) != E_OK)
		log_error("site=%s saving state: %s", site->name, se.msg);
}

/*
 * A prepared release stays prepared across a restart: it is neither a leftover nor live. If
 * it is gone from disk (removed by hand), the record goes too.
 */
static void
recover_prepared(const struct site *site, int releases_fd, struct site_state *st)
{
	struct error se = { 0 };
	struct stat sb;

	if (st->prepared.name[0] == '\0')
		return;
	if (fstatat(releases_fd, st->prepared.name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(sb.st_mode)) {
		log_info("site=%s release %s (commit %.12s) is prepared, not live", site->name,
		    st->prepared.name, st->prepared.commit);
		return;
	}
	log_warn("site=%s the prepared release %s is gone from %s/releases; forgetting it",
	    site->name, st->prepared.name, site->path);
	memset(&st->prepared, 0, sizeof(st->prepared));
	if (state_save(site->state_dir, site->name, st, &se) != E_OK)
		log_error("site=%s saving state: %s", site->name, se.msg);
}

/* At start-up: drop unfinished releases and a half-made link, and repair a missing `current`. */
int
recover_site(const struct site *site, struct error *e)
{
	struct site_state st;
	struct error se = { 0 };
	struct stat sb;
	char cur[RELEASE_NAME_MAX], name[RELEASE_NAME_MAX];
	const char *what;
	size_t i;
	int path_fd = -1, releases_fd = -1, lock_fd = -1, rc, n, loaded = 1;
	char *releases = util_xasprintf("%s/releases", site->path);

	memset(&st, 0, sizeof(st));
	rc = lstat(releases, &sb);
	free(releases);
	if (rc != 0 && errno == ENOENT)
		return E_OK;	/* never deployed: nothing to repair */
	if ((rc = run_open_site(site, 0, &path_fd, &releases_fd, e)) != E_OK)
		return rc;
	if ((rc = run_lock(site, &lock_fd, e)) != E_OK)
		goto out;
	if (unlinkat(path_fd, ".current.tmp", 0) == 0)
		log_info("site=%s removed a leftover .current.tmp", site->name);
	if ((n = release_cleanup_tmp(releases_fd)) > 0)
		log_info("site=%s removed %d unfinished release(s)", site->name, n);

	if (state_load(site->state_dir, site->name, &st, &se) != E_OK) {
		memset(&st, 0, sizeof(st));
		loaded = 0;
	}
	if (loaded)
		recover_prepared(site, releases_fd, &st);
	if (fstatat(path_fd, "current", &sb, 0) == 0) {
		if (loaded)
			recover_adopt(site, path_fd, releases_fd, &st);
		goto out;	/* current resolves: no link to repair */
	}
	what = fstatat(path_fd, "current", &sb, AT_SYMLINK_NOFOLLOW) == 0 ? "dangling" :
	    "missing";
	if (swap_read_current(path_fd, cur, sizeof(cur)) != E_OK)
		util_strlcpy(cur, "-", sizeof(cur));
	if (!loaded)
		log_warn("site=%s %s; repairing from the release directories alone",
		    site->name, se.msg);
	if (!recover_pick_good(releases_fd, &st, name, sizeof(name))) {
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
