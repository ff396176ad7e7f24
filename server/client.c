/* client.c: client commands (status, deploy) talking HTTP/1.1 to the daemon's control socket. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "deployd.h"

#define CLIENT_RESP_MAX (16 * 1024 * 1024)
#define CLIENT_TIMEOUT_MS 30000

/* One request per connection (Connection: close), so the answer ends at EOF. */
int
client_request(const char *socket_path, const char *method, const char *path,
    const char *body, int *status, char **resp, struct error *e)
{
	struct sockaddr_un sun;
	struct pollfd pfd;
	char *req, *buf = NULL, *hdr_end;
	size_t len = 0, cap = 0;
	int fd, rc;

	*resp = NULL;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_strlcpy(sun.sun_path, socket_path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return util_error(e, E_INVAL, "socket path too long: %s", socket_path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return util_error_sys(e, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		int err = errno;

		close(fd);
		if (err == EACCES || err == EPERM)
			return util_error(e, E_SYS, "permission denied: %s (are you in the "
			    "daemon's group?)", socket_path);
		if (err == ENOENT || err == ECONNREFUSED)
			return util_error(e, E_SYS, "deployd is not running (nothing answers "
			    "on %s)", socket_path);
		errno = err;
		return util_error_sys(e, "cannot connect to %s", socket_path);
	}
	req = util_xasprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", method, path,
	    body ? strlen(body) : 0, body ? body : "");
	rc = util_write_all(fd, req, strlen(req));
	free(req);
	if (rc != E_OK) {
		close(fd);
		return util_error_sys(e, "write to %s", socket_path);
	}
	for (;;) {
		ssize_t n;

		pfd.fd = fd;
		pfd.events = POLLIN;
		if ((rc = poll(&pfd, 1, CLIENT_TIMEOUT_MS)) == 0) {
			free(buf);
			close(fd);
			return util_error(e, E_TIMEOUT, "deployd did not answer within %d s",
			    CLIENT_TIMEOUT_MS / 1000);
		}
		if (rc < 0 && errno == EINTR)
			continue;
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 16384;
			buf = util_xrealloc(buf, cap + 1, 1);
		}
		if ((n = read(fd, buf + len, cap - len)) < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			close(fd);
			return util_error_sys(e, "read from %s", socket_path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CLIENT_RESP_MAX) {
			free(buf);
			close(fd);
			return util_error(e, E_INVAL, "answer too large");
		}
	}
	close(fd);
	if (buf == NULL)
		return util_error(e, E_INVAL, "empty answer from deployd");
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 ||
	    (hdr_end = strstr(buf, "\r\n\r\n")) == NULL) {
		free(buf);
		return util_error(e, E_INVAL, "malformed answer from deployd");
	}
	*resp = util_xstrdup(hdr_end + 4);
	free(buf);
	return E_OK;
}

/* The socket from -s, or control_socket from the config. */
static int
client_socket(struct cli *cli, char **path)
{
	struct strv errors = { NULL, 0 };
	struct config *c;
	size_t i;

	if (cli->socket != NULL) {
		*path = util_xstrdup(cli->socket);
		return E_OK;
	}
	config_set_check_files(0);
	if (config_load(cli->config, &c, &errors) != E_OK) {
		for (i = 0; i < errors.n; i++)
			fprintf(stderr, "%s\n", errors.v[i]);
		util_strv_free(&errors);
		fprintf(stderr, "deployd: cannot find the control socket; fix the config or "
		    "pass -s PATH\n");
		return E_CONFIG;
	}
	*path = util_xstrdup(c->control_socket);
	config_free(c);
	return E_OK;
}

/* GET or POST and parse the JSON answer; prints the error and returns the exit code. */
static void
client_print_errors(json_t *answer)
{
	json_t *errs = json_object_get(answer, "errors"), *v;
	size_t i;

	json_array_foreach(errs, i, v)
		if (json_is_string(v))
			fprintf(stderr, "%s\n", json_string_value(v));
}

static int
client_call(struct cli *cli, const char *method, const char *path, const char *body,
    json_t **answer, int *status)
{
	struct error e;
	json_error_t jerr;
	char *sock, *resp;

	*answer = NULL;
	if (client_socket(cli, &sock) != E_OK)
		return 2;
	if (client_request(sock, method, path, body, status, &resp, &e) != E_OK) {
		fprintf(stderr, "deployd: %s\n", e.msg);
		free(sock);
		return 1;
	}
	free(sock);
	*answer = json_loads(resp, 0, &jerr);
	free(resp);
	if (*answer == NULL) {
		fprintf(stderr, "deployd: malformed JSON from the daemon\n");
		return 1;
	}
	if (*status >= 400) {
		json_t *err = json_object_get(*answer, "error");

		client_print_errors(*answer);
		fprintf(stderr, "deployd: %s\n", json_is_string(err) ? json_string_value(err) :
		    "request failed");
		json_decref(*answer);
		*answer = NULL;
		return *status == 400 || *status == 422 ? 2 : 1;
	}
	return 0;
}

