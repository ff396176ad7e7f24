/* deployd.h: the one private header: shared types, then every module's prototypes by file. */
#ifndef DEPLOYD_H
#define DEPLOYD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
	int64_t		 fetch_timeout_ms;
	int		 rollback_on_failure;
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
	char		*listener_user;	/* the listener's user when started as root */
	struct site_config *sites;
	size_t		 nsites;
};

/* ---- deploys ---- */

enum trigger { TRIG_POLL, TRIG_WEBHOOK, TRIG_MANUAL, TRIG_ROLLBACK, TRIG_STARTUP };

/* What a deploy is doing now; shown by status. */
enum phase { PHASE_IDLE, PHASE_FETCHING, PHASE_WRITING, PHASE_HOOK, PHASE_ACTIVATING };

/* "Bring site S to the tip, or to revision R": the one request every caller makes. */
/* What a queued job does; everything but ACT_DEPLOY is run by deploy/rollback.c. */
enum action { ACT_DEPLOY, ACT_ROLLBACK, ACT_PAUSE, ACT_RESUME };

struct deploy_request {
	enum trigger	trigger;
	char		rev[SHA_HEX];	/* empty: the tracked branch's tip */
	char		provider[16];	/* webhook provider, if any */
	char		delivery[96];	/* webhook delivery id, if any */
	int		action;		/* enum action; 0 is a deploy */
	char		target[RELEASE_NAME_MAX];	/* rollback: release or commit prefix */
	int		skip_bad;	/* automatic deploy: never re-deploy a bad commit */
};

struct deploy_result {
	int		rc;		/* 0 or E_* */
	int		changed;	/* a new release went live */
	char		commit[SHA_HEX];
	char		release[RELEASE_NAME_MAX];
	char		error[512];
	int64_t		duration_ms;
	int64_t		files_written;	/* written from their blobs */
	int64_t		files_reused;	/* shared with or copied from the previous release */
	char		reuse[16];	/* how: reflink, hardlink or copy */
	char		live[SHA_HEX];	/* the commit live after the job, "" if unknown */
};

/* How far a deploy has got: for `deploy --wait` and the events stream. */
struct deploy_progress {
	int64_t		objects;	/* received from the remote */
	int64_t		objects_total;
	int64_t		bytes;		/* received from the remote */
	int64_t		files;		/* written into the release so far */
	int64_t		files_total;	/* 0: not known yet */
};

/* Called by the engine as a deploy moves on (progress NULL: a new phase); may be NULL. */
typedef void (*engine_phase_cb)(void *arg, enum phase phase, const char *commit,
    const struct deploy_progress *progress);

/* ---- per-site state file (state_dir/<site>/state.json) ---- */

struct release_rec {
	char		name[RELEASE_NAME_MAX];
	char		commit[SHA_HEX];
	int64_t		activated_at;	/* unix seconds */
	int		bad;
	int64_t		written_ns;	/* ctime of the release when it got its name; 0: unknown */
	int64_t		files_written;
	int64_t		files_reused;
	char		reuse[16];	/* reflink, hardlink or copy */
};

#define HISTORY_MAX 50
#define HISTORY_OUTPUT_MAX 4096

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
	char		output[HISTORY_OUTPUT_MAX];	/* the end of the hooks' output */
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
void	 config_set_check_files(int);
void	 config_warnings(const struct config *, FILE *);
const struct site_config *config_site(const struct config *, const char *name);
int	 config_check_secret_file(const char *path, struct error *);
int	 config_read_secret(const char *path, unsigned char **buf, size_t *len,
	    struct error *);
void	 config_free_secret(unsigned char *buf, size_t len);
int	 config_key_count(void);
const char *config_key_name(int i);

/* ---- util.c ---- */
int	 util_parse_uint(const char *s, uint64_t max, uint64_t *out);
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
int	 util_write_all(int fd, const void *buf, size_t len);
json_t	*util_json_time(int64_t unix_secs);
int	 util_write_file_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode, struct error *);
int	 util_rm_rf_at(int dirfd, const char *name);
void	 util_sanitize(const char *in, char *out, size_t outlen);
int	 util_valid_site_name(const char *);
const char *util_trigger_name(int trigger);
const char *util_phase_name(int phase);

