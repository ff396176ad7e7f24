/* client.c: the client side of the control socket: a request and its JSON answer, or a site's events stream. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <curl/curl.h>

#include "server/deployd.h"

#define CLIENT_RESP_MAX (16 * 1024 * 1024)

/*
 * HTTP over the Unix socket is libcurl's (CURLOPT_UNIX_SOCKET_PATH): chunked answers, the
 * status line and the headers are its business. What stays here is what the operator reads
 * when it fails: no daemon, no permission, no answer in time.
 */

/* What a transfer received: the whole answer, or a stream handed over line by line. */
struct client_rx {
	char		*buf;
	size_t		 len, cap;
	int		 too_big;
	client_line_fn	 on_line;	/* NULL: keep the whole answer */
	void		*arg;
	int		 rc;		/* what on_line returned to end the stream; -1 while it runs */
};

static size_t
client_receive(char *data, size_t size, size_t nmemb, void *arg)
{
	struct client_rx *rx = arg;
	size_t n = size * nmemb, used = 0;
	char *nl;

	if (rx->len + n > CLIENT_RESP_MAX) {
		rx->too_big = 1;
		return 0;
	}
	if (rx->len + n + 1 > rx->cap) {
		rx->cap = (rx->len + n + 1) * 2;
		rx->buf = util_xrealloc(rx->buf, rx->cap, 1);
	}
	memcpy(rx->buf + rx->len, data, n);
	rx->len += n;
	rx->buf[rx->len] = '\0';
	if (rx->on_line == NULL)
		return n;
	while (rx->rc < 0 && (nl = memchr(rx->buf + used, '\n', rx->len - used)) != NULL) {
		*nl = '\0';
		rx->rc = rx->on_line(rx->arg, rx->buf + used);
		used = (size_t)(nl + 1 - rx->buf);
	}
	memmove(rx->buf, rx->buf + used, rx->len - used);
	rx->len -= used;
	return rx->rc < 0 ? n : 0;	/* 0: the reader is done, curl ends the transfer */
}

/* A handle for path on the control socket; *headers is the caller's to free. */
static CURL *
client_handle(const char *socket_path, const char *path, struct client_rx *rx,
    char *err, struct curl_slist **headers, struct error *e)
{
	struct sockaddr_un sun;
	char *url;
	CURL *c;

	if (strlen(socket_path) >= sizeof(sun.sun_path)) {
		util_error(e, E_INVAL, "socket path too long: %s", socket_path);
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c = curl_easy_init()) == NULL) {
		util_error(e, E_NOMEM, "cannot start libcurl");
		return NULL;
	}
	url = util_xasprintf("http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "deployd/" PACKAGE_VERSION " (cli)");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, client_receive);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, rx);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	*headers = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
	err[0] = '\0';
	return c;
}

/* Why a transfer failed, in the operator's words. */
static int
client_failed(CURL *c, CURLcode rc, const char *socket_path, const struct client_rx *rx,
    const char *err, struct error *e)
{
	long oserr = 0;

	if (rc == CURLE_COULDNT_CONNECT) {
		curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
		if (oserr == EACCES || oserr == EPERM)
			return util_error(e, E_SYS, "permission denied: %s (are you in the "
			    "daemon's group?)", socket_path);
		if (oserr == ENOENT || oserr == ECONNREFUSED)
			return util_error(e, E_SYS, "deployd is not running (nothing answers "
			    "on %s)", socket_path);
		return util_error(e, E_SYS, "cannot connect to %s: %s", socket_path,
		    oserr != 0 ? strerror((int)oserr) : err);
	}
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return util_error(e, E_TIMEOUT, "deployd did not answer within %d s",
		    CLIENT_TIMEOUT_MS / 1000);
	if (rx->too_big)
		return util_error(e, E_INVAL, "answer too large");
	return util_error(e, E_INVAL, "malformed answer from deployd (%s)",
	    err[0] != '\0' ? err : curl_easy_strerror(rc));
}

/* One request and its whole answer. */
int
client_request(const char *socket_path, const char *method, const char *path,
    const char *body, int *status, char **resp, struct error *e)
{
	struct client_rx rx = { .rc = -1 };
	struct curl_slist *headers = NULL;
	char err[CURL_ERROR_SIZE];
	long code = 0;
	CURLcode rc;
	CURL *c;

	*resp = NULL;
	if ((c = client_handle(socket_path, path, &rx, err, &headers, e)) == NULL)
		return e->code;
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
	if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	if ((rc = curl_easy_perform(c)) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	else
		client_failed(c, rc, socket_path, &rx, err, e);
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK) {
		free(rx.buf);
		return e->code;
	}
	*status = (int)code;
	*resp = rx.buf != NULL ? rx.buf : util_xstrdup("");
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

/*
 * Follow the site's events stream from request id on, handing each line to fn until fn
 * returns an exit code (0 or more). A daemon that says nothing for CLIENT_TIMEOUT_MS (it
 * sends a line at least every 10 s) or ends the stream first is an error. Prints the error
 * and returns the exit code, like client_call.
 */
int
client_follow(struct cli *cli, const char *site, int64_t id, client_line_fn fn, void *arg)
{
	struct client_rx rx = { .on_line = fn, .arg = arg, .rc = -1 };
	struct curl_slist *headers = NULL;
	struct error e = { 0, "" };
	char err[CURL_ERROR_SIZE], *sock, *path;
	long code = 0;
	CURLcode rc;
	CURL *c;

	if (client_socket(cli, &sock) != E_OK)
		return 2;
	path = util_xasprintf("/v1/sites/%s/events?id=%lld", site, (long long)id);
	c = client_handle(sock, path, &rx, err, &headers, &e);
	free(path);
	if (c == NULL) {
		free(sock);
		fprintf(stderr, "deployd: %s\n", e.msg);
		return 1;
	}
	/* No word for this long, at less than a byte a second, ends the wait. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(CLIENT_TIMEOUT_MS / 1000));
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (rx.rc < 0) {
		if (rc == CURLE_OPERATION_TIMEDOUT)
			fprintf(stderr, "\ndeployd: no word from the daemon for %d s\n",
			    CLIENT_TIMEOUT_MS / 1000);
		else if (rc == CURLE_HTTP_RETURNED_ERROR)
			fprintf(stderr, "deployd: the daemon refused the events stream (HTTP "
			    "%ld)\n", code);
		else if (rc != CURLE_OK && code == 0) {
			client_failed(c, rc, sock, &rx, err, &e);
			fprintf(stderr, "deployd: %s\n", e.msg);
		} else
			rx.rc = fn(arg, NULL);	/* the stream ended before the job did */
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(headers);
	free(rx.buf);
	free(sock);
	return rx.rc < 0 ? 1 : rx.rc;
}
