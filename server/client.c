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

static int
client_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return E_SYS;
		}
		p += n;
		len -= (size_t)n;
	}
	return E_OK;
}

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
	rc = client_write_all(fd, req, strlen(req));
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

		fprintf(stderr, "deployd: %s\n", json_is_string(err) ? json_string_value(err) :
		    "request failed");
		json_decref(*answer);
		*answer = NULL;
		return *status == 400 ? 2 : 1;
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
	if (util_format_duration((int64_t)(time(NULL) - t) * 1000, d, sizeof(d)) == E_OK &&
	    time(NULL) >= t)
		snprintf(buf, len, "%s ago", d);
	else if (time(NULL) < t && util_format_duration((int64_t)(t - time(NULL)) * 1000,
	    d, sizeof(d)) == E_OK)
		snprintf(buf, len, "in %s", d);
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

/* Wait until the daemon has finished the deploy that answers request id. */
static int
client_wait(struct cli *cli, const char *site, int64_t id)
{
	char path[128];
	json_t *answer, *d;
	int status, rc;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	snprintf(path, sizeof(path), "/v1/sites/%s", site);
	for (;;) {
		if ((rc = client_call(cli, "GET", path, NULL, &answer, &status)) != 0)
			return rc;
		d = json_object_get(answer, "deploy");
		if (json_integer_value(json_object_get(d, "done_id")) >= id) {
			int ok = json_is_true(json_object_get(d, "done_ok"));
			const char *commit = client_str(d, "done_commit", "?");

			if (ok && json_is_true(json_object_get(d, "done_changed")))
				printf("%s: deployed %.12s as %s\n", site, commit,
				    client_str(answer, "release", "?"));
			else if (ok)
				printf("%s: already up to date at %.12s\n", site, commit);
			else
				fprintf(stderr, "%s: deploy failed: %s\n", site,
				    client_str(d, "done_error", "unknown error"));
			json_decref(answer);
			return ok ? 0 : 1;
		}
		json_decref(answer);
		nanosleep(&ts, NULL);
	}
}

int
cmd_deploy(struct cli *cli)
{
	const char *site = cli->args[0];
	json_t *answer;
	char path[128];
	int64_t id;
	int status, rc;

	if (!util_valid_site_name(site)) {
		fprintf(stderr, "deployd: '%s' is not a site name\n", site);
		return 2;
	}
	if (cli->rev != NULL) {
		fprintf(stderr, "deployd: deploy --rev is not implemented yet\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/deploy", site);
	if ((rc = client_call(cli, "POST", path, "{}", &answer, &status)) != 0)
		return rc;
	id = json_integer_value(json_object_get(answer, "id"));
	json_decref(answer);
	if (!cli->wait) {
		printf("%s: deploy queued (request %lld)\n", site, (long long)id);
		return 0;
	}
	return client_wait(cli, site, id);
}