/* ---- base64.c: strict, canonical decoding of what deployd did not write ---- */
int	 base64_decode(const char *in, size_t inlen, const char *ignore,
	    unsigned char *out, size_t cap, size_t *outlen);

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

/* ---- deploy/rollback.c: rollback, pause and resume, serialised with deploys ---- */
int	 rollback_run(const struct config *, const struct site_config *,
	    const struct deploy_request *, struct deploy_result *);
int	 rollback_pause(const struct config *, const struct site_config *, int paused,
	    const char *reason, struct error *);
json_t	*rollback_releases_json(const struct config *, const struct site_config *,
	    struct error *);

/* ---- deploy/sshsig.c: SSH-signed commits (PROTOCOL.sshsig) and allowed_signers ---- */
#define SSHSIG_NAMESPACE	"git"
#define SSHSIG_ARMOR_MAX	(64 * 1024)	/* a larger signature is refused unparsed */
#define SSHSIG_ALLOWED_MAX	(1024 * 1024)	/* largest allowed_signers file read */
/* Who may sign: an allowed_signers file's text, and the namespace and date to check. */
struct sshsig_policy {
	const char	*file;		/* named in messages */
	const char	*text;		/* the file's bytes; need not end in NUL */
	size_t		 len;
	const char	*ns;		/* the namespace a signature must carry */
	int64_t		 when;		/* unix seconds, for valid-after and valid-before */
};
int	 sshsig_verify_commit(const char *cache_dir, const char *commit_hex,
	    const char *allowed_signers, char *signer, size_t signerlen, struct error *);
int	 sshsig_verify(const char *what, const char *armored, size_t len,
	    const unsigned char *msg, size_t msglen, const struct sshsig_policy *,
	    char *signer, size_t signerlen, struct error *);
int	 sshsig_allowed(const char *what, const struct sshsig_policy *,
	    const unsigned char *key, size_t keylen, char *signer, size_t signerlen,
	    struct error *);

/* ---- deploy/fetch.c ---- */
#define FETCH_REF_MAX	256
/* What the remote said: the commit to deploy and the ref it came from. */
struct fetch_result {
	char		tip[SHA_HEX];
	char		ref[FETCH_REF_MAX];	/* refs/heads/<branch> or refs/tags/<tag> */
};
typedef void (*fetch_progress_fn)(void *arg, const struct deploy_progress *);
int	 fetch_site(const struct config *, const struct site_config *,
	    struct fetch_result *, fetch_progress_fn, void *, struct error *);
int	 fetch_remote_tip(const struct config *, const struct site_config *,
	    struct fetch_result *, struct error *);	/* ls-remote only, no download */
int	 fetch_site_fresh(const struct config *, const struct site_config *,
	    struct fetch_result *, struct error *);	/* re-clone a damaged cache */
int	 fetcher_main(int argc, char **argv);	/* the "__fetch" helper process */
#define FETCH_TIMEOUT_MS (10 * 60 * 1000)	/* default of site->fetch_timeout_ms */
void	 fetch_set_exe(const char *path);	/* default /proc/self/exe; for tests */
void	 fetch_stop_helper(void);		/* the calling thread's poll helper exits */
void	 fetch_set_timeout_ms(int64_t ms);	/* >0 overrides fetch_timeout; for tests */
char	*fetch_cache_path(const struct config *, const struct site_config *);
int	 fetcher_url_ssh(const char *url, char *host, size_t hostlen, int *port);

/* ---- deploy/release.c ---- */
int	 release_name(int64_t unix_secs, const char *commit, char *buf, size_t len);
int	 release_parse_name(const char *name, int64_t *unix_secs, char commit12[13]);
int	 release_write(const char *cache_dir, const char *commit, int releases_fd,
	    const char *tmpname, size_t *nfiles, struct error *);
int	 release_write_checked(const char *cache_dir, const char *commit, int releases_fd,
	    const char *tmpname, int allow_external, size_t *nfiles, struct error *);
