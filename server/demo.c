/* demo.c: `deployd demo`: a throwaway repository, site and config, then the daemon serving them; with --fleet, an etcd and three nodes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <git2.h>
#include <sodium.h>

#include "server/deployd.h"

static const char demo_page[] =
    "<!doctype html>\n<title>deployd demo</title>\n"
    "<h1>Hello from deployd</h1>\n<p>Edit this file, commit, and watch it go live.</p>\n";

static int
demo_write(const char *path, const char *text, mode_t mode)
{
	struct error e;

	if (util_write_file_atomic(path, text, strlen(text), mode, &e) != E_OK) {
		fprintf(stderr, "deployd demo: %s\n", e.msg);
		return E_SYS;
	}
	return E_OK;
}

/* A free loopback port for the webhook listener. */
static int
demo_free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, port = 8090;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return port;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* The demo repository, made with libgit2 so the demo needs no git binary to start. */
static int
demo_make_repo(const char *dir, char head[SHA_HEX])
{
	git_repository_init_options opts;
	git_repository *repo = NULL;
	git_index *index = NULL;
	git_signature *sig = NULL;
	git_tree *tree = NULL;
	git_config *cfg = NULL;
	git_oid tree_id, commit_id;
	char *file;
	int rc = E_GIT;

	if (git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION) != 0)
		return E_GIT;
	opts.flags = GIT_REPOSITORY_INIT_MKPATH;
	opts.initial_head = "main";
	if (git_repository_init_ext(&repo, dir, &opts) != 0)
		goto out;
	file = util_xasprintf("%s/index.html", dir);
	rc = demo_write(file, demo_page, 0644);
	free(file);
	if (rc != E_OK)
		goto out;
	rc = E_GIT;
	if (git_repository_config(&cfg, repo) != 0 ||
	    git_config_set_string(cfg, "user.name", "deployd demo") != 0 ||
	    git_config_set_string(cfg, "user.email", "demo@localhost") != 0)
		goto out;
	if (git_repository_index(&index, repo) != 0 ||
	    git_index_add_bypath(index, "index.html") != 0 || git_index_write(index) != 0 ||
	    git_index_write_tree(&tree_id, index) != 0 ||
	    git_tree_lookup(&tree, repo, &tree_id) != 0 ||
	    git_signature_now(&sig, "deployd demo", "demo@localhost") != 0 ||
	    git_commit_create_v(&commit_id, repo, "HEAD", sig, sig, NULL,
	    "First page of the demo site", tree, 0) != 0)
		goto out;
	git_oid_tostr(head, SHA_HEX, &commit_id);
	rc = E_OK;
out:
	if (rc != E_OK)
		fprintf(stderr, "deployd demo: cannot create the repository: %s\n",
		    git_error_last() ? git_error_last()->message : "unknown error");
	git_config_free(cfg);
	git_signature_free(sig);
	git_tree_free(tree);
	git_index_free(index);
	git_repository_free(repo);
	return rc;
}

/*
 * A GitHub-style push that names no commit, so one file serves every later commit:
 * deployd treats a webhook as a doorbell and deploys what the branch says after a fetch.
 * (A push naming the commit already live would be answered without a deploy.)
 */
static const char demo_payload[] =
    "{\"ref\":\"refs/heads/main\","
    "\"repository\":{\"name\":\"demo\",\"full_name\":\"local/demo\"},"
    "\"pusher\":{\"name\":\"you\"},\"commits\":[]}\n";

#define DEMO_NODES 3