static const char *
client_str(json_t *o, const char *key, const char *dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : dflt;
}

/* "2026-11-25T22:43:29Z" as "5m ago" when recent, else the date. */
static void
client_ago(const char *iso, char *buf, size_t len)
{
	struct tm tm;
	time_t t;
	char d[32];

	memset(&tm, 0, sizeof(tm));
	if (iso == NULL || strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL) {
		util_strlcpy(buf, "-", len);
		return;
	}
	t = timegm(&tm);
	if (t > time(NULL) && util_format_duration((int64_t)(t - time(NULL)) * 1000, d,
	    sizeof(d)) == E_OK)
		snprintf(buf, len, "in %s", d);
	else if (t == time(NULL))
		util_strlcpy(buf, "now", len);
	else if (util_format_duration((int64_t)(time(NULL) - t) * 1000, d, sizeof(d)) == E_OK)
		snprintf(buf, len, "%s ago", d);
	else
		util_strlcpy(buf, iso, len);
}

static void
client_status_row(json_t *s)
{
	char deployed[48], next[48], commit[13], err[80];
	const char *c = client_str(s, "commit", "-");
	json_t *paused = json_object_get(s, "paused");

	util_strlcpy(commit, c, sizeof(commit));
	client_ago(client_str(s, "deployed_at", NULL), deployed, sizeof(deployed));
	client_ago(client_str(s, "next_poll_at", NULL), next, sizeof(next));
	util_sanitize(client_str(s, "last_error", "-"), err, sizeof(err));
	printf("%-16s %-10s %-12s %-30s %-12s %-8s %-10s %s\n",
	    client_str(s, "name", "?"),
	    json_is_true(paused) ? "paused" : client_str(s, "state", "?"), commit,
	    client_str(s, "release", "-"), deployed, client_str(s, "trigger", "-"), next, err);
}

