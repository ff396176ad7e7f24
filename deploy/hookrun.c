/* hookrun.c: run a deploy hook: argv, no shell, a fixed environment, a deadline, capped output. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deploy/deploy.h"

#define HOOKRUN_PATH		"PATH=/usr/local/bin:/usr/bin:/bin"
#define HOOKRUN_TRUNCATED	"\n[output truncated]\n"
#define HOOKRUN_DRAIN_MS	100	/* output still read after the hook exited */

/* The variables a hook sees, in this order; DEPLOYD_ERROR only when error is set. */
static char **
hookrun_envp(const struct hookrun_env *env)
{
	const struct {
		const char	*name;
		const char	*value;
	} vars[] = {
		{ "DEPLOYD_SITE", env->site },
		{ "DEPLOYD_RELEASE", env->release },
		{ "DEPLOYD_COMMIT", env->commit },
		{ "DEPLOYD_PREVIOUS_COMMIT", env->previous_commit },
		{ "DEPLOYD_REF", env->ref },
		{ "DEPLOYD_ERROR", env->error },
	};
	size_t i, n = 0, nvars = sizeof(vars) / sizeof(vars[0]);
	char **envp = util_xcalloc(nvars + 2, sizeof(*envp));

	for (i = 0; i < nvars; i++) {
		if (vars[i].value == NULL && strcmp(vars[i].name, "DEPLOYD_ERROR") == 0)
			continue;
		envp[n++] = util_xasprintf("%s=%s", vars[i].name,
		    vars[i].value != NULL ? vars[i].value : "");
	}
	envp[n++] = util_xstrdup(HOOKRUN_PATH);
	envp[n] = NULL;
	return envp;
}

static void
hookrun_free_envp(char **envp)
{
	size_t i;

	for (i = 0; envp[i] != NULL; i++)
		free(envp[i]);
	free(envp);
}

/*
 * The child of a multithreaded daemon: only async-signal-safe calls until execve. The daemon
 * blocks SIGTERM, SIGINT and SIGHUP in every thread, and a blocked mask survives exec, so the
 * hook would be unkillable by anything but SIGKILL; reset it all.
 */
static void __attribute__((noreturn))
hookrun_child(char *const argv[], char *const envp[], const char *cwd, int outfd, int errfd)
{
	struct sigaction sa;
	sigset_t none;
	int sig, fd, err;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);	/* SIGKILL, SIGSTOP and libc's own fail */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own process group: a timeout kills whatever the hook started, too. */
	(void)setpgid(0, 0);

	if (chdir(cwd) != 0)
		goto fail;
	if ((fd = open("/dev/null", O_RDONLY)) < 0)
		goto fail;
	if (dup2(fd, 0) < 0 || dup2(outfd, 1) < 0 || dup2(outfd, 2) < 0)
		goto fail;
	/* fd 3 reports a failed exec; it is close-on-exec, so a good exec reads as EOF. */
	if (errfd != 3 && dup3(errfd, 3, O_CLOEXEC) < 0)
		goto fail;
	errfd = 3;
	closefrom(4);
	execve(argv[0], argv, envp);
fail:
	err = errno;
	if (write(errfd, &err, sizeof(err)) < 0)
		err = 0;
	_exit(127);
}

/* Append what fits under HOOKRUN_OUT_MAX; the rest is read and dropped. */
static void
hookrun_keep(struct hookrun_result *res, const char *buf, size_t n)
{
	size_t room = HOOKRUN_OUT_MAX - res->len;

	if (n > room) {
		n = room;
		res->truncated = 1;
	}
	memcpy(res->output + res->len, buf, n);
	res->len += n;
}

/* Read the hook's output until it exits (and a little after) or the deadline passes. */
static int
hookrun_wait(pid_t pid, int fd, int64_t deadline, struct hookrun_result *res)
{
	char buf[4096];
	int64_t now, exited_at = 0;
	int eof = 0, exited = 0, status = 0;
	pid_t r;

	for (;;) {
		now = util_mono_ms();
		if (!exited) {
			r = waitpid(pid, &status, WNOHANG);
			if (r == pid) {
				exited = 1;
				exited_at = now;
				res->status = status;
			} else if (r < 0 && errno != EINTR)
				return E_SYS;
		}
		/* A grandchild may hold the pipe open; it does not keep the hook running. */
		if (exited && (eof || now - exited_at >= HOOKRUN_DRAIN_MS))
			return E_OK;
		if (now >= deadline)
			return E_TIMEOUT;
		if (eof) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			nanosleep(&ts, NULL);
			continue;
		} else {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int64_t left = deadline - now;
			ssize_t n;

			/* Wake now and then to notice an exit that leaves the pipe open. */
			if (poll(&pfd, 1, left > 50 ? 50 : (int)left) <= 0)
				continue;
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				eof = 1;
			else
				hookrun_keep(res, buf, (size_t)n);
		}
	}
}

/*
 * Run argv in cwd with exactly env's variables and a fixed PATH. 0 when it exits 0; otherwise
 * an error naming the hook (what, e.g. "pre_activate") and why. The output is in res either way.
 */