/* What release_write_incr may reuse, and how. */
struct release_opts {
	int		 allow_external;	/* symlinks may leave the release */
	int		 reuse;			/* enum reuse_mode */
	int		 auto_hardlink;		/* reuse: auto may pick hard links */
	const char	*base;			/* the previous release in releases_fd; NULL: none */
	const char	*base_commit;		/* its commit, 40 hex */
	int64_t		 base_written_ns;	/* its written_ns: files changed later are not reused */
	/* Now and then, the files done so far and the tree's total; may be NULL. */
	void		(*progress)(void *arg, size_t done, size_t total);
	void		*progress_arg;
};
struct release_stats {
	size_t		 nfiles;		/* files and symlinks in the release */
	size_t		 written;		/* written from their blobs */
	size_t		 reused;		/* taken from the previous release */
	const char	*method;		/* "reflink", "hardlink" or "copy" */
};
int	 release_write_incr(const char *cache_dir, const char *commit, int releases_fd,
	    const char *tmpname, const struct release_opts *, struct release_stats *,
	    struct error *);
void	 release_settle(int releases_fd, const char *tmpname);
int64_t	 release_stamp(int releases_fd, const char *name);
int	 release_link_escapes(const char *path, const char *target);
int	 release_cleanup_tmp(int releases_fd);	/* number removed, or E_SYS */
int	 release_prune(int releases_fd, struct site_state *, int64_t keep,
	    const char *current, struct error *);
int	 release_list(int releases_fd, struct strv *names, struct error *);

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

/* ---- deploy/hookrun.c: deploy hooks ---- */
#define HOOKRUN_TIMEOUT_MS (5 * 60 * 1000)	/* hooks.timeout's default */
#define HOOKRUN_OUT_MAX	(64 * 1024)		/* output kept from one hook run */
struct hookrun_env {
	const char	*site;
	const char	*release;		/* absolute path of the release directory */
	const char	*commit;
	const char	*previous_commit;
	const char	*ref;			/* refs/heads/<branch> or refs/tags/<tag> */
	const char	*error;			/* DEPLOYD_ERROR; NULL: not set */
};
struct hookrun_result {
	int		 status;		/* wait status */
	int		 timed_out;
	int		 truncated;
	char		*output;		/* NUL-terminated; free with hookrun_result_free */
	size_t		 len;
};
int	 hookrun_run(const char *what, const struct strv *argv, const char *cwd,
	    const struct hookrun_env *, int64_t timeout_ms, struct hookrun_result *,
	    struct error *);
void	 hookrun_result_free(struct hookrun_result *);
void	 hookrun_log(const char *site, const char *what, const struct hookrun_result *);
void	 hookrun_tail(const struct hookrun_result *, char *dst, size_t dstlen);

/* ---- deploy/shared.c: path/shared/<entry> linked into each release ---- */
int	 shared_link(const struct site_config *, int releases_fd, const char *release,
	    struct error *);

/* ---- deploy/knownhosts.c: pinned SSH host keys ---- */
int	 knownhosts_check(const char *file, const char *host, int port,
	    const unsigned char *key, size_t keylen, struct error *);
int	 knownhosts_host_match(const char *field, const char *name);
void	 knownhosts_name(const char *host, int port, char *buf, size_t len);
void	 knownhosts_fingerprint(const unsigned char *key, size_t len, char *buf,
	    size_t buflen);

/* ---- deploy/submodule.c: submodules checked out into releases ---- */
struct git_oid;
struct git_repository;
struct git_tree;
struct submodule {
	char		*name;
	char		*path;
	char		*url;
};
/* Make commit present in the bare repository dir, fetching it from url. */
typedef int (*submodule_fetch_fn)(const char *url, const char *dir,
	    const struct git_oid *commit, void *arg, struct error *);
int	 submodule_parse(const char *text, size_t len, struct submodule **, size_t *n);
void	 submodule_free(struct submodule *, size_t n);
const struct submodule *submodule_find(const struct submodule *, size_t n, const char *path);
char	*submodule_resolve_url(const char *base, const char *url);
char	*submodule_dir(const char *cache_dir, const char *key);
int	 submodule_read(struct git_repository *, const struct git_tree *,
	    struct submodule **, size_t *n, struct error *);
