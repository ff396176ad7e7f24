/* fleet_store.c: this node's mirror of the fleet's keys in etcd, what the other fleet files read of it, and their waits on it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/deployd.h"

struct fleet F = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
};

void
fleet_store_clear(struct fleet_kv *kv)
{
	free(kv->key);
	free(kv->raw);
	json_decref(kv->val);
	memset(kv, 0, sizeof(*kv));
}

static struct fleet_kv *
fleet_store_find(const char *key)
{
	size_t i;

	for (i = 0; i < F.nkv; i++)
		if (strcmp(F.kv[i].key, key) == 0)
			return &F.kv[i];
	return NULL;
}

/* This node's part in a site; NULL: not one of its sites. F.sites is fixed once started. */
struct fleet_site *
fleet_store_site(const char *name)
{
	size_t i;

	for (i = 0; i < F.nsites; i++)
		if (strcmp(F.sites[i].cfg->site.name, name) == 0)
			return &F.sites[i];
	return NULL;
}

const struct fleet_kv *
fleet_store_get(const char *fmt, ...)
{
	va_list ap;
	char key[512];

	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	return fleet_store_find(key);
}

const char *
fleet_store_str(const struct fleet_kv *kv, const char *field)
{
	const char *v = kv != NULL ? json_string_value(json_object_get(kv->val, field)) : NULL;

	return v != NULL ? v : "";
}

int64_t
fleet_store_int(const struct fleet_kv *kv, const char *field)
{
	json_t *v = kv != NULL ? json_object_get(kv->val, field) : NULL;

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int
fleet_store_alive(const char *node)
{
	return fleet_store_get("nodes/%s", node) != NULL;
}

/* An election's leader is its candidate key created first (etcd's own rule). */
const char *
fleet_store_leader(void)
{
	const struct fleet_kv *best = NULL;
	size_t i;

	for (i = 0; i < F.nkv; i++)
		if (strncmp(F.kv[i].key, "leader/", 7) == 0 &&
		    (best == NULL || F.kv[i].create_rev < best->create_rev))
			best = &F.kv[i];
	return best != NULL ? best->raw : NULL;
}

/* Call with F.mu held. Values written by a peer are untrusted: anything not JSON is kept
 * as text and read as empty by fleet_store_str and fleet_store_int. */
void
fleet_store_apply(const struct etcd_kv *kv, int deleted)
{
	size_t plen = strlen(F.cfg->fleet.prefix);
	struct fleet_kv *m;
	const char *key;

	if (strncmp(kv->key, F.cfg->fleet.prefix, plen) != 0)
		return;
	key = kv->key + plen;
	m = fleet_store_find(key);
	if (kv->mod_rev > F.rev)
		F.rev = kv->mod_rev;
	if (deleted) {
		if (m != NULL) {
			fleet_store_clear(m);
			*m = F.kv[--F.nkv];
		}
		return;
	}
	if (m == NULL) {
		F.kv = util_xrealloc(F.kv, F.nkv + 1, sizeof(*F.kv));
		m = &F.kv[F.nkv++];
		memset(m, 0, sizeof(*m));
		m->key = util_xstrdup(key);
	} else {
		free(m->raw);
		json_decref(m->val);
	}
	m->raw = util_xstrdup(kv->value != NULL ? kv->value : "");
	m->val = json_loadb(m->raw, kv->vlen, JSON_REJECT_DUPLICATES, NULL);
	if (m->val != NULL && !json_is_object(m->val)) {
		json_decref(m->val);
		m->val = NULL;
	}
	m->create_rev = kv->create_rev;
	m->mod_rev = kv->mod_rev;
	m->lease = kv->lease;
}

int
fleet_store_put(struct etcd *c, const char *key, json_t *val, int64_t lease, struct error *e)
{
	char *text = val != NULL ? json_dumps(val, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char *full = util_xasprintf("%s%s", F.cfg->fleet.prefix, key);
	int rc;

	json_decref(val);
	if (text == NULL)
		rc = util_error(e, E_INVAL, "fleet: the value of %s could not be made", key);
	else
		rc = etcd_put(c, full, text, strlen(text), lease, e);
	free(text);
	free(full);
	return rc;
}

/*
 * Sleep up to ms, or until stop; F.mu held. Every wait here is a span, never a wall-clock
 * instant, so it runs on the monotonic clock: a wall clock stepped back (NTP after a boot)
 * must not hold up a lease's renewal.
 */
void
fleet_store_wait(int64_t ms)
{
	struct timespec ts;
	int64_t at = util_mono_ms() + ms;

	ts.tv_sec = at / 1000;
	ts.tv_nsec = (at % 1000) * 1000000;
	if (!F.stop)
		pthread_cond_timedwait(&F.cond, &F.mu, &ts);
}
