/* privdrop.c: the engine's change of user when deployd starts as root, and what that user can reach. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/deployd.h"

/*
 * Which user the engine becomes. Only a process started as root changes user; `user:
 * root` keeps root on purpose (and the log says so), a user that does not exist is an
 * error rather than a quiet "stay root".
 */
int
privdrop_prepare(const struct config *cfg, struct privdrop *p, struct error *e)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	memset(p, 0, sizeof(*p));
	if (geteuid() != 0)
		return E_OK;
	if ((rc = getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &res)) != 0 || res == NULL)
		return util_error(e, E_CONFIG, "user %s: %s; create it (useradd --system %s) "
		    "or set user: root to keep the engine root", cfg->user,
		    rc != 0 ? strerror(rc) : "no such user", cfg->user);
	if (pw.pw_uid == 0)
		return E_OK;
	if (util_strlcpy(p->name, pw.pw_name, sizeof(p->name)) >= sizeof(p->name) ||
	    util_strlcpy(p->home, pw.pw_dir, sizeof(p->home)) >= sizeof(p->home))
		return util_error(e, E_CONFIG, "user %s: name or home too long", cfg->user);
	p->uid = pw.pw_uid;
	p->gid = pw.pw_gid;
	p->drop = 1;
	return E_OK;
}

/* A file or directory deployd made as root, for the user it is about to become. */
int
privdrop_own(const struct privdrop *p, int fd, const char *path, struct error *e)
{
	if (!p->drop)
		return E_OK;
	if ((fd >= 0 ? fchown(fd, p->uid, p->gid) : lchown(path, p->uid, p->gid)) != 0)
		return util_error_sys(e, "cannot give %s to user %s", path, p->name);
	return E_OK;
}

/* Become the user for good, with its groups, and check that root cannot be had back. */
static int
privdrop_become(const struct privdrop *p, struct error *e)
{
	if (initgroups(p->name, p->gid) != 0 || setresgid(p->gid, p->gid, p->gid) != 0 ||
	    setresuid(p->uid, p->uid, p->uid) != 0)
		return util_error_sys(e, "cannot become user %s", p->name);
	if (setresuid(0, 0, 0) == 0 || setegid(0) == 0 || getuid() == 0 || geteuid() == 0)
		return util_error(e, E_SYS, "still able to become root after dropping to %s",
		    p->name);
	return E_OK;
}

/* What the engine does with each kind of path, and so what its user needs. */
enum privdrop_need { NEED_NONE, NEED_READ, NEED_EXEC, NEED_WRITE_DIR, NEED_MAKE_DIR };

static const struct {
	const char		*key;
	enum privdrop_need	 need;
} privdrop_keys[] = {
	{ "control_socket", NEED_NONE },	/* made as root, then given to the user */
	{ "state_dir", NEED_WRITE_DIR },	/* made as root (and given) when missing */
	{ "path", NEED_MAKE_DIR },		/* a deploy root: the engine makes it */
	{ "pre_activate", NEED_EXEC },
	{ "post_activate", NEED_EXEC },
	{ "on_failure", NEED_EXEC },
	{ "run_once", NEED_EXEC },
};

static enum privdrop_need
privdrop_need_of(const char *key, enum config_type type)
{
	size_t i;

	for (i = 0; i < sizeof(privdrop_keys) / sizeof(privdrop_keys[0]); i++)
		if (strcmp(privdrop_keys[i].key, key) == 0)
			return privdrop_keys[i].need;
	return type == K_ABSPATH ? NEED_WRITE_DIR : NEED_READ;
}

struct privdrop_probe {
	const struct config	*cfg;
	const char		*user;
	struct strv		*problems;
};

static void
privdrop_problem(struct privdrop_probe *pr, const char *site, const char *key,
    const char *path, const char *what)
{
	int saved = errno;
	const struct site_config *s = site != NULL ? config_site(pr->cfg, site) : NULL;
	char *where = s != NULL ? util_xasprintf("%s:%d:%d: site '%s': ", s->file,
	    s->line, s->col, site) : util_xasprintf("%s: ", pr->cfg->file);
	char *msg = util_xasprintf("%s%s %s: user %s %s (%s)", where, key, path, pr->user,
	    what, strerror(saved));

	util_strv_push(pr->problems, msg);
	free(msg);
	free(where);
}

/* The nearest directory that exists at or above path (path itself when it does). */
static char *
privdrop_existing(const char *path)
{
	char *p = util_xstrdup(path), *slash;
	struct stat st;

	while (stat(p, &st) != 0 && (slash = strrchr(p, '/')) != NULL && slash != p)
		*slash = '\0';
	if (stat(p, &st) != 0)
		util_strlcpy(p, "/", 2);
	return p;
}

