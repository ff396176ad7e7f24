/* fleet.c: fleet mode's threads: the lease, the mirror of the store, the election, and the one that acts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/deployd.h"

#define FLEET_WATCH_MS	30000	/* a watch is made again this often, all being well */
#define FLEET_CAMPAIGN_MS 2000	/* a campaign call returns this often to look at the lease */
#define FLEET_RETRY_MS	500	/* after a failed call, before the next */
#define FLEET_TICK_MS	200	/* the acting thread looks at its timers this often */

int
fleet_connect(const struct fleet_config *f, int64_t timeout_ms, const int *stop,
    struct etcd **out, struct error *e)
{
	struct etcd_conf conf = {
		.endpoints = &f->etcd,
		.ca_file = f->ca_file,
		.cert_file = f->cert_file,
		.key_file = f->key_file,
		.user = f->user,
		.password_file = f->password_file,
		.timeout_ms = timeout_ms,
		.stop = stop,
	};

	return etcd_open(out, &conf, e);
}

/*
 * One read of the nodes registered under the prefix, with a short deadline, so that check
 * stays fast. An unreachable store is a warning, not a configuration error: the file may be
 * right and etcd down for now. Returns 0 when etcd answered.
 */
int
fleet_probe(const struct config *c, FILE *out, FILE *warn)
{
	const struct fleet_config *f = &c->fleet;
	struct etcd *cl = NULL;
	struct etcd_kvs kvs;
	struct error e = { 0, "" };
	char *key;
	int rc;

	if (f->etcd.n == 0)
		return 0;
	key = util_xasprintf("%snodes/", f->prefix);
	if ((rc = fleet_connect(f, 3000, NULL, &cl, &e)) == E_OK)
		rc = etcd_get(cl, key, 1, &kvs, &e);
	if (rc == E_OK) {
		fprintf(out, "fleet: node %s%s%s: etcd answered at %s, %zu node%s registered "
		    "under %s\n", f->node, f->zone ? " in " : "", f->zone ? f->zone : "",
		    etcd_endpoint(cl), kvs.n, kvs.n == 1 ? "" : "s", key);
		etcd_kvs_free(&kvs);
	} else
		fprintf(warn, "%s: warning: fleet: etcd did not answer: %s\n", c->file, e.msg);
	etcd_close(cl);
	free(key);
	return rc == E_OK ? 0 : 1;
}

int
fleet_on(void)
{
	return F.started;
}

static void
fleet_reachable(int ok, const struct etcd *c, const struct error *e)
{
	pthread_mutex_lock(&F.mu);
	if (ok != F.store_ok || !F.store_said)
		log_info("fleet: the store is %s%s%s", ok ? "reachable" : "unreachable",
		    ok ? "" : ": ", ok ? "" : e->msg);
	F.store_said = 1;
	F.store_ok = ok;
	if (!ok)
		util_strlcpy(F.store_error, e->msg, sizeof(F.store_error));
	else {
		F.store_error[0] = '\0';
		if (c != NULL)
			util_strlcpy(F.endpoint, etcd_endpoint(c), sizeof(F.endpoint));
	}
	pthread_mutex_unlock(&F.mu);
}

static struct etcd *
fleet_client(int64_t timeout_ms)
{
	struct etcd *c = NULL;
	struct error e;

	/* The configuration was checked at load; what can fail here is a file read. */
	while (fleet_connect(&F.cfg->fleet, timeout_ms, &F.stop, &c, &e) != E_OK) {
		log_error("fleet: %s", e.msg);
		pthread_mutex_lock(&F.mu);
		fleet_store_wait(5000);
		if (F.stop) {
			pthread_mutex_unlock(&F.mu);
			return NULL;
		}
		pthread_mutex_unlock(&F.mu);
	}
	return c;
}

/* ---- membership: the lease, and nodes/<node> on it ---- */

/*
 * A renewal's answer names the store's revision. If the mirror is still short of the one
 * the renewal before named, the watch is stuck: its member went silent or lost its
 * connection without a word, and the watch would say nothing until its time ran out. F.mu
 * held. Writes outside the prefix (a shared etcd) look the same, and cost a read of the
 * store and a new watch at every second renewal, which is harmless.
 */
static void
fleet_watch_check(int64_t store_rev)
{
	if (F.behind > 0 && F.rev < F.behind && F.synced) {
		log_debug("fleet: the watch is behind (the store was at revision %lld, the "
		    "mirror is at %lld); watching again", (long long)F.behind, (long long)F.rev);
		__atomic_store_n(&F.rewatch, 1, __ATOMIC_RELAXED);
		F.behind = 0;
		return;
	}
	F.behind = store_rev > F.rev ? store_rev : 0;
}

