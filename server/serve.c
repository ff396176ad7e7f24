/* serve.c: the daemon: load config, recover sites, start the queue, the APIs, wait for signals. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/deployd.h"

/* systemd's notify protocol is one datagram; no need for libsystemd. */
static void
serve_notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
		return;
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		log_debug("sd_notify: %s", strerror(errno));
	close(fd);
}

static int
serve_load(const char *file, struct config **cfg)
{
	struct strv errors = { NULL, 0 };
	size_t i;

	if (config_load(file, cfg, &errors) != E_OK) {
		for (i = 0; i < errors.n; i++)
			fprintf(stderr, "%s\n", errors.v[i]);
		util_strv_free(&errors);
		return E_CONFIG;
	}
	return E_OK;
}

/*
 * One daemon per state directory: a second one would fight over the caches. Made as
 * root for an engine that drops to its user, the directory and the lock are the user's.
 */
static int
serve_lock_state(const struct config *cfg, const struct privdrop *pd, int *fd,
    struct error *e)
{
	char *path;
	int rc, made = access(cfg->state_dir, F_OK) != 0;

	if (util_mkdir_p(cfg->state_dir, 0750) != E_OK)
		return util_error_sys(e, "cannot create state_dir %s", cfg->state_dir);
	if (made && (rc = privdrop_own(pd, -1, cfg->state_dir, e)) != E_OK)
		return rc;
	path = util_xasprintf("%s/deployd.lock", cfg->state_dir);
	rc = lock_acquire(path, 0, fd, e);
	free(path);
	if (rc == E_BUSY)
		return util_error(e, E_BUSY, "another deployd is running with state_dir %s",
		    cfg->state_dir);
	if (rc == E_OK)
		rc = privdrop_own(pd, *fd, "the state lock", e);
	return rc;
}

/* The live release's time per site, for /metrics from the first scrape on. */
static void
serve_live_metrics(const struct config *cfg)
{
	struct site_state st;
	struct error e;
	size_t i;

	for (i = 0; i < cfg->nsites; i++) {
		memset(&st, 0, sizeof(st));
		if (state_load(cfg->state_dir, cfg->sites[i].site.name, &st, &e) == E_OK &&
		    st.applied_at > 0)
			metrics_live(cfg->sites[i].site.name, st.applied_at);
		state_free(&st);
	}
}

/* Keys that belong to listeners and files already open: changing them needs a restart. */
static const char *
serve_fixed_change(const struct config *a, const struct config *b)
{
	static const struct {
		const char	*name;
		size_t		 off;
	} keys[] = {
		{ "listen", offsetof(struct config, listen) },
		{ "control_socket", offsetof(struct config, control_socket) },
		{ "state_dir", offsetof(struct config, state_dir) },
		{ "tls_cert", offsetof(struct config, tls_cert) },
		{ "tls_key", offsetof(struct config, tls_key) },
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *x = *(char *const *)((const char *)a + keys[i].off);
		const char *y = *(char *const *)((const char *)b + keys[i].off);

		if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
			return keys[i].name;
	}
	if (a->max_parallel_deploys != b->max_parallel_deploys)
		return "max_parallel_deploys";
	if (memcmp(&a->limits, &b->limits, sizeof(a->limits)) != 0)
		return "limits";
	return NULL;
}

/*
 * SIGHUP: a broken or unsupported new configuration leaves the running one untouched.
 * Replaced configurations are kept until exit: a request in flight may still read them.
 */
