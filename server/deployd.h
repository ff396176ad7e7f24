/* deployd.h: the daemon and the CLI, which wire the floor, the providers and the engine together. */
#ifndef DEPLOYD_H
#define DEPLOYD_H

#include <pthread.h>

#include "lib/lib.h"
#include "hooks/hooks.h"
#include "deploy/deploy.h"
#include "fleet/fleet.h"

#define DEPLOYD_VERSION PACKAGE_VERSION
#define DEFAULT_CONFIG "/etc/deployd/deployd.yaml"

/* ---- configuration (values as loaded; see config_key.c for the key table) ---- */

/* A configured site: what the engine needs, and what only the daemon uses. */
struct site_config {
	struct site	 site;		/* the engine's part */
	char		*secret_file;
	unsigned	 providers;	/* PROV_* bits */
	int		 allow_sha1;
	int64_t		 poll_ms;	/* 0: polling off */
	int64_t		 webhook_grace_ms;
	struct cidr_list allow_from;	/* narrows the global list; n == 0: not set */
	char		*file;		/* the file that defines it: deployd.yaml or an include */
	int		 line, col;	/* where the site starts in that file */
};

/* fleet: etcd and this node's place in the fleet (fleet.md); etcd.n == 0: no fleet. */
struct fleet_config {
	struct strv	 etcd;		/* endpoints, http(s)://host:port */
	char		*prefix;	/* every key under it: "/deployd/" */
	char		*node;		/* this node's name; the host name by default */
	char		*zone;
	char		*ca_file;
	char		*cert_file;
	char		*key_file;
	char		*user;
	char		*password_file;
	int64_t		 lease_ttl_ms;
	int64_t		 prepare_timeout_ms;
	char		*min_ready;	/* "all", a count or a percentage */
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
	char		*user;		/* the engine's user when started as root */
	char		*listener_user;	/* the listener's user when started as root */
	struct cidr_list allow_from;	/* who may send any request; n == 0: everyone */
	struct cidr_list trusted_proxies;	/* whose X-Forwarded-For is believed */
	struct strv	 include;	/* patterns of files that hold more sites */
	struct fleet_config fleet;
	struct site_config *sites;
	size_t		 nsites;
};

/* How the loader reads deployd.yaml: a table of keys, each with its type (config_key.c). */
enum config_type {
	K_STR,		/* any non-empty string */
	K_ABSPATH,	/* an absolute path */
	K_SECRET,	/* an absolute path to a file with safe permissions */
	K_HOOKSECRET,	/* a K_SECRET holding a webhook secret, maybe a "whsec_" key */
	K_FILE,		/* an absolute path to a readable file */
	K_REPO,		/* a git URL or an absolute local path */
	K_LISTEN,	/* host:port, [v6]:port or unix:/path */
	K_NAME,		/* a site name */
	K_BRANCH,	/* a branch name */
	K_GLOB,		/* a tag pattern */
	K_DURATION,
	K_SIZE,
	K_INT,
	K_BOOL,
	K_ENUM,
	K_PROVIDERS,	/* list of provider names, stored as bits */
	K_ARGV,		/* list of strings, argv[0] an absolute path */
	K_RELPATHS,	/* list of relative paths inside a release */
	K_RELPATH,	/* one relative path inside the repository's tree */
	K_URL,		/* an http:// or https:// URL */
	K_CIDRS,	/* list of IPv4 and IPv6 ranges (lib/cidr.c); min: fewest items */
	K_URLS,		/* list of http:// and https:// base URLs, at least one */
	K_INCLUDE,	/* one file pattern or a list of them */
	K_MAP,		/* a nested mapping with its own table */
	K_SITES,	/* the list of sites */
};

#define F_REQUIRED	0x1
#define F_UNIX		0x2	/* K_CIDRS: the word "unix" stands for a Unix socket peer */

struct config_key {
	const char		*name;
	enum config_type	 type;
	size_t			 off;
	const char		*def;		/* default, parsed like a value; NULL: none */
	int64_t			 min, max;	/* for K_INT, K_DURATION and K_SIZE */
	const char *const	*enums;
	int			 flags;
	const struct config_key	*sub;		/* for K_MAP */
	const char		*help;
};