/*
 * nodes/<node> on the lease: the coordinator reads each node's round trip there to choose how
 * far ahead a cutover's instant goes, so it is written again when the round trip moves.
 */
static int
fleet_publish(struct etcd *c, int64_t lease, int64_t rtt, struct error *e)
{
	const struct fleet_config *f = &F.cfg->fleet;
	static int64_t started;
	char *key = util_xasprintf("nodes/%s", f->node);
	json_t *v;
	int rc;

	if (started == 0)
		started = util_now_ms();
	v = json_pack("{s:s,s:s,s:I,s:I}", "zone", f->zone != NULL ? f->zone : "",
	    "version", DEPLOYD_VERSION, "started", (json_int_t)started, "rtt_ms", (json_int_t)rtt);
	rc = fleet_store_put(c, key, v, lease, e);
	free(key);
	return rc;
}

static int
fleet_register(struct etcd *c, int64_t *lease, int64_t rtt, struct error *e)
{
	const struct fleet_config *f = &F.cfg->fleet;
	int rc;

	if ((rc = etcd_lease_grant(c, (f->lease_ttl_ms + 999) / 1000, lease, e)) != E_OK)
		return rc;
	return fleet_publish(c, *lease, rtt, e);
}

/*
 * A lease renewed every third of its time to live. When renewals fail for a whole ttl
 * the lease is gone in etcd as well: this node has left the fleet (and lost any election)
 * until it registers again.
 */
static void *
fleet_member(void *arg)
{
	const struct fleet_config *f = &F.cfg->fleet;
	struct etcd *c = fleet_client(f->lease_ttl_ms / 3);
	int64_t lease = 0, ttl, last_ok = 0, t0, due, rtt = 0, said = 0, rtts[4] = { 0 };
	struct error e;
	size_t n = 0, i;

	(void)arg;
	while (c != NULL && !F.stop) {
		if (lease == 0) {
			if (fleet_register(c, &lease, rtt, &e) == E_OK) {
				said = rtt;
				last_ok = util_mono_ms();
				log_info("fleet: node %s joined (lease %llx, ttl %llds)", f->node,
				    (unsigned long long)lease, (long long)(f->lease_ttl_ms / 1000));
				pthread_mutex_lock(&F.mu);
				F.lease = lease;
				F.lease_gen++;
				pthread_cond_broadcast(&F.cond);
				pthread_mutex_unlock(&F.mu);
				fleet_reachable(1, c, &e);
			} else {
				lease = 0;
				fleet_reachable(0, c, &e);
			}
		}
		/* Every third of the ttl, not at each wake-up: the cond moves with every event. */
		due = util_mono_ms() + (lease != 0 ? f->lease_ttl_ms / 3 : FLEET_RETRY_MS);
		pthread_mutex_lock(&F.mu);
		while (!F.stop && util_mono_ms() < due)
			fleet_store_wait(due - util_mono_ms());
		pthread_mutex_unlock(&F.mu);
		if (F.stop || lease == 0)
			continue;
		t0 = util_mono_ms();
		if (etcd_lease_keepalive(c, lease, &ttl, &e) == E_OK && ttl > 0) {
			last_ok = util_mono_ms();
			rtt = last_ok - t0;
			rtts[n++ % 4] = rtt;
			for (i = 0, rtt = 0; i < 4; i++)
				rtt = rtts[i] > rtt ? rtts[i] : rtt;
			pthread_mutex_lock(&F.mu);
			F.rtt_ms = rtt;
			fleet_watch_check(etcd_revision(c));
			pthread_mutex_unlock(&F.mu);
			fleet_reachable(1, c, &e);
			/* A round trip that grew past what the key says, or fell well below it. */
			if ((rtt > said + said / 4 + 2 || rtt < said / 2) &&
			    fleet_publish(c, lease, rtt, &e) == E_OK)
				said = rtt;
			continue;
		}
		if (e.msg[0] == '\0' || ttl <= 0)
			util_strlcpy(e.msg, "the lease expired", sizeof(e.msg));
		fleet_reachable(0, c, &e);
		if (ttl > 0 && util_mono_ms() - last_ok < f->lease_ttl_ms)
			continue;
		log_warn("fleet: node %s lost its lease: %s", f->node, e.msg);
		lease = 0;
		pthread_mutex_lock(&F.mu);
		F.lease = 0;
		F.lease_gen++;	/* a campaign won with the lease that went is no win */
		F.leading = 0;
		pthread_cond_broadcast(&F.cond);
		pthread_mutex_unlock(&F.mu);
	}
	/* Leaving on purpose: the others need not wait a ttl to stop counting this node. */
	if (c != NULL && lease != 0 && etcd_lease_revoke(c, lease, &e) != E_OK)
		log_debug("fleet: revoking the lease: %s", e.msg);
	etcd_close(c);
	return NULL;
}

