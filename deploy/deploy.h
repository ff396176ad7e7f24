/* deploy.h: the engine: the site as it sees it, and the entry points every caller uses. */
#ifndef DEPLOYD_DEPLOY_H
#define DEPLOYD_DEPLOY_H

#include <limits.h>
#include <sys/stat.h>

#include "lib/lib.h"

#define RELEASE_NAME_MAX 64	/* "20261125T224329Z-0123456789ab" is 29 */

enum reuse_mode { REUSE_AUTO, REUSE_REFLINK, REUSE_HARDLINK, REUSE_COPY };

struct site_hooks {
	struct strv	pre_activate;
	struct strv	post_activate;
	struct strv	on_failure;
	struct strv	run_once;	/* fleet mode: once per commit for the fleet, before the cutover */
	int64_t		timeout_ms;
};

/* What is asked of the site's web server after a swap; url NULL: nothing. */
struct site_health {
	char		*url;
	int64_t		 expect;	/* the HTTP status that means healthy */
	int64_t		 timeout_ms;	/* per request */
	int64_t		 retries;	/* further requests after the first fails */
	int64_t		 interval_ms;	/* between two requests */
};

/*
 * A site as the engine needs it: where its content comes from and where it goes. The daemon's
 * YAML loader fills it (server/config.c); the engine never reads a configuration file.
 */
struct site {
	char		*name;
	char		*repo;
	char		*branch;	/* exactly one of branch and tags */
	char		*tags;
	char		*path;		/* holds releases/, shared/ and current */
	char		*subdir;	/* the release is this subtree of the commit; NULL: all */
	int64_t		 keep;
	int		 reuse;		/* enum reuse_mode */
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
	struct site_health health;
	struct strv	 shared;
	const char	*state_dir;	/* not owned: the cache and state.json live under it */
};

enum trigger { TRIG_POLL, TRIG_WEBHOOK, TRIG_MANUAL, TRIG_ROLLBACK, TRIG_STARTUP, TRIG_FLEET };

/* What a deploy is doing now; shown by status. */
enum phase { PHASE_IDLE, PHASE_FETCHING, PHASE_WRITING, PHASE_HOOK, PHASE_ACTIVATING,
    PHASE_HEALTH, PHASE_UPKEEP };

/*
 * What a queued job does: deploy, prepare and activate are the engine's entry points below;
 * rollback, pause and resume are run by deploy/rollback.c.
 */
enum action { ACT_DEPLOY, ACT_ROLLBACK, ACT_PAUSE, ACT_RESUME, ACT_PREPARE, ACT_ACTIVATE };

struct deploy_request {
	enum trigger	trigger;
	char		rev[SHA_HEX];	/* empty: the tracked branch's tip */
	char		provider[16];	/* webhook provider, if any */
	char		delivery[96];	/* webhook delivery id, if any (HOOK_DELIVERY_MAX) */
	char		after[SHA_HEX];	/* webhook: the commit the push named; a hint only */
	int		action;		/* enum action; 0 is a deploy */
	char		target[RELEASE_NAME_MAX];	/* rollback: release or commit prefix */
	int		skip_bad;	/* automatic deploy: never re-deploy a bad commit */
	int64_t		at_ms;		/* activate: swap at this unix ms instant, not before */
};

#define NOTE_MAX 256

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
	int		prepared;	/* engine_prepare: release is prepared, not live */
	int64_t		swapped_at_ms;	/* unix ms of the swap of `current`; 0: none */
	char		note[NOTE_MAX];	/* what else there is to know, as site_state's */
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

/* ---- the per-site state file (state_dir/<site>/state.json) ---- */

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

/*
 * A release written, checked and made durable by engine_prepare, but not live: what
 * engine_activate needs to make it live later, in this process or after a restart.
 */
