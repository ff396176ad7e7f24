/* etcd-tool.c: drives fleet/etcd.c from the shell, so tests/integration/etcd_client.sh can check it against a real etcd. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <curl/curl.h>

#include "fleet/fleet.h"

/*
 * usage: etcd-tool [-e URL,URL...] [-t MS] [--ca F] [--cert F] [--key F] [--user U]
 *                  [--password-file F] COMMAND ARGS...
 * Each command prints what it got, one line per item, so the script can compare it with
 * what etcdctl sees. Exit status: 0, or 1 with "etcd-tool: CODE MESSAGE" on stderr.
 */

struct tool {
	struct etcd	*c;
	int		 argc;
	char		**argv;
	struct error	 e;
	long		 events;	/* watch: stop after this many */
};

static int64_t
num(const char *s)
{
	return strtoll(s, NULL, 0);
}

static void
print_kv(const char *what, const struct etcd_kv *kv)
{
	printf("%s %s=%.*s create=%lld mod=%lld version=%lld lease=%llx\n", what, kv->key,
	    (int)kv->vlen, kv->value, (long long)kv->create_rev, (long long)kv->mod_rev,
	    (long long)kv->version, (unsigned long long)kv->lease);
}

static int
cmd_get(struct tool *t)
{
	struct etcd_kvs kvs;
	int rc;

	if ((rc = etcd_get(t->c, t->argv[0], t->argc > 1 && strcmp(t->argv[1], "prefix") == 0,
	    &kvs, &t->e)) != E_OK)
		return rc;
	for (size_t i = 0; i < kvs.n; i++)
		print_kv("kv", &kvs.v[i]);
	printf("rev %lld\n", (long long)kvs.rev);
	etcd_kvs_free(&kvs);
	return E_OK;
}

static int
cmd_put(struct tool *t)
{
	return etcd_put(t->c, t->argv[0], t->argv[1], strlen(t->argv[1]),
	    t->argc > 2 ? (int64_t)strtoull(t->argv[2], NULL, 16) : 0, &t->e);
}

static int
cmd_put_if(struct tool *t)
{
	int done = 0, rc;

	if ((rc = etcd_put_if(t->c, t->argv[0], t->argv[1], strlen(t->argv[1]), 0,
	    num(t->argv[2]), &done, &t->e)) == E_OK)
		printf("%s\n", done ? "done" : "lost");
	return rc;
}

static int
cmd_del(struct tool *t)
{
	int64_t n = 0;
	int rc;

	if ((rc = etcd_delete(t->c, t->argv[0], t->argc > 1 && strcmp(t->argv[1], "prefix") == 0,
	    &n, &t->e)) == E_OK)
		printf("deleted %lld\n", (long long)n);
	return rc;
}

static int
cmd_grant(struct tool *t)
{
	int64_t id;
	int rc;

	if ((rc = etcd_lease_grant(t->c, num(t->argv[0]), &id, &t->e)) == E_OK)
		printf("%llx\n", (unsigned long long)id);
	return rc;
}

static int
cmd_keepalive(struct tool *t)
{
	int64_t ttl;
	int rc;

	if ((rc = etcd_lease_keepalive(t->c, (int64_t)strtoull(t->argv[0], NULL, 16), &ttl,
	    &t->e)) == E_OK)
		printf("ttl %lld\n", (long long)ttl);
	return rc;
}

static int
cmd_revoke(struct tool *t)
{
	return etcd_lease_revoke(t->c, (int64_t)strtoull(t->argv[0], NULL, 16), &t->e);
}

/* lock NAME LEASE HOLD_MS: takes the lock, prints its key, holds it, lets it go. */
static int
cmd_lock(struct tool *t)
{
	char *key = NULL;
	int rc;

	if ((rc = etcd_lock(t->c, t->argv[0], (int64_t)strtoull(t->argv[1], NULL, 16), 30000,
	    &key, &t->e)) != E_OK)
		return rc;
	printf("locked %lld %s\n", (long long)util_now_ms(), key);
	fflush(stdout);
	struct timespec ts = { num(t->argv[2]) / 1000, num(t->argv[2]) % 1000 * 1000000 };
	nanosleep(&ts, NULL);
	printf("unlocked %lld\n", (long long)util_now_ms());
	rc = etcd_unlock(t->c, key, &t->e);
	free(key);
	return rc;
}

