/* fleet_node.c: a node's side of the fleet: prepare the target, swap at the cutover's instant, catch up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "server/deployd.h"

#define FLEET_RETRY_MIN_MS	2000	/* a failed catch-up tries again after this, doubling */
#define FLEET_RETRY_MAX_MS	60000

/*
 * What the members of a site must agree on. A node whose copy names another repository or
 * branch would prepare something else under the same name: it stays out of that site.
 */
static void
fleet_node_hash(const struct site *site, char out[17])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char *text = util_xasprintf("%s\n%s\n%s\n%s\n%s\n", site->name, site->repo,
	    site->branch != NULL ? site->branch : "", site->tags != NULL ? site->tags : "",
	    site->subdir != NULL ? site->subdir : "");
	size_t i;

	SHA256((const unsigned char *)text, strlen(text), md);
	free(text);
	for (i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void
fleet_node_init(struct fleet_site *s, const struct site_config *cfg)
{
	struct site_state st;
	struct error e;

	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->state = "idle";
	s->dirty = 1;
	fleet_node_hash(&cfg->site, s->hash);
	memset(&st, 0, sizeof(st));
	if (state_load(cfg->site.state_dir, cfg->site.name, &st, &e) == E_OK) {
		util_strlcpy(s->live, st.applied, sizeof(s->live));
		util_strlcpy(s->live_release, st.release, sizeof(s->live_release));
		util_strlcpy(s->prepared, st.prepared.commit, sizeof(s->prepared));
		util_strlcpy(s->prepared_release, st.prepared.name, sizeof(s->prepared_release));
		if (s->live[0] != '\0')
			s->state = "live";
	}
	state_free(&st);
}

/* A commit id read from the store, which any writer to etcd controls: 40 hex or nothing. */
static const char *
fleet_node_commit(const struct fleet_kv *kv)
{
	const char *c = fleet_store_str(kv, "commit");

	return strlen(c) == 40 && strspn(c, "0123456789abcdef") == 40 ? c : NULL;
}

json_t *
fleet_node_record(const struct fleet_site *s)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:s}",
	    "zone", F.cfg->fleet.zone != NULL ? F.cfg->fleet.zone : "",
	    "hash", s->hash, "state", s->refused[0] != '\0' ? "refused" : s->state,
	    "live", s->live, "live_release", s->live_release, "live_gen",
	    (json_int_t)s->live_gen, "prep_gen", (json_int_t)s->prep_gen,
	    "prepared", s->prepared, "prepared_release",
	    s->prepared_release, "prepare_ms", (json_int_t)s->prepare_ms,
	    "swapped_at", (json_int_t)s->swapped_at, "swapped_gen", (json_int_t)s->swapped_gen,
	    "error", s->error, "error_commit", s->error_commit, "refused", s->refused);
}

/* Does this node's copy of the site match the fleet's? The first node to look fixes it. */
static int
fleet_node_joined(struct fleet_site *s)
{
	const struct fleet_kv *kv = fleet_store_get("sites/%s/config", s->cfg->site.name);
	char why[sizeof(s->refused)];

	if (kv == NULL)
		return 0;	/* fleet_node_claim writes it */
	why[0] = '\0';
	if (strcmp(fleet_store_str(kv, "hash"), s->hash) != 0)
		snprintf(why, sizeof(why), "this node's copy of site %s (repo %s, %s %s) differs "
		    "from the fleet's (repo %s, %s %s); fix the configuration to join",
		    s->cfg->site.name, s->cfg->site.repo, s->cfg->site.branch ? "branch" : "tags",
		    s->cfg->site.branch ? s->cfg->site.branch : s->cfg->site.tags,
		    fleet_store_str(kv, "repo"), fleet_store_str(kv, "branch")[0] ? "branch" : "tags",
		    fleet_store_str(kv, "branch")[0] ? fleet_store_str(kv, "branch") : fleet_store_str(kv, "tags"));
	if (strcmp(why, s->refused) != 0) {
		if (why[0] != '\0')
			log_error("site=%s fleet: %s", s->cfg->site.name, why);
		else if (s->refused[0] != '\0')
			log_info("site=%s fleet: this node's copy now matches; joining",
			    s->cfg->site.name);
		util_strlcpy(s->refused, why, sizeof(s->refused));
		s->dirty = 1;
	}
	return why[0] == '\0';
}