/* One load: where errors go, as FILE:LINE:COL: message. */
struct yaml_document_s;
struct yaml_node_s;
struct config_loader {
	const char		*file;
	struct yaml_document_s	*doc;
	struct strv		*errors;
	int			 check_files;	/* open the files the keys name */
};

/* ---- server/config.c: deployd.yaml as a whole ---- */
int	 config_load(const char *file, struct config **out, struct strv *errors);
void	 config_free(struct config *);
void	 config_set_check_files(int);
void	 config_warnings(const struct config *, FILE *);
const struct site_config *config_site(const struct config *, const char *name);

/* ---- server/config_key.c: the key table, and the walk of a mapping against it ---- */
int	 config_key_global(struct config_loader *, struct yaml_node_s *root, struct config *);
int	 config_key_site(struct config_loader *, struct yaml_node_s *, struct site_config *);
void	 config_key_free(struct config *);	/* every field the tables fill in */
int	 config_key_count(void);		/* the documented keys, "limits.max_body"... */
typedef void (*config_path_fn)(void *arg, const char *site, const char *key,
    enum config_type, const char *path);	/* site: NULL for a global key */
void	 config_key_paths(const struct config *, config_path_fn, void *arg);
const char *config_key_name(int i);

/* ---- server/config_value.c: one value, by the type of its key ---- */
int	 config_value_scalar(struct config_loader *, const struct config_key *,
	    const struct yaml_node_s *, const char *s, void *field);
int	 config_value_list(struct config_loader *, const struct config_key *,
	    struct yaml_node_s *, void *field);
int	 config_value_name(const char *);	/* [a-z0-9_-]+, at most 64 */
int	 config_value_include(struct config_loader *, const struct config_key *,
	    const struct yaml_node_s *, const char *pattern, struct strv *field);