struct prepared_rec {
	char		name[RELEASE_NAME_MAX];	/* "": nothing is prepared */
	char		commit[SHA_HEX];
	char		ref[256];		/* what the remote called it: DEPLOYD_REF */
	char		subject[256];
	char		author[128];
	int64_t		prepared_at;		/* unix seconds */
	int64_t		written_ns;		/* as release_rec */
	int64_t		files_written;
	int64_t		files_reused;
	char		reuse[16];
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
	struct prepared_rec prepared;		/* at most one per site */
	/* About the live release: what its health check answered, or that a commit changed
	 * nothing under subdir; "" once a new release goes live without either. */
	char		note[NOTE_MAX];
	int64_t		upkeep_at;		/* unix seconds of the last cache upkeep */
};

/*
 * ---- deploy/engine.c: the entry points that change what is live ----
 * prepare: fetch, write the release, pre_activate, every check; it is not live, and it
 *          survives a restart (state.json's "prepared"). A newer prepare replaces it.
 * activate: swap current to the prepared release, post_activate, record, prune.
 * deploy:  prepare then activate, under one lock.
 * discard: remove a prepared release that will not go live.
 */
int	 engine_init(void);
void	 engine_shutdown(void);
const char *engine_phase_name(int phase);
int	 engine_prepare(const struct site *, const struct deploy_request *,
	    struct deploy_result *, engine_phase_cb, void *cbarg);
int	 engine_activate(const struct site *, const char *release,
	    const struct deploy_request *, struct deploy_result *, engine_phase_cb,
	    void *cbarg);
int	 engine_deploy(const struct site *, const struct deploy_request *,
	    struct deploy_result *, engine_phase_cb, void *cbarg);
int	 engine_discard(const struct site *, const char *release, struct error *);

/* ---- deploy/recover.c: at start-up, a site's deploy root made whole again ---- */
int	 recover_site(const struct site *, struct error *);

/* ---- deploy/rollback.c: rollback, pause and resume, serialised with deploys ---- */
int	 rollback_run(const struct site *, const struct deploy_request *, struct deploy_result *);
int	 rollback_target(const struct site *, const char *want, char commit[SHA_HEX],
	    struct error *);
int	 rollback_pause(const struct site *, int paused,
	    const char *reason, struct error *);
json_t	*rollback_releases_json(const struct site *, struct error *);

/* ---- deploy/sshsig.c: SSH-signed commits (PROTOCOL.sshsig) ---- */
#define SSHSIG_NAMESPACE	"git"
#define SSHSIG_ARMOR_MAX	(64 * 1024)	/* a larger signature is refused unparsed */
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

/* ---- deploy/wire.c: the SSH wire format, read from untrusted bytes ---- */
#define WIRE_SHOW_MAX	64	/* bytes of an untrusted name quoted in messages */
/* A window on untrusted bytes: every read checks the length left first. */
struct wire {
	const unsigned char	*p;
	size_t			 len;
};
int	 wire_get_u32(struct wire *, uint32_t *);
int	 wire_get_string(struct wire *, struct wire *out);
int	 wire_get_mpint(struct wire *, size_t maxlen, struct wire *out);
int	 wire_is(const struct wire *, const char *lit);
void	 wire_show(const struct wire *, char *out, size_t outlen);

/* ---- deploy/sigkey.c: the signature check of each SSH key type ---- */
enum { SIGKEY_GOOD, SIGKEY_BAD, SIGKEY_MALFORMED };
struct sigkey;
const struct sigkey *sigkey_find(const char *what, struct wire key, struct error *);
int	 sigkey_verify(const struct sigkey *, struct wire key, struct wire sigtype,
	    struct wire sig, const unsigned char *data, size_t len, char *why, size_t whylen);

/* ---- deploy/signers.c: allowed_signers ---- */
#define SIGNERS_FILE_MAX	(1024 * 1024)	/* largest allowed_signers file read */
int	 signers_read(const char *path, char **text, size_t *len, struct error *);
int	 signers_allowed(const char *what, const struct sshsig_policy *,
	    const unsigned char *key, size_t keylen, char *signer, size_t signerlen,
	    struct error *);

