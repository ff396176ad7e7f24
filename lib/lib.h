/* lib.h: the floor: errors, helpers, logging, secrets; it knows nothing above it. */
#ifndef DEPLOYD_LIB_H
#define DEPLOYD_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

/* Return codes. Modules return 0 or one of these; only main() decides to exit. */
enum {
	E_OK = 0,
	E_SYS = -1,	/* a system call failed; errno-based message in the error */
	E_NOMEM = -2,
	E_GIT = -3,	/* libgit2 failed */
	E_CONFIG = -4,	/* bad configuration */
	E_BUSY = -5,	/* somebody else holds the lock */
	E_NOTFOUND = -6,
	E_INVAL = -7,	/* bad input */
	E_TIMEOUT = -8,
	E_STOPPED = -9,	/* the daemon is shutting down */
	E_SECRET = -10,	/* a secret file is unsafe or unreadable */
	E_HEALTH = -11,	/* the release went live and failed its health check */
	E_STALE = -12,	/* what the caller holds is out of date: read it again */
};

/* A failure's one-line explanation travels next to its code. */
struct error {
	int	code;
	char	msg[512];
};

/* A NULL-terminated argument vector or list of strings. */
struct strv {
	char	**v;
	size_t	  n;
};

#define SHA_HEX	41		/* a commit id: 40 hex digits and a NUL */

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* ---- util.c ---- */
int	 util_parse_uint(const char *s, uint64_t max, uint64_t *out);
int	 util_parse_duration(const char *s, int64_t *ms);
int	 util_parse_size(const char *s, int64_t *bytes);
int	 util_format_duration(int64_t ms, char *buf, size_t len);
int64_t	 util_now_ms(void);		/* wall clock, unix milliseconds */
int64_t	 util_mono_ms(void);		/* monotonic clock, milliseconds */
int	 util_cpus(void);		/* CPUs this process may run on, at least 1 */
void	*util_xmalloc(size_t);
void	*util_xcalloc(size_t, size_t);
void	*util_xrealloc(void *, size_t, size_t);
char	*util_xstrdup(const char *);
char	*util_xasprintf(const char *, ...) __attribute__((format(printf, 1, 2)));
size_t	 util_strlcpy(char *dst, const char *src, size_t size);
int	 util_digits(const char *s, size_t n);
int	 util_verror(struct error *, int code, const char *why, const char *fmt, va_list);
int	 util_error(struct error *, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
int	 util_error_sys(struct error *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	 util_strv_push(struct strv *, const char *);
void	 util_strv_free(struct strv *);
int	 util_mkdir_p(const char *path, mode_t mode);
int	 util_write_all(int fd, const void *buf, size_t len);
json_t	*util_json_time(int64_t unix_secs);
int	 util_write_file_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode, struct error *);
int	 util_rm_rf_at(int dirfd, const char *name);
void	 util_sanitize(const char *in, char *out, size_t outlen);
int	 util_link_escapes(const char *path, const char *target);
const char *util_fd_path(int fd, char *buf, size_t len);

/* ---- base64.c: strict, canonical decoding of what deployd did not write ---- */
int	 base64_decode(const char *in, size_t inlen, const char *ignore,
	    unsigned char *out, size_t cap, size_t *outlen);

/* ---- secret.c: files holding secrets, and the guarded memory they are read into ---- */
int	 secret_check_file(const char *path, struct error *);
int	 secret_read(const char *path, unsigned char **buf, size_t *len, struct error *);
void	 secret_free(unsigned char *buf, size_t len);

/* ---- cidr.c: IPv4 and IPv6 address ranges, and the client behind trusted proxies ---- */
#define CIDR_ADDR_LEN	16	/* every address as IPv6; IPv4 as ::ffff:a.b.c.d */
struct cidr {
	unsigned char	addr[CIDR_ADDR_LEN];	/* the network: no bits set past the prefix */
	unsigned	bits;			/* prefix length over all 128 bits */
};
struct cidr_list {
	struct cidr	*v;
	size_t		 n;
	int		 unix_peer;	/* trusted_proxies: "unix", a peer on a Unix socket */
};
int	 cidr_addr(const char *s, unsigned char out[CIDR_ADDR_LEN]);
void	 cidr_addr_text(const unsigned char a[CIDR_ADDR_LEN], char *buf, size_t len);
int	 cidr_parse(const char *s, struct cidr *, struct error *);
int	 cidr_match(const struct cidr *, const unsigned char a[CIDR_ADDR_LEN]);
int	 cidr_overlap(const struct cidr *, const struct cidr *);
void	 cidr_text(const struct cidr *, char *buf, size_t len);
int	 cidr_list_match(const struct cidr_list *, const unsigned char a[CIDR_ADDR_LEN]);
int	 cidr_forwarded(const struct cidr_list *trusted, const char *xff,
	    unsigned char client[CIDR_ADDR_LEN], char *text, size_t len);
void	 cidr_list_push(struct cidr_list *, const struct cidr *);
void	 cidr_list_free(struct cidr_list *);

/* ---- log.c ---- */
void	 log_init(int level, int journald);
void	 log_set_level(int level);
void	 log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...)	log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
