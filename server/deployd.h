/* deployd.h: the one private header: shared types, then every module's prototypes by file. */
#ifndef DEPLOYD_H
#define DEPLOYD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define DEPLOYD_VERSION PACKAGE_VERSION
#define DEFAULT_CONFIG "/etc/deployd/deployd.yaml"

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

#define SHA_HEX	41		/* 40 hex digits and a NUL */
#define RELEASE_NAME_MAX 64	/* "20261125T224329Z-0123456789ab" is 29 */

/* ---- configuration (values as loaded; see config.c for the key table) ---- */

enum reuse_mode { REUSE_AUTO, REUSE_REFLINK, REUSE_HARDLINK, REUSE_COPY };
enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Provider bits for site.providers. */
#define PROV_GITHUB	(1u << 0)
#define PROV_GITEA	(1u << 1)
#define PROV_FORGEJO	(1u << 2)
#define PROV_GOGS	(1u << 3)
#define PROV_GITLAB	(1u << 4)
#define PROV_BITBUCKET	(1u << 5)
#define PROV_ALL	0x3fu

struct site_hooks {
	struct strv	pre_activate;
	struct strv	post_activate;
	struct strv	on_failure;
	int64_t		timeout_ms;
};

struct site_config {
	char		*name;
	char		*repo;
	char		*branch;	/* exactly one of branch and tags */
	char		*tags;
	char		*path;
	int64_t		 keep;
	int		 reuse;		/* enum reuse_mode */
	char		*secret_file;
	unsigned	 providers;	/* PROV_* bits */
	int		 allow_sha1;
	int64_t		 poll_ms;	/* 0: polling off */
	int64_t		 webhook_grace_ms;
	char		*ssh_key;
	char		*known_hosts;
	char		*token_file;
	char		*token_user;
	char		*ca_file;
	char		*allowed_signers;
	int		 allow_external_symlinks;
	struct site_hooks hooks;
	struct strv	 shared;
	int		 line, col;	/* where the site starts in the file */
};

struct limits {
	int64_t		max_body;
	int64_t		max_header;
	int64_t		request_timeout_ms;
	int64_t		max_connections;
	int64_t		max_connections_per_ip;
	int64_t		signature_tolerance_ms;
};

struct config {
	char		*file;
	char		*listen;
	char		*control_socket;
	char		*state_dir;
	int		 log_level;	/* enum log_level */
	int64_t		 max_parallel_deploys;
	struct limits	 limits;
	char		*tls_cert;
	char		*tls_key;
	struct site_config *sites;
	size_t		 nsites;
};

/* ---- deploys ---- */

enum trigger { TRIG_POLL, TRIG_WEBHOOK, TRIG_MANUAL, TRIG_ROLLBACK, TRIG_STARTUP };

/* What a deploy is doing now; shown by status. */
enum phase { PHASE_IDLE, PHASE_FETCHING, PHASE_WRITING, PHASE_HOOK, PHASE_ACTIVATING };

/* "Bring site S to the tip, or to revision R": the one request every caller makes. */
struct deploy_request {
	enum trigger	trigger;
	char		rev[SHA_HEX];	/* empty: the tracked branch's tip */
	char		provider[16];	/* webhook provider, if any */
	char		delivery[96];	/* webhook delivery id, if any */
};

struct deploy_result {
	int		rc;		/* 0 or E_* */
	int		changed;	/* a new release went live */
	char		commit[SHA_HEX];
	char		release[RELEASE_NAME_MAX];
	char		error[512];
	int64_t		duration_ms;
};

/* Called by the engine as a deploy moves on; may be NULL. */
typedef void (*engine_phase_cb)(void *arg, enum phase phase, const char *commit);

/* ---- per-site state file (state_dir/<site>/state.json) ---- */

struct release_rec {
	char		name[RELEASE_NAME_MAX];
	char		commit[SHA_HEX];
	int64_t		activated_at;	/* unix seconds */
	int		bad;
};

#define HISTORY_MAX 50

struct history_rec {
	int64_t		id;
	int		trigger;	/* enum trigger */
	char		provider[16];
	char		delivery[96];
	int64_t		started_at;	/* unix milliseconds */
	int64_t		duration_ms;
	int		ok;
	char		commit[SHA_HEX];
	char		release[RELEASE_NAME_MAX];
	char		error[512];
};

struct site_state {
	char		desired[SHA_HEX];	/* what the remote's branch said at the last fetch */
	char		attempted[SHA_HEX];	/* last commit a deploy was tried for */
	char		applied[SHA_HEX];	/* commit live now */
	char		release[RELEASE_NAME_MAX];	/* release live now */
	int64_t		applied_at;		/* unix seconds */
	char		subject[256];
	char		author[128];
	int		trigger;		/* trigger of the live release */
	char		last_error[512];
	int64_t		last_error_at;		/* unix seconds, 0: none */
	int		paused;
	char		pause_reason[256];
	int64_t		next_id;
	struct release_rec *releases;		/* successful releases, oldest first */
	size_t		nreleases;
	struct history_rec *history;		/* newest last, at most HISTORY_MAX */
	size_t		nhistory;
};