/* ---- deploy/fetch.c ---- */
#define FETCH_REF_MAX	256
/* What the remote said: the commit to deploy and the ref it came from. */
/* A cache's objects (survey), and what an upkeep removed and packed. */
struct upkeep_stats {
	int64_t		packs;
	int64_t		loose;
	int64_t		bytes;
	int64_t		packs_gone;
	int64_t		loose_gone;
	int64_t		objects;	/* in the new pack */
	int64_t		full;		/* 1: a full repack (a new base), 0: incremental */
};
struct fetch_result {
	char		tip[SHA_HEX];
	char		ref[FETCH_REF_MAX];	/* refs/heads/<branch> or refs/tags/<tag> */
	struct upkeep_stats up;			/* an upkeep's "upkeep" line */
};
typedef void (*fetch_progress_fn)(void *arg, const struct deploy_progress *);
int	 fetch_site(const struct site *, struct fetch_result *, fetch_progress_fn, void *,
	    struct error *);
int	 fetch_remote_tip(const struct site *, struct fetch_result *,
	    struct error *);	/* ls-remote only, no download */
int	 fetch_recent_tip(const struct site *, int64_t max_age_ms, struct fetch_result *);
int	 fetch_site_fresh(const struct site *, struct fetch_result *,
	    struct error *);	/* re-clone a damaged cache */
int	 fetch_upkeep(const struct site *, const char *keep, int64_t grace_s,
	    struct fetch_result *, struct error *);	/* repack the cache */
#define FETCH_TIMEOUT_MS (10 * 60 * 1000)	/* default of site->fetch_timeout_ms */
void	 fetch_set_exe(const char *path);	/* default /proc/self/exe; for tests */
void	 fetch_stop_helper(void);		/* the calling thread's poll helper exits */
void	 fetch_set_timeout_ms(int64_t ms);	/* >0 overrides fetch_timeout; for tests */
char	*fetch_cache_path(const struct site *);

/* ---- deploy/fetcher.c: the fetch helper process (`deployd __fetch`) ---- */
/* What the helper was asked to do (its command line). */
struct fetcher_opts {
	int		 serve;
	int		 ls_remote;
	int		 fresh;
	const char	*branch;
	const char	*tags;
	const char	*ssh_key;
	const char	*known_hosts;
	const char	*token_file;
	const char	*token_user;
	const char	*ca_file;
	int		 upkeep;
	const char	*keep;		/* --upkeep: commits to keep, comma-separated */
	const char	*grace;		/* --upkeep: seconds */
	const char	*cache;
	const char	*url;
};
int	 fetcher_main(int argc, char **argv);	/* the "__fetch" helper process */

/* ---- deploy/remote.c: the fetch helper's git work; 0, or -1 with remote_fail's line ---- */
void	 remote_fail(const char *fmt, ...)	/* sets the one error line sent to the parent */
	    __attribute__((format(printf, 1, 2)));
const char *remote_error(void);		/* that line */
void	 remote_fail_clear(void);
struct git_oid;
int	 remote_ls(const struct fetcher_opts *, struct git_oid *tip, char *ref, size_t reflen);
int	 remote_fetch(const struct fetcher_opts *, struct git_oid *tip, char *ref,
	    size_t reflen);
int	 remote_fetch_fresh(const struct fetcher_opts *, struct git_oid *tip, char *ref,
	    size_t reflen);

/* ---- deploy/upkeep.c: the repository cache kept small ---- */
int	 upkeep_survey(const char *cache, struct upkeep_stats *);
int	 upkeep_needed(const struct upkeep_stats *);
int64_t	 upkeep_grace_s(void);
int	 upkeep_repack(const char *cache, const char *keep, int64_t grace_s,
	    struct git_oid *packid);		/* in the fetch helper */
int	 upkeep_site(const struct site *, struct upkeep_stats *before,
	    struct upkeep_stats *after, struct error *);	/* 1 if it ran, 0, or -1 */

/* ---- deploy/cred.c: credentials and trust for the fetch helper's connections ---- */
struct git_remote_callbacks;
/* One connection's callbacks' state: to whom, and why they refused, if they did. */
struct cred_conn {
	const struct fetcher_opts *o;
	const char	*url;
	char		 shown[512];	/* url without user:password@ */
	int		 ssh;
	char		 host[256];
	int		 port;
	int		 cred_calls;
	char		 why[1024];
};
void	 cred_init(struct cred_conn *, const struct fetcher_opts *, const char *url,
	    struct git_remote_callbacks *);
