/* fleet.h: fleet mode's part: the etcd client that every node talks to the fleet store with. */
#ifndef DEPLOYD_FLEET_H
#define DEPLOYD_FLEET_H

#include <stdint.h>

#include <jansson.h>

#include "lib/lib.h"

/* ---- etcd.c: etcd's v3 JSON gateway over libcurl; one client per thread ---- */
struct etcd;

struct etcd_conf {
	const struct strv *endpoints;	/* http(s)://host:port, tried in turn */
	const char	*ca_file;	/* TLS: optional; cert_file and key_file both or neither */
	const char	*cert_file;
	const char	*key_file;
	const char	*user;		/* authentication: optional */
	const char	*password_file;	/* with user: a file read as secret_read() reads it */
	int64_t		 timeout_ms;	/* the deadline of every call, across all endpoints */
	const int	*stop;		/* when it reads non-zero, a call in progress gives up */
};

struct etcd_kv {
	char		*key;
	char		*value;		/* NUL-terminated for convenience; vlen bytes */
	size_t		 vlen;
	int64_t		 create_rev;
	int64_t		 mod_rev;
	int64_t		 version;
	int64_t		 lease;
};

struct etcd_kvs {
	struct etcd_kv	*v;
	size_t		 n;
	int64_t		 rev;		/* the store's revision the answer was read at */
};

enum etcd_event_type { ETCD_PUT, ETCD_DELETE };
struct etcd_event {
	enum etcd_event_type	 type;
	const struct etcd_kv	*kv;	/* for a delete: key and mod_rev only */
};
/* Called once per event, in revision order; non-zero ends the watch with that code. */
typedef int	(*etcd_watch_fn)(void *arg, const struct etcd_event *);

int	 etcd_open(struct etcd **, const struct etcd_conf *, struct error *);
void	 etcd_close(struct etcd *);
const char *etcd_endpoint(const struct etcd *);	/* the endpoint that answered last */
int64_t	 etcd_revision(const struct etcd *);	/* the newest store revision answers named */
void	 etcd_set_cancel(struct etcd *, const int *flag);	/* nonzero ends a call: E_STOPPED */
int	 etcd_watch(struct etcd *, const char *key, int prefix, int64_t *rev, int64_t max_ms,
	    etcd_watch_fn, void *arg, struct error *);
void	 etcd_kv_free(struct etcd_kv *);
void	 etcd_kvs_free(struct etcd_kvs *);
/* For etcd_kv.c: a call (quick: each endpoint a share of the time), and the encoding. */
int	 etcd_request(struct etcd *, const char *path, json_t *body, int64_t timeout_ms,
	    int quick, json_t **out, struct error *);
int	 etcd_call(struct etcd *, const char *path, json_t *body, json_t **out, struct error *);
char	*etcd_b64(const void *bin, size_t len);
char	*etcd_unb64(json_t *o, const char *name, size_t *outlen);
int64_t	 etcd_int(json_t *o, const char *name);
json_t	*etcd_jint(int64_t v);
void	 etcd_set_key(json_t *body, const char *key, int prefix);
void	 etcd_read_kv(json_t *o, struct etcd_kv *kv);

/* ---- etcd_kv.c: one request, one answer: keys, transactions, leases, locks, elections ---- */
int	 etcd_get(struct etcd *, const char *key, int prefix, struct etcd_kvs *,
	    struct error *);
int	 etcd_put(struct etcd *, const char *key, const void *val, size_t vlen,
	    int64_t lease, struct error *);
int	 etcd_put_all(struct etcd *, const char *const *keys, const char *const *vals, size_t n,
	    struct error *);	/* one transaction */
int	 etcd_put_if(struct etcd *, const char *key, const void *val, size_t vlen,
	    int64_t lease, int64_t mod_rev, int *done, struct error *);
int	 etcd_put_while(struct etcd *, const char *key, const void *val, size_t vlen,
	    const char *held, int64_t create_rev, int *done, struct error *);
int	 etcd_delete(struct etcd *, const char *key, int prefix, int64_t *deleted,
	    struct error *);
int	 etcd_lease_grant(struct etcd *, int64_t ttl_s, int64_t *id, struct error *);
int	 etcd_lease_keepalive(struct etcd *, int64_t id, int64_t *ttl_s, struct error *);
int	 etcd_lease_revoke(struct etcd *, int64_t id, struct error *);
int	 etcd_lock(struct etcd *, const char *name, int64_t lease, int64_t wait_ms,
	    char **key, struct error *);
int	 etcd_unlock(struct etcd *, const char *key, struct error *);
int	 etcd_campaign(struct etcd *, const char *name, int64_t lease, const char *value,
	    int64_t wait_ms, struct etcd_kv *leader, struct error *);
int	 etcd_leader(struct etcd *, const char *name, struct etcd_kv *leader, struct error *);
int	 etcd_resign(struct etcd *, const char *name, const struct etcd_kv *leader,
	    struct error *);

#endif
