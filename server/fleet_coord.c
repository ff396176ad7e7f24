/* fleet_coord.c: the coordinator: one writer of each site's target and cutover, from doorbells, polls and the nodes' records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

#define FLEET_MARGIN_MIN_MS	100	/* the cutover's instant is at least this far ahead */
#define FLEET_ROLLBACK_MIN_MS	25	/* a rollback's instant: nobody prepares, speed matters */
#define FLEET_ONCE_RETRY_MS	200	/* between writes of how run_once ended */

/* How many of members must have prepared: "all", a count, or a percentage. */
int64_t
fleet_coord_need(const char *min_ready, int64_t members)
{
	uint64_t v;
	size_t len = strlen(min_ready);
	int64_t need;

	if (strcmp(min_ready, "all") == 0)
		need = members;
	else if (len > 1 && min_ready[len - 1] == '%') {
		char num[16];

		if (len > sizeof(num))
			return members;
		memcpy(num, min_ready, len - 1);
		num[len - 1] = '\0';
		if (util_parse_uint(num, 100, &v) != E_OK)
			return members;
		need = (members * (int64_t)v + 99) / 100;
	} else if (util_parse_uint(min_ready, 1000000, &v) == E_OK)
		need = (int64_t)v < members ? (int64_t)v : members;
	else
		need = members;
	return need < 1 ? 1 : need;
}

/*
 * Write key while this node still leads; F.mu held, let go of during the call. A write
 * the store refused means the election key is gone: this node no longer coordinates.
 */
static int
fleet_coord_write(struct etcd *c, const char *site, const char *what, json_t *v)
{
	char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	char *key = util_xasprintf("%ssites/%s/%s", F.cfg->fleet.prefix, site, what);
	char *held = util_xstrdup(F.leader.key);
	int64_t rev = F.leader.create_rev;
	struct error e;
	int rc, done = 0;

	json_decref(v);
	pthread_mutex_unlock(&F.mu);
	if (text == NULL)
		rc = util_error(&e, E_INVAL, "the value could not be made");
	else
		rc = etcd_put_while(c, key, text, strlen(text), held, rev, &done, &e);
	pthread_mutex_lock(&F.mu);
	if (rc != E_OK)
		log_warn("site=%s fleet: writing %s: %s", site, what, e.msg);
	else if (!done) {
		log_warn("site=%s fleet: not writing %s: this node no longer leads", site, what);
		F.leading = 0;
	}
	free(text);
	free(key);
	free(held);
	return rc == E_OK && done ? E_OK : E_STALE;
}

/* Ask the remote for its tip, outside F.mu; "" when it did not answer. */
static void
fleet_coord_tip(struct fleet_site *s, char tip[SHA_HEX])
{
	struct fetch_result fr;
	struct error e;

	tip[0] = '\0';
	pthread_mutex_unlock(&F.mu);
	if (fetch_remote_tip(&s->cfg->site, &fr, &e) == E_OK)
		util_strlcpy(tip, fr.tip, SHA_HEX);
	else
		log_warn("site=%s fleet: asking the remote for its tip: %s", s->cfg->site.name,
		    e.msg);
	pthread_mutex_lock(&F.mu);
}

static int
fleet_coord_hex40(const char *c)
{
	return strlen(c) == 40 && strspn(c, "0123456789abcdef") == 40;
}

/*
 * The instant to swap at: two round trips of the slowest node to etcd ahead (each node's own
 * renewals, the slowest of its last four, in nodes/<node>). The cutover reaches the farthest
 * node in about one; the other is slack.
 */
static int64_t
fleet_coord_margin(void)
{
	int64_t m = F.rtt_ms * 2, r;
	size_t i;

	for (i = 0; i < F.nkv; i++)
		if (strncmp(F.kv[i].key, "nodes/", 6) == 0 &&
		    (r = fleet_store_int(&F.kv[i], "rtt_ms") * 2) > m)
			m = r;
	return m > FLEET_MARGIN_MIN_MS ? m : FLEET_MARGIN_MIN_MS;
}

/*
 * The next generation: past the target's, the cutover's and every generation a node has
 * recorded, so that a key overwritten by hand (or by garbage) never sends it backwards,
 * which the nodes would take for old news.
 */