int	 cred_ca(const char *ca_file, struct error *);
void	 cred_redact_url(const char *url, char *buf, size_t len);
int	 cred_url_ssh(const char *url, char *host, size_t hostlen, int *port);

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
	const char	*subdir;		/* write this subtree of the commits; NULL: all */
	const char	*base;			/* the previous release in releases_fd; NULL: none */
	const char	*base_commit;		/* its commit, 40 hex */
	int64_t		 base_written_ns;	/* its written_ns: files changed later are not reused */
	const struct manifest *base_manifest;	/* its files as written; NULL: ask git, stamps */
	struct manifest	*record;		/* filled with this release's files; may be NULL */
	/* Now and then, the files done so far and the tree's total; may be NULL. */
	void		(*progress)(void *arg, size_t done, size_t total);
	void		*progress_arg;
};
struct release_stats {
	size_t		 nfiles;		/* files and symlinks in the release */
	size_t		 written;		/* written from their blobs */
	size_t		 reused;		/* taken from the previous release */
	const char	*method;		/* "reflink", "hardlink" or "copy" */
	int		 by_manifest;		/* the base's files were checked by its manifest */
	size_t		 folders_by_manifest;	/* unchanged folders linked without reading git */
};
int	 release_write_incr(const char *cache_dir, const char *commit, int releases_fd,
	    const char *tmpname, const struct release_opts *, struct release_stats *,
	    struct error *);
int	 release_subtree_id(const char *cache_dir, const char *commit, const char *subdir,
	    char id[SHA_HEX], struct error *);	/* E_INVAL: commit has no such directory */
void	 release_settle(int releases_fd, const char *tmpname);
int64_t	 release_stamp(int releases_fd, const char *name);
int	 release_cleanup_tmp(int releases_fd);	/* number removed, or E_SYS */
int	 release_list(int releases_fd, struct strv *names, struct error *);

/*
 * What one release write carries down the tree (and into submodules); release.c walks it,
 * reuse.c takes from the base release what it may.
 */
struct git_odb;
struct git_tree;
struct git_tree_entry;
struct release_walk {
	struct git_repository *repo;	/* the repository of the tree being written */
	const struct git_tree *top;	/* its top tree, which has its .gitmodules */
	struct submodule *mods;		/* read from there at the first gitlink */
	size_t		 nmods;
	int		 mods_read;
	char		 key[PATH_MAX];	/* its submodule key, "" for the site's repo */
	const char	*subdir;	/* the site's repo only: where the release's root is in it */
	size_t		 root;		/* where its paths start in path */
	const char	*cache_dir;
	char		 path[PATH_MAX];	/* path inside the release, for messages */
	size_t		 nfiles;
	size_t		 nwritten;
	size_t		 nreused;
	int		 allow_external;	/* symlinks may point outside the release */
	int		 method;	/* enum reuse_mode in effect, never REUSE_AUTO */
	int		 readonly;	/* files are written 0444/0555: hard links share them */
	int		 plain;		/* no submodule under the folder being written */
	size_t		 nsubtrees;	/* unchanged folders linked from the base's manifest */
	int64_t		 base_ns;	/* base files changed at or after this are not reused */
	struct git_odb	*odb;		/* repo's, for blob sizes */
	const struct manifest *base_mf;	/* the base's files as written: one stat checks one */
	struct manifest	*record;	/* this release's files, as written */
	struct fill	*fill;		/* threads for the site's own files; NULL: none */
	const struct release_opts *opts;	/* for progress; NULL in plain writes */
	size_t		 total;		/* files and links in the site's tree */
	struct error	*e;
};

#define MANIFEST_OID		20	/* a blob id, raw */

/* ---- deploy/reuse.c: unchanged files of the base release, shared or copied ---- */
extern const char *const reuse_method_names[];
int	 reuse_method(struct release_walk *, const struct release_opts *, int fd,
	    int releases_fd);
int	 reuse_entry(struct release_walk *, int basefd, int dirfd, const char *name,
	    const struct git_tree_entry *, struct stat *);	/* 1: cannot be reused */