int	 submodule_fetch_all(struct git_repository *, const char *cache_dir,
	    const struct git_oid *commit, const char *url, submodule_fetch_fn, void *arg,
	    struct error *);

/* ---- deploy/seed.c: a first cache of a local repository copies its object files ---- */
int	 seed_local(struct git_repository *cache, const char *url);
void	 seed_drop(struct git_repository *cache);

/* ---- deploy/tags.c: `tags:` mode ---- */
int	 tags_vercmp(const char *a, const char *b);
int	 tags_match(const char *glob, const char *name);
int	 tags_pick(const char *glob, const char *const *names, size_t n);

/* ---- hooks/ (webhook providers), server/http.c and server/metrics.c ---- */

/* One request header; names compare case-insensitively. */
struct hook_header {
	const char	*name;
	const char	*value;
};

/* A webhook request as the listener received it. */
struct hook_request {
	const char	*method;
	const struct hook_header *headers;
	size_t		 nheaders;
	const unsigned char *body;	/* raw bytes, not NUL-terminated */
	size_t		 body_len;
	int64_t		 now_ms;	/* wall clock, for timestamped signatures */
};

/* What verify and parse see: the request, the site's key, and the JSON document. */
struct hook_input {
	const struct hook_request *req;
	const struct site_config *site;
	const unsigned char *secret;
	size_t		 secret_len;
	int64_t		 tolerance_ms;	/* for timestamped signatures; 0: no check */
	const unsigned char *json;	/* the body, or the decoded payload= of a form */
	size_t		 json_len;
	int		 form;		/* the body was form-encoded */
};

enum hook_kind { HOOK_OTHER, HOOK_PUSH, HOOK_PING };

#define HOOK_REFS_MAX	16	/* Bitbucket reports several ref changes per push */
#define HOOK_REF_MAX	256
#define HOOK_DELIVERY_MAX 96	/* = sizeof(deploy_request.delivery) */
#define HOOK_REASON_MAX	128

struct hook_ref {
	char		ref[HOOK_REF_MAX];	/* refs/heads/x, refs/tags/y, ... */
	char		before[SHA_HEX];	/* empty unless 40 hex digits */
	char		after[SHA_HEX];
	int		deleted;
};

/* A provider's parse() fills this from the headers and the JSON. */
struct hook_payload {
	int		kind;			/* enum hook_kind */
	char		event[32];		/* the provider's event name, safe to log and send */
	struct hook_ref	refs[HOOK_REFS_MAX];
	size_t		nrefs;
};

/* One row of the provider table in hooks/provider.c. */
struct hook_provider {
	const char	*name;
	unsigned	 bit;			/* PROV_* */
	int		(*detect)(const struct hook_request *);
	/* 0 or E_INVAL with a reason that never holds the secret or a MAC. */
	int		(*verify)(const struct hook_input *, char *reason, size_t len);
	int		(*parse)(const struct hook_input *, json_t *root,
			    struct hook_payload *, char *reason, size_t len);
	const char	*delivery[3];		/* delivery-id headers, best first */
};

/* The outcome of one webhook: the HTTP status and what to tell and do. */
struct hook_result {
	int		status;			/* 200, 202, 400, 401, 403, 405 or 415 */
	int		queue;			/* 1: queue a deploy of the tip */
	int		kind;			/* enum hook_kind */
	const char	*provider;		/* "" until detected */
	char		event[32];
	char		delivery[HOOK_DELIVERY_MAX];
	char		ref[HOOK_REF_MAX];	/* the ref that decided */
	char		after[SHA_HEX];		/* logged, never trusted */
	char		reason[HOOK_REASON_MAX];	/* why ignored or refused; safe to send */
};

/* hooks/provider.c */
int	 provider_handle(const struct site_config *, const unsigned char *secret,
	    size_t secret_len, int64_t tolerance_ms, const struct hook_request *,
	    struct hook_result *);	/* returns the HTTP status */