static int64_t
fleet_coord_next_gen(const char *name)
{
	int64_t gen = 0, g;
	char dir[256];
	size_t i, dlen;
	const char *fields[] = { "live_gen", "prep_gen" }, **f;

	if ((g = fleet_store_int(fleet_store_get("sites/%s/target", name), "gen")) > gen)
		gen = g;
	if ((g = fleet_store_int(fleet_store_get("sites/%s/cutover", name), "gen")) > gen)
		gen = g;
	dlen = (size_t)snprintf(dir, sizeof(dir), "sites/%s/nodes/", name);
	for (i = 0; i < F.nkv; i++) {
		if (strncmp(F.kv[i].key, dir, dlen) != 0)
			continue;
		for (f = fields; f < fields + 2; f++)
			if ((g = fleet_store_int(&F.kv[i], *f)) > gen)
				gen = g;
	}
	return gen + 1;
}

/*
 * A rollback skips the prepare: the target and the cutover at once, to a release every
 * node still has (a node that lacks it deploys the commit, as any late node does).
 */
static void
fleet_coord_rollback(struct etcd *c, struct fleet_site *s, const char *commit)
{
	const char *name = s->cfg->site.name;
	int64_t gen, at;

	if (!fleet_coord_hex40(commit))
		return;
	gen = fleet_coord_next_gen(name);
	log_info("site=%s fleet: rollback to %.12s, generation %lld", name, commit,
	    (long long)gen);
	/*
	 * The cutover first: seen before it, a newer target would set the nodes preparing. A
	 * rollback is urgent: its instant is only a little ahead, not two round trips, and a
	 * node farther than that swaps on arrival (a skew of one trip across, for speed).
	 */
	at = util_now_ms() + FLEET_ROLLBACK_MIN_MS;
	if (fleet_coord_write(c, name, "cutover", json_pack("{s:s,s:I,s:I,s:I,s:s,s:b}",
	    "commit", commit, "gen", (json_int_t)gen, "at", (json_int_t)at, "written",
	    (json_int_t)util_now_ms(), "by", F.cfg->fleet.node, "rollback", 1)) != E_OK)
		return;
	fleet_coord_write(c, name, "target", json_pack("{s:s,s:I,s:s,s:I,s:s}", "commit",
	    commit, "gen", (json_int_t)gen, "why", "rollback", "at", (json_int_t)util_now_ms(),
	    "by", F.cfg->fleet.node));
}

/*
 * A new target when the doorbell rang, a poll is due, or this node has just been elected:
 * the remote's tip, or the commit an operator named. One writer, so two quick pushes
 * never leave the older tip as the target.
 */
static void
fleet_coord_target(struct etcd *c, struct fleet_site *s, int64_t now)
{
	const char *name = s->cfg->site.name, *why = NULL;
	const struct fleet_kv *bell, *tgt;
	char tip[SHA_HEX], rev[SHA_HEX];
	int64_t gen;

	rev[0] = '\0';
	bell = fleet_store_get("sites/%s/doorbell", name);
	if (bell != NULL && bell->mod_rev > s->bell_seen) {
		s->bell_seen = bell->mod_rev;
		if (strcmp(fleet_store_str(bell, "provider"), "rollback") == 0) {
			fleet_coord_rollback(c, s, fleet_store_str(bell, "rev"));
			return;
		}
		why = strcmp(fleet_store_str(bell, "provider"), "cli") == 0 ? "cli" : "webhook";
		if (fleet_coord_hex40(fleet_store_str(bell, "rev")))
			util_strlcpy(rev, fleet_store_str(bell, "rev"), sizeof(rev));
	}
	if (s->next_poll == 0 || (s->cfg->poll_ms > 0 && now >= s->next_poll)) {
		if (why == NULL)
			why = s->next_poll == 0 ? "election" : "poll";
		s->next_poll = now + (s->cfg->poll_ms > 0 ? poll_jitter(s->cfg->poll_ms) :
		    INT64_MAX / 2);
	}
	if (why == NULL)
		return;
	if (rev[0] == '\0' && fleet_store_get("sites/%s/paused", name) != NULL)
		return;
	if (rev[0] == '\0')
		fleet_coord_tip(s, tip);
	else
		util_strlcpy(tip, rev, sizeof(tip));
	if (tip[0] == '\0' || !F.leading)
		return;
	if (rev[0] == '\0' && fleet_store_get("sites/%s/bad/%s", name, tip) != NULL) {
		log_info("site=%s fleet: the remote's tip %.12s was rolled back (marked bad); not "
		    "deploying it again", name, tip);
		return;
	}
	/* Read again: the mirror moved on while the remote was asked. */
	tgt = fleet_store_get("sites/%s/target", name);
	if (tgt != NULL && strcmp(fleet_store_str(tgt, "commit"), tip) == 0 &&
	    (fleet_store_str(tgt, "failed")[0] == '\0' || strcmp(why, "cli") != 0))
		return;
	gen = fleet_coord_next_gen(name);
	log_info("site=%s fleet: target %.12s (%s), generation %lld", name, tip, why,
	    (long long)gen);
	fleet_coord_write(c, name, "target", json_pack("{s:s,s:I,s:s,s:I,s:s}", "commit", tip,
	    "gen", (json_int_t)gen, "why", why, "at", (json_int_t)util_now_ms(),
	    "by", F.cfg->fleet.node));
}