/* ---- the mirror: a read of the prefix, then a watch from the revision after it ---- */

/* What this node does next for each site, from the mirror; F.mu held. */
static void
fleet_step_nodes(void)
{
	size_t i;

	if (!F.synced || F.lease == 0)
		return;
	for (i = 0; i < F.nsites; i++)
		fleet_node_step(&F.sites[i], util_mono_ms());
}

/*
 * A cutover steps the node here at once, not only in the acting thread: that one may be
 * writing a record (across the clouds, tens of milliseconds), and the cutover's instant would
 * not wait for it. Other keys wait for the acting thread, which sees them all together: a
 * target stepped on alone, just ahead of the previous target's cutover, would have the node
 * prepare it over the release that cutover wants.
 */
static int
fleet_watch_event(void *arg, const struct etcd_event *ev)
{
	size_t plen = strlen(F.cfg->fleet.prefix), klen = strlen(ev->kv->key);

	(void)arg;
	pthread_mutex_lock(&F.mu);
	fleet_store_apply(ev->kv, ev->type == ETCD_DELETE);
	if (ev->type != ETCD_DELETE && klen >= plen + 6 + 8 &&
	    strncmp(ev->kv->key, F.cfg->fleet.prefix, plen) == 0 &&
	    strncmp(ev->kv->key + plen, "sites/", 6) == 0 &&
	    strcmp(ev->kv->key + klen - 8, "/cutover") == 0)
		fleet_step_nodes();
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.mu);
	return 0;
}

static int
fleet_resync(struct etcd *c, int64_t *rev, struct error *e)
{
	struct etcd_kvs kvs;
	size_t i;
	int rc;

	if ((rc = etcd_get(c, F.cfg->fleet.prefix, 1, &kvs, e)) != E_OK)
		return rc;
	pthread_mutex_lock(&F.mu);
	for (i = 0; i < F.nkv; i++)
		fleet_store_clear(&F.kv[i]);
	F.nkv = 0;
	for (i = 0; i < kvs.n; i++)
		fleet_store_apply(&kvs.v[i], 0);
	F.synced = 1;
	F.rev = kvs.rev;
	fleet_step_nodes();
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.mu);
	*rev = kvs.rev + 1;
	etcd_kvs_free(&kvs);
	return E_OK;
}

static void *
fleet_watch(void *arg)
{
	struct etcd *c = fleet_client(3000);
	int64_t rev = 0;
	int rc, stale = 1;
	struct error e;

	(void)arg;
	if (c != NULL)
		etcd_set_cancel(c, &F.rewatch);
	while (c != NULL && !F.stop) {
		if (__atomic_exchange_n(&F.rewatch, 0, __ATOMIC_RELAXED))
			stale = 1;
		if (stale && (rc = fleet_resync(c, &rev, &e)) != E_OK) {
			if (rc == E_STOPPED)
				continue;	/* told to read again, or to stop */
			fleet_reachable(0, c, &e);
			pthread_mutex_lock(&F.mu);
			fleet_store_wait(FLEET_RETRY_MS);
			pthread_mutex_unlock(&F.mu);
			continue;
		}
		stale = 0;
		rc = etcd_watch(c, F.cfg->fleet.prefix, 1, &rev, FLEET_WATCH_MS,
		    fleet_watch_event, NULL, &e);
		if (rc == E_STALE) {
			log_info("fleet: %s; reading the store again", e.msg);
			stale = 1;
		} else if (rc != E_OK && rc != E_TIMEOUT && rc != E_STOPPED) {
			/* Resumed from rev: nothing is missed. */
			log_debug("fleet: watch: %s", e.msg);
			pthread_mutex_lock(&F.mu);
			fleet_store_wait(FLEET_RETRY_MS);
			pthread_mutex_unlock(&F.mu);
		}
	}
	etcd_close(c);
	return NULL;
}

