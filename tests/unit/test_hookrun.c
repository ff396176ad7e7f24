/* test_hookrun.c: deploy hooks run as real processes: environment, signals, deadline, output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deploy/deploy.h"

static const struct hookrun_env test_env = {
	.site = "www",
	.release = "/srv/www/releases/20261125T224329Z-0123456789ab",
	.commit = "0123456789abcdef0123456789abcdef01234567",
	.previous_commit = "",
	.ref = "refs/tags/v1.2",
	.error = NULL,
};

static int
run_sh(const char *script, const struct hookrun_env *env, int64_t timeout_ms,
    struct hookrun_result *res, struct error *e)
{
	struct strv argv = { 0 };
	int rc;

	util_strv_push(&argv, "/bin/sh");
	util_strv_push(&argv, "-c");
	util_strv_push(&argv, script);
	memset(e, 0, sizeof(*e));
	rc = hookrun_run("pre_activate", &argv, "/", env, timeout_ms, res, e);
	util_strv_free(&argv);
	return rc;
}

static void
t_env_exact(void **state)
{
	struct hookrun_env env = test_env;
	struct hookrun_result res;
	struct error e;

	(void)state;
	setenv("SECRET_FROM_DAEMON", "leak", 1);
	assert_int_equal(run_sh("tr '\\000' '\\n' </proc/$$/environ | sort; pwd", &env, 5000,
	    &res, &e), E_OK);
	assert_string_equal(res.output,
	    "DEPLOYD_COMMIT=0123456789abcdef0123456789abcdef01234567\n"
	    "DEPLOYD_PREVIOUS_COMMIT=\n"
	    "DEPLOYD_REF=refs/tags/v1.2\n"
	    "DEPLOYD_RELEASE=/srv/www/releases/20261125T224329Z-0123456789ab\n"
	    "DEPLOYD_SITE=www\n"
	    "PATH=/usr/local/bin:/usr/bin:/bin\n"
	    "/\n");
	hookrun_result_free(&res);
	/* on_failure also gets DEPLOYD_ERROR, newlines and all. */
	env.error = "fetch failed:\nbad";
	assert_int_equal(run_sh("printf '%s' \"$DEPLOYD_ERROR\"", &env, 5000, &res, &e), E_OK);
	assert_string_equal(res.output, "fetch failed:\nbad");
	hookrun_result_free(&res);
	unsetenv("SECRET_FROM_DAEMON");
}

/* The daemon blocks SIGTERM in every thread and ignores SIGPIPE; a hook must not inherit that. */
static void
t_signals_reset(void **state)
{
	struct hookrun_result res;
	struct error e;
	sigset_t block, old;

	(void)state;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(run_sh("grep -E '^Sig(Blk|Ign)' /proc/self/status; kill -TERM $$; "
	    "sleep 5; exit 0", &test_env, 5000, &res, &e), E_INVAL);
	assert_string_equal(e.msg, "pre_activate hook killed by signal 15");
	assert_non_null(strstr(res.output, "SigBlk:\t0000000000000000\n"));
	/*
	 * The daemon's ignored SIGPIPE must not reach the hook. The whole mask is not checked:
	 * the shell that runs the probe may ignore signals of its own (seen under make distcheck).
	 */
	{
		const char *ign = strstr(res.output, "SigIgn:\t");
		unsigned long long mask;

		assert_non_null(ign);
		mask = strtoull(ign + 8, NULL, 16);
		assert_int_equal(mask & (1ULL << (SIGPIPE - 1)), 0);
		assert_int_equal(mask & (1ULL << (SIGTERM - 1)), 0);
		assert_int_equal(mask & (1ULL << (SIGHUP - 1)), 0);
	}
	hookrun_result_free(&res);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, SIG_DFL);
}

/* Only stdin, stdout and stderr reach the hook, whatever the daemon has open. */
static void
t_fds_closed(void **state)
{
	struct strv argv = { 0 };
	struct hookrun_result res;
	struct error e;
	int fd = open("/dev/null", O_RDONLY);	/* not close-on-exec */

	(void)state;
	assert_true(fd >= 3);
	util_strv_push(&argv, "/bin/ls");
	util_strv_push(&argv, "/proc/self/fd");
	assert_int_equal(hookrun_run("pre_activate", &argv, "/", &test_env, 5000, &res, &e),
	    E_OK);
	/* 3 is the directory ls reads. */
	assert_string_equal(res.output, "0\n1\n2\n3\n");
	hookrun_result_free(&res);
	util_strv_free(&argv);
	util_strv_push(&argv, "/bin/readlink");
	util_strv_push(&argv, "/proc/self/fd/0");
	assert_int_equal(hookrun_run("pre_activate", &argv, "/", &test_env, 5000, &res, &e),
	    E_OK);
	assert_string_equal(res.output, "/dev/null\n");
	hookrun_result_free(&res);
	util_strv_free(&argv);
	close(fd);
}