/* Give a target up: no cutover, and status says why. */
static void
fleet_coord_fail(struct etcd *c, const char *name, const struct fleet_kv *tgt, const char *why)
{
	json_t *v = json_deep_copy(tgt->val);

	log_error("site=%s fleet: no cutover to %.12s: %s", name, fleet_store_str(tgt, "commit"), why);
	json_object_set_new(v, "failed", json_string(why));
	fleet_coord_write(c, name, "target", v);
}

/* Write this node's run_once record; F.mu not held. */
static int
fleet_coord_once_put(struct etcd *c, const char *key, const char *state, const char *out,
    const char *err, struct error *e)
{
	return fleet_store_put(c, key, json_pack("{s:s,s:s,s:I,s:s,s:s}", "state", state, "node",
	    F.cfg->fleet.node, "at", (json_int_t)util_now_ms(), "output", out, "error", err),
	    0, e);
}

/*
 * How run_once ended, written until it is taken or the lease that holds the lock is gone: a
 * run whose end is not recorded runs again on the next coordinator, so a node cut off for a
 * moment keeps trying while no one else can take the lock. F.mu not held.
 */
static void
fleet_coord_once_end(struct etcd *c, struct fleet_site *s, const char *key, int64_t lease,
    const char *state, const char *out, const char *err)
{
	int64_t until = util_mono_ms() + F.cfg->fleet.lease_ttl_ms;
	struct error e;
	int held;

	while (fleet_coord_once_put(c, key, state, out, err, &e) != E_OK) {
		pthread_mutex_lock(&F.mu);
		held = F.lease == lease && !F.stop && util_mono_ms() < until;
		if (held)
			fleet_store_wait(FLEET_ONCE_RETRY_MS);
		pthread_mutex_unlock(&F.mu);
		if (!held) {
			log_warn("site=%s fleet: recording run_once: %s; the next coordinator "
			    "runs it again", s->cfg->site.name, e.msg);
			return;
		}
	}
}

/*
 * Run run_once in this node's prepared release, under the site's etcd lock; F.mu held, let
 * go of meanwhile. The lock is held for the whole run, on this node's lease: a record that
 * says "running" seen under the lock is one whose node died midway, and it runs again (at
 * least once, as for any migration tool). What the run ended in is written for the next
 * look to act on.
 */