const struct manifest_entry *reuse_known(const struct release_walk *,
	    const struct git_tree_entry *);
int	 reuse_link_known(int basefd, int dirfd, const char *name,
	    const struct manifest_entry *, mode_t want, struct stat *);

/* ---- deploy/fill.c: files of a folder linked or written by a few threads ---- */
struct fill;
struct fill_item {
	char		*path;		/* inside the release */
	const char	*name;		/* its last part */
	unsigned char	 oid[MANIFEST_OID];
	unsigned	 gitmode;
	mode_t		 want;		/* git's: 0644 or 0755 */
	mode_t		 perm;		/* of a copy written from the blob */
	const struct manifest_entry *me;	/* link the base's file if it still matches */
	struct stat	 sb;		/* the file made */
	int		 reused;
};
struct fill_batch {
	int		 basefd, dirfd;	/* the thread's own copies */
	struct fill_item *v;
	size_t		 n, cap;
	int		 rc;
	struct error	 e;
	struct fill_batch *next;
};
struct fill *fill_start(const char *cache_dir, struct manifest *record);
int	 fill_make_dir(struct release_walk *, int dirfd, const char *name, int *fdp);
void	 fill_add(struct fill_batch *, const char *path,
	    const unsigned char oid[MANIFEST_OID], unsigned gitmode, mode_t want, mode_t perm,
	    const struct manifest_entry *);
int	 fill_queue(struct fill *, struct fill_batch *, int basefd, int dirfd, struct error *);
int	 fill_flush(struct fill *, struct fill_batch *, int basefd, int dirfd, int rc,
	    struct error *);
void	 fill_batch_free(struct fill_batch *);
void	 fill_record(struct fill *, struct manifest *, const char *path,
	    const unsigned char oid[MANIFEST_OID], unsigned gitmode, const struct stat *);
void	 fill_record_dir(struct fill *, struct manifest *, const char *path,
	    const unsigned char tree[MANIFEST_OID], size_t nfiles);
int	 fill_finish(struct fill *, struct release_walk *, int rc);

/* ---- deploy/subtree.c: an unchanged folder linked by the base's manifest, no git read ---- */
int	 subtree_reuse(struct release_walk *, const unsigned char tree[MANIFEST_OID],
	    int basefd, int dirfd, const char *name);	/* 1: not so; the walk reads git */

int	 fill_write_file(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
	    struct stat *);

/* ---- deploy/manifest.c: each file of a release as written, kept in state_dir ---- */
#define MANIFEST_VERSION	2
#define MANIFEST_GITMODE_TREE	0040000	/* a folder's entry */
struct manifest_entry {
	char		*path;		/* inside the release */
	unsigned char	 oid[MANIFEST_OID];
	uint32_t	 gitmode;	/* the tree entry's mode */
	uint32_t	 mode;		/* st_mode of the file written */
	int64_t		 size;
	uint64_t	 ino;
	int64_t		 mtime_ns;	/* judges read-only files, which links share */
	int64_t		 ctime_ns;	/* judges writable ones: nothing can set it back */
};
struct manifest {
	struct manifest_entry *v;	/* sorted by path once encoded or decoded */
	size_t		 n, cap;
};
void	 manifest_add(struct manifest *, const char *path,
	    const unsigned char oid[MANIFEST_OID], unsigned gitmode, const struct stat *);
void	 manifest_free(struct manifest *);
void	 manifest_add_dir(struct manifest *, const char *path,
	    const unsigned char tree[MANIFEST_OID], size_t nfiles);
int	 manifest_pathcmp(const char *, const char *);
const struct manifest_entry *manifest_find(const struct manifest *, const char *path);
int	 manifest_encode(struct manifest *, const char *name, const char *commit,
	    int64_t written_ns, unsigned char **buf, size_t *len);
int	 manifest_decode(const unsigned char *buf, size_t len, const char *name,
	    const char *commit, int64_t written_ns, struct manifest *, struct error *);
int	 manifest_save(const char *state_dir, const char *site, const char *name,
	    const char *commit, int64_t written_ns, struct manifest *, struct error *);