static void
t_exit_codes(void **state)
{
	struct strv argv = { 0 };
	struct hookrun_result res;
	struct error e = { 0 };

	(void)state;
	assert_int_equal(run_sh("echo out; echo err >&2; exit 7", &test_env, 5000, &res, &e),
	    E_INVAL);
	assert_string_equal(e.msg, "pre_activate hook failed (exit status 7)");
	assert_string_equal(res.output, "out\nerr\n");
	assert_true(WIFEXITED(res.status));
	hookrun_result_free(&res);

	util_strv_push(&argv, "/nonexistent/hook");
	assert_int_equal(hookrun_run("post_activate", &argv, "/", &test_env, 5000, &res, &e),
	    E_CONFIG);
	assert_string_equal(e.msg, "post_activate hook /nonexistent/hook: No such file or "
	    "directory");
	hookrun_result_free(&res);
	/* A working directory that is gone. */
	util_strv_free(&argv);
	util_strv_push(&argv, "/bin/true");
	assert_int_equal(hookrun_run("post_activate", &argv, "/nonexistent", &test_env, 5000,
	    &res, &e), E_CONFIG);
	assert_non_null(strstr(e.msg, "No such file or directory"));
	hookrun_result_free(&res);
	util_strv_free(&argv);
	assert_int_equal(hookrun_run("post_activate", &argv, "/", &test_env, 5000, &res, &e),
	    E_CONFIG);
	hookrun_result_free(&res);
}

static void
t_timeout(void **state)
{
	struct hookrun_result res;
	struct error e;
	int64_t t0 = util_mono_ms();
	int st;

	(void)state;
	/* Even a hook that ignores SIGTERM goes: the group gets SIGKILL. */
	assert_int_equal(run_sh("trap '' TERM; echo started; sleep 30", &test_env, 400, &res,
	    &e), E_TIMEOUT);
	assert_true(util_mono_ms() - t0 < 5000);
	assert_string_equal(e.msg, "pre_activate hook timed out after 1 s");
	assert_int_equal(res.timed_out, 1);
	assert_string_equal(res.output, "started\n");
	hookrun_result_free(&res);
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);

	/* A hook that exits but leaves a child holding its output does not hang the deploy. */
	t0 = util_mono_ms();
	assert_int_equal(run_sh("sleep 30 & echo done", &test_env, 20000, &res, &e), E_OK);
	assert_true(util_mono_ms() - t0 < 5000);
	assert_string_equal(res.output, "done\n");
	hookrun_result_free(&res);
}

static void
t_output_bounded(void **state)
{
	struct hookrun_result res;
	struct error e;
	char tail[64];

	(void)state;
	/* 200 KiB of output: the first 64 KiB are kept, and the hook is not blocked. */
	assert_int_equal(run_sh("i=0; while [ $i -lt 3200 ]; do "
	    "echo 0123456789012345678901234567890123456789012345678901234567890123; "
	    "i=$((i+1)); done; echo end", &test_env, 20000, &res, &e), E_OK);
	assert_int_equal(res.truncated, 1);
	assert_int_equal(res.len, HOOKRUN_OUT_MAX + strlen("\n[output truncated]\n"));
	assert_int_equal(strlen(res.output), res.len);
	assert_non_null(strstr(res.output, "\n[output truncated]\n"));
	hookrun_tail(&res, tail, sizeof(tail));
	assert_int_equal(strlen(tail), sizeof(tail) - 1);
	assert_non_null(strstr(tail, "[output truncated]\n"));
	hookrun_result_free(&res);

	/* The state file needs valid UTF-8: bad bytes and control characters become '?'. */
	assert_int_equal(run_sh("printf 'caf\\303\\251 \\377\\001\\tok\\n'", &test_env, 5000,
	    &res, &e), E_OK);
	hookrun_tail(&res, tail, sizeof(tail));
	assert_string_equal(tail, "caf\xc3\xa9 ??\tok\n");
	/* Cut on a character boundary, never inside one. */
	hookrun_tail(&res, tail, 10);
	assert_string_equal(tail, "\xc3\xa9 ??\tok\n");
	hookrun_tail(&res, tail, 9);
	assert_string_equal(tail, " ??\tok\n");
	hookrun_log("www", "pre_activate", &res);
	hookrun_result_free(&res);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_env_exact),
		cmocka_unit_test(t_signals_reset),
		cmocka_unit_test(t_fds_closed),
		cmocka_unit_test(t_exit_codes),
		cmocka_unit_test(t_timeout),
		cmocka_unit_test(t_output_bounded),
	};

	log_init(getenv("TEST_VERBOSE") != NULL ? LOG_LVL_DEBUG : LOG_LVL_ERROR, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
