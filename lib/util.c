/* util.c: small helpers every part uses: memory, strings, numbers, time, errors, files. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"

struct util_unit {
	const char	*suffix;
	int64_t		 mult;
};

/* A whole number followed by one of the units; no sign, no spaces, no overflow. */
static int
util_parse_units(const char *s, const struct util_unit *units, size_t n, int64_t *out)
{
	char *end;
	long long v;
	size_t i;

	if (s == NULL || *s == '\0' || !isdigit((unsigned char)*s))
		return E_INVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v < 0)
		return E_INVAL;
	for (i = 0; i < n; i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v > INT64_MAX / units[i].mult)
				return E_INVAL;
			*out = v * units[i].mult;
			return E_OK;
		}
	}
	return E_INVAL;
}

/*
 * A decimal number from outside (a header, a query, a config value): digits only, at least
 * one, no sign, no spaces, nothing after them, and not over max. strtoull alone would take
 * " +7", "-1" (as a huge number) and "7abc".
 */
int
util_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	unsigned d;

	if (s == NULL || *s == '\0')
		return E_INVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return E_INVAL;
		d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return E_INVAL;
		v = v * 10 + d;
	}
	*out = v;
	return E_OK;
}

/* The value of exactly n decimal digits at s (a date's fields), or -1 if one is not a digit. */
int
util_digits(const char *s, size_t n)
{
	int v = 0;

	while (n-- > 0) {
		if (*s < '0' || *s > '9' || v > (INT_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*s++ - '0');
	}
	return v;
}

/* Durations: "90s", "5m", "2h", "1500ms", or "0" alone (a bare number would be ambiguous). */
int
util_parse_duration(const char *s, int64_t *ms)
{
	static const struct util_unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};

	if (s != NULL && strcmp(s, "0") == 0) {
		*ms = 0;
		return E_OK;
	}
	return util_parse_units(s, units, sizeof(units) / sizeof(units[0]), ms);
}

/* Sizes: "25MiB", "16KiB", "1GiB", or a plain byte count. */
int
util_parse_size(const char *s, int64_t *bytes)
{
	static const struct util_unit units[] = {
		{ "", 1 }, { "B", 1 }, { "KiB", 1024 }, { "MiB", 1024 * 1024 },
		{ "GiB", 1024LL * 1024 * 1024 },
	};

	return util_parse_units(s, units, sizeof(units) / sizeof(units[0]), bytes);
}

int
util_format_duration(int64_t ms, char *buf, size_t len)
{
	int n;

	if (ms < 0)
		ms = 0;
	if (ms < 1000)
		n = snprintf(buf, len, "%lldms", (long long)ms);
	else if (ms < 60000)
		n = snprintf(buf, len, "%.1fs", (double)ms / 1000);
	else if (ms < 3600000)
		n = snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000),
		    (long long)(ms / 1000 % 60));
	else if (ms < 86400000)
		n = snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000),
		    (long long)(ms / 60000 % 60));
	else
		n = snprintf(buf, len, "%lldd%02lldh", (long long)(ms / 86400000),
		    (long long)(ms / 3600000 % 24));
	return (n < 0 || (size_t)n >= len) ? E_INVAL : E_OK;
}

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The CPUs this process may run on (its affinity: a container's or a taskset's share, not
 * the machine's), at least 1. No file is read, so the confined listener may ask too.
 */
int
util_cpus(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	n = CPU_COUNT(&set);
	return n > 0 ? n : 1;
}

/* Running out of memory in a daemon this small is not recoverable; die loudly. */
static void
util_oom(void)
{
	static const char msg[] = "deployd: out of memory\n";

	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	abort();
}

void *
util_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		util_oom();
	return p;
}

void *
util_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		util_oom();
	return p;
}

void *
util_xrealloc(void *ptr, size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		util_oom();
	p = realloc(ptr, (nmemb * size) != 0 ? nmemb * size : 1);
	if (p == NULL)
		util_oom();
	return p;
}

char *
util_xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		util_oom();
	return p;
}

char *
util_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		util_oom();
	return p;
}

size_t
util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len >= size ? size - 1 : len;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

