/* fleet_view.c: what the fleet looks like from this node: status --fleet, GET /v1/fleet, status's line, metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

static json_t *
fleet_view_value(const struct fleet_kv *kv)
{
	return kv != NULL && kv->val != NULL ? json_deep_copy(kv->val) : json_null();
}

/*
 * The cutover's skew as the nodes saw it: the last swap minus the first among the nodes
 * that swapped for that cutover. -1 until two have.
 */
static int64_t
fleet_view_skew(const char *site, int64_t gen, int64_t *nodes)
{
	const struct fleet_kv *kv;
	char dir[256];
	int64_t lo = 0, hi = 0, at, n = 0;
	size_t i, dlen;

	dlen = (size_t)snprintf(dir, sizeof(dir), "sites/%s/nodes/", site);
	for (i = 0; i < F.nkv; i++) {
		kv = &F.kv[i];
		if (strncmp(kv->key, dir, dlen) != 0 || gen == 0 ||
		    fleet_store_int(kv, "swapped_gen") != gen || (at = fleet_store_int(kv, "swapped_at")) <= 0)
			continue;
		if (n == 0 || at < lo)
			lo = at;
		if (n == 0 || at > hi)
			hi = at;
		n++;
	}
	if (nodes != NULL)
		*nodes = n;
	return n >= 2 ? hi - lo : -1;
}

/* One site: its target, cutover and skew, and a row per node that has a record. */
static json_t *
fleet_view_site(const struct fleet_site *s)
{
	const char *name = s->cfg->site.name;
	const struct fleet_kv *cut = fleet_store_get("sites/%s/cutover", name), *kv, *node;
	json_t *o, *rows = json_array(), *row;
	char dir[256];
	int64_t skew, swapped;
	size_t i, dlen;

	dlen = (size_t)snprintf(dir, sizeof(dir), "sites/%s/nodes/", name);
	for (i = 0; i < F.nkv; i++) {
		kv = &F.kv[i];
		if (strncmp(kv->key, dir, dlen) != 0 || kv->val == NULL)
			continue;
		row = json_deep_copy(kv->val);
		node = fleet_store_get("nodes/%s", kv->key + dlen);
		json_object_set_new(row, "node", json_string(kv->key + dlen));
		json_object_set_new(row, "alive", json_boolean(node != NULL));
		json_array_append_new(rows, row);
	}
	skew = fleet_view_skew(name, fleet_store_int(cut, "gen"), &swapped);
	o = json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:o}", "name", name,
	    "target", fleet_view_value(fleet_store_get("sites/%s/target", name)),
	    "cutover", fleet_view_value(cut),
	    "paused", fleet_view_value(fleet_store_get("sites/%s/paused", name)),
	    "skew_ms", skew >= 0 ? json_integer(skew) : json_null(),
	    "nodes", rows, "swapped", (json_int_t)swapped,
	    "refused", s->refused[0] != '\0' ? json_string(s->refused) : json_null());
	return o;
}