/* ---- server/config_yaml.c: the document as the loader reads it ---- */
void	 config_yaml_err(struct config_loader *, const struct yaml_node_s *, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
const char *config_yaml_scalar(const struct yaml_node_s *);
struct yaml_node_s *config_yaml_find(struct config_loader *, struct yaml_node_s *map,
	    const char *name, int want_value);

/*
 * ---- server/fleet*.c: fleet mode at run time (fleet.md) ----
 * Four threads, each with its own etcd client: membership (the lease and nodes/<node>),
 * the watch (a mirror of every key under the prefix), the campaign (the coordinator), and
 * the one that acts: this node's jobs (fleet_node.c), and while it leads the fleet's
 * targets and cutovers (fleet_coord.c). Everything below is under F.mu.
 */
struct fleet_kv {
	char		*key;		/* without the prefix: "sites/www/target" */
	char		*raw;		/* the value as stored */
	json_t		*val;		/* parsed; NULL: not a JSON object */
	int64_t		 create_rev;
	int64_t		 mod_rev;
	int64_t		 lease;
};

/* This node's part in one site of the fleet, and the coordinator's bookkeeping for it. */
struct fleet_site {
	const struct site_config *cfg;
	char		 hash[17];	/* of name, repo, branch and tags */
	char		 refused[256];	/* why this node's copy may not join; "": joined */
	char		 live[SHA_HEX];
	char		 live_release[RELEASE_NAME_MAX];
	char		 prepared[SHA_HEX];
	char		 prepared_release[RELEASE_NAME_MAX];
	const char	*state;		/* idle, preparing, prepared, activating, live, failed */
	char		 error[512];
	char		 error_commit[SHA_HEX];
	int		 busy;		/* a job asked for by the fleet is queued or running */
	int		 once;		/* run_once runs here, in the prepared release */
	int64_t		 job_gen;	/* the cutover that job makes live; 0: a prepare */
	int64_t		 live_gen;	/* the cutover live here */
	int64_t		 prep_gen;	/* the last target prepared or tried */
	int64_t		 prepare_ms;	/* how long the last prepare took */
	int64_t		 swapped_at;	/* unix ms of this node's last swap */
	int64_t		 swapped_gen;
	int64_t		 retry_at;	/* monotonic ms: a failed catch-up tries again then */
	int64_t		 retry_ms;
	int		 dirty;		/* this node's record needs writing */
	char		 bell_provider[16];	/* a doorbell to ring; "": none */
	char		 bell_delivery[96];
	char		 bell_rev[SHA_HEX];
	int64_t		 bell_seen;	/* coordinator: mod_rev of the doorbell handled */
	int64_t		 next_poll;	/* coordinator: monotonic ms; 0: at once */
	int64_t		 lead_gen;	/* coordinator: F.lead_gen when last looked at */
	int64_t		 rollback_gen;	/* the rollback cutover tried by a swap back */
};

struct fleet {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cond;		/* the mirror, a job, the lease or stop moved */
	const struct config *cfg;
	int		 stop;		/* read by etcd calls in progress */
	int		 started;
	struct fleet_kv	*kv;		/* the mirror of every key under the prefix */
	size_t		 nkv;
	int		 synced;	/* read whole at least once */
	int64_t		 rev;		/* the store's revision the mirror has seen */
	int64_t		 behind;	/* a revision the store had and the mirror had not */
	int		 rewatch;	/* the watch is stuck: end it, read the store again */
	int		 store_ok;	/* the last call to etcd answered */
	int		 store_said;	/* the log said so once */
	char		 store_error[256];
	char		 endpoint[256];
	int64_t		 lease;		/* 0: none held */
	int64_t		 lease_gen;	/* moves on with each new lease, and when one is lost */
	int64_t		 rtt_ms;	/* the slowest of the recent renewals */
	int		 leading;	/* this node is the coordinator */
	struct etcd_kv	 leader;	/* the key that proves it */
	int64_t		 lead_gen;	/* moves on with each election won */
	struct fleet_site *sites;
	size_t		 nsites;
	pthread_t	 threads[4];
	size_t		 nthreads;
	int64_t		 cutovers;	/* metrics: releases this node made live */
};
extern struct fleet F;

/* server/fleet.c: connection, the threads, and what the rest of the daemon asks */
int	 fleet_connect(const struct fleet_config *, int64_t timeout_ms, const int *stop,
	    struct etcd **, struct error *);
int	 fleet_probe(const struct config *, FILE *out, FILE *warn);
int	 fleet_start(const struct config *, struct error *);
void	 fleet_stop(void);
int	 fleet_on(void);
int	 fleet_ring(const char *site, const char *provider, const char *delivery,
	    const char *rev);			/* E_OK, E_NOTFOUND, or E_STALE: no store */
int	 fleet_is_live(const char *site, const char *commit);
int64_t	 fleet_gen(const char *site);
int	 fleet_pause(const char *site, int on, const char *reason, struct error *);
int	 fleet_rollback(const char *site, const char *want, char to[SHA_HEX], struct error *);

/* server/fleet_store.c: the mirror of the fleet's keys; F.mu held for all but put */
void	 fleet_store_apply(const struct etcd_kv *, int deleted);
void	 fleet_store_clear(struct fleet_kv *);
struct fleet_site *fleet_store_site(const char *name);
const struct fleet_kv *fleet_store_get(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));	/* F.mu held */
const char *fleet_store_str(const struct fleet_kv *, const char *field);	/* "" if absent */
int64_t	 fleet_store_int(const struct fleet_kv *, const char *field);
int	 fleet_store_put(struct etcd *, const char *key, json_t *val, int64_t lease,
	    struct error *);			/* F.mu not held; steals val */
int	 fleet_store_alive(const char *node);		/* F.mu held: nodes/<node> exists */
void	 fleet_store_wait(int64_t ms);	/* F.mu held: up to ms, or until F.cond moves */
const char *fleet_store_leader(void);		/* F.mu held: the coordinator's name, or NULL */

