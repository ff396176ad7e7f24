/* fuzz_http.c: libFuzzer target: raw HTTP requests to the webhook listener (server/http.c) on a Unix socket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"

/*
 * The internet-facing path end to end: libmicrohttpd, routing, the limits, header
 * collection, provider_handle and the answer, with the daemon's side
 * (privsep_msg_handle) in the same process. http_start() listens on "unix:" in a temp
 * dir; each input is one client connection. The scheduler is real but not started, so a
 * verified push only queues. Sites: www (branch main), blog (tags v*, github only) and
 * open (no secret_file, and an allow_from that only X-Forwarded-For can meet: the
 * listener trusts its Unix socket peer as a proxy, so every input's X-Forwarded-For is
 * walked).
 *
 * libmicrohttpd 0.9.75 in epoll mode (the listener's MHD_USE_AUTO) does not notice
 * that a client half-closed in the middle of a request: the connection stays until the
 * listener's own request_timeout cuts it. Most mutations shorten or lengthen a body, so
 * fuzz_http_complete() first makes the request complete: the head is terminated and a
 * Content-Length up to the input limit is set to the length of the body that follows.
 * Larger values stay, so 413 is still reached. Chunked bodies stay as they are, and a
 * short request_timeout bounds what a cut one costs.
 */

#define FUZZ_HTTP_CL_MAX 65536

static char fuzz_http_sock[256];
static unsigned long fuzz_http_runs;

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* In one process: the listener's records go straight to the daemon's side. */
static int
fuzz_http_ask(void *arg, const struct privsep_msg *m, struct privsep_reply *a, char **text)
{
	(void)arg;
	return privsep_msg_handle(m, a, text);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config *cfg;
	struct error e;
	char *dir, *yaml, *secret, unix_path[256];
	int fd;

	(void)argc;
	(void)argv;
	dir = fuzz_util_tmpdir("http");
	snprintf(fuzz_http_sock, sizeof(fuzz_http_sock), "%s/hooks.sock", dir);
	if (asprintf(&secret, "%s/www.secret", dir) < 0)
		abort();
	fuzz_util_write(secret, FUZZ_SECRET "\n", strlen(FUZZ_SECRET) + 1, 0600);
	if (asprintf(&yaml, "listen: unix:%s\ncontrol_socket: %s/ctl.sock\n"
	    "state_dir: %s/state\nlog_level: error\n"
	    "limits:\n  max_body: 64KiB\n  max_header: 8KiB\n  request_timeout: 200ms\n"
	    "trusted_proxies: [unix]\n"
	    "sites:\n"
	    "  - name: www\n    repo: %s/none.git\n    path: %s/www\n    branch: main\n"
	    "    secret_file: %s\n"
	    "  - name: blog\n    repo: %s/none.git\n    path: %s/blog\n    tags: \"v*\"\n"
	    "    secret_file: %s\n    providers: [github]\n    allow_sha1: true\n"
	    "  - name: open\n    repo: %s/none.git\n    path: %s/open\n    branch: main\n"
	    "    allow_from: [192.0.2.0/24, \"2001:db8::/32\"]\n",
	    fuzz_http_sock, dir, dir, dir, dir, secret, dir, dir, secret, dir, dir) < 0)
		abort();
	cfg = fuzz_util_serve_config(dir, yaml);
	privsep_msg_init(cfg);
	metrics_init(cfg);
	if ((fd = bind_listen(cfg->listen, unix_path, sizeof(unix_path), &e)) < 0 ||
	    http_load(cfg, &e) != E_OK || http_start(fd, fuzz_http_ask, NULL, &e) != E_OK)
		fuzz_util_die("http_start: %s", e.msg);
	free(secret);
	free(yaml);
	free(dir);
	return 0;	/* cfg stays for the whole run */
}

/* A copy of the request with its head ended and a small Content-Length made exact. */
static uint8_t *
fuzz_http_complete(const uint8_t *data, size_t size, size_t *outlen)
{
	const uint8_t *end, *body, *line, *nl, *v;
	uint8_t *out;
	size_t headlen, bodylen, n = 0;
	unsigned long cl;
	char num[32];

	out = malloc(size + 64);
	if ((end = memmem(data, size, "\r\n\r\n", 4)) == NULL) {
		memcpy(out, data, size);
		memcpy(out + size, "\r\n\r\n", 4);
		*outlen = size + 4;
		return out;
	}
	headlen = (size_t)(end - data) + 2;	/* through the last header's CRLF */
	body = end + 4;
	bodylen = size - (size_t)(body - data);
	for (line = data; line < data + headlen; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(data + headlen - line));
		if (nl == NULL)
			nl = data + headlen - 1;
		if ((size_t)(nl - line) > 15 && strncasecmp((const char *)line,
		    "Content-Length:", 15) == 0) {
			v = line + 15;
			cl = strtoul((const char *)v, NULL, 10);
			if (cl <= FUZZ_HTTP_CL_MAX) {
				snprintf(num, sizeof(num), "Content-Length: %zu\r\n", bodylen);
				memcpy(out + n, num, strlen(num));
				n += strlen(num);
				continue;
			}
		}
		memcpy(out + n, line, (size_t)(nl - line) + 1);
		n += (size_t)(nl - line) + 1;
	}
	memcpy(out + n, "\r\n", 2);
	n += 2;
	memcpy(out + n, body, bodylen);
	*outlen = n + bodylen;
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The design's table, plus libmicrohttpd's own 414, 501 and 505. */
	static const int allowed[] = { 200, 202, 400, 401, 403, 404, 405, 413, 414, 415, 431,
	    501, 505, 0 };
	static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	char resp[2048];
	uint8_t *req;
	size_t len;
	int status;

	req = fuzz_http_complete(data, size, &len);
	status = fuzz_util_exchange(fuzz_http_sock, req, len, resp, sizeof(resp));
	free(req);
	if (fuzz_util_verbose()) {
		const char *b = strstr(resp, "\r\n\r\n");

		fprintf(stderr, "fuzz_http: %d %s\n", status, b != NULL ? b + 4 : "");
	}
	if (status != 0) {
		fuzz_util_check_status("the webhook listener", status, allowed);
		/* Unless the request carried it itself (a delivery id is echoed back). */
		if (strstr(resp, FUZZ_SECRET) != NULL &&
		    memmem(data, size, FUZZ_SECRET, strlen(FUZZ_SECRET)) == NULL)
			fuzz_util_die("an answer reveals the secret");
	}
	/* Now and then: is it still serving? */
	if (++fuzz_http_runs % 128 == 0 &&
	    fuzz_util_exchange(fuzz_http_sock, (const uint8_t *)health, sizeof(health) - 1,
	    resp, sizeof(resp)) != 200)
		fuzz_util_die("GET /healthz no longer answers 200");
	return 0;
}