/* Start the words of argv, separated by single spaces, with the output appended to log. */
static pid_t
demo_spawn(const char *argv, const char *log)
{
	struct strv av = { NULL, 0 };
	char *copy = util_xstrdup(argv), *w, *save = NULL;
	pid_t pid;
	int fd;

	for (w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
		util_strv_push(&av, w);
	free(copy);
	if ((pid = fork()) != 0) {
		util_strv_free(&av);
		return pid;
	}
	if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execvp(av.v[0], av.v);
	fprintf(stderr, "deployd demo: %s: %s\n", av.v[0], strerror(errno));
	_exit(127);
}

/* Wait until something listens on the port, or give up after ms. */
static int
demo_wait_port(int port, int64_t ms)
{
	struct sockaddr_in sin;
	int64_t end = util_mono_ms() + ms;
	int fd, ok;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	while (util_mono_ms() < end) {
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return 0;
		ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(fd);
		if (ok)
			return 1;
		usleep(100 * 1000);
	}
	return 0;
}

/*
 * demo --fleet: a one-member etcd and three nodes with their own directories, ports and
 * sockets, all following the demo repository; runs until SIGINT or SIGTERM, then stops them.
 */
static int
demo_fleet(const char *dir, const char *self)
{
	pid_t pids[DEMO_NODES + 1];
	int ports[DEMO_NODES], cport = demo_free_port(), pport = demo_free_port(), sig;
	char *p, *cfg[DEMO_NODES], curl[64], peer[64], name[16], *logf;
	struct passwd *me = getpwuid(geteuid());
	sigset_t set;
	size_t i, n = 0;
	int rc = 1;

	snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", cport);
	snprintf(peer, sizeof(peer), "demo=http://127.0.0.1:%d", pport);
	if (strchr(dir, ' ') != NULL || strchr(self, ' ') != NULL) {
		fprintf(stderr, "deployd demo --fleet: %s: a path with spaces is not supported\n",
		    strchr(dir, ' ') != NULL ? dir : self);
		return 1;
	}
	if (access("/usr/bin/etcd", X_OK) != 0 && access("/usr/local/bin/etcd", X_OK) != 0) {
		fprintf(stderr, "deployd demo --fleet needs etcd (Debian: apt-get install "
		    "etcd-server)\n");
		return 1;
	}
	/* The demo's directory is made by mkdtemp or checked by realpath: no spaces to split. */
	p = util_xasprintf("etcd --name demo --data-dir %s/etcd --listen-client-urls %s "
	    "--advertise-client-urls %s --listen-peer-urls http://127.0.0.1:%d "
	    "--initial-advertise-peer-urls http://127.0.0.1:%d --initial-cluster %s", dir, curl,
	    curl, pport, pport, peer);
	logf = util_xasprintf("%s/etcd.log", dir);
	pids[n++] = demo_spawn(p, logf);
	free(logf);
	free(p);
	if (pids[0] < 0 || !demo_wait_port(cport, 20000)) {
		fprintf(stderr, "deployd demo: etcd did not start; see %s/etcd.log\n", dir);
		goto out;
	}
	for (i = 0; i < DEMO_NODES; i++) {
		ports[i] = demo_free_port();
		p = util_xasprintf("%s/node%zu", dir, i + 1);
		util_mkdir_p(p, 0755);
		free(p);
		p = util_xasprintf(
		    "# deployd demo --fleet: node %zu of %d (made by `deployd demo --fleet`)\n"
		    "listen: 127.0.0.1:%d\n"
		    "control_socket: %s/node%zu/deployd.sock\n"
		    "state_dir: %s/node%zu/state\n"
		    "user: %s\n"
		    "fleet:\n"
		    "  etcd: [%s]\n"
		    "  node: node%zu\n"
		    "  zone: %s\n"
		    "  lease_ttl: 3s\n"
		    "sites:\n"
		    "  - name: demo\n"
		    "    repo: %s/repo\n"
		    "    branch: main\n"
		    "    path: %s/node%zu/site\n"
		    "    keep: 3\n"
		    "    poll: 5s\n"
		    "    secret_file: %s/webhook.secret\n", i + 1, DEMO_NODES, ports[i], dir, i + 1,
		    dir, i + 1, me != NULL ? me->pw_name : "root", curl, i + 1,
		    i < 2 ? "cloud-a" : "cloud-b", dir, dir, i + 1, dir);
		cfg[i] = util_xasprintf("%s/node%zu/deployd.yaml", dir, i + 1);
		rc = demo_write(cfg[i], p, 0644);
		free(p);
		if (rc != E_OK)
			goto out;
	}
	/* The children inherit no blocked signal; this process waits for its own. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	for (i = 0; i < DEMO_NODES; i++) {
		p = util_xasprintf("%s serve -c %s", self, cfg[i]);
		logf = util_xasprintf("%s/node%zu/deployd.log", dir, i + 1);
		pids[n++] = demo_spawn(p, logf);
		free(logf);
		free(p);
	}
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	snprintf(name, sizeof(name), "node1");
	printf("deployd demo --fleet in %s\n\n"
	    "  etcd        %s (log %s/etcd.log)\n"
	    "  repository  %s/repo (branch main)\n"
	    "  nodes       node1 and node2 in zone cloud-a, node3 in cloud-b; each has its\n"
	    "              live site in %s/nodeN/site/current and its log in nodeN/deployd.log\n\n"
	    "1. Change the page and commit:\n"
	    "     cd %s/repo && echo '<h1>changed</h1>' > index.html && "
	    "git commit -qam 'my change'\n\n"
	    "2. Ring the webhook of one node (%s); all three prepare, then swap together:\n"
	    "     curl -sS -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' "
	    "-H \"X-GitHub-Delivery: $(date +%%s%%N)\" "
	    "-H \"X-Hub-Signature-256: sha256=$(openssl dgst -sha256 -hmac "
	    "\"$(cat %s/webhook.secret)\" < %s/push.json | sed 's/^.*= //')\" "
	    "--data-binary @%s/push.json http://127.0.0.1:%d/hooks/demo\n\n"
	    "3. Watch the fleet: the target, the cutover, its skew, and every node:\n"
	    "     %s status --fleet -c %s\n"
	    "     readlink %s/node*/site/current\n\n"
	    "Stop with Ctrl-C (it stops the nodes and etcd); remove %s when done.\n\n",
	    dir, curl, dir, dir, dir, dir, name, dir, dir, dir, ports[0], self, cfg[0], dir, dir);
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	rc = 0;
out:
	/* The nodes first (they leave the fleet), etcd last. */
	for (i = n; i-- > 0;) {
		int st;

		if (pids[i] <= 0)
			continue;
		kill(pids[i], SIGTERM);
		if (waitpid(pids[i], &st, 0) > 0 && i > 0 && !(WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0))
			rc = 1;
	}
	for (i = 0; i < DEMO_NODES && n > 1 + i; i++)
		free(cfg[i]);
	return rc;
}