/* server/fleet_node.c: this node's side: prepare on target, swap on cutover */
void	 fleet_node_init(struct fleet_site *, const struct site_config *);
void	 fleet_node_step(struct fleet_site *, int64_t now);	/* F.mu held */
void	 fleet_node_claim(struct etcd *, struct fleet_site *);	/* F.mu held */
json_t	*fleet_node_record(const struct fleet_site *);
void	 fleet_node_done(const char *site, const struct deploy_request *,
	    const struct deploy_result *);

/* server/fleet_coord.c: the coordinator: targets from doorbells and polls, cutovers */
void	 fleet_coord_step(struct etcd *, struct fleet_site *, int64_t now);	/* F.mu held;
						   may let go of it while it waits */
int64_t	 fleet_coord_need(const char *min_ready, int64_t members);

/* server/fleet_view.c: status --fleet, GET /v1/fleet, and plain status's line */
json_t	*fleet_view(const char *site);	/* NULL site: every site */
json_t	*fleet_view_brief(void);		/* NULL when there is no fleet */
void	 fleet_view_metrics(FILE *);

/* server/bind.c: the webhook listener's socket, bound by the daemon */
int	 bind_listen(const char *listen, char *unix_path, size_t len, struct error *);

/*
 * server/http.c: the webhook listener (POST /hooks/<site>, /healthz, /metrics). It reaches
 * the daemon only through the http_ask_fn it is started with: one record (see privsep.c
 * below) and its reply, and for PS_METRICS the text; a PS_COUNT has no reply.
 */
struct privsep_msg;
struct privsep_reply;
typedef int (*http_ask_fn)(void *arg, const struct privsep_msg *, struct privsep_reply *,
    char **text);
int	 http_load(const struct config *, struct error *);	/* secrets, TLS key */
int	 http_start(int listen_fd, http_ask_fn, void *arg, struct error *);
void	 http_quiesce(void);		/* stop accepting */
int	 http_drain(int64_t timeout_ms);	/* wait for requests in flight */
void	 http_stop(void);

/* server/keyring.c: the listener's sites with their webhook secrets, and the TLS key */
struct keyring_site {
	const struct site_config *cfg;
	struct hook_site hook;		/* what the providers see of it */
	unsigned char	*secret;	/* guarded memory, read-only; NULL: no secret_file */
	size_t		 secret_len;
};
int	 keyring_load(const struct config *, struct error *);
const struct keyring_site *keyring_site(const char *name);
int	 keyring_tls(char **cert, char **key);	/* 0: no TLS */
void	 keyring_free(void);

/* server/conn.c: the listener's connections, each cut off at its request_timeout */
#define CONN_ADDR_MAX	64	/* a client's numeric address, or "unix" */
struct conn;
void	 conn_init(int64_t request_timeout_ms);
struct conn *conn_open(int fd, const char *addr);
void	 conn_rearm(struct conn *);	/* a request is done: the next one has a new deadline */
void	 conn_close(struct conn *);
int	 conn_start(struct error *);	/* the sweeper thread */
int	 conn_drain(int64_t timeout_ms);	/* returns the connections left */
void	 conn_stop(void);

/*
 * server/reject.c: refused requests, logged one a line up to a rate, then summarised;
 * addresses refused by allow_from, logged once and then summarised once a minute
 */