static void
serve_reload(const char *file, struct config **cfg, struct strv *retired)
{
	struct config *next;
	struct strv errors = { NULL, 0 };
	struct error e;
	const char *fixed;
	size_t i;

	serve_notify("RELOADING=1");
	if (config_load(file, &next, &errors) != E_OK) {
		for (i = 0; i < errors.n; i++)
			log_error("reload: %s", errors.v[i]);
		log_error("reload: configuration has errors; still running the old one");
		util_strv_free(&errors);
		serve_notify("READY=1\nSTATUS=reload failed: configuration has errors");
		return;
	}
	/* A fleet's threads hold the sites they started with. */
	if (next->fleet.etcd.n > 0 || (*cfg)->fleet.etcd.n > 0) {
		log_error("reload: a fleet node takes a new configuration by a restart "
		    "(still running the old configuration)");
		config_free(next);
		serve_notify("READY=1\nSTATUS=reload refused: restart needed (fleet mode)");
		return;
	}
	if ((fixed = serve_fixed_change(*cfg, next)) != NULL) {
		log_error("reload: %s changed; restart deployd to apply it (still running "
		    "the old configuration)", fixed);
		config_free(next);
		serve_notify("READY=1\nSTATUS=reload refused: restart needed");
		return;
	}
	for (i = 0; i < next->nsites; i++)
		if (config_site(*cfg, next->sites[i].site.name) == NULL &&
		    recover_site(&next->sites[i].site, &e) != E_OK)
			log_warn("site=%s recovery: %s", next->sites[i].site.name, e.msg);
	log_set_level(next->log_level);
	metrics_init(next);
	sched_reload(next);
	privsep_reload(next);
	control_reload(next);
	/* The pointer goes into a list of strings only to be freed at exit. */
	retired->v = util_xrealloc(retired->v, retired->n + 2, sizeof(*retired->v));
	retired->v[retired->n++] = (char *)*cfg;
	retired->v[retired->n] = NULL;
	*cfg = next;
	log_info("reloaded %s: %zu site%s", file, next->nsites, next->nsites == 1 ? "" : "s");
	serve_notify("READY=1\nSTATUS=configuration reloaded");
}

int
serve_main(const char *config_file)
{
	struct config *cfg = NULL;
	struct strv retired = { NULL, 0 };
	struct privdrop pd;
	struct error e;
	sigset_t set;
	char status[128];
	int sig, lockfd = -1, rc = 1;
	size_t i;

	if (serve_load(config_file, &cfg) != E_OK)
		return 2;
	log_init(cfg->log_level, getenv("JOURNAL_STREAM") != NULL);
	config_warnings(cfg, stderr);

	/* Signals are taken synchronously by this thread; every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (privdrop_prepare(cfg, &pd, &e) != E_OK) {
		log_error("%s", e.msg);
		rc = 2;
		goto out;
	}
	if (serve_lock_state(cfg, &pd, &lockfd, &e) != E_OK) {
		log_error("%s", e.msg);
		goto out;
	}
	if (engine_init() != E_OK) {
		log_error("cannot initialise libgit2");
		goto out;
	}
	metrics_init(cfg);
	sched_init(cfg, serve_notify);
	if (control_open(cfg, &e) != E_OK) {
		log_error("%s", e.msg);
		goto out_engine;
	}
	if (privsep_start(cfg, &e) != E_OK) {
		log_error("%s", e.msg);
		goto out_control;
	}
	/* Sockets bound, listener started: nothing else needs root, recovery included. */
	if ((rc = privdrop_apply(&pd, cfg, &e)) != E_OK) {
		log_error("%s", e.msg);
		rc = rc == E_CONFIG ? 2 : 1;
		goto out_control;
	}
	for (i = 0; i < cfg->nsites; i++) {
		if (recover_site(&cfg->sites[i].site, &e) != E_OK)
			log_warn("site=%s recovery: %s", cfg->sites[i].site.name, e.msg);
	}
	serve_live_metrics(cfg);
	/* Only now: a client that gets an answer finds every site recovered. */
	if (control_start(cfg, &e) != E_OK) {
		log_error("%s", e.msg);
		goto out_control;
	}
	if (sched_start() != E_OK) {
		log_error("cannot start deploy workers");
		goto out_control;
	}
	if (fleet_start(cfg, &e) != E_OK) {
		log_error("%s", e.msg);
		goto out_control;
	}
	log_info("deployd %s serving %zu site%s (config %s)", DEPLOYD_VERSION, cfg->nsites,
	    cfg->nsites == 1 ? "" : "s", cfg->file);
	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu sites", cfg->nsites);
	serve_notify(status);

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			serve_reload(config_file, &cfg, &retired);
			continue;
		}
		log_info("%s: stopping; deploys in flight finish first",
		    sig == SIGTERM ? "SIGTERM" : "SIGINT");
		serve_notify("STOPPING=1");
		break;
	}
	rc = 0;
	/* Stop taking webhooks first, then let deploys in flight finish. */
	privsep_stop();
	sched_stop();
	fleet_stop();
out_control:
	privsep_stop();
	control_stop();
out_engine:
	sched_stop();
	fleet_stop();
	sched_free();
	metrics_free();
	engine_shutdown();
out:
	if (lockfd >= 0)
		lock_release(lockfd);
	config_free(cfg);
	for (i = 0; i < retired.n; i++)
		config_free((struct config *)(void *)retired.v[i]);
	free(retired.v);
	log_info("stopped");
	return rc;
}