int
cmd_status(struct cli *cli)
{
	json_t *answer, *sites, *s;
	char path[128];
	size_t i;
	int status, rc;

	if (cli->nargs == 1) {
		if (!util_valid_site_name(cli->args[0])) {
			fprintf(stderr, "deployd: '%s' is not a site name\n", cli->args[0]);
			return 2;
		}
		snprintf(path, sizeof(path), "/v1/sites/%s", cli->args[0]);
	} else
		util_strlcpy(path, "/v1/sites", sizeof(path));
	if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
		return rc;
	if (cli->json) {
		json_t *out = answer;

		json_dumpf(out, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(answer);
		return 0;
	}
	printf("%-16s %-10s %-12s %-30s %-12s %-8s %-10s %s\n", "SITE", "STATE", "COMMIT",
	    "RELEASE", "DEPLOYED", "TRIGGER", "NEXT-POLL", "LAST-ERROR");
	if (cli->nargs == 1)
		client_status_row(answer);
	else {
		sites = json_object_get(answer, "sites");
		json_array_foreach(sites, i, s)
			client_status_row(s);
	}
	if (cli->nargs == 1) {
		const char *subject = client_str(answer, "subject", NULL);

		if (subject != NULL) {
			char safe[256];

			util_sanitize(subject, safe, sizeof(safe));
			printf("\ncommit %s  %s\n", client_str(answer, "commit", "-"), safe);
		}
	}
	json_decref(answer);
	return 0;
}

/*
 * Wait until the daemon has finished the job that answers request id, showing each phase
 * as it changes: one rewritten line on a terminal, plain lines otherwise.
 */
static int
client_wait(struct cli *cli, const char *site, int64_t id, const char *what)
{
	char path[128], last[64] = "";
	json_t *answer, *d;
	int status, rc, tty = isatty(STDOUT_FILENO);
	int64_t start = util_mono_ms();
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	snprintf(path, sizeof(path), "/v1/sites/%s", site);
	for (;;) {
		const char *state;
		char el[32];

		if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
			return rc;
		d = json_object_get(answer, "deploy");
		if (json_integer_value(json_object_get(d, "done_id")) >= id) {
			int ok = json_is_true(json_object_get(d, "done_ok"));
			const char *commit = client_str(d, "done_commit", "?");

			if (tty && last[0] != '\0')
				printf("\r\033[K");
			if (!ok)
				fprintf(stderr, "%s: %s failed: %s\n", site, what,
				    client_str(d, "done_error", "unknown error"));
			else if (strcmp(what, "deploy") != 0 && strcmp(what, "rollback") != 0)
				printf("%s: %s done\n", site, what);
			else if (json_is_true(json_object_get(d, "done_changed")))
				printf("%s: %s %.12s is live as %s\n", site,
				    strcmp(what, "rollback") == 0 ? "rolled back;" : "deployed;",
				    commit, client_str(answer, "release", "?"));
			else if (json_is_true(json_object_get(answer, "paused")) &&
			    commit[0] == '?')
				printf("%s: paused, nothing deployed (%s)\n", site,
				    client_str(answer, "pause_reason", "paused"));
			else
				printf("%s: already up to date at %.12s\n", site, commit);
			json_decref(answer);
			return ok ? 0 : 1;
		}
		state = json_integer_value(json_object_get(d, "running_id")) == id ?
		    client_str(answer, "state", "?") : "queued";
		if (strcmp(state, last) != 0 || tty) {
			util_format_duration(util_mono_ms() - start, el, sizeof(el));
			if (tty)
				printf("\r\033[K%s: %s ... %s", site, state, el);
			else if (strcmp(state, last) != 0)
				printf("%s: %s\n", site, state);
			fflush(stdout);
			util_strlcpy(last, state, sizeof(last));
		}
		json_decref(answer);
		nanosleep(&ts, NULL);
	}
}

/* POST a job for SITE, then report it or wait for it. */
static int
client_job(struct cli *cli, const char *site, const char *action, const char *body)
{
	json_t *answer;
	char path[128];
	int64_t id;
	int status, rc;

	if (!util_valid_site_name(site)) {
		fprintf(stderr, "deployd: '%s' is not a site name\n", site);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/%s", site, action);
	if ((rc = client_call(cli, "POST", path, body, &answer, &status)) != 0)
		return rc;
	id = json_integer_value(json_object_get(answer, "id"));
	json_decref(answer);
	if (!cli->wait) {
		printf("%s: %s queued (request %lld)\n", site, action, (long long)id);
		return 0;
	}
	return client_wait(cli, site, id, action);
}

int
cmd_deploy(struct cli *cli)
{
	json_t *body = json_object();
	char *text;
	int rc;

	if (cli->rev != NULL)
		json_object_set_new(body, "rev", json_string(cli->rev));
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rc = client_job(cli, cli->args[0], "deploy", text);
	free(text);
	return rc;
}

/* Rollback, pause and resume wait for their result: they are quick, and scripts need it. */
int
cmd_rollback(struct cli *cli)
{
	json_t *body = json_object();
	char *text;
	int rc;

	if (cli->nargs > 1)
		json_object_set_new(body, "release", json_string(cli->args[1]));
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	cli->wait = 1;
	rc = client_job(cli, cli->args[0], "rollback", text);
	free(text);
	return rc;
}

int
cmd_pause(struct cli *cli)
{
	cli->wait = 1;
	return client_job(cli, cli->args[0], strcmp(cli->cmd, "pause") == 0 ? "pause" :
	    "resume", "{}");
}

int
cmd_releases(struct cli *cli)
{
	json_t *answer, *arr, *r;
	char path[128], when[32];
	size_t i;
	int status, rc;

	if (!util_valid_site_name(cli->args[0])) {
		fprintf(stderr, "deployd: '%s' is not a site name\n", cli->args[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/releases", cli->args[0]);
	if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
		return rc;
	if (cli->json) {
		json_dumpf(answer, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(answer);
		return 0;
	}
	arr = json_object_get(answer, "releases");
	printf("%-32s %-12s %-20s %s\n", "RELEASE", "COMMIT", "ACTIVATED", "MARKS");
	json_array_foreach(arr, i, r) {
		char marks[64];
		int bad = json_is_true(json_object_get(r, "bad"));

		snprintf(marks, sizeof(marks), "%s%s%s%s",
		    json_is_true(json_object_get(r, "current")) ? "current " : "",
		    bad ? "bad " : "",
		    json_is_true(json_object_get(r, "pinned")) ? "pinned " : "",
		    !json_is_true(json_object_get(r, "good")) && !bad ? "unrecorded " : "");
		util_strlcpy(when, client_str(r, "activated_at", "-"), sizeof(when));
		printf("%-32s %-12.12s %-20s %s\n", client_str(r, "name", "?"),
		    client_str(r, "commit", "?"), when, marks);
	}
	json_decref(answer);
	return 0;
}

int
cmd_reload(struct cli *cli)
{
	json_t *answer;
	int status, rc;

	if ((rc = client_call(cli, "POST", "/v1/reload", "{}", &answer, &status)) != 0)
		return rc;
	json_decref(answer);
	printf("deployd: reloading the configuration\n");
	return 0;
}