int
demo_main(struct cli *cli)
{
	char dir[PATH_MAX], self[PATH_MAX], head[SHA_HEX], *p;
	unsigned char key[16];
	char secret[sizeof(key) * 2 + 2];
	ssize_t n;
	int port, rc;
	struct passwd *me;

	if (cli->dir != NULL) {
		if (util_mkdir_p(cli->dir, 0755) != E_OK || realpath(cli->dir, dir) == NULL) {
			fprintf(stderr, "deployd demo: %s: %s\n", cli->dir, strerror(errno));
			return 1;
		}
		p = util_xasprintf("%s/repo", dir);
		if (access(p, F_OK) == 0) {
			fprintf(stderr, "deployd demo: %s already holds a demo; pick an empty "
			    "directory\n", dir);
			free(p);
			return 1;
		}
		free(p);
	} else {
		util_strlcpy(dir, "/tmp/deployd-demo-XXXXXX", sizeof(dir));
		if (mkdtemp(dir) == NULL) {
			fprintf(stderr, "deployd demo: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		chmod(dir, 0755);
	}
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		util_strlcpy(self, "deployd", sizeof(self));
	else
		self[n] = '\0';

	git_libgit2_init();
	p = util_xasprintf("%s/repo", dir);
	rc = demo_make_repo(p, head);
	free(p);
	git_libgit2_shutdown();
	if (rc != E_OK)
		return 1;

	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(secret, sizeof(secret), key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	util_strlcpy(secret + strlen(secret), "\n", 2);
	p = util_xasprintf("%s/webhook.secret", dir);
	rc = demo_write(p, secret, 0600);
	sodium_memzero(secret, sizeof(secret));
	free(p);
	if (rc != E_OK)
		return 1;
	p = util_xasprintf("%s/push.json", dir);
	rc = demo_write(p, demo_payload, 0644);
	free(p);
	if (rc != E_OK)
		return 1;

	if (cli->fleet)
		return demo_fleet(dir, self);
	port = demo_free_port();
	/* The demo's files are yours: the engine stays you (a real setup uses deployd). */
	me = getpwuid(geteuid());
	p = util_xasprintf(
	    "# deployd demo configuration (made by `deployd demo`)\n"
	    "listen: 127.0.0.1:%d\n"
	    "control_socket: %s/deployd.sock\n"
	    "state_dir: %s/state\n"
	    "user: %s\n"
	    "sites:\n"
	    "  - name: demo\n"
	    "    repo: %s/repo\n"
	    "    branch: main\n"
	    "    path: %s/site\n"
	    "    keep: 3\n"
	    "    poll: 5s\n"
	    "    secret_file: %s/webhook.secret\n", port, dir, dir,
	    me != NULL ? me->pw_name : "root", dir, dir, dir);
	{
		char *cfgpath = util_xasprintf("%s/deployd.yaml", dir);

		rc = demo_write(cfgpath, p, 0644);
		free(p);
		if (rc != E_OK) {
			free(cfgpath);
			return 1;
		}
		printf("deployd demo in %s\n\n"
		    "  repository  %s/repo (branch main)\n"
		    "  live site   %s/site/current\n"
		    "  config      %s\n\n"
		    "1. Change the page and commit (polling picks it up within 5 s):\n"
		    "     cd %s/repo && echo '<h1>changed</h1>' > index.html && "
		    "git commit -qam 'my change'\n\n"
		    "2. Or ring the webhook right away (signed like GitHub does):\n"
		    "     curl -sS -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' "
		    "-H \"X-GitHub-Delivery: $(date +%%s%%N)\" "
		    "-H \"X-Hub-Signature-256: sha256=$(openssl dgst -sha256 -hmac "
		    "\"$(cat %s/webhook.secret)\" < %s/push.json | sed 's/^.*= //')\" "
		    "--data-binary @%s/push.json http://127.0.0.1:%d/hooks/demo\n\n"
		    "3. See what is live:\n"
		    "     %s status -c %s\n"
		    "     cat %s/site/current/index.html\n\n"
		    "Stop with Ctrl-C; remove %s when done.\n\n",
		    dir, dir, dir, cfgpath, dir, dir, dir, dir, port, self, cfgpath, dir, dir);
		fflush(stdout);
		rc = serve_main(cfgpath);
		free(cfgpath);
	}
	return rc;
}
