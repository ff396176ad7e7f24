/* fuzz_util.c: helpers for the fuzz targets: frame a request, temp dirs, one raw HTTP exchange. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fuzz.h"

#define FUZZ_TMPDIRS_MAX 8
#define FUZZ_EXCHANGE_MS 10000	/* a server that keeps a finished request longer hangs */
#define FUZZ_EXCHANGE_MAX (1024 * 1024)	/* answers kept to look for an events stream */

static char *fuzz_tmpdirs[FUZZ_TMPDIRS_MAX];
static size_t fuzz_ntmpdirs;

void
fuzz_util_die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: invariant broken: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();	/* libFuzzer saves the input as a crash */
}

/* Cut "Name: value" lines; '@' lines set directives; the first empty line starts the body. */
void
fuzz_util_frame(const uint8_t *data, size_t size, struct fuzz_frame *f)
{
	const uint8_t *p = data, *end = data + size, *nl;
	char *s, *colon, *v;
	size_t len, dl;

	memset(f, 0, sizeof(*f));
	f->store = malloc(size + 1);
	s = f->store;
	f->body = (const unsigned char *)"";
	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		len = (size_t)(nl - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0) {
			p = nl < end ? nl + 1 : end;
			f->body = p;
			f->body_len = (size_t)(end - p);
			return;
		}
		memcpy(s, p, len);
		s[len] = '\0';
		p = nl < end ? nl + 1 : end;
		if (s[0] == '@') {
			dl = strlen(f->directives);
			snprintf(f->directives + dl, sizeof(f->directives) - dl, "%s", s + 1);
			continue;
		}
		if (f->n >= FUZZ_HEADERS_MAX)
			continue;
		/* Header strings from libmicrohttpd are C strings too: a NUL ends the line. */
		if ((colon = strchr(s, ':')) != NULL) {
			*colon = '\0';
			v = colon + 1;
			v += strspn(v, " \t");
		} else
			v = s + strlen(s);
		f->h[f->n].name = s;
		f->h[f->n].value = v;
		f->n++;
		s += len + 1;
	}
}

void
fuzz_util_frame_free(struct fuzz_frame *f)
{
	free(f->store);
	f->store = NULL;
}

static int
fuzz_util_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void
fuzz_util_cleanup(void)
{
	size_t i;

	for (i = 0; i < fuzz_ntmpdirs; i++) {
		nftw(fuzz_tmpdirs[i], fuzz_util_rm, 16, FTW_DEPTH | FTW_PHYS);
		free(fuzz_tmpdirs[i]);
	}
	fuzz_ntmpdirs = 0;
}

/* A private directory under $TMPDIR, removed when the fuzzer exits normally. */
char *
fuzz_util_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	if (asprintf(&path, "%s/fuzz-%s.XXXXXX", base, tag) < 0 || mkdtemp(path) == NULL) {
		perror("fuzz: mkdtemp");
		exit(1);
	}
	if (fuzz_ntmpdirs == 0)
		atexit(fuzz_util_cleanup);
	if (fuzz_ntmpdirs < FUZZ_TMPDIRS_MAX)
		fuzz_tmpdirs[fuzz_ntmpdirs++] = strdup(path);
	return path;
}

void
fuzz_util_write(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0 ||
	    (len > 0 && write(fd, buf, len) != (ssize_t)len) || fchmod(fd, mode) != 0) {
		perror(path);
		exit(1);
	}
	close(fd);
}

static long
fuzz_util_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * Has an events stream (application/x-ndjson) begun anywhere in what the server sent, its
 * headers ended and a first line of it arrived? Pipelined requests put it after other
 * answers; the stream never ends by itself, so that line is answer enough.
 */
static int
fuzz_util_stream_began(const char *all, size_t len)
{
	const char *ct, *hdr;

	if ((ct = memmem(all, len, "application/x-ndjson", 20)) == NULL)
		return 0;
	if ((hdr = memmem(ct, len - (size_t)(ct - all), "\r\n\r\n", 4)) == NULL)
		return 0;
	return memchr(hdr + 4, '\n', len - (size_t)(hdr + 4 - all)) != NULL;
}

/*
 * Send raw bytes as one client would, close our side, and read until the server closes.
 * Returns the status of the first answer, 0 if there was none. The server must finish
 * within FUZZ_EXCHANGE_MS: a request it keeps longer after end of input is a hang.
 */
