/* secret.c: secret files: refused when others could read or change them, read into guarded memory. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/lib.h"

/* Like OpenBSD's check_file_secrecy(): refuse secrets others could read or change. */
int
secret_check_file(const char *path, struct error *e)
{
	struct stat st;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return util_error(e, E_SECRET, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		close(fd);
		return util_error(e, E_SECRET, "%s: %s", path, strerror(errno));
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return util_error(e, E_SECRET, "%s: not a regular file", path);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return util_error(e, E_SECRET, "%s: writable by group or others (mode %04o); "
		    "chmod go-w", path, (unsigned)(st.st_mode & 07777));
	if (st.st_mode & S_IROTH)
		return util_error(e, E_SECRET, "%s: readable by others (mode %04o); "
		    "chmod o-rwx", path, (unsigned)(st.st_mode & 07777));
	return E_OK;
}

#define SECRET_MAX 65536

/*
 * Read a secret into guarded memory; one trailing LF or CRLF is dropped. The buffer is
 * as big as the file (plus the byte that shows it did not grow): guarded memory is locked,
 * so a fixed 64 KB cost every site's secret 68 KB of resident memory in the listener.
 */
int
secret_read(const char *path, unsigned char **buf, size_t *len, struct error *e)
{
	unsigned char *p;
	struct stat st;
	size_t n = 0, cap;
	ssize_t r;
	int fd, rc;

	*buf = NULL;
	*len = 0;
	if ((rc = secret_check_file(path, e)) != E_OK)
		return rc;
	/* Guarded memory needs libsodium initialised; a second call costs nothing. */
	if (sodium_init() < 0)
		return util_error(e, E_SYS, "libsodium failed to initialise");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return util_error(e, E_SECRET, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = util_error(e, E_SECRET, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	cap = st.st_size >= 0 && st.st_size < SECRET_MAX ? (size_t)st.st_size + 1 : SECRET_MAX;
	if ((p = sodium_malloc(cap)) == NULL) {
		close(fd);
		return util_error(e, E_NOMEM, "%s: cannot allocate guarded memory", path);
	}
	while (n < cap && (r = read(fd, p + n, cap - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = util_error(e, E_SECRET, "%s: %s", path, strerror(errno));
			close(fd);
			sodium_free(p);
			return rc;
		}
		n += (size_t)r;
	}
	close(fd);
	if (n == SECRET_MAX) {
		sodium_free(p);
		return util_error(e, E_SECRET, "%s: larger than %d bytes", path, SECRET_MAX);
	}
	if (n == cap) {
		sodium_free(p);
		return util_error(e, E_SECRET, "%s: changed while it was read", path);
	}
	if (n > 0 && p[n - 1] == '\n')
		n--;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n == 0) {
		sodium_free(p);
		return util_error(e, E_SECRET, "%s: the secret is empty", path);
	}
	*buf = p;
	*len = n;
	return E_OK;
}

void
secret_free(unsigned char *buf, size_t len)
{
	(void)len;
	if (buf != NULL)
		sodium_free(buf);	/* sodium_free wipes before unmapping */
}