/* ---- the election: one coordinator, while its lease lives ---- */

static void *
fleet_campaign(void *arg)
{
	const struct fleet_config *f = &F.cfg->fleet;
	struct etcd *c = fleet_client(3000);
	char *name = util_xasprintf("%sleader", f->prefix);
	struct etcd_kv leader;
	struct error e;
	int64_t lease, gen;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	while (c != NULL && !F.stop) {
		if (F.lease == 0 || F.leading) {
			fleet_store_wait(FLEET_TICK_MS);
			continue;
		}
		lease = F.lease;
		gen = F.lease_gen;
		pthread_mutex_unlock(&F.mu);
		/* Waits in etcd while another node leads; a call that gives up is made again. */
		if (etcd_campaign(c, name, lease, f->node, FLEET_CAMPAIGN_MS, &leader,
		    &e) != E_OK) {
			pthread_mutex_lock(&F.mu);
			if (e.code != E_TIMEOUT && !F.stop) {
				log_debug("fleet: campaign: %s", e.msg);
				fleet_store_wait(FLEET_RETRY_MS);
			}
			continue;
		}
		pthread_mutex_lock(&F.mu);
		if (F.lease_gen != gen) {
			/* Won with a lease that has gone since: the key went with it. */
			etcd_kv_free(&leader);
			continue;
		}
		etcd_kv_free(&F.leader);
		F.leader = leader;
		F.leading = 1;
		F.lead_gen++;
		log_info("fleet: node %s is the coordinator", f->node);
		pthread_cond_broadcast(&F.cond);
	}
	pthread_mutex_unlock(&F.mu);
	free(name);
	etcd_close(c);
	return NULL;
}

/* ---- the thread that acts ---- */

/* Write this node's records that changed, and ring the doorbells waiting; F.mu held. */
static void
fleet_flush(struct etcd *c, int64_t lease)
{
	struct fleet_site *s;
	struct error e;
	json_t *v;
	char *key;
	size_t i;
	int rc;

	for (i = 0; i < F.nsites; i++) {
		s = &F.sites[i];
		if (s->bell_provider[0] != '\0') {
			v = json_pack("{s:s,s:s,s:s,s:I}", "provider", s->bell_provider,
			    "delivery", s->bell_delivery, "node", F.cfg->fleet.node,
			    "at", (json_int_t)util_now_ms());
			if (s->bell_rev[0] != '\0')
				json_object_set_new(v, "rev", json_string(s->bell_rev));
			s->bell_provider[0] = '\0';
			key = util_xasprintf("sites/%s/doorbell", s->cfg->site.name);
			pthread_mutex_unlock(&F.mu);
			if ((rc = fleet_store_put(c, key, v, 0, &e)) != E_OK)
				log_warn("site=%s fleet: ringing the doorbell: %s",
				    s->cfg->site.name, e.msg);
			free(key);
			pthread_mutex_lock(&F.mu);
		}
		if (!s->dirty || lease == 0)
			continue;
		s->dirty = 0;
		v = fleet_node_record(s);
		key = util_xasprintf("sites/%s/nodes/%s", s->cfg->site.name, F.cfg->fleet.node);
		pthread_mutex_unlock(&F.mu);
		rc = fleet_store_put(c, key, v, lease, &e);
		free(key);
		pthread_mutex_lock(&F.mu);
		if (rc != E_OK) {
			s->dirty = 1;
			log_debug("site=%s fleet: writing this node's record: %s",
			    s->cfg->site.name, e.msg);
		}
	}
}

static void *
fleet_act(void *arg)
{
	struct etcd *c = fleet_client(3000);
	int64_t lease_gen = 0;
	size_t i;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	while (c != NULL && !F.stop) {
		if (!F.synced || F.lease == 0) {
			fleet_store_wait(FLEET_TICK_MS);
			continue;
		}
		if (F.lease_gen != lease_gen) {
			/* A new lease: every record this node wrote went with the old one. */
			lease_gen = F.lease_gen;
			for (i = 0; i < F.nsites; i++)
				F.sites[i].dirty = 1;
		}
		for (i = 0; i < F.nsites; i++)
			fleet_node_claim(c, &F.sites[i]);
		fleet_step_nodes();
		fleet_flush(c, F.lease);
		for (i = 0; i < F.nsites && F.leading && !F.stop; i++)
			fleet_coord_step(c, &F.sites[i], util_mono_ms());
		fleet_flush(c, F.lease);
		fleet_store_wait(FLEET_TICK_MS);
	}
	pthread_mutex_unlock(&F.mu);
	/* The coordinator's ls-remote ran in a helper of this thread's. */
	fetch_stop_helper();
	etcd_close(c);
	return NULL;
}

