/* prune.c: old releases removed after a deploy: only good ones count, current, the one before and the prepared one stay. */
#include <stdlib.h>
#include <string.h>

#include "deploy/deploy.h"

static int
prune_recorded(const struct site_state *st, const char *name)
{
	size_t i;

	/* A prepared release is still wanted: it is waiting to go live. */
	if (strcmp(st->prepared.name, name) == 0)
		return 1;
	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, name) == 0)
			return 1;
	return 0;
}

/*
 * Only good releases count toward keep (bad ones stay for debugging and do not count), current
 * and the good release before it are never pruned, nor the prepared release; release
 * directories that state does not know of are leftovers of failed deploys.
 */
int
prune_releases(int releases_fd, struct site_state *st, int64_t keep, const char *current,
    struct error *e)
{
	struct strv disk = { 0 };
	size_t i, j, cur = SIZE_MAX, prev = SIZE_MAX;
	int64_t count;
	char *del;
	int rc = E_OK;

	if (current == NULL)
		current = "";
	for (i = 0; i < st->nreleases; i++)
		if (strcmp(st->releases[i].name, current) == 0)
			cur = i;
	for (i = cur == SIZE_MAX ? st->nreleases : cur; i-- > 0;) {
		if (!st->releases[i].bad) {
			prev = i;
			break;
		}
	}
	/* keep includes current and the release before it; the newest others fill the rest. */
	count = (cur != SIZE_MAX && !st->releases[cur].bad) + (prev != SIZE_MAX);
	del = util_xcalloc(st->nreleases ? st->nreleases : 1, 1);
	for (i = st->nreleases; i-- > 0;) {
		if (st->releases[i].bad || i == cur || i == prev)
			continue;
		if (count < keep)
			count++;
		else
			del[i] = 1;
	}
	for (i = j = 0; i < st->nreleases; i++) {
		if (del[i] && util_rm_rf_at(releases_fd, st->releases[i].name) != E_OK) {
			rc = util_error_sys(e, "removing release %s", st->releases[i].name);
			del[i] = 0;
		}
		if (!del[i])
			st->releases[j++] = st->releases[i];
	}
	st->nreleases = j;
	free(del);

	if (release_list(releases_fd, &disk, e) != E_OK)
		return E_SYS;
	for (i = 0; i < disk.n; i++) {
		if (strcmp(disk.v[i], current) == 0 || prune_recorded(st, disk.v[i]))
			continue;
		if (util_rm_rf_at(releases_fd, disk.v[i]) != E_OK)
			rc = util_error_sys(e, "removing leftover release %s", disk.v[i]);
	}
	util_strv_free(&disk);
	return rc;
}
