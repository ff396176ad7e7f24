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

#include "server/deployd.h"

#define CLIENT_RESP_MAX (16 * 1024 * 1024)
#define CLIENT_TIMEOUT_MS 30000

/* Connect to the control socket, saying plainly why not: no daemon, or no permission. */
static int
client_connect(const char *socket_path, struct error *e)
{
	struct sockaddr_un sun;
	int fd;

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
	return fd;
}

/* One request per connection (Connection: close), so the answer ends at EOF. */
int
client_request(const char *socket_path, const char *method, const char *path,
    const char *body, int *status, char **resp, struct error *e)
{
	struct pollfd pfd;
	char *req, *buf = NULL, *hdr_end;
	size_t len = 0, cap = 0;
	int fd, rc;

	*resp = NULL;
	if ((fd = client_connect(socket_path, e)) < 0)
		return fd;
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

/* One table row; the name column is as wide as the longest name, so 50 sites line up. */
#define CLIENT_ROW "%-*s %-10s %-12s %-30s %-12s %-17s %-10s %s\n"
static void
client_status_row(json_t *s, int namew)
{
	char deployed[48], next[48], commit[13], err[80], trig[32];
	const char *c = client_str(s, "commit", "-");
	const char *prov = client_str(s, "trigger_provider", NULL);
	json_t *paused = json_object_get(s, "paused");

	util_strlcpy(commit, c, sizeof(commit));
	/* "webhook:github": the JSON has the delivery id too. */
	snprintf(trig, sizeof(trig), "%s%s%s", client_str(s, "trigger", "-"),
	    prov != NULL ? ":" : "", prov != NULL ? prov : "");
	client_ago(client_str(s, "deployed_at", NULL), deployed, sizeof(deployed));
	client_ago(client_str(s, "next_poll_at", NULL), next, sizeof(next));
	util_sanitize(client_str(s, "last_error", "-"), err, sizeof(err));
	printf(CLIENT_ROW, namew, client_str(s, "name", "?"),
	    json_is_true(paused) ? "paused" : client_str(s, "state", "?"), commit,
	    client_str(s, "release", "-"), deployed, trig, next, err);
}

int
cmd_status(struct cli *cli)
{
	json_t *answer, *sites, *s;
	char path[128];
	size_t i;
	int status, rc, namew = 8;

	if (cli->nargs == 1) {
		if (!config_valid_name(cli->args[0])) {
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
	if (cli->nargs == 1) {
		sites = json_array();
		json_array_append(sites, answer);
	} else
		sites = json_incref(json_object_get(answer, "sites"));
	json_array_foreach(sites, i, s)
		if ((int)strlen(client_str(s, "name", "?")) > namew)
			namew = (int)strlen(client_str(s, "name", "?"));
	printf(CLIENT_ROW, namew, "SITE", "STATE", "COMMIT", "RELEASE", "DEPLOYED", "TRIGGER",
	    "NEXT-POLL", "LAST-ERROR");
	json_array_foreach(sites, i, s)
		client_status_row(s, namew);
	json_decref(sites);
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

/* 1536 as "1.5 KiB": progress lines stay short. */
static void
client_bytes(int64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld B", (long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

static int64_t
client_int(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* "fetching 120/400 objects, 1.2 MiB" or "writing 800/2000 files", from an event's progress. */
static void
client_progress(const char *state, json_t *p, int bar, char *buf, size_t len)
{
	int64_t done = 0, total = 0;
	char size[32], meter[24] = "";
	const char *what = NULL;
	int i, fill;

	if (strcmp(state, "fetching") == 0 && client_int(p, "objects_total") > 0) {
		done = client_int(p, "objects");
		total = client_int(p, "objects_total");
		what = "objects";
	} else if (strcmp(state, "writing") == 0 && client_int(p, "files_total") > 0) {
		done = client_int(p, "files");
		total = client_int(p, "files_total");
		what = "files";
	}
	if (what == NULL) {
		util_strlcpy(buf, state, len);
		return;
	}
	if (bar) {
		fill = (int)(done * 20 / total);
		meter[0] = '[';
		for (i = 0; i < 20; i++)
			meter[i + 1] = i < fill ? '#' : '.';
		meter[21] = ']';
		meter[22] = ' ';
		meter[23] = '\0';
	}
	client_bytes(client_int(p, "bytes"), size, sizeof(size));
	if (strcmp(what, "objects") == 0)
		snprintf(buf, len, "%s %s%lld/%lld objects, %s", state, meter, (long long)done,
		    (long long)total, size);
	else
		snprintf(buf, len, "%s %s%lld/%lld files", state, meter, (long long)done,
		    (long long)total);
}

/* The step's count is full: its last progress line is always worth a line. */
static int
client_complete(const char *state, json_t *p)
{
	if (strcmp(state, "fetching") == 0)
		return client_int(p, "objects_total") > 0 &&
		    client_int(p, "objects") == client_int(p, "objects_total");
	if (strcmp(state, "writing") == 0)
		return client_int(p, "files_total") > 0 &&
		    client_int(p, "files") == client_int(p, "files_total");
	return 0;
}

/* The outcome of job id, once an event says it is done; returns the exit code. */
static int
client_outcome(const char *site, const char *what, json_t *ev)
{
	const char *commit = client_str(ev, "done_commit", "?");

	if (!json_is_true(json_object_get(ev, "done_ok"))) {
		fprintf(stderr, "%s: %s failed: %s\n", site, what,
		    client_str(ev, "done_error", "unknown error"));
		return 1;
	}
	if (strcmp(what, "deploy") != 0 && strcmp(what, "rollback") != 0)
		printf("%s: %s done\n", site, what);
	else if (json_is_true(json_object_get(ev, "done_changed")))
		printf("%s: %s %.12s is live as %s\n", site,
		    strcmp(what, "rollback") == 0 ? "rolled back;" : "deployed;", commit,
		    client_str(ev, "done_release", "?"));
	else if (json_is_true(json_object_get(ev, "paused")) && commit[0] == '?')
		printf("%s: paused, nothing deployed (`deployd resume %s` resumes)\n", site, site);
	else
		printf("%s: already up to date at %.12s\n", site, commit);
	return 0;
}

/* What the --wait display remembers between events. */
struct client_watch {
	const char	*site;
	int64_t		 id;
	int		 tty;
	int64_t		 start;		/* monotonic ms */
	int64_t		 last_line;	/* monotonic ms of the last progress line */
	char		 state[32];
	char		 shown[160];	/* the last progress line printed */
};

/*
 * One event of the stream. On a terminal: one line rewritten in place with a progress bar.
 * Otherwise: a line per state, progress lines at most once a second, and each step's last.
 */
static void
client_show(struct client_watch *w, json_t *ev)
{
	char text[160], el[32];
	const char *state;
	json_t *p = json_object_get(ev, "progress");
	int64_t now = util_mono_ms();

	state = client_int(ev, "running_id") == w->id ? client_str(ev, "state", "?") :
	    "queued";
	client_progress(state, p, w->tty, text, sizeof(text));
	if (w->tty) {
		util_format_duration(now - w->start, el, sizeof(el));
		printf("\r\033[K%s: %s ... %s", w->site, text, el);
		fflush(stdout);
	} else if (strcmp(state, w->state) != 0 || (strcmp(text, w->shown) != 0 &&
	    (now - w->last_line >= 1000 || client_complete(state, p)))) {
		printf("%s: %s\n", w->site, text);
		fflush(stdout);
		util_strlcpy(w->shown, text, sizeof(w->shown));
		w->last_line = now;
	}
	util_strlcpy(w->state, state, sizeof(w->state));
}

/* Read the status line and headers of the events stream; 0 if it is a 200. */
static int
client_stream_head(int fd, char *buf, size_t cap, size_t *len, size_t *body,
    struct error *e)
{
	char *end;
	int status;
	ssize_t n;

	*len = 0;
	for (;;) {
		if ((n = read(fd, buf + *len, cap - 1 - *len)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return util_error(e, E_INVAL, "the daemon closed the events stream");
		*len += (size_t)n;
		buf[*len] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) != NULL)
			break;
		if (*len >= cap - 1)
			return util_error(e, E_INVAL, "malformed answer from deployd");
	}
	*body = (size_t)(end + 4 - buf);
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return util_error(e, E_INVAL, "malformed answer from deployd");
	if (status != 200)
		return util_error(e, E_INVAL, "the daemon refused the events stream (HTTP %d)",
		    status);
	return E_OK;
}

/*
 * Follow the site's events stream until the job that answers request id is done. HTTP/1.0,
 * so the stream comes unchunked and ends at EOF; the daemon sends a line at least every 10 s.
 */
static int
client_wait(struct cli *cli, const char *site, int64_t id, const char *what)
{
	struct client_watch w = { .site = site, .id = id, .tty = isatty(STDOUT_FILENO) };
	struct pollfd pfd;
	struct error e;
	char buf[65536], *nl, *req, *sock;
	size_t len = 0, off = 0;
	json_t *ev;
	int fd, rc = -1;

	w.start = util_mono_ms();
	if (client_socket(cli, &sock) != E_OK)
		return 2;
	fd = client_connect(sock, &e);
	free(sock);
	if (fd < 0) {
		fprintf(stderr, "deployd: %s\n", e.msg);
		return 1;
	}
	req = util_xasprintf("GET /v1/sites/%s/events?id=%lld HTTP/1.0\r\nHost: localhost"
	    "\r\n\r\n", site, (long long)id);
	if (util_write_all(fd, req, strlen(req)) != E_OK ||
	    client_stream_head(fd, buf, sizeof(buf), &len, &off, &e) != E_OK) {
		free(req);
		close(fd);
		fprintf(stderr, "deployd: %s\n", e.msg[0] ? e.msg : "cannot follow the deploy");
		return 1;
	}
	free(req);
	memmove(buf, buf + off, len - off);
	len -= off;
	while (rc < 0) {
		ssize_t n;

		while (rc < 0 && (nl = memchr(buf, '\n', len)) != NULL) {
			*nl = '\0';
			if ((ev = json_loads(buf, 0, NULL)) != NULL) {
				if (json_object_get(ev, "error") != NULL) {
					fprintf(stderr, "%s: %s\n", site,
					    client_str(ev, "error", "?"));
					rc = 1;
				} else if (client_int(ev, "done_id") >= id) {
					if (w.tty && w.state[0] != '\0')
						printf("\r\033[K");
					rc = client_outcome(site, what, ev);
				} else
					client_show(&w, ev);
				json_decref(ev);
			}
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		if (rc >= 0)
			break;
		pfd.fd = fd;
		pfd.events = POLLIN;
		if ((n = poll(&pfd, 1, CLIENT_TIMEOUT_MS)) == 0) {
			fprintf(stderr, "\ndeployd: no word from the daemon for %d s\n",
			    CLIENT_TIMEOUT_MS / 1000);
			rc = 1;
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (len >= sizeof(buf) - 1)
			len = 0;	/* a line longer than any event: not ours, drop it */
		if ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "%s%s: the daemon stopped before the %s finished\n",
			    w.tty && w.state[0] != '\0' ? "\n" : "", site, what);
			rc = 1;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	return rc;
}

/* POST a job for SITE, then report it or wait for it. */
static int
client_job(struct cli *cli, const char *site, const char *action, const char *body)
{
	json_t *answer;
	char path[128];
	int64_t id;
	int status, rc;

	if (!config_valid_name(site)) {
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

	if (!config_valid_name(cli->args[0])) {
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