/* ---- what the rest of the daemon asks ---- */

int
fleet_ring(const char *site, const char *provider, const char *delivery, const char *rev)
{
	size_t i;
	int rc = E_NOTFOUND;

	pthread_mutex_lock(&F.mu);
	for (i = 0; i < F.nsites; i++) {
		struct fleet_site *s = &F.sites[i];

		if (strcmp(s->cfg->site.name, site) != 0)
			continue;
		/* Cut off from the store, the push would wait unseen: say so now. */
		if (!F.store_ok || F.lease == 0) {
			rc = E_STALE;
			break;
		}
		util_strlcpy(s->bell_provider, provider, sizeof(s->bell_provider));
		util_strlcpy(s->bell_delivery, delivery, sizeof(s->bell_delivery));
		util_strlcpy(s->bell_rev, rev != NULL ? rev : "", sizeof(s->bell_rev));
		pthread_cond_broadcast(&F.cond);
		rc = E_OK;
		break;
	}
	pthread_mutex_unlock(&F.mu);
	return rc;
}

/* The newest generation the site's target or cutover has: `--wait` waits for one past it. */
int64_t
fleet_gen(const char *site)
{
	int64_t t, c;

	pthread_mutex_lock(&F.mu);
	t = fleet_store_int(fleet_store_get("sites/%s/target", site), "gen");
	c = fleet_store_int(fleet_store_get("sites/%s/cutover", site), "gen");
	pthread_mutex_unlock(&F.mu);
	return t > c ? t : c;
}

/* The fleet's cutover is commit, and no newer target is on its way. */
int
fleet_is_live(const char *site, const char *commit)
{
	const struct fleet_kv *c, *t;
	int live;

	pthread_mutex_lock(&F.mu);
	c = fleet_store_get("sites/%s/cutover", site);
	t = fleet_store_get("sites/%s/target", site);
	live = c != NULL && strcmp(fleet_store_str(c, "commit"), commit) == 0 &&
	    (t == NULL || fleet_store_int(t, "gen") <= fleet_store_int(c, "gen") ||
	    fleet_store_str(t, "failed")[0] != '\0');
	pthread_mutex_unlock(&F.mu);
	return live;
}

int
fleet_start(const struct config *cfg, struct error *e)
{
	pthread_condattr_t ca;
	void *(*fns[])(void *) = { fleet_member, fleet_watch, fleet_campaign, fleet_act };
	size_t i;

	if (cfg->fleet.etcd.n == 0)
		return E_OK;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&F.cond, &ca);
	pthread_condattr_destroy(&ca);
	F.cfg = cfg;
	F.stop = 0;
	F.nsites = cfg->nsites;
	F.sites = util_xcalloc(cfg->nsites, sizeof(*F.sites));
	for (i = 0; i < cfg->nsites; i++)
		fleet_node_init(&F.sites[i], &cfg->sites[i]);
	sched_set_done(fleet_node_done);
	F.started = 1;
	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		if (pthread_create(&F.threads[i], NULL, fns[i], NULL) != 0) {
			fleet_stop();
			return util_error(e, E_SYS, "fleet: cannot start a thread");
		}
		F.nthreads++;
	}
	log_info("fleet: node %s%s%s, etcd %s, prefix %s", cfg->fleet.node,
	    cfg->fleet.zone != NULL ? " in " : "", cfg->fleet.zone != NULL ? cfg->fleet.zone : "",
	    cfg->fleet.etcd.v[0], cfg->fleet.prefix);
	return E_OK;
}

void
fleet_stop(void)
{
	size_t i;

	if (!F.started)
		return;
	pthread_mutex_lock(&F.mu);
	F.stop = 1;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.mu);
	for (i = 0; i < F.nthreads; i++)
		pthread_join(F.threads[i], NULL);
	F.nthreads = 0;
	sched_set_done(NULL);
	for (i = 0; i < F.nkv; i++)
		fleet_store_clear(&F.kv[i]);
	free(F.kv);
	F.kv = NULL;
	F.nkv = 0;
	free(F.sites);
	F.sites = NULL;
	F.nsites = 0;
	etcd_kv_free(&F.leader);
	pthread_cond_destroy(&F.cond);
	F.started = 0;
}