unsigned provider_bit(const char *name);	/* 0: unknown */
const char *provider_name(unsigned bit);
const char *provider_header(const struct hook_request *, const char *name);
int	 provider_has_prefix(const struct hook_request *, const char *prefix);
int	 provider_hmac(const char *digest, const unsigned char *key, size_t keylen,
	    const unsigned char *const *parts, const size_t *lens, size_t nparts,
	    unsigned char *mac, size_t maclen);
int	 provider_check_hex(const char *digest, size_t maclen, const char *hex,
	    const struct hook_input *, const unsigned char *data, size_t len,
	    const char *what, char *reason, size_t rlen);
int	 provider_form_payload(const unsigned char *body, size_t len,
	    unsigned char **out, size_t *outlen);
int	 provider_parse_push(json_t *root, int tests, struct hook_payload *, char *reason,
	    size_t len);
void	 provider_copy_sha(char dst[SHA_HEX], json_t *v);
void	 provider_safe_copy(char *dst, size_t dstlen, const char *src);
struct hook_event {
	const char	*name;
	int		 kind;			/* enum hook_kind */
};
void	 provider_set_event(struct hook_payload *, const char *event,
	    const struct hook_event *map);
/* hooks/github.c, gitea.c, forgejo.c, gogs.c, gitlab.c, bitbucket.c */
int	 github_detect(const struct hook_request *);
int	 github_verify(const struct hook_input *, char *, size_t);
int	 github_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitea_detect(const struct hook_request *);
int	 gitea_verify(const struct hook_input *, char *, size_t);
int	 gitea_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitea_verify_header(const struct hook_input *, const char *header, char *, size_t);
int	 gitea_parse_event(const struct hook_input *, const char *header, json_t *,
	    struct hook_payload *, char *, size_t);
int	 forgejo_detect(const struct hook_request *);
int	 forgejo_verify(const struct hook_input *, char *, size_t);
int	 forgejo_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gogs_detect(const struct hook_request *);
int	 gogs_verify(const struct hook_input *, char *, size_t);
int	 gogs_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 gitlab_detect(const struct hook_request *);
int	 gitlab_signing_key(const unsigned char *secret, size_t len, unsigned char *key,
	    size_t size, size_t *keylen);
int	 gitlab_verify(const struct hook_input *, char *, size_t);
int	 gitlab_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);
int	 bitbucket_detect(const struct hook_request *);
int	 bitbucket_verify(const struct hook_input *, char *, size_t);
int	 bitbucket_parse(const struct hook_input *, json_t *, struct hook_payload *, char *, size_t);

/* server/bind.c: the webhook listener's socket, bound by the daemon */
int	 bind_listen(const char *listen, char *unix_path, size_t len, struct error *);

/* server/http.c: the webhook listener (POST /hooks/<site>, /healthz, /metrics) */
int	 http_load(const struct config *, struct error *);	/* secrets, TLS key */
int	 http_start(int listen_fd, struct error *);
void	 http_quiesce(void);		/* stop accepting */
int	 http_drain(int64_t timeout_ms);	/* wait for requests in flight */
void	 http_stop(void);

/*
 * server/privsep.c and server/listener.c: the listener process and the daemon talk in
 * fixed-size records over a SOCK_SEQPACKET socketpair: one request, one reply.
 */
enum privsep_type {
	PS_READY = 1,	/* the listener is confined and serving */
	PS_PUSH,	/* a verified push to a site's tracked ref */
	PS_COUNT,	/* a webhook's metric result; the one record without a reply */
	PS_METRICS,	/* send the Prometheus text */
	PS_QUIESCED,	/* the listener accepts no more connections */
};
enum privsep_answer {
	PS_OK = 0,
	PS_QUEUED,
	PS_DUPLICATE,
	PS_PAUSED,
	PS_UNAVAILABLE,	/* the deploy could not be queued */
	PS_STOPPING,	/* the daemon is shutting down */
	PS_UNKNOWN,	/* no such site (any more) */
	PS_REFUSED,	/* a malformed record */
	PS_LIVE,	/* the pushed commit is live and nothing is under way: nothing to do */
};
#define PRIVSEP_SITE_MAX	65
#define PRIVSEP_METRICS_MAX	(4 * 1024 * 1024)
#define PRIVSEP_CHUNK		(32 * 1024)	/* metrics text travels in records this big */
struct privsep_msg {
	uint32_t	type;		/* enum privsep_type */
	uint32_t	seq;		/* echoed in the reply */
	char		site[PRIVSEP_SITE_MAX];
	char		provider[16];
	char		delivery[HOOK_DELIVERY_MAX];
	char		ref[HOOK_REF_MAX];
	char		after[SHA_HEX];
	char		result[32];	/* PS_COUNT */
};
struct privsep_reply {
	uint32_t	seq;
	uint32_t	answer;		/* enum privsep_answer */
	uint32_t	len;		/* PS_METRICS: bytes of text in the records that follow */
};
void	 privsep_init(const struct config *);	/* the daemon's side, no process */
int	 privsep_start(const struct config *, struct error *);
int	 privsep_reload(const struct config *);
void	 privsep_stop(void);
int	 privsep_handle(const struct privsep_msg *, struct privsep_reply *, char **text);

