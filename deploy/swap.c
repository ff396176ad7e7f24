/* swap.c: point `current` at a release atomically, and read where it points. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deploy/deploy.h"

#define SWAP_TMP	".current.tmp"
#define SWAP_PREFIX	"releases/"

/*
 * symlinkat to a temporary name, then renameat over `current`: rename(2) replaces the link in
 * one step, so a reader (or a crash) sees the old release or the new one, never neither. The
 * target is relative so the tree can be moved or bind-mounted. Staging is apart from the
 * rename so that a swap at an instant (a fleet's cutover) has only the rename left to do then.
 */
int
swap_stage(int path_fd, const char *release, struct error *e)
{
	char target[sizeof(SWAP_PREFIX) + RELEASE_NAME_MAX];
	struct stat st;

	if (release[0] == '\0' || release[0] == '.' || strchr(release, '/') != NULL)
		return util_error(e, E_INVAL, "bad release name '%s'", release);
	if (fstatat(path_fd, "current", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode))
			return util_error(e, E_INVAL,
			    "current is a directory, not a symlink; move it away");
		if (!S_ISLNK(st.st_mode))
			return util_error(e, E_INVAL,
			    "current is a file, not a symlink; move it away");
	} else if (errno != ENOENT)
		return util_error_sys(e, "current");
	snprintf(target, sizeof(target), SWAP_PREFIX "%s", release);
	if (unlinkat(path_fd, SWAP_TMP, 0) != 0 && errno != ENOENT)
		return util_error_sys(e, "removing " SWAP_TMP);
	if (symlinkat(target, path_fd, SWAP_TMP) != 0)
		return util_error_sys(e, "creating " SWAP_TMP);
	return E_OK;
}

/* The staged link over `current`; swap_sync makes it durable. */
int
swap_commit(int path_fd, struct error *e)
{
	if (renameat(path_fd, SWAP_TMP, path_fd, "current") != 0) {
		util_error_sys(e, "renaming " SWAP_TMP " to current");
		unlinkat(path_fd, SWAP_TMP, 0);
		return E_SYS;
	}
	return E_OK;
}

/* The swap has happened; a failed fsync cannot undo it, only make it less durable. */
void
swap_sync(int path_fd, const char *release)
{
	if (fsync(path_fd) != 0)
		log_warn("fsync after swapping current to %s: %s", release, strerror(errno));
}

int
swap_current(int path_fd, const char *release, struct error *e)
{
	int rc;

	if ((rc = swap_stage(path_fd, release, e)) != E_OK ||
	    (rc = swap_commit(path_fd, e)) != E_OK)
		return rc;
	swap_sync(path_fd, release);
	return E_OK;
}

/* The release name `current` points at: E_NOTFOUND if there is no link, E_INVAL if it is odd. */
int
swap_read_current(int path_fd, char *release, size_t len)
{
	char buf[sizeof(SWAP_PREFIX) + RELEASE_NAME_MAX + 1];
	const char *name;
	ssize_t n;

	if (len > 0)
		release[0] = '\0';
	n = readlinkat(path_fd, "current", buf, sizeof(buf) - 1);
	if (n < 0)
		return errno == ENOENT ? E_NOTFOUND : E_INVAL;
	if ((size_t)n >= sizeof(buf) - 1)
		return E_INVAL;
	buf[n] = '\0';
	name = buf;
	if (strncmp(name, "./", 2) == 0)
		name += 2;
	if (strncmp(name, SWAP_PREFIX, strlen(SWAP_PREFIX)) != 0)
		return E_INVAL;
	name += strlen(SWAP_PREFIX);
	if (*name == '\0' || *name == '.' || strchr(name, '/') != NULL)
		return E_INVAL;
	if (util_strlcpy(release, name, len) >= len)
		return E_INVAL;
	return E_OK;
}