void	 reject_log(const char *addr, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	 reject_address(const char *addr, const char *fmt, ...)	/* allow_from refused it */
	    __attribute__((format(printf, 2, 3)));
void	 reject_tick(int64_t now_ms);	/* write the summaries that are due */
void	 reject_stop(void);		/* write every pending summary */

/*
 * server/privsep.c and server/listener.c: the listener process and the daemon talk in
 * fixed-size records over a SOCK_SEQPACKET socketpair. The listener's records are
 * pipelined: a question carries a sequence number and its reply is matched by it, and
 * most records have no reply at all. The daemon also tells the listener, unasked, what
 * it needs to answer webhooks itself (struct privsep_view, struct privsep_digest).
 */
enum privsep_type {
	PS_READY = 1,	/* the listener is confined and serving */
	PS_PUSH,	/* a verified push to a site's tracked ref */
	PS_COUNT,	/* a webhook's metric result, or with no site a refused request's;
			   no reply */
	PS_METRICS,	/* send the Prometheus text */
	PS_QUIESCED,	/* the listener accepts no more connections */
	PS_HELLO,	/* send me every site's view; no reply but the views */
	PS_ANSWERED,	/* a verified push the listener answered from its view (result
			   "ignored"): note the webhook and count it; no reply */
	PS_TOLD,	/* a verified push the listener answered "queued" because a deploy
			   was waiting: join it (as PS_PUSH would); no reply */
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
	PS_NOSTORE,	/* fleet mode: the store cannot be reached to pass the push on */
};
/* The daemon's records, by their first field. */
enum privsep_kind {
	PS_K_REPLY = 1,	/* struct privsep_reply, then for PS_METRICS the text */
	PS_K_VIEW,	/* struct privsep_view */
	PS_K_DIGEST,	/* struct privsep_digest */
};
#define PRIVSEP_SITE_MAX	65
#define PRIVSEP_METRICS_MAX	(4 * 1024 * 1024)
#define PRIVSEP_CHUNK		(32 * 1024)	/* metrics text travels in records this big */
#define PRIVSEP_DIGEST_MAX	128		/* delivery hashes in one record */
struct privsep_msg {
	uint32_t	type;		/* enum privsep_type */
	uint32_t	seq;		/* echoed in the reply */
	char		site[PRIVSEP_SITE_MAX];
	char		provider[16];
	char		delivery[HOOK_DELIVERY_MAX];
	char		ref[HOOK_REF_MAX];
	char		after[SHA_HEX];
	char		result[32];	/* PS_COUNT, PS_ANSWERED */
};
struct privsep_reply {
	uint32_t	kind;		/* PS_K_REPLY */
	uint32_t	seq;
	uint32_t	answer;		/* enum privsep_answer */
	uint32_t	len;		/* PS_METRICS: bytes of text in the records that follow */
};
/* What a site's webhooks need to know, sent to every listener whenever it changes. */
struct privsep_view {
	uint32_t	kind;		/* PS_K_VIEW */
	uint32_t	local;		/* 0: ask the daemon about every push (fleet mode) */
	uint32_t	paused;
	uint32_t	busy;		/* a deploy runs or waits */
	uint32_t	waiting;	/* a deploy waits: a push joins it */
	char		site[PRIVSEP_SITE_MAX];
	char		live[SHA_HEX];	/* "" unknown */
};
/* Delivery ids the daemon has queued a deploy for, hashed (view_hash): ask about these. */
struct privsep_digest {
	uint32_t	kind;		/* PS_K_DIGEST */
	uint32_t	n;
	char		site[PRIVSEP_SITE_MAX];
	uint64_t	hash[PRIVSEP_DIGEST_MAX];
};

/* server/privsep.c: the listener processes: spawn, serve their records, hand over, respawn */
int	 privsep_start(const struct config *, struct error *);
int	 privsep_reload(const struct config *);
void	 privsep_stop(void);

/* server/privsep_msg.c: the daemon's answers to the records, every field checked first */
void	 privsep_msg_init(const struct config *);	/* the sites; also with no process */
void	 privsep_msg_free(void);
int	 privsep_msg_handle(const struct privsep_msg *, struct privsep_reply *, char **text);
size_t	 privsep_msg_digest(const char *site, uint64_t *hash, size_t max);

/*
 * server/view.c: the listener's view of the sites, kept by the daemon's records, and the
 * answers to pushes it can give without asking (0: ask the daemon)
 */
uint64_t view_hash(const char *provider, const char *delivery);
void	 view_init(const struct config *);
void	 view_free(void);
void	 view_update(const struct privsep_view *);
void	 view_digest(const struct privsep_digest *);
uint32_t view_answer(const struct privsep_msg *);
void	 view_asking(const char *site);	/* a push goes to the daemon */
void	 view_answered(const struct privsep_msg *, uint32_t answer);	/* and came back */

/* server/listener.c: the listener process ("deployd __listen") and its side of the channel */
int	 listener_main(int argc, char **argv);

/* ---- server/privdrop.c: the engine's user when started as root ---- */
struct privdrop {
	int		 drop;		/* started as root, and user is not root */
	uid_t		 uid;
	gid_t		 gid;
	char		 name[64];
	char		 home[256];
};
int	 privdrop_prepare(const struct config *, struct privdrop *, struct error *);
int	 privdrop_own(const struct privdrop *, int fd, const char *path, struct error *);
int	 privdrop_apply(const struct privdrop *, const struct config *, struct error *);
int	 privdrop_check(const struct config *, FILE *);

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
void	 metrics_refused(const char *result);	/* a request that named no site */
void	 metrics_deploy(const char *site, int ok, int64_t duration_ms);
void	 metrics_live(const char *site, int64_t unix_secs);
void	 metrics_webhook_missed(const char *site);
void	 metrics_poll_error(const char *site);
void	 metrics_cache(const char *site, int upkeep, int64_t packs, int64_t loose,
	    int64_t bytes);
char	*metrics_render(void);		/* malloc'd Prometheus text, NULL on failure */

/* ---- server/sched.c: queues deploys, one running and one pending per site ---- */
/* Told of each deploy that changed something or failed, as a STATUS= line for systemd. */
typedef void (*sched_notify_fn)(const char *status);
/* Told of every job's end, from the worker that ran it, outside the scheduler's mutex. */
typedef void (*sched_done_fn)(const char *site, const struct deploy_request *,
    const struct deploy_result *);
int	 sched_init(const struct config *, sched_notify_fn);
void	 sched_free(void);
int	 sched_start(void);
void	 sched_set_done(sched_done_fn);
int	 sched_reload(const struct config *);
void	 sched_stop(void);
int	 sched_request(const char *site, const struct deploy_request *, int64_t *id);
void	 sched_note_webhook(const char *site);
int	 sched_is_paused(const char *site);
enum { REQ_UNKNOWN, REQ_WAITING, REQ_OK, REQ_FAILED };
int	 sched_request_state(const char *site, int64_t id, int *paused);
int	 sched_is_live(const char *site, const char *commit, int64_t *job);
/* A site as a webhook sees it; sched_views fills at most max, and returns how many sites. */
struct sched_view {
	char		 site[PRIVSEP_SITE_MAX];
	int		 paused;
	int		 busy;		/* a job runs or waits */
	int		 waiting;	/* a job waits: a push joins it */
	char		 live[SHA_HEX];
};
size_t	 sched_views(struct sched_view *, size_t max);
/* Told, under the scheduler's mutex, that a site's view may have changed: keep it short. */
void	 sched_set_moved(void (*)(void));
/* The scheduler's state: sched.c owns it; poll.c and status.c read it under S.mu. */
/* What the scheduler knows about one site between deploys. */
struct sched_site {
	const struct site_config *cfg;
	int			 queued;	/* waiting in the run queue */
	int			 running;
	int			 pending;	/* one more deploy after the running one */
	struct deploy_request	 req;		/* for the queued or pending deploy */
	int64_t			 req_id;	/* id answering the queued or pending request */
	int64_t			 run_id;	/* id of the running deploy */
	int64_t			 done_id;	/* id of the last finished deploy */
	int			 done_ok;
	char			 done_error[512];
	char			 done_commit[SHA_HEX];
	char			 done_release[RELEASE_NAME_MAX];
	char			 done_note[NOTE_MAX];
	int			 done_changed;
	enum phase		 phase;
	char			 run_commit[SHA_HEX];	/* what the running deploy writes */
	char			 live[SHA_HEX];	/* live after the last deploy; "" unknown */
	struct deploy_progress	 progress;	/* of the running deploy */
	int64_t			 seq;		/* S.seq when the deploy last moved on */
	int64_t			 next_poll;	/* monotonic ms; 0: polling off */
	int64_t			 last_webhook_at;	/* unix ms */
	int			 failures;	/* consecutive failed deploys, for backoff */
	int64_t			 missed_check;	/* monotonic ms: judge a polled tip then */
	int64_t			 missed_since;	/* unix ms: a webhook after this announced it */
	char			 missed_commit[SHA_HEX];
	int64_t			 missed_count;
	int64_t			 last_missed_at;	/* unix ms */
	char			 last_error[512];	/* of the last deploy, if it failed */
	int64_t			 last_error_at;		/* unix seconds */
	int			 paused;	/* mirrors state.json; automatic deploys skipped */
	struct {
		int64_t		 id;
		int		 ok;
	}			 recent[16];	/* outcomes of the last jobs, for duplicates */
	size_t			 recent_next;
	int			 view_key;	/* paused and busy when last told */
	char			 view_live[SHA_HEX];	/* live when last told */
	struct sched_site	*qnext;
};

struct sched {
	pthread_mutex_t		 mu;
	pthread_cond_t		 work;		/* the run queue changed, or stop */
	pthread_cond_t		 timer;		/* the poll schedule changed, or stop */
	pthread_cond_t		 done;		/* a deploy finished */
	pthread_cond_t		 event;		/* a site's seq moved on, or stop */
	int64_t			 seq;
	const struct config	*cfg;
	struct sched_site	*sites;
	size_t			 nsites;
	struct sched_site	*qhead, *qtail;
	pthread_t		*workers;
	size_t			 nworkers;
	pthread_t		 timer_thread;
	int			 started;
	int			 stopping;
	int			 holding;	/* a reload waits: start no new job */
	int64_t			 next_id;
	sched_notify_fn		 notify;	/* the daemon's ear; NULL: nobody listens */
	int			 fleet;		/* fleet mode: the fleet asks for every job */
	sched_done_fn		 done_fn;	/* told of every job's end; NULL: nobody */
	void			(*moved_fn)(void);	/* a site's view changed */
};
extern struct sched S;
int64_t	 sched_request_locked(struct sched_site *, const struct deploy_request *);
struct sched_site *sched_find(const char *name);

/* ---- server/poll.c: when to poll next, and the missed-webhook watch ---- */
int64_t	 poll_jitter(int64_t ms);
int64_t	 poll_delay(const struct sched_site *);
int	 poll_after_deploy(struct sched_site *, const struct deploy_request *,
	    const struct deploy_result *);
void	 poll_judge_missed(struct sched_site *);

/* ---- server/status.c: status and the events stream, as JSON ---- */
json_t	*status_site(const char *name);	/* NULL: no such site */
json_t	*status_sites(void);
int	 status_event(const char *site, int64_t *seq, int64_t timeout_ms, json_t **out);

/* ---- server/control.c ---- */
int	 control_open(const struct config *, struct error *);	/* bind only */
int	 control_start(const struct config *, struct error *);
void	 control_stop(void);
void	 control_reload(const struct config *);


/* ---- server/serve.c ---- */
int	 serve_main(const char *config_file);

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
	int		 fleet;		/* status --fleet */
};

/* ---- server/client.c: the client side of the control socket ---- */
#define CLIENT_TIMEOUT_MS 30000		/* the daemon answers, or says a word, within this */
int	 client_request(const char *socket_path, const char *method, const char *path,
	    const char *body, int *status, char **resp, struct error *);
/* These two print the error and return the exit code (0, 1 or 2). */
int	 client_call(struct cli *, const char *method, const char *path, const char *body,
	    json_t **answer, int *status);
/* One line of a stream, or NULL when it ended; an exit code (0 or more) ends the wait. */
typedef int	(*client_line_fn)(void *arg, char *line);
int	 client_follow(struct cli *, const char *site, int64_t id, client_line_fn, void *arg);

/* ---- server/cmd.c: the subcommands that ask the daemon ---- */
int	 cmd_status(struct cli *);
int	 cmd_deploy(struct cli *);
int	 cmd_rollback(struct cli *);
int	 cmd_pause(struct cli *);
int	 cmd_releases(struct cli *);
int	 cmd_reload(struct cli *);

#endif
