/* fuzz_control.c: libFuzzer target: raw HTTP requests to the control API (server/control.c) on its Unix socket. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/*
 * The control handler is static, so the input goes the public way: control_start()
 * listens on a socket in a temp dir and each input is one client connection. The
 * scheduler is the real one, initialised but not started: requests queue and coalesce,
 * no deploy runs. A reload request makes control.c raise SIGHUP, which is ignored here.
 */

static char fuzz_control_sock[256];

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config *cfg;
	struct error e;
	char *dir, *yaml, *sub;

	(void)argc;
	(void)argv;
	signal(SIGHUP, SIG_IGN);
	dir = fuzz_util_tmpdir("control");
	snprintf(fuzz_control_sock, sizeof(fuzz_control_sock), "%s/ctl.sock", dir);
	if (asprintf(&sub, "%s/www/releases", dir) < 0 || util_mkdir_p(sub, 0755) != E_OK)
		abort();
	free(sub);
	if (asprintf(&yaml, "listen: 127.0.0.1:9\ncontrol_socket: %s\nstate_dir: %s/state\n"
	    "log_level: error\nsites:\n"
	    "  - name: www\n    repo: %s/none.git\n    path: %s/www\n    branch: main\n"
	    "  - name: blog\n    repo: file:///nonexistent\n    path: %s/blog\n"
	    "    tags: \"v*\"\n    poll: 0\n",
	    fuzz_control_sock, dir, dir, dir, dir) < 0)
		abort();
	cfg = fuzz_util_serve_config(dir, yaml);
	if (control_start(cfg, &e) != E_OK)
		fuzz_util_die("control_start: %s", e.msg);
	free(yaml);
	free(dir);
	return 0;	/* cfg stays for the whole run */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libmicrohttpd's own answers (400, 413, 414, 431, 501, 505) and the API's. */
	static const int allowed[] = { 200, 202, 400, 404, 405, 413, 414, 422, 431, 501, 505,
	    0 };
	char resp[2048];
	int status;

	status = fuzz_util_exchange(fuzz_control_sock, data, size, resp, sizeof(resp));
	if (fuzz_util_verbose()) {
		const char *b = strstr(resp, "\r\n\r\n");

		fprintf(stderr, "fuzz_control: %d %s\n", status, b != NULL ? b + 4 : "");
	}
	if (status == 0)
		return 0;	/* no complete request: the server just closed */
	fuzz_util_check_status("the control API", status, allowed);
	if (strstr(resp, "\r\n\r\n") == NULL)
		fuzz_util_die("an answer without the end of its headers");
	return 0;
}