int
fuzz_util_exchange(const char *sock, const uint8_t *data, size_t len, char *resp,
    size_t resplen)
{
	struct sockaddr_un sun;
	struct pollfd pfd;
	size_t off = 0, got = 0, alllen = 0;
	ssize_t n;
	long deadline;
	int fd, status = 0;
	char chunk[4096], *all = NULL;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		fuzz_util_die("cannot connect to %s: %s", sock, strerror(errno));
	deadline = fuzz_util_ms() + FUZZ_EXCHANGE_MS;
	while (off < len) {
		n = send(fd, data + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* the server answered early and closed: fine */
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	resp[0] = '\0';
	for (;;) {
		long left = deadline - fuzz_util_ms();

		if (left <= 0)
			fuzz_util_die("the server kept the connection open %d ms after the "
			    "request ended", FUZZ_EXCHANGE_MS);
		pfd.fd = fd;
		pfd.events = POLLIN;
		if ((n = poll(&pfd, 1, (int)left)) < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;	/* timed out or interrupted: the deadline decides */
		if ((n = read(fd, chunk, sizeof(chunk))) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got + 1 < resplen) {
			size_t take = (size_t)n < resplen - 1 - got ? (size_t)n : resplen - 1 - got;

			memcpy(resp + got, chunk, take);
			got += take;
			resp[got] = '\0';
		}
		/* Everything, up to a bound, to find a stream after pipelined answers. */
		if (alllen + (size_t)n <= FUZZ_EXCHANGE_MAX) {
			all = realloc(all, alllen + (size_t)n);
			if (all == NULL)
				abort();
			memcpy(all + alllen, chunk, (size_t)n);
			alllen += (size_t)n;
			if (fuzz_util_stream_began(all, alllen))
				break;
		}
	}
	free(all);
	close(fd);
	/* "HTTP/1.x NNN": exactly three digits, or no status at all. */
	if (strncmp(resp, "HTTP/1.", 7) == 0 && strlen(resp) >= 13 && resp[8] == ' ' &&
	    strspn(resp + 9, "0123456789") == 3 && resp[12] == ' ')
		status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
	return status;
}

/* The site's secret as GitLab's signing key: "whsec_" and the base64 of FUZZ_SECRET. */
const char *
fuzz_util_whsec(void)
{
	static char key[128];

	if (key[0] == '\0') {
		if (sodium_init() < 0)
			abort();
		memcpy(key, "whsec_", 6);
		sodium_bin2base64(key + 6, sizeof(key) - 6, (const unsigned char *)FUZZ_SECRET,
		    strlen(FUZZ_SECRET), sodium_base64_VARIANT_ORIGINAL);
	}
	return key;
}

/*
 * For the targets that start a server: DIR/deployd.yaml holds yaml, loaded as the daemon
 * would, and the scheduler is initialised but not started (requests queue, nothing runs).
 */
struct config *
fuzz_util_serve_config(const char *dir, const char *yaml)
{
	struct strv errors = { NULL, 0 };
	struct config *cfg;
	char *file;

	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_LVL_ERROR, 0);
	if (asprintf(&file, "%s/deployd.yaml", dir) < 0)
		abort();
	fuzz_util_write(file, yaml, strlen(yaml), 0644);
	if (config_load(file, &cfg, &errors) != E_OK)
		fuzz_util_die("the harness's config: %s", errors.n > 0 ? errors.v[0] : "?");
	if (sched_init(cfg, NULL) != E_OK)
		fuzz_util_die("sched_init failed");
	free(file);
	return cfg;
}

/* FUZZ_VERBOSE=1 makes the targets print each verdict, to check the seeds by hand. */
int
fuzz_util_verbose(void)
{
	static int v = -1;

	if (v < 0)
		v = getenv("FUZZ_VERBOSE") != NULL && *getenv("FUZZ_VERBOSE") != '0';
	return v;
}

/* allowed: a 0-terminated list of HTTP statuses. */
void
fuzz_util_check_status(const char *what, int status, const int *allowed)
{
	const int *a;

	for (a = allowed; *a != 0; a++)
		if (*a == status)
			return;
	fuzz_util_die("%s answered status %d, which it never should", what, status);
}