/* Fill e (if any) from fmt, then ": why" when why is not NULL; returns code. */
int
util_verror(struct error *e, int code, const char *why, const char *fmt, va_list ap)
{
	size_t n;

	if (e == NULL)
		return code;
	e->code = code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (why != NULL) {
		n = strlen(e->msg);
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", why);
	}
	return code;
}

int
util_error(struct error *e, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_verror(e, code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

/* Like util_error, with ": strerror(errno)" appended. */
int
util_error_sys(struct error *e, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	util_verror(e, E_SYS, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
	return E_SYS;
}

void
util_strv_push(struct strv *sv, const char *s)
{
	sv->v = util_xrealloc(sv->v, sv->n + 2, sizeof(*sv->v));
	sv->v[sv->n++] = util_xstrdup(s);
	sv->v[sv->n] = NULL;
}

void
util_strv_free(struct strv *sv)
{
	size_t i;

	for (i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

int
util_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	char *p;

	if (util_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return E_SYS;
	}
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return E_SYS;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return E_SYS;
	return E_OK;
}

/* write(2) until done, through short writes and EINTR. */
int
util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return E_SYS;
		}
		p += n;
		len -= (size_t)n;
	}
	return E_OK;
}

/* A unix time as the ISO-8601 UTC string every JSON answer uses; null for none. */
json_t *
util_json_time(int64_t unix_secs)
{
	char buf[32];
	time_t t = (time_t)unix_secs;
	struct tm tm;

	if (unix_secs <= 0)
		return json_null();
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/* Write a whole file so that a crash leaves either the old or the new content. */
int
util_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode,
    struct error *e)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	char *slash;
	int fd, dfd, rc = E_SYS;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return util_error(e, E_INVAL, "%s: path too long", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		return util_error_sys(e, "%s", tmp);
	if (util_write_all(fd, buf, len) != E_OK) {
		util_error_sys(e, "write %s", tmp);
		goto fail;
	}
	if (fsync(fd) != 0) {
		util_error_sys(e, "fsync %s", tmp);
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		util_error_sys(e, "close %s", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		util_error_sys(e, "rename %s", tmp);
		goto fail;
	}
	util_strlcpy(dir, path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		util_strlcpy(dir, ".", sizeof(dir));
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return E_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

/* Remove a file or a whole tree below dirfd, without following symlinks. */
int
util_rm_rf_at(int parent, const char *name)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int fd, rc = E_OK;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? E_OK : E_SYS;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? E_OK : E_SYS;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return E_SYS;
	/* Releases may be read-only; make directories writable so they can be emptied. */
	if ((st.st_mode & S_IWUSR) == 0)
		fchmod(fd, st.st_mode | S_IWUSR | S_IXUSR);
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return E_SYS;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (util_rm_rf_at(dirfd(d), de->d_name) != E_OK)
			rc = E_SYS;
	}
	closedir(d);
	if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = E_SYS;
	return rc;
}

/*
 * Does a symlink at path (relative to a root) with this target leave the root?
 * Absolute targets always do; relative ones do when their ".." climb above the root.
 */
int
util_link_escapes(const char *path, const char *target)
{
	const char *p, *seg;
	long depth = 0;
	size_t n;

	if (*target == '/')
		return 1;
	for (p = path; *p != '\0'; p++)
		if (*p == '/')
			depth++;	/* the link's directory is depth levels below the root */
	for (seg = target; *seg != '\0'; seg += n + (seg[n] == '/')) {
		n = strcspn(seg, "/");
		if (n == 0 || (n == 1 && seg[0] == '.'))
			continue;
		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			if (--depth < 0)
				return 1;
		} else
			depth++;
	}
	return 0;
}

/* A directory's path for messages, from its descriptor (through /proc), if it can be read. */
const char *
util_fd_path(int fd, char *buf, size_t len)
{
	char link[64];
	ssize_t n;
	int saved = errno;	/* for the util_error_sys this is an argument of */

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, len - 1);
	errno = saved;
	if (n <= 0)
		return "(a directory /proc cannot name)";
	buf[n] = '\0';
	return buf;
}

/* Copy text for a log line, escaping control and non-ASCII bytes so input cannot forge lines. */
void
util_sanitize(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outlen == 0)
		return;
	for (; in != NULL && *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outlen)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}