/* ---- config.c ---- */
int	 config_load(const char *file, struct config **out, struct strv *errors);
void	 config_free(struct config *);
const struct site_config *config_site(const struct config *, const char *name);
int	 config_check_secret_file(const char *path, struct error *);
int	 config_read_secret(const char *path, unsigned char **buf, size_t *len,
	    struct error *);
void	 config_free_secret(unsigned char *buf, size_t len);
int	 config_key_count(void);
const char *config_key_name(int i);

/* ---- util.c ---- */
int	 util_parse_duration(const char *s, int64_t *ms);
int	 util_parse_size(const char *s, int64_t *bytes);
int	 util_format_duration(int64_t ms, char *buf, size_t len);
int64_t	 util_now_ms(void);		/* wall clock, unix milliseconds */
int64_t	 util_mono_ms(void);		/* monotonic clock, milliseconds */
void	*util_xmalloc(size_t);
void	*util_xcalloc(size_t, size_t);
void	*util_xrealloc(void *, size_t, size_t);
char	*util_xstrdup(const char *);
char	*util_xasprintf(const char *, ...) __attribute__((format(printf, 1, 2)));
size_t	 util_strlcpy(char *dst, const char *src, size_t size);
int	 util_error(struct error *, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
int	 util_error_sys(struct error *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
int	 util_error_git(struct error *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	 util_strv_push(struct strv *, const char *);
void	 util_strv_free(struct strv *);
int	 util_mkdir_p(const char *path, mode_t mode);
int	 util_write_file_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode, struct error *);
int	 util_rm_rf_at(int dirfd, const char *name);
void	 util_sanitize(const char *in, char *out, size_t outlen);
int	 util_valid_site_name(const char *);
const char *util_trigger_name(int trigger);
const char *util_phase_name(int phase);

/* ---- log.c ---- */
void	 log_init(int level, int journald);
void	 log_set_level(int level);
void	 log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...)	log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* ---- deploy/engine.c: the one entry point that changes what is live ---- */
int	 engine_init(void);
void	 engine_shutdown(void);
int	 engine_deploy(const struct config *, const struct site_config *,
	    const struct deploy_request *, struct deploy_result *,
	    engine_phase_cb, void *cbarg);
int	 engine_recover(const struct config *, const struct site_config *,
	    struct error *);

/* ---- deploy/fetch.c ---- */
int	 fetch_site(const struct config *, const struct site_config *,
	    char tip[SHA_HEX], struct error *);
int	 fetch_child_main(int argc, char **argv);	/* the "__fetch" helper process */

/* ---- deploy/release.c ---- */
int	 release_name(int64_t unix_secs, const char *commit, char *buf, size_t len);
int	 release_parse_name(const char *name, int64_t *unix_secs, char commit12[13]);
int	 release_write(const char *cache_dir, const char *commit, int releases_fd,
	    const char *tmpname, struct error *);
int	 release_cleanup_tmp(int releases_fd);
int	 release_prune(int releases_fd, struct site_state *, int64_t keep,
	    const char *current, struct error *);

/* ---- deploy/swap.c ---- */
int	 swap_current(int path_fd, const char *release, struct error *);
int	 swap_read_current(int path_fd, char *release, size_t len);

/* ---- deploy/state.c ---- */
int	 state_load(const char *state_dir, const char *site, struct site_state *,
	    struct error *);
int	 state_save(const char *state_dir, const char *site, const struct site_state *,
	    struct error *);
void	 state_free(struct site_state *);
void	 state_add_history(struct site_state *, const struct history_rec *);
void	 state_add_release(struct site_state *, const struct release_rec *);
json_t	*state_to_json(const struct site_state *);
int	 state_from_json(json_t *, struct site_state *, struct error *);

/* ---- deploy/lock.c ---- */
int	 lock_acquire(const char *path, int wait, int *fd, struct error *);
void	 lock_release(int fd);

/* ---- hooks/ (webhook providers), server/http.c and server/metrics.c: added with the listener ---- */

/* ---- server/sched.c: queues deploys, one running and one pending per site ---- */
int	 sched_init(const struct config *);
void	 sched_free(void);
int	 sched_start(void);
void	 sched_stop(void);
int	 sched_request(const char *site, const struct deploy_request *, int64_t *id);
json_t	*sched_site_json(const char *site);
json_t	*sched_sites_json(void);
void	 sched_note_webhook(const char *site);

/* ---- server/control.c ---- */
int	 control_start(const struct config *, struct error *);
void	 control_stop(void);

/* ---- server/client.c ---- */
int	 client_request(const char *socket_path, const char *method, const char *path,
	    const char *body, int *status, char **resp, struct error *);

/* ---- server/serve.c ---- */
int	 serve_main(const char *config_file);

/* ---- server/demo.c ---- */
int	 demo_main(int argc, char **argv);

/* ---- server/main.c subcommands ---- */
int	 cmd_status(int argc, char **argv);
int	 cmd_deploy(int argc, char **argv);

#endif