/* campaign NAME LEASE VALUE [WAIT_MS]: blocks until elected, prints the leader's key. */
static int
cmd_campaign(struct tool *t)
{
	struct etcd_kv l;
	int rc;

	if ((rc = etcd_campaign(t->c, t->argv[0], (int64_t)strtoull(t->argv[1], NULL, 16),
	    t->argv[2], t->argc > 3 ? num(t->argv[3]) : 30000, &l, &t->e)) != E_OK)
		return rc;
	printf("elected %s\n", l.key);
	fflush(stdout);
	if (t->argc > 4 && strcmp(t->argv[4], "resign") == 0) {
		rc = etcd_resign(t->c, t->argv[0], &l, &t->e);
		printf("resigned\n");
	}
	etcd_kv_free(&l);
	return rc;
}

static int
cmd_leader(struct tool *t)
{
	struct etcd_kv l;
	int rc;

	if ((rc = etcd_leader(t->c, t->argv[0], &l, &t->e)) != E_OK)
		return rc;
	print_kv("leader", &l);
	etcd_kv_free(&l);
	return E_OK;
}

static int
watch_print(void *arg, const struct etcd_event *ev)
{
	struct tool *t = arg;

	print_kv(ev->type == ETCD_PUT ? "PUT" : "DELETE", ev->kv);
	fflush(stdout);
	return --t->events <= 0 ? 1 : 0;
}

/*
 * watch KEY prefix|exact FROM_REV COUNT SLICE_MS: COUNT events, each watch call lasting at
 * most SLICE_MS and resumed from where it stopped, as the daemon will; prints every resume.
 */
static int
cmd_watch(struct tool *t)
{
	int64_t rev = num(t->argv[2]);
	int prefix = strcmp(t->argv[1], "prefix") == 0, rc = E_OK;

	t->events = strtol(t->argv[3], NULL, 10);
	while (t->events > 0) {
		rc = etcd_watch(t->c, t->argv[0], prefix, &rev, num(t->argv[4]), watch_print, t,
		    &t->e);
		if (rc == 1)
			return E_OK;
		if (rc == E_STALE) {
			printf("compacted %lld\n", (long long)rev);
			return rc;
		}
		if (rc != E_OK && rc != E_SYS && rc != E_TIMEOUT)
			return rc;
		printf("resume %lld rc=%d endpoint=%s\n", (long long)rev, rc, etcd_endpoint(t->c));
		fflush(stdout);
	}
	return rc;
}

static const struct {
	const char	*name;
	int		 args;		/* at least */
	int		(*fn)(struct tool *);
} cmds[] = {
	{ "get", 1, cmd_get },
	{ "put", 2, cmd_put },
	{ "put-if", 3, cmd_put_if },
	{ "del", 1, cmd_del },
	{ "grant", 1, cmd_grant },
	{ "keepalive", 1, cmd_keepalive },
	{ "revoke", 1, cmd_revoke },
	{ "lock", 3, cmd_lock },
	{ "campaign", 3, cmd_campaign },
	{ "leader", 1, cmd_leader },
	{ "watch", 5, cmd_watch },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'C' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct etcd_conf conf = { .timeout_ms = 5000 };
	struct strv eps = { 0 };
	struct tool t = { 0 };
	char *list = NULL, *tok, *save;
	int ch, rc = E_INVAL;

	while ((ch = getopt_long(argc, argv, "e:t:", opts, NULL)) != -1) {
		switch (ch) {
		case 'e': list = optarg; break;
		case 't': conf.timeout_ms = num(optarg); break;
		case 'C': conf.ca_file = optarg; break;
		case 'c': conf.cert_file = optarg; break;
		case 'k': conf.key_file = optarg; break;
		case 'u': conf.user = optarg; break;
		case 'p': conf.password_file = optarg; break;
		default: return 2;
		}
	}
	if (list == NULL || optind >= argc) {
		fprintf(stderr, "usage: etcd-tool -e URL[,URL...] [options] COMMAND ARGS...\n");
		return 2;
	}
	for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
		util_strv_push(&eps, tok);
	conf.endpoints = &eps;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].name, argv[optind]) != 0)
			continue;
		if (argc - optind - 1 < cmds[i].args) {
			fprintf(stderr, "etcd-tool: %s needs %d arguments\n", cmds[i].name,
			    cmds[i].args);
			return 2;
		}
		if ((rc = etcd_open(&t.c, &conf, &t.e)) == E_OK) {
			t.argc = argc - optind - 1;
			t.argv = argv + optind + 1;
			rc = cmds[i].fn(&t);
		}
		break;
	}
	if (rc != E_OK)
		fprintf(stderr, "etcd-tool: %d %s\n", rc, t.e.msg[0] ? t.e.msg : "unknown command");
	etcd_close(t.c);
	util_strv_free(&eps);
	curl_global_cleanup();
	return rc == E_OK ? 0 : 1;
}
