/* fuzz_privsep.c: libFuzzer target: privsep_msg_handle, the daemon's answers to the listener, on hostile records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/*
 * A compromised listener can send any bytes. The input becomes one struct privsep_msg
 * (cut or zero-padded to its size, as the daemon refuses any other length): fields
 * without a NUL, unknown types, bad site names, providers, deliveries and commits.
 * Invariants: an invalid record is refused and changes nothing; a push is only ever
 * answered for a configured site; metrics text is bounded and NUL-terminated. The
 * scheduler is real but not started, so a valid push only queues.
 */

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config *cfg;
	char *dir, *yaml;

	(void)argc;
	(void)argv;
	dir = fuzz_util_tmpdir("privsep");
	if (asprintf(&yaml, "listen: 127.0.0.1:1\ncontrol_socket: %s/ctl.sock\n"
	    "state_dir: %s/state\nlog_level: error\nsites:\n"
	    "  - name: www\n    repo: %s/none.git\n    path: %s/www\n    branch: main\n"
	    "  - name: blog\n    repo: %s/none.git\n    path: %s/blog\n    tags: \"v*\"\n",
	    dir, dir, dir, dir, dir, dir) < 0)
		abort();
	cfg = fuzz_util_serve_config(dir, yaml);
	privsep_msg_init(cfg);
	metrics_init(cfg);
	free(yaml);
	free(dir);
	return 0;	/* cfg stays for the whole run */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct privsep_msg m;
	struct privsep_reply a;
	char *text = NULL;
	int rc;

	memset(&m, 0, sizeof(m));
	memcpy(&m, data, size < sizeof(m) ? size : sizeof(m));
	rc = privsep_msg_handle(&m, &a, &text);
	if (a.seq != m.seq)
		fuzz_util_die("the reply does not carry the record's sequence number");
	if (rc != E_OK && (a.answer != PS_REFUSED || text != NULL))
		fuzz_util_die("an invalid record was not refused cleanly");
	if (rc == E_OK && m.type == PS_PUSH && a.answer != PS_UNKNOWN &&
	    strcmp(m.site, "www") != 0 && strcmp(m.site, "blog") != 0)
		fuzz_util_die("a push for site '%.64s' was answered %u", m.site, a.answer);
	if (text != NULL && (a.len > PRIVSEP_METRICS_MAX || strlen(text) != a.len))
		fuzz_util_die("metrics text of %u bytes is not what the reply says", a.len);
	if (fuzz_util_verbose())
		fprintf(stderr, "type=%u rc=%d answer=%u len=%u\n", m.type, rc, a.answer, a.len);
	free(text);
	return 0;
}