/* server/listener.c: the listener process ("deployd __listen") and its side of the channel */
int	 listener_main(int argc, char **argv);
int	 listener_ask(const struct privsep_msg *, struct privsep_reply *, char **text);

/* server/sandbox.c: the listener's confinement */
struct sandbox_opts {
	const char	*user;		/* dropped to when running as root */
	int		 no_seccomp;	/* DEPLOYD_SANDBOX_NO_SECCOMP=1: for valgrind only */
	int		 pdeathsig;	/* re-armed after the change of user; 0: none */
};
int	 sandbox_apply(const struct sandbox_opts *, struct error *);

/* server/metrics.c: Prometheus counters; every function is thread-safe */
void	 metrics_init(const struct config *);
void	 metrics_free(void);
void	 metrics_webhook(const char *site, const char *provider, const char *result);
void	 metrics_deploy(const char *site, int ok, int64_t duration_ms);
void	 metrics_live(const char *site, int64_t unix_secs);
void	 metrics_webhook_missed(const char *site);
void	 metrics_poll_error(const char *site);
char	*metrics_render(void);		/* malloc'd Prometheus text, NULL on failure */

/* ---- server/sched.c: queues deploys, one running and one pending per site ---- */
int	 sched_init(const struct config *);
void	 sched_free(void);
int	 sched_start(void);
int	 sched_reload(const struct config *);
void	 sched_stop(void);
int	 sched_request(const char *site, const struct deploy_request *, int64_t *id);
json_t	*sched_site_json(const char *site);
json_t	*sched_sites_json(void);
void	 sched_note_webhook(const char *site);
int	 sched_is_paused(const char *site);
enum { REQ_UNKNOWN, REQ_WAITING, REQ_OK, REQ_FAILED };
int	 sched_request_state(const char *site, int64_t id, int *paused);
int	 sched_site_event(const char *site, int64_t *seq, int64_t timeout_ms, json_t **out);
int	 sched_is_live(const char *site, const char *commit);

/* ---- server/control.c ---- */
int	 control_start(const struct config *, struct error *);
void	 control_stop(void);
void	 control_reload(const struct config *);


/* ---- server/serve.c ---- */
int	 serve_main(const char *config_file);
void	 serve_notify(const char *msg);	/* sd_notify(3) without libsystemd */

/* ---- server/demo.c ---- */
struct cli;
int	 demo_main(struct cli *);

/* ---- server/main.c: the parsed command line, handed to each subcommand ---- */
struct cli {
	const char	*cmd;
	const char	*args[4];
	int		 nargs;
	const char	*config;	/* -c, or the default path */
	int		 config_given;
	const char	*socket;	/* -s */
	int		 json;
	int		 wait;
	const char	*rev;
	const char	*dir;
};

/* ---- server/client.c: the client side of the control socket ---- */
int	 client_request(const char *socket_path, const char *method, const char *path,
	    const char *body, int *status, char **resp, struct error *);
int	 cmd_status(struct cli *);
int	 cmd_deploy(struct cli *);
int	 cmd_rollback(struct cli *);
int	 cmd_pause(struct cli *);
int	 cmd_releases(struct cli *);
int	 cmd_reload(struct cli *);

#endif