int	 manifest_load(const char *state_dir, const char *site, const char *name,
	    const char *commit, int64_t written_ns, struct manifest *, struct error *);
void	 manifest_prune(const char *state_dir, const char *site, int releases_fd);

/* ---- deploy/health.c: the site's web server asked after a swap ---- */
int	 health_check(const char *site, const struct site_health *, char *note,
	    size_t notelen, struct error *);

/* ---- deploy/prune.c ---- */
int	 prune_releases(int releases_fd, struct site_state *, int64_t keep,
	    const char *current, struct error *);

/* ---- deploy/swap.c ---- */
int	 swap_current(int path_fd, const char *release, struct error *);
int	 swap_stage(int path_fd, const char *release, struct error *);
int	 swap_commit(int path_fd, struct error *);
void	 swap_sync(int path_fd, const char *release);
int	 swap_read_current(int path_fd, char *release, size_t len);

/* ---- deploy/state.c ---- */
const char *state_trigger_name(int trigger);
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
int	 shared_link(const struct site *, int releases_fd, const char *release,
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

/*
 * ---- deploy/run.c: one deploy's working set, and what its steps share (engine.c, prepare.c,
 * activate.c and recover.c use it; every failure cleans up from one place) ----
 */
struct git_commit;
struct run {
	const struct site	 *site;
	const struct deploy_request *req;
	struct deploy_result	 *res;
	int			  path_fd;
	int			  releases_fd;
	int			  lock_fd;
	int			  state_ok;	/* state loaded: failures are recorded */
	struct site_state	  st;
	struct site_state	  before;	/* st's scalars as loaded: what was live */
	struct fetch_result	  fr;
	engine_phase_cb		  cb;
	void			 *cbarg;
	char			 *output;	/* the end of the hooks' output, for history */
	char			 *cache;
	char			  commit[SHA_HEX];
	char			  subject[256];
	char			  author[128];
	char			  name[RELEASE_NAME_MAX];
	char			  tmpname[RELEASE_NAME_MAX + 8];
	size_t			  written, reused;	/* files of the release */
	char			  reuse[16];	/* how the others were reused */
	int64_t			  written_ns;	/* its stamp, for the next deploy's reuse */
	int			  settled;	/* nothing to do: live already, or bad */
	int			  wrote;	/* tmpname exists */
	int			  renamed;	/* name exists but is not live */
	int			  kept;		/* a recorded prepared release: a failure keeps it */
	int			  live;
	int64_t			  started_at;	/* unix ms */
	int64_t			  t0;		/* monotonic ms */
};
void	 run_step(struct run *, enum phase);
char	*run_release_path(const struct run *);
int	 run_hook(struct run *, const char *what, const struct strv *argv,
	    const char *cwd, const char *release, const char *error, struct error *);
int	 run_release_hook(struct run *, const char *what, const struct strv *argv,
	    struct error *);
void	 run_history(struct run *, int ok, const char *error);
int	 run_take_prepared(struct run *);
void	 run_on_failure(struct run *, int rc, const char *msg, const char *release);
int	 run_open_site(const struct site *, int create, int *path_fd, int *releases_fd,
	    struct error *);
int	 run_lock(const struct site *, int *fd, struct error *);
void	 run_describe(struct git_commit *, char *subject, size_t sublen, char *author,
	    size_t authlen);

/* ---- deploy/prepare.c: everything before the swap ---- */
int	 prepare_run(struct run *, int record, struct error *);
int	 prepare_drop(struct run *, const char *why, struct error *);

/* ---- deploy/activate.c: the swap and everything after it ---- */
int	 activate_run(struct run *, struct error *);
int	 activate_swap(const char *site, int path_fd, const char *release, int64_t at_ms,
	    int64_t *swapped_ms, struct error *);

/* ---- deploy/repo.c: libgit2 set up, opening a cache, and libgit2's reason for a failure ---- */
int	 repo_init(void);
int	 repo_open(struct git_repository **, const char *dir);
const char *repo_last_error(void);
int	 repo_error(struct error *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
