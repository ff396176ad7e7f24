/* client.c: the client side of the control socket: a request and its JSON answer, or a site's events stream. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/deployd.h"

#define CLIENT_RESP_MAX (16 * 1024 * 1024)

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

static void
client_print_errors(json_t *answer)
{
	json_t *errs = json_object_get(answer, "errors"), *v;
	size_t i;

	json_array_foreach(errs, i, v)
		if (json_is_string(v))
			fprintf(stderr, "%s\n", json_string_value(v));
}

/* GET or POST and parse the JSON answer; prints the error and returns the exit code. */
int
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
 * Open the site's events stream from request id on: HTTP/1.0, so it comes unchunked and
 * ends at EOF. Prints the error and returns the exit code, like client_call; on 0, *fd is
 * the stream and buf holds the *len bytes of it already read.
 */
int
client_events(struct cli *cli, const char *site, int64_t id, int *fd, char *buf, size_t cap,
    size_t *len)
{
	struct error e = { 0 };		/* a failed write says nothing in it */
	char *req, *sock;
	size_t off = 0;

	if (client_socket(cli, &sock) != E_OK)
		return 2;
	*fd = client_connect(sock, &e);
	free(sock);
	if (*fd < 0) {
		fprintf(stderr, "deployd: %s\n", e.msg);
		return 1;
	}
	req = util_xasprintf("GET /v1/sites/%s/events?id=%lld HTTP/1.0\r\nHost: localhost"
	    "\r\n\r\n", site, (long long)id);
	if (util_write_all(*fd, req, strlen(req)) != E_OK ||
	    client_stream_head(*fd, buf, cap, len, &off, &e) != E_OK) {
		free(req);
		close(*fd);
		fprintf(stderr, "deployd: %s\n", e.msg[0] ? e.msg : "cannot follow the deploy");
		return 1;
	}
	free(req);
	memmove(buf, buf + off, *len - off);
	*len -= off;
	return 0;
}