static void
privdrop_probe_path(void *arg, const char *site, const char *key, enum config_type type,
    const char *path)
{
	struct privdrop_probe *pr = arg;
	char *dir;

	if (type == K_REPO) {
		/* A URL is the fetch helper's business; a local repository must be readable. */
		if (strncmp(path, "file://", 7) == 0)
			path += 7;
		if (path[0] != '/')
			return;
		if (access(path, R_OK | X_OK) != 0)
			privdrop_problem(pr, site, key, path, "cannot read it");
		return;
	}
	switch (privdrop_need_of(key, type)) {
	case NEED_NONE:
		break;
	case NEED_READ:
		if (access(path, R_OK) != 0)
			privdrop_problem(pr, site, key, path, "cannot read it");
		break;
	case NEED_EXEC:
		/* A bare name is found on PATH when the hook runs. */
		if (strchr(path, '/') != NULL && access(path, X_OK) != 0)
			privdrop_problem(pr, site, key, path, "cannot run it");
		break;
	case NEED_WRITE_DIR:
		if (access(path, F_OK) == 0 && access(path, W_OK | X_OK) != 0)
			privdrop_problem(pr, site, key, path, "cannot write in it");
		break;
	case NEED_MAKE_DIR:
		dir = privdrop_existing(path);
		if (access(dir, W_OK | X_OK) != 0)
			privdrop_problem(pr, site, key, dir, strcmp(dir, path) == 0 ?
			    "cannot write in it" : "cannot create the deploy root in it");
		free(dir);
		break;
	}
}

/*
 * In the calling process, as whoever it runs as now: every path of the configuration
 * that the engine would fail to use, and every site's state directory it cannot write.
 */
static void
privdrop_probe(const struct config *cfg, const char *user, struct strv *problems)
{
	struct privdrop_probe pr = { cfg, user, problems };
	size_t i;

	/* A reload, and every listener started after the drop, read it again as the user. */
	privdrop_probe_path(&pr, NULL, "configuration file", K_FILE, cfg->file);
	config_key_paths(cfg, privdrop_probe_path, &pr);
	for (i = 0; i < cfg->nsites; i++) {
		char *dir = util_xasprintf("%s/%s", cfg->state_dir, cfg->sites[i].site.name);

		privdrop_probe_path(&pr, cfg->sites[i].site.name, "state directory", K_ABSPATH,
		    dir);
		free(dir);
	}
}

/*
 * After the sockets are bound and the listener started: become the user. Its state_dir
 * must be writable, or nothing would work; other paths it cannot reach are logged, and
 * the sites that need them fail with their own errors.
 */
int
privdrop_apply(const struct privdrop *p, const struct config *cfg, struct error *e)
{
	struct strv problems = { NULL, 0 };
	size_t i;
	int rc;

	if (!p->drop) {
		if (geteuid() == 0)
			log_info("user %s is root: the engine, its fetch helpers and hooks keep "
			    "root", cfg->user);
		return E_OK;
	}
	if (privdrop_own(p, -1, cfg->control_socket, e) != E_OK)
		log_warn("%s", e->msg);
	if ((rc = privdrop_become(p, e)) != E_OK)
		return rc;
	/* What the fetch helpers and libgit2 read as the user's own. */
	setenv("HOME", p->home, 1);
	setenv("USER", p->name, 1);
	setenv("LOGNAME", p->name, 1);
	if (access(cfg->state_dir, W_OK | X_OK) != 0)
		return util_error(e, E_CONFIG, "state_dir %s is not writable by user %s (%s); "
		    "chown -R %s: %s", cfg->state_dir, p->name, strerror(errno), p->name,
		    cfg->state_dir);
	privdrop_probe(cfg, p->name, &problems);
	for (i = 0; i < problems.n; i++)
		log_warn("%s", problems.v[i]);
	util_strv_free(&problems);
	log_info("engine runs as user %s (uid %lu)", p->name, (unsigned long)p->uid);
	return E_OK;
}

/*
 * `deployd check` as root: a child becomes the user and tries every path, so that the
 * answer is the kernel's (ACLs, groups, modes on every parent), not a guess from modes.
 * Prints each problem as an error; returns how many, or -1 if it could not ask.
 */
int
privdrop_check(const struct config *cfg, FILE *fp)
{
	struct privdrop p;
	struct strv problems = { NULL, 0 };
	struct error e;
	char line[4096];
	FILE *in;
	pid_t pid;
	int fds[2], status, n = 0;
	size_t i;

	if (privdrop_prepare(cfg, &p, &e) != E_OK) {
		fprintf(fp, "%s: %s\n", cfg->file, e.msg);
		return 1;
	}
	if (!p.drop)
		return 0;
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	fflush(fp);
	if ((pid = fork()) < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		FILE *out = fdopen(fds[1], "w");

		close(fds[0]);
		if (out == NULL)
			_exit(3);
		if (privdrop_become(&p, &e) != E_OK) {
			fprintf(out, "%s: %s\n", cfg->file, e.msg);
			fclose(out);
			_exit(1);
		}
		privdrop_probe(cfg, p.name, &problems);
		for (i = 0; i < problems.n; i++)
			fprintf(out, "%s\n", problems.v[i]);
		fclose(out);
		_exit(0);
	}
	close(fds[1]);
	if ((in = fdopen(fds[0], "r")) == NULL) {
		close(fds[0]);
		n = -1;
	} else {
		while (fgets(line, sizeof(line), in) != NULL) {
			fputs(line, fp);
			n++;
		}
		fclose(in);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		n = -1;
	return n;
}