/* The whole view, or one site's (E_NOTFOUND as NULL). */
json_t *
fleet_view(const char *site)
{
	const char *leader;
	json_t *o, *sites = json_array(), *nodes = json_array(), *n;
	size_t i, found = 0;

	pthread_mutex_lock(&F.mu);
	for (i = 0; i < F.nsites; i++) {
		if (site != NULL && strcmp(F.sites[i].cfg->site.name, site) != 0)
			continue;
		json_array_append_new(sites, fleet_view_site(&F.sites[i]));
		found++;
	}
	for (i = 0; i < F.nkv; i++) {
		if (strncmp(F.kv[i].key, "nodes/", 6) != 0)
			continue;
		n = F.kv[i].val != NULL ? json_deep_copy(F.kv[i].val) : json_object();
		json_object_set_new(n, "name", json_string(F.kv[i].key + 6));
		json_array_append_new(nodes, n);
	}
	leader = fleet_store_leader();
	o = json_pack("{s:s,s:o,s:{s:b,s:s,s:o},s:o,s:b,s:o,s:o}", "node", F.cfg->fleet.node,
	    "zone", F.cfg->fleet.zone != NULL ? json_string(F.cfg->fleet.zone) : json_null(),
	    "store", "reachable", F.store_ok && F.lease != 0, "endpoint", F.endpoint,
	    "error", F.store_error[0] != '\0' ? json_string(F.store_error) : json_null(),
	    "coordinator", leader != NULL ? json_string(leader) : json_null(),
	    "leading", F.leading, "nodes", nodes, "sites", sites);
	pthread_mutex_unlock(&F.mu);
	if (site != NULL && found == 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* For plain status: this node is in a fleet, and whether the store answers. */
json_t *
fleet_view_brief(void)
{
	const char *leader;
	json_t *o;

	if (!F.started)
		return NULL;
	pthread_mutex_lock(&F.mu);
	leader = fleet_store_leader();
	o = json_pack("{s:s,s:o,s:b,s:o,s:o}", "node", F.cfg->fleet.node,
	    "zone", F.cfg->fleet.zone != NULL ? json_string(F.cfg->fleet.zone) : json_null(),
	    "store_reachable", F.store_ok && F.lease != 0,
	    "store_error", F.store_error[0] != '\0' ? json_string(F.store_error) : json_null(),
	    "coordinator", leader != NULL ? json_string(leader) : json_null());
	pthread_mutex_unlock(&F.mu);
	return o;
}

void
fleet_view_metrics(FILE *f)
{
	int64_t nodes = 0, skew;
	size_t i;

	if (!F.started)
		return;
	pthread_mutex_lock(&F.mu);
	for (i = 0; i < F.nkv; i++)
		nodes += strncmp(F.kv[i].key, "nodes/", 6) == 0;
	fprintf(f, "# HELP deployd_fleet_store_reachable 1 while etcd answers and this node "
	    "holds its lease.\n# TYPE deployd_fleet_store_reachable gauge\n"
	    "deployd_fleet_store_reachable %d\n", F.store_ok && F.lease != 0);
	fprintf(f, "# HELP deployd_fleet_coordinator 1 while this node is the fleet's "
	    "coordinator.\n# TYPE deployd_fleet_coordinator gauge\n"
	    "deployd_fleet_coordinator %d\n", F.leading);
	fprintf(f, "# HELP deployd_fleet_nodes Nodes registered in the fleet, as this node "
	    "sees it.\n# TYPE deployd_fleet_nodes gauge\ndeployd_fleet_nodes %lld\n",
	    (long long)nodes);
	fprintf(f, "# HELP deployd_fleet_cutovers_total Releases this node made live for the "
	    "fleet.\n# TYPE deployd_fleet_cutovers_total counter\n"
	    "deployd_fleet_cutovers_total %lld\n", (long long)F.cutovers);
	fprintf(f, "# HELP deployd_fleet_prepare_seconds How long this node's last prepare "
	    "took.\n# TYPE deployd_fleet_prepare_seconds gauge\n");
	for (i = 0; i < F.nsites; i++)
		fprintf(f, "deployd_fleet_prepare_seconds{site=\"%s\"} %.3f\n",
		    F.sites[i].cfg->site.name, (double)F.sites[i].prepare_ms / 1000.0);
	fprintf(f, "# HELP deployd_fleet_cutover_skew_seconds The last cutover's skew: the "
	    "last node's swap minus the first's.\n"
	    "# TYPE deployd_fleet_cutover_skew_seconds gauge\n");
	for (i = 0; i < F.nsites; i++) {
		const char *name = F.sites[i].cfg->site.name;

		skew = fleet_view_skew(name, fleet_store_int(fleet_store_get("sites/%s/cutover", name),
		    "gen"), NULL);
		if (skew >= 0)
			fprintf(f, "deployd_fleet_cutover_skew_seconds{site=\"%s\"} %.3f\n", name,
			    (double)skew / 1000.0);
	}
	pthread_mutex_unlock(&F.mu);
}
