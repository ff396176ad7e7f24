/* etcd_kv.c: the etcd client's calls that are one request and one answer: keys, transactions, leases, locks and elections. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fleet/fleet.h"

/* ---- keys ---- */

int
etcd_get(struct etcd *c, const char *key, int prefix, struct etcd_kvs *kvs, struct error *e)
{
	json_t *body = json_object(), *j, *arr;
	int rc;

	memset(kvs, 0, sizeof(*kvs));
	etcd_set_key(body, key, prefix);
	if ((rc = etcd_call(c, "/v3/kv/range", body, &j, e)) != E_OK)
		return rc;
	kvs->rev = etcd_int(json_object_get(j, "header"), "revision");
	arr = json_object_get(j, "kvs");
	kvs->n = json_array_size(arr);
	kvs->v = util_xcalloc(kvs->n + 1, sizeof(*kvs->v));
	for (size_t i = 0; i < kvs->n; i++)
		etcd_read_kv(json_array_get(arr, i), &kvs->v[i]);
	json_decref(j);
	return E_OK;
}

static json_t *
etcd_put_body(const char *key, const void *val, size_t vlen, int64_t lease)
{
	json_t *body = json_object();
	char *v = etcd_b64(val, vlen);

	etcd_set_key(body, key, 0);
	json_object_set_new(body, "value", json_string(v));
	free(v);
	if (lease != 0)
		json_object_set_new(body, "lease", etcd_jint(lease));
	return body;
}

int
etcd_put(struct etcd *c, const char *key, const void *val, size_t vlen, int64_t lease,
    struct error *e)
{
	return etcd_call(c, "/v3/kv/put", etcd_put_body(key, val, vlen, lease), NULL, e);
}

/* n puts in one transaction: one commit, one round trip to the leader instead of n. */
int
etcd_put_all(struct etcd *c, const char *const *keys, const char *const *vals, size_t n,
    struct error *e)
{
	json_t *body = json_object(), *ops = json_array(), *j = NULL;
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		json_array_append_new(ops, json_pack("{s:o}", "request_put",
		    etcd_put_body(keys[i], vals[i], strlen(vals[i]), 0)));
	json_object_set_new(body, "success", ops);
	rc = etcd_call(c, "/v3/kv/txn", body, &j, e);
	json_decref(j);
	return rc;
}

/* One put in a transaction that compares one key's revision, by target "MOD" or "CREATE". */
static int
etcd_put_txn(struct etcd *c, const char *key, const void *val, size_t vlen, int64_t lease,
    const char *cmp_key, const char *target, int64_t rev, int *done, struct error *e)
{
	json_t *body = json_object(), *cmp = json_object(), *put = json_object(), *j;
	int rc;

	etcd_set_key(cmp, cmp_key, 0);
	json_object_set_new(cmp, "target", json_string(target));
	json_object_set_new(cmp, "result", json_string("EQUAL"));
	json_object_set_new(cmp, strcmp(target, "CREATE") == 0 ? "create_revision" :
	    "mod_revision", etcd_jint(rev));
	json_object_set_new(put, "request_put", etcd_put_body(key, val, vlen, lease));
	json_object_set_new(body, "compare", json_pack("[o]", cmp));
	json_object_set_new(body, "success", json_pack("[o]", put));
	if ((rc = etcd_call(c, "/v3/kv/txn", body, &j, e)) != E_OK)
		return rc;
	*done = json_is_true(json_object_get(j, "succeeded"));
	json_decref(j);
	return E_OK;
}

/*
 * Put only if the key's mod_revision is mod_rev (0: only if the key does not exist). An
 * attempt that timed out on one member is retried on the next, so *done == 0 can follow a
 * put that took effect: a caller that must know reads the key again.
 */
int
etcd_put_if(struct etcd *c, const char *key, const void *val, size_t vlen, int64_t lease,
    int64_t mod_rev, int *done, struct error *e)
{
	return etcd_put_txn(c, key, val, vlen, lease, key, mod_rev == 0 ? "CREATE" : "MOD",
	    mod_rev, done, e);
}

/*
 * Put only while another key exists as created at create_rev: an election's leader key,
 * so that a coordinator whose lease has gone can no longer write. *done as for put_if.
 */
int
etcd_put_while(struct etcd *c, const char *key, const void *val, size_t vlen,
    const char *held, int64_t create_rev, int *done, struct error *e)
{
	return etcd_put_txn(c, key, val, vlen, 0, held, "CREATE", create_rev, done, e);
}

int
etcd_delete(struct etcd *c, const char *key, int prefix, int64_t *deleted, struct error *e)
{
	json_t *body = json_object(), *j;
	int rc;

	etcd_set_key(body, key, prefix);
	if ((rc = etcd_call(c, "/v3/kv/deleterange", body, &j, e)) != E_OK)
		return rc;
	if (deleted != NULL)
		*deleted = etcd_int(j, "deleted");
	json_decref(j);
	return E_OK;
}

/* ---- leases ---- */