/* The site's config key, written once by whichever node comes first; F.mu held. */
void
fleet_node_claim(struct etcd *c, struct fleet_site *s)
{
	const struct site *site = &s->cfg->site;
	json_t *v;
	char *text, *key;
	struct error e;
	int done;

	if (fleet_store_get("sites/%s/config", site->name) != NULL)
		return;
	v = json_pack("{s:s,s:s,s:s,s:s,s:s}", "hash", s->hash, "repo", site->repo,
	    "branch", site->branch != NULL ? site->branch : "",
	    "tags", site->tags != NULL ? site->tags : "", "by", F.cfg->fleet.node);
	text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(v);
	key = util_xasprintf("%ssites/%s/config", F.cfg->fleet.prefix, site->name);
	pthread_mutex_unlock(&F.mu);
	if (etcd_put_if(c, key, text, strlen(text), 0, 0, &done, &e) != E_OK)
		log_warn("site=%s fleet: writing the site's config key: %s", site->name, e.msg);
	pthread_mutex_lock(&F.mu);
	free(key);
	free(text);
}

static void
fleet_node_ask(struct fleet_site *s, int action, const char *commit, int64_t at_ms,
    int64_t gen, const char *state)
{
	struct deploy_request req;

	memset(&req, 0, sizeof(req));
	req.trigger = TRIG_FLEET;
	req.action = action;
	req.at_ms = at_ms;
	if (action == ACT_ROLLBACK)
		util_strlcpy(req.target, commit, sizeof(req.target));
	else
		util_strlcpy(req.rev, commit, sizeof(req.rev));
	if (sched_request(s->cfg->site.name, &req, NULL) != E_OK)
		return;
	s->busy = 1;
	s->job_gen = gen;
	s->state = state;
	s->dirty = 1;
	log_debug("site=%s fleet: %s %.12s%s", s->cfg->site.name, state, commit,
	    at_ms > 0 ? " at the cutover's instant" : "");
}

/*
 * What this node does next for the site, from the mirror; F.mu held. A cutover comes
 * first: swap to it if it is prepared here, else deploy it at once (catching up never
 * waits for others). Otherwise a target not yet cut over is prepared, never made live.
 */
void
fleet_node_step(struct fleet_site *s, int64_t now)
{
	const char *name = s->cfg->site.name, *commit;
	const struct fleet_kv *cut, *tgt;
	int64_t cgen, tgen;

	if (!fleet_node_joined(s) || s->busy || s->once)
		return;
	cut = fleet_store_get("sites/%s/cutover", name);
	tgt = fleet_store_get("sites/%s/target", name);
	cgen = fleet_store_int(cut, "gen");
	tgen = fleet_store_int(tgt, "gen");
	if ((commit = fleet_node_commit(cut)) != NULL && cgen > s->live_gen &&
	    now >= s->retry_at) {
		if (strcmp(s->live, commit) == 0) {
			s->live_gen = cgen;
			s->state = "live";
			s->dirty = 1;
		} else if (strcmp(s->prepared, commit) == 0)
			fleet_node_ask(s, ACT_ACTIVATE, commit, fleet_store_int(cut, "at"), cgen,
			    "activating");
		else if (json_is_true(json_object_get(cut->val, "rollback")) &&
		    s->rollback_gen != cgen) {
			/* Back to a release on disk, by one swap; failing that, a deploy. */
			s->rollback_gen = cgen;
			fleet_node_ask(s, ACT_ROLLBACK, commit, fleet_store_int(cut, "at"), cgen,
			    "rolling-back");
		} else
			fleet_node_ask(s, ACT_DEPLOY, commit, 0, cgen, "catching-up");
		return;
	}
	if ((commit = fleet_node_commit(tgt)) == NULL || tgen <= cgen || tgen <= s->prep_gen ||
	    fleet_store_str(tgt, "failed")[0] != '\0')
		return;
	s->prep_gen = tgen;
	if (strcmp(s->prepared, commit) == 0 || strcmp(s->live, commit) == 0) {
		s->state = strcmp(s->live, commit) == 0 ? "live" : "prepared";
		s->dirty = 1;
		return;
	}
	fleet_node_ask(s, ACT_PREPARE, commit, 0, 0, "preparing");
}