/*
 * An operator's rollback, for the whole fleet: the commit of the release this node would
 * roll back to, the live one marked bad fleet-wide, the fleet paused, and the doorbell rung
 * for the coordinator to cut over to it at once (every node still has its release).
 */
static char *
fleet_rollback_json(json_t *v)
{
	char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(v);
	return text != NULL ? text : util_xstrdup("{}");
}

int
fleet_rollback(const char *site, const char *want, char to[SHA_HEX], struct error *e)
{
	const struct fleet_kv *cut;
	struct fleet_site *fs;
	struct etcd *c = NULL;
	char from[SHA_HEX], reason[256], *keys[3], *vals[3];
	size_t n = 0;
	int rc;

	if ((fs = fleet_store_site(site)) == NULL)
		return util_error(e, E_NOTFOUND, "unknown site '%s'", site);
	if ((rc = rollback_target(&fs->cfg->site, want, to, e)) != E_OK)
		return rc;
	pthread_mutex_lock(&F.mu);
	cut = fleet_store_get("sites/%s/cutover", site);
	util_strlcpy(from, fleet_store_str(cut, "commit"), sizeof(from));
	pthread_mutex_unlock(&F.mu);
	if ((rc = fleet_connect(&F.cfg->fleet, 3000, &F.stop, &c, e)) != E_OK)
		return rc;
	snprintf(reason, sizeof(reason), "rolled back from %.12s to %.12s; automatic deploys "
	    "paused until `deployd resume %s`", from[0] ? from : "(none)", to, site);
	/*
	 * One transaction: across the clouds each write is a round trip to etcd's leader. The
	 * watch hands its events over in this order, so the doorbell is seen last.
	 */
	if (strlen(from) == 40 && strcmp(from, to) != 0) {
		keys[n] = util_xasprintf("%ssites/%s/bad/%s", F.cfg->fleet.prefix, site, from);
		vals[n++] = fleet_rollback_json(json_pack("{s:s,s:s,s:I}", "by",
		    F.cfg->fleet.node, "to", to, "at", (json_int_t)util_now_ms()));
	}
	keys[n] = util_xasprintf("%ssites/%s/paused", F.cfg->fleet.prefix, site);
	vals[n++] = fleet_rollback_json(json_pack("{s:s,s:s,s:I}", "by", F.cfg->fleet.node,
	    "reason", reason, "at", (json_int_t)util_now_ms()));
	keys[n] = util_xasprintf("%ssites/%s/doorbell", F.cfg->fleet.prefix, site);
	vals[n++] = fleet_rollback_json(json_pack("{s:s,s:s,s:s,s:s,s:I}", "provider",
	    "rollback", "delivery", "", "node", F.cfg->fleet.node, "rev", to, "at",
	    (json_int_t)util_now_ms()));
	rc = etcd_put_all(c, (const char *const *)keys, (const char *const *)vals, n, e);
	while (n-- > 0) {
		free(keys[n]);
		free(vals[n]);
	}
	etcd_close(c);
	return rc;
}

/* An operator's pause or resume, for the whole fleet: one key, written at once. */
int
fleet_pause(const char *site, int on, const char *reason, struct error *e)
{
	struct fleet_site *fs;
	struct etcd *c = NULL;
	char *key;
	json_t *v;
	int rc;

	if ((fs = fleet_store_site(site)) == NULL)
		return util_error(e, E_NOTFOUND, "unknown site '%s'", site);
	if ((rc = fleet_connect(&F.cfg->fleet, 3000, &F.stop, &c, e)) != E_OK)
		return rc;
	key = util_xasprintf("sites/%s/paused", site);
	if (on) {
		v = json_pack("{s:s,s:s,s:I}", "by", F.cfg->fleet.node, "reason", reason,
		    "at", (json_int_t)util_now_ms());
		rc = fleet_store_put(c, key, v, 0, e);
	} else {
		char *full = util_xasprintf("%s%s", F.cfg->fleet.prefix, key);

		rc = etcd_delete(c, full, 0, NULL, e);
		free(full);
		if (rc == E_OK) {
			/* Resuming catches up with the remote at once, as on one node. */
			pthread_mutex_lock(&F.mu);
			util_strlcpy(fs->bell_provider, "cli", sizeof(fs->bell_provider));
			fs->bell_delivery[0] = fs->bell_rev[0] = '\0';
			pthread_cond_broadcast(&F.cond);
			pthread_mutex_unlock(&F.mu);
		}
	}
	free(key);
	etcd_close(c);
	return rc;
}
