/* lock.c: one deploy per site at a time, across processes, with a lock that dies with its owner. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "deploy/deploy.h"

/*
 * flock() on an open descriptor rather than a marker file: a crashed or killed owner releases it,
 * so no stale lock ever blocks a deploy. flock locks belong to the open file description, so two
 * threads of one process that each open the file also exclude each other.
 */
int
lock_acquire(const char *path, int wait, int *fdp, struct error *e)
{
	int fd, r;

	*fdp = -1;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
		return util_error_sys(e, "opening lock %s", path);
	do
		r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
	while (r != 0 && errno == EINTR);
	if (r != 0) {
		if (errno == EWOULDBLOCK) {
			close(fd);
			return util_error(e, E_BUSY,
			    "%s is locked: another deploy of this site is running", path);
		}
		util_error_sys(e, "locking %s", path);
		close(fd);
		return E_SYS;
	}
	*fdp = fd;
	return E_OK;
}

void
lock_release(int fd)
{
	if (fd >= 0)
		close(fd);	/* closing the last descriptor drops the flock */
}