/* A job's end, from the scheduler's worker: what this node has now. */
void
fleet_node_done(const char *site, const struct deploy_request *req,
    const struct deploy_result *res)
{
	struct fleet_site *s;

	pthread_mutex_lock(&F.mu);
	if ((s = fleet_store_site(site)) == NULL) {
		pthread_mutex_unlock(&F.mu);
		return;
	}
	if (req->trigger == TRIG_FLEET)
		s->busy = 0;
	/*
	 * After a swap, a catch-up or a rollback, look at the target again: a cutover to the
	 * previous target, written while this node was preparing the next one, has it deploy
	 * the previous commit, and that release replaces the one prepared. Without a second
	 * look the node would wait for ever with the target marked as seen.
	 */
	if (req->action != ACT_PREPARE)
		s->prep_gen = 0;
	if (res->changed) {
		util_strlcpy(s->live, res->commit, sizeof(s->live));
		util_strlcpy(s->live_release, res->release, sizeof(s->live_release));
		s->swapped_at = res->swapped_at_ms;
		s->swapped_gen = req->trigger == TRIG_FLEET ? s->job_gen : 0;
		F.cutovers++;
	} else if (res->live[0] != '\0')
		util_strlcpy(s->live, res->live, sizeof(s->live));
	if (strcmp(s->prepared, s->live) == 0)
		s->prepared[0] = s->prepared_release[0] = '\0';
	if (req->action == ACT_PREPARE && res->rc == E_OK) {
		if (res->prepared) {
			util_strlcpy(s->prepared, res->commit, sizeof(s->prepared));
			util_strlcpy(s->prepared_release, res->release,
			    sizeof(s->prepared_release));
		}
		s->prepare_ms = res->duration_ms;
		s->state = strcmp(s->live, req->rev) == 0 ? "live" : "prepared";
		s->error[0] = s->error_commit[0] = '\0';
	} else if (res->rc == E_OK && req->trigger == TRIG_FLEET) {
		s->live_gen = s->job_gen;
		s->state = "live";
		s->error[0] = s->error_commit[0] = '\0';
		s->retry_ms = 0;
		s->retry_at = 0;
	} else if (res->rc != E_OK && req->trigger == TRIG_FLEET) {
		s->state = "failed";
		util_strlcpy(s->error, res->error, sizeof(s->error));
		util_strlcpy(s->error_commit, req->action == ACT_ROLLBACK ? req->target :
		    req->rev, sizeof(s->error_commit));
		if (req->action == ACT_ROLLBACK) {
			/* No release to swap back to here: deploy the commit at once. */
			s->retry_at = 0;
		} else if (req->action != ACT_PREPARE) {
			/* Whatever was prepared did not go live: deploy it whole next time. */
			s->prepared[0] = s->prepared_release[0] = '\0';
			s->retry_ms = s->retry_ms == 0 ? FLEET_RETRY_MIN_MS :
			    s->retry_ms * 2 > FLEET_RETRY_MAX_MS ? FLEET_RETRY_MAX_MS :
			    s->retry_ms * 2;
			s->retry_at = util_mono_ms() + s->retry_ms;
		}
	}
	s->dirty = 1;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.mu);
}
