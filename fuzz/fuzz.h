/* fuzz.h: what the libFuzzer targets in fuzz/ share: request framing, temp files, raw HTTP. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/deployd.h"

#define FUZZ_NOW_MS	1764064800000LL		/* 2025-11-25T10:00:00Z */
#define FUZZ_SECRET	"fuzz-secret-for-the-www-site"
#define FUZZ_TOLERANCE_MS (5 * 60 * 1000)
#define FUZZ_HEADERS_MAX 64

/*
 * A webhook request cut from fuzz input: "Name: value" lines up to an empty line, then
 * the body. Lines starting with '@' are directives for the harness, not headers.
 */
struct fuzz_frame {
	struct hook_header h[FUZZ_HEADERS_MAX];
	size_t		 n;
	char		*store;		/* NUL-terminated copies of names and values */
	char		 directives[64];
	const unsigned char *body;
	size_t		 body_len;
};

void	 fuzz_util_frame(const uint8_t *data, size_t size, struct fuzz_frame *);
void	 fuzz_util_frame_free(struct fuzz_frame *);
char	*fuzz_util_tmpdir(const char *tag);
void	 fuzz_util_write(const char *path, const void *buf, size_t len, mode_t mode);
int	 fuzz_util_exchange(const char *sock, const uint8_t *data, size_t len,
	    char *resp, size_t resplen);
void	 fuzz_util_die(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
int	 fuzz_util_verbose(void);
const char *fuzz_util_whsec(void);
struct config *fuzz_util_serve_config(const char *dir, const char *yaml);
void	 fuzz_util_check_status(const char *what, int status, const int *allowed);

#endif