static void
fleet_coord_exec(struct etcd *c, struct fleet_site *s, const char *commit_in)
{
	const struct site *site = &s->cfg->site;
	char commit[SHA_HEX], live[SHA_HEX], tail[2048], *lockname, *key, *full, *path, *lock;
	const char *st;
	struct hookrun_env env;
	struct hookrun_result res;
	struct etcd_kvs kvs;
	struct error e, he = { 0, "" };
	int64_t lease = F.lease;
	json_t *v;
	int rc;

	util_strlcpy(commit, commit_in, sizeof(commit));
	util_strlcpy(live, s->live, sizeof(live));
	path = util_xasprintf("%s/releases/%s", site->path, s->prepared_release);
	key = util_xasprintf("sites/%s/run_once/%s", site->name, commit);
	full = util_xasprintf("%s%s", F.cfg->fleet.prefix, key);
	/* Not a prefix of the records: etcd's lock waits for every older key under its name. */
	lockname = util_xasprintf("%ssites/%s/locks/run_once", F.cfg->fleet.prefix, site->name);
	pthread_mutex_unlock(&F.mu);
	if ((rc = etcd_lock(c, lockname, lease, 5000, &lock, &e)) != E_OK) {
		log_warn("site=%s fleet: run_once lock: %s", site->name, e.msg);
		goto out;
	}
	if ((rc = etcd_get(c, full, 0, &kvs, &e)) == E_OK) {
		v = kvs.n == 1 ? json_loadb(kvs.v[0].value, kvs.v[0].vlen, 0, NULL) : NULL;
		st = json_string_value(json_object_get(v, "state"));
		/* Settled while this node waited for the lock. */
		if (st != NULL && (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0))
			rc = E_STALE;
		json_decref(v);
		etcd_kvs_free(&kvs);
	}
	if (rc == E_OK && (rc = fleet_coord_once_put(c, key, "running", "", "", &e)) == E_OK) {
		log_info("site=%s commit=%.12s fleet: run_once in %s", site->name, commit, path);
		memset(&env, 0, sizeof(env));
		env.site = site->name;
		env.release = path;
		env.commit = commit;
		env.previous_commit = live;
		env.ref = "";
		rc = hookrun_run("run_once", &site->hooks.run_once, path, &env,
		    site->hooks.timeout_ms, &res, &he);
		hookrun_log(site->name, "run_once", &res);
		hookrun_tail(&res, tail, sizeof(tail));
		hookrun_result_free(&res);
		if (rc != E_OK)
			log_error("site=%s commit=%.12s fleet: %s", site->name, commit, he.msg);
		fleet_coord_once_end(c, s, key, lease, rc == E_OK ? "done" : "failed", tail,
		    he.msg);
	} else if (rc != E_OK && rc != E_STALE)
		log_warn("site=%s fleet: run_once: %s", site->name, e.msg);
	if (etcd_unlock(c, lock, &e) != E_OK)
		log_warn("site=%s fleet: run_once unlock: %s", site->name, e.msg);
	free(lock);
out:
	pthread_mutex_lock(&F.mu);
	free(lockname);
	free(full);
	free(key);
	free(path);
}

/*
 * run_once before the cutover: done, go on (1); failed, give the target up; running on a
 * live node, wait; else run it here, in this node's prepared release, and look again.
 */
static int
fleet_coord_run_once(struct etcd *c, struct fleet_site *s, const struct fleet_kv *tgt,
    const char *commit)
{
	const char *name = s->cfg->site.name;
	const struct fleet_kv *ro = fleet_store_get("sites/%s/run_once/%s", name, commit);
	const char *st = fleet_store_str(ro, "state"), *by = fleet_store_str(ro, "node");
	char why[768];

	if (strcmp(st, "done") == 0)
		return 1;
	if (strcmp(st, "failed") == 0) {
		snprintf(why, sizeof(why), "run_once failed on node %s: %s", by,
		    fleet_store_str(ro, "error"));
		fleet_coord_fail(c, name, tgt, why);
		return 0;
	}
	if (strcmp(st, "running") == 0 && strcmp(by, F.cfg->fleet.node) != 0 &&
	    fleet_store_alive(by))
		return 0;
	/* Not while a job of this node's may replace the prepared release it runs in. */
	if (strcmp(s->prepared, commit) == 0 && !s->busy) {
		s->once = 1;
		fleet_coord_exec(c, s, commit);
		s->once = 0;
	}
	return 0;
}

/*
 * The target not yet cut over: cut over once min_ready of the live members have it
 * prepared (or live); give up when that can no longer happen or prepare_timeout passed.
 */