int
hookrun_run(const char *what, const struct strv *argv, const char *cwd,
    const struct hookrun_env *env, int64_t timeout_ms, struct hookrun_result *res,
    struct error *e)
{
	char **envp, **av;
	int out[2] = { -1, -1 }, ep[2] = { -1, -1 }, rc, err = 0;
	sigset_t all, old;
	ssize_t n;
	size_t i;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	res->output = util_xmalloc(HOOKRUN_OUT_MAX + sizeof(HOOKRUN_TRUNCATED));
	res->output[0] = '\0';
	if (argv->n == 0 || argv->v[0] == NULL)
		return util_error(e, E_CONFIG, "%s hook has no command", what);
	if (timeout_ms <= 0)
		timeout_ms = HOOKRUN_TIMEOUT_MS;
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(ep, O_CLOEXEC) != 0) {
		rc = util_error_sys(e, "%s hook: pipe", what);
		for (i = 0; i < 2; i++) {
			if (out[i] >= 0)
				close(out[i]);
		}
		return rc;
	}
	/* Everything the child needs is made before fork: it may not allocate. */
	envp = hookrun_envp(env);
	av = util_xcalloc(argv->n + 1, sizeof(*av));
	for (i = 0; i < argv->n; i++)
		av[i] = argv->v[i];
	/* No signal handler of ours may run in the child before it resets them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		hookrun_child(av, envp, cwd, out[1], ep[1]);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(out[1]);
	close(ep[1]);
	free(av);
	hookrun_free_envp(envp);
	if (pid < 0) {
		close(out[0]);
		close(ep[0]);
		errno = err;
		return util_error_sys(e, "%s hook: fork", what);
	}
	/* Both sides set the group, so the kill at the deadline cannot race the child. */
	(void)setpgid(pid, pid);

	while ((n = read(ep[0], &err, sizeof(err))) < 0 && errno == EINTR)
		;
	close(ep[0]);
	if (n == (ssize_t)sizeof(err)) {
		close(out[0]);
		while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR)
			;
		return util_error(e, E_CONFIG, "%s hook %s: %s", what, argv->v[0],
		    strerror(err));
	}

	rc = hookrun_wait(pid, out[0], util_mono_ms() + timeout_ms, res);
	close(out[0]);
	if (rc != E_OK) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR)
			;
	}
	if (res->truncated) {
		memcpy(res->output + res->len, HOOKRUN_TRUNCATED, sizeof(HOOKRUN_TRUNCATED));
		res->len += sizeof(HOOKRUN_TRUNCATED) - 1;
	}
	res->output[res->len] = '\0';
	if (rc == E_TIMEOUT) {
		res->timed_out = 1;
		return util_error(e, E_TIMEOUT, "%s hook timed out after %lld s", what,
		    (long long)((timeout_ms + 999) / 1000));
	}
	if (rc != E_OK)
		return util_error_sys(e, "%s hook: waitpid", what);
	if (WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0)
		return E_OK;
	if (WIFSIGNALED(res->status))
		return util_error(e, E_INVAL, "%s hook killed by signal %d", what,
		    WTERMSIG(res->status));
	return util_error(e, E_INVAL, "%s hook failed (exit status %d)", what,
	    WEXITSTATUS(res->status));
}

void
hookrun_result_free(struct hookrun_result *res)
{
	free(res->output);
	res->output = NULL;
	res->len = 0;
}

/* Log the output one sanitized line at a time, so a hook cannot forge log records. */
void
hookrun_log(const char *site, const char *what, const struct hookrun_result *res)
{
	const char *p = res->output, *nl;
	char raw[1024], clean[1024 * 4 + 1];
	size_t n;

	if (p == NULL)
		return;
	while (*p != '\0') {
		nl = strchr(p, '\n');
		n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n >= sizeof(raw))
			n = sizeof(raw) - 1;	/* a very long line is cut, not split */
		memcpy(raw, p, n);
		raw[n] = '\0';
		if (n > 0 && raw[n - 1] == '\r')
			raw[n - 1] = '\0';
		util_sanitize(raw, clean, sizeof(clean));
		log_info("site=%s %s: %s", site, what, clean);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t
hookrun_utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/*
 * The end of the output as valid UTF-8 text for the state file (jansson refuses anything
 * else): the last bytes matter most, since that is where a build says what went wrong.
 */
void
hookrun_tail(const struct hookrun_result *res, char *dst, size_t dstlen)
{
	const unsigned char *p;
	size_t start = 0, i, o = 0, l;

	if (dstlen == 0)
		return;
	dst[0] = '\0';
	if (res->output == NULL)
		return;
	if (res->len > dstlen - 1)
		start = res->len - (dstlen - 1);
	p = (const unsigned char *)res->output;
	/* Do not begin in the middle of a character. */
	while (start < res->len && (p[start] & 0xc0) == 0x80)
		start++;
	for (i = start; i < res->len && o + 1 < dstlen;) {
		l = hookrun_utf8_len(p + i, res->len - i);
		if (l == 1 && p[i] < 0x20 && p[i] != '\n' && p[i] != '\t')
			l = 0;
		if (l == 0) {
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + l >= dstlen)
			break;
		memcpy(dst + o, p + i, l);
		o += l;
		i += l;
	}
	dst[o] = '\0';
}