int
etcd_lease_grant(struct etcd *c, int64_t ttl_s, int64_t *id, struct error *e)
{
	json_t *j;
	int rc;

	if ((rc = etcd_call(c, "/v3/lease/grant", json_pack("{s:o}", "TTL", etcd_jint(ttl_s)),
	    &j, e)) != E_OK)
		return rc;
	*id = etcd_int(j, "ID");
	json_decref(j);
	if (*id == 0)
		return util_error(e, E_INVAL, "etcd %s: lease grant answered without an ID",
		    etcd_endpoint(c));
	return E_OK;
}

/* One renewal. A lease that expired or was revoked comes back without a TTL: E_NOTFOUND. */
int
etcd_lease_keepalive(struct etcd *c, int64_t id, int64_t *ttl_s, struct error *e)
{
	json_t *j;
	int rc;

	if ((rc = etcd_call(c, "/v3/lease/keepalive", json_pack("{s:o}", "ID", etcd_jint(id)),
	    &j, e)) != E_OK)
		return rc;
	*ttl_s = etcd_int(j, "TTL");
	json_decref(j);
	if (*ttl_s <= 0)
		return util_error(e, E_NOTFOUND, "etcd lease %llx has expired",
		    (unsigned long long)id);
	return E_OK;
}

int
etcd_lease_revoke(struct etcd *c, int64_t id, struct error *e)
{
	return etcd_call(c, "/v3/lease/revoke", json_pack("{s:o}", "ID", etcd_jint(id)),
	    NULL, e);
}

/* ---- locks and elections: both block in etcd until granted, up to wait_ms ---- */

int
etcd_lock(struct etcd *c, const char *name, int64_t lease, int64_t wait_ms, char **key,
    struct error *e)
{
	json_t *body = json_object(), *j;
	char *n = etcd_b64(name, strlen(name));
	int rc;

	json_object_set_new(body, "name", json_string(n));
	free(n);
	json_object_set_new(body, "lease", etcd_jint(lease));
	if ((rc = etcd_request(c, "/v3/lock/lock", body, wait_ms, 0, &j, e)) != E_OK)
		return rc;
	*key = etcd_unb64(j, "key", NULL);
	json_decref(j);
	return E_OK;
}

int
etcd_unlock(struct etcd *c, const char *key, struct error *e)
{
	char *k = etcd_b64(key, strlen(key));
	json_t *body = json_pack("{s:s}", "key", k);

	free(k);
	return etcd_call(c, "/v3/lock/unlock", body, NULL, e);
}

static json_t *
etcd_leader_json(const char *name, const struct etcd_kv *leader)
{
	char *n = etcd_b64(name, strlen(name)), *k = etcd_b64(leader->key, strlen(leader->key));
	json_t *l = json_pack("{s:s,s:s,s:o,s:o}", "name", n, "key", k,
	    "rev", etcd_jint(leader->create_rev), "lease", etcd_jint(leader->lease));

	free(n);
	free(k);
	return l;
}

/* Blocks until this caller leads the election; leader gets the key that proves it. */
int
etcd_campaign(struct etcd *c, const char *name, int64_t lease, const char *value,
    int64_t wait_ms, struct etcd_kv *leader, struct error *e)
{
	char *n = etcd_b64(name, strlen(name)), *v = etcd_b64(value, strlen(value));
	json_t *body = json_pack("{s:s,s:o,s:s}", "name", n, "lease", etcd_jint(lease),
	    "value", v), *j, *l;
	int rc;

	free(n);
	free(v);
	if ((rc = etcd_request(c, "/v3/election/campaign", body, wait_ms, 0, &j, e)) != E_OK)
		return rc;
	l = json_object_get(j, "leader");
	memset(leader, 0, sizeof(*leader));
	leader->key = etcd_unb64(l, "key", NULL);
	leader->value = util_xstrdup(value);
	leader->vlen = strlen(value);
	leader->create_rev = etcd_int(l, "rev");
	leader->lease = etcd_int(l, "lease");
	json_decref(j);
	return E_OK;
}

/* Who leads now: the leader's key and value; E_NOTFOUND when nobody does. */
int
etcd_leader(struct etcd *c, const char *name, struct etcd_kv *leader, struct error *e)
{
	char *n = etcd_b64(name, strlen(name));
	json_t *j;
	int rc;

	rc = etcd_call(c, "/v3/election/leader", json_pack("{s:s}", "name", n), &j, e);
	free(n);
	if (rc != E_OK)
		return rc;
	memset(leader, 0, sizeof(*leader));
	if (json_object_get(j, "kv") == NULL) {
		json_decref(j);
		return util_error(e, E_NOTFOUND, "etcd: election %s has no leader", name);
	}
	etcd_read_kv(json_object_get(j, "kv"), leader);
	json_decref(j);
	return E_OK;
}

int
etcd_resign(struct etcd *c, const char *name, const struct etcd_kv *leader, struct error *e)
{
	return etcd_call(c, "/v3/election/resign",
	    json_pack("{s:o}", "leader", etcd_leader_json(name, leader)), NULL, e);
}