static void
fleet_coord_cutover(struct etcd *c, struct fleet_site *s)
{
	const char *name = s->cfg->site.name, *commit;
	const struct fleet_kv *tgt, *cut, *kv;
	char dir[256], lag[256], failed[512], why[768];
	int64_t members = 0, ready = 0, nfailed = 0, need, at;
	size_t i, dlen;

	tgt = fleet_store_get("sites/%s/target", name);
	cut = fleet_store_get("sites/%s/cutover", name);
	if (tgt == NULL || fleet_store_int(tgt, "gen") <= fleet_store_int(cut, "gen") ||
	    fleet_store_str(tgt, "failed")[0] != '\0' || !fleet_coord_hex40(fleet_store_str(tgt, "commit")))
		return;
	commit = fleet_store_str(tgt, "commit");
	dlen = (size_t)snprintf(dir, sizeof(dir), "sites/%s/nodes/", name);
	lag[0] = failed[0] = '\0';
	for (i = 0; i < F.nkv; i++) {
		kv = &F.kv[i];
		if (strncmp(kv->key, dir, dlen) != 0 || !fleet_store_alive(kv->key + dlen) ||
		    fleet_store_str(kv, "refused")[0] != '\0')
			continue;
		members++;
		if (strcmp(fleet_store_str(kv, "prepared"), commit) == 0 ||
		    strcmp(fleet_store_str(kv, "live"), commit) == 0)
			ready++;
		else if (strcmp(fleet_store_str(kv, "state"), "failed") == 0 &&
		    strcmp(fleet_store_str(kv, "error_commit"), commit) == 0) {
			nfailed++;
			if (failed[0] == '\0')
				snprintf(failed, sizeof(failed), "node %s could not prepare it: %s",
				    kv->key + dlen, fleet_store_str(kv, "error"));
		} else
			snprintf(lag + strlen(lag), sizeof(lag) - strlen(lag), "%s%s",
			    lag[0] ? ", " : "", kv->key + dlen);
	}
	need = fleet_coord_need(F.cfg->fleet.min_ready, members);
	if (members > 0 && ready >= need && s->cfg->site.hooks.run_once.n > 0 &&
	    !fleet_coord_run_once(c, s, tgt, commit))
		return;
	if (members > 0 && ready >= need) {
		at = util_now_ms() + fleet_coord_margin();
		log_info("site=%s fleet: cutover to %.12s, generation %lld: %lld of %lld nodes "
		    "prepared", name, commit, (long long)fleet_store_int(tgt, "gen"), (long long)ready,
		    (long long)members);
		fleet_coord_write(c, name, "cutover", json_pack("{s:s,s:I,s:I,s:I,s:s,s:I,s:I}",
		    "commit", commit, "gen", (json_int_t)fleet_store_int(tgt, "gen"), "at",
		    (json_int_t)at, "written", (json_int_t)util_now_ms(), "by", F.cfg->fleet.node,
		    "ready", (json_int_t)ready, "members", (json_int_t)members));
		return;
	}
	if (nfailed > 0 && members - nfailed < need) {
		fleet_coord_fail(c, name, tgt, failed);
		return;
	}
	if (util_now_ms() - fleet_store_int(tgt, "at") > F.cfg->fleet.prepare_timeout_ms) {
		snprintf(why, sizeof(why), "prepare_timeout passed with %lld of %lld nodes "
		    "prepared (%lld needed)%s%s", (long long)ready, (long long)members,
		    (long long)need, lag[0] ? "; waiting for " : "", lag);
		fleet_coord_fail(c, name, tgt, why);
	}
}

/* One look at a site while this node leads; F.mu held. */
void
fleet_coord_step(struct etcd *c, struct fleet_site *s, int64_t now)
{
	size_t plen = strlen(F.cfg->fleet.prefix);

	/* The election key went (a lease lost, someone's delete): so did the lead. */
	if (F.leader.key == NULL || strncmp(F.leader.key, F.cfg->fleet.prefix, plen) != 0 ||
	    (F.rev >= F.leader.create_rev && fleet_store_get("%s", F.leader.key + plen) == NULL)) {
		if (F.leading) {
			log_warn("fleet: the election key is gone; no longer the coordinator");
			F.leading = 0;
		}
		return;
	}
	if (s->refused[0] != '\0')
		return;
	if (s->lead_gen != F.lead_gen) {
		/* Newly elected: look at the remote now, and at any doorbell that rang. */
		s->lead_gen = F.lead_gen;
		s->next_poll = 0;
		s->bell_seen = 0;
	}
	fleet_coord_target(c, s, now);
	if (F.leading)
		fleet_coord_cutover(c, s);
}
