/* fleet.c: the daemon's side of fleet mode: an etcd client made from the fleet: keys, and what `deployd check` says of the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

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
