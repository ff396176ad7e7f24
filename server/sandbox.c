/* sandbox.c: the listener's confinement: another user, no new privileges, Landlock, seccomp. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/landlock.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#ifdef HAVE_SECCOMP
#include <seccomp.h>
#endif

#include "server/deployd.h"

/*
 * Started as root: become the listener user, with no supplementary groups, and check
 * that root cannot be had back.
 */
static int
sandbox_drop(const char *user, struct error *e)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	if (geteuid() != 0 && getuid() != 0)
		return E_OK;
	if (user == NULL || user[0] == '\0')
		return util_error(e, E_CONFIG, "listener_user is empty");
	if ((rc = getpwnam_r(user, &pw, buf, sizeof(buf), &res)) != 0 || res == NULL) {
		errno = rc;
		return util_error(e, E_CONFIG, "listener_user %s: %s", user,
		    rc != 0 ? strerror(rc) : "no such user");
	}
	if (pw.pw_uid == 0 || pw.pw_gid == 0)
		return util_error(e, E_CONFIG, "listener_user %s is root or in group root",
		    user);
	if (setgroups(0, NULL) != 0 || setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) != 0 ||
	    setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) != 0)
		return util_error_sys(e, "cannot become listener_user %s", user);
	if (setresuid(0, 0, 0) == 0 || setegid(0) == 0 || getuid() == 0 || geteuid() == 0)
		return util_error(e, E_SYS, "still able to become root after dropping to %s",
		    user);
	return E_OK;
}

#ifdef __linux__
/* Rights newer than Debian 12's <linux/landlock.h>, by the ABI version that added them. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER	(1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE	(1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV	(1ULL << 15)
#endif
#define SANDBOX_NET_BIND_TCP		(1ULL << 0)
#define SANDBOX_NET_CONNECT_TCP		(1ULL << 1)
#define SANDBOX_SCOPE_ABSTRACT_UNIX	(1ULL << 0)
#define SANDBOX_SCOPE_SIGNAL		(1ULL << 1)

/* The kernel's struct landlock_ruleset_attr as of ABI 6; older kernels get a prefix. */
struct sandbox_ruleset {
	uint64_t	fs;
	uint64_t	net;
	uint64_t	scoped;
};

static const struct {
	int		abi;
	uint64_t	fs;
	uint64_t	net;
	uint64_t	scoped;
	size_t		size;	/* how much of struct sandbox_ruleset that ABI reads */
} sandbox_landlock_abis[] = {
	{ 1, (1ULL << 13) - 1, 0, 0, 8 },
	{ 2, LANDLOCK_ACCESS_FS_REFER, 0, 0, 8 },
	{ 3, LANDLOCK_ACCESS_FS_TRUNCATE, 0, 0, 8 },
	{ 4, 0, SANDBOX_NET_BIND_TCP | SANDBOX_NET_CONNECT_TCP, 0, 16 },
	{ 5, LANDLOCK_ACCESS_FS_IOCTL_DEV, 0, 0, 16 },
	{ 6, 0, 0, SANDBOX_SCOPE_ABSTRACT_UNIX | SANDBOX_SCOPE_SIGNAL, 24 },
};

/*
 * Handle every filesystem right the kernel knows and grant none: no path can be opened,
 * created or removed. Where the kernel knows them, TCP bind and connect and signals to
 * processes outside are refused too. Best effort: without Landlock, say so at debug.
 */
static int
sandbox_landlock(struct error *e)
{
	struct sandbox_ruleset attr;
	size_t i, size = 8;
	long abi;
	int fd;

	abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1) {
		log_debug("webhook listener: Landlock unavailable (%s); relying on seccomp and"
		    " the user", strerror(errno));
		return E_OK;
	}
	memset(&attr, 0, sizeof(attr));
	for (i = 0; i < sizeof(sandbox_landlock_abis) / sizeof(sandbox_landlock_abis[0]); i++) {
		if (sandbox_landlock_abis[i].abi > abi)
			break;
		attr.fs |= sandbox_landlock_abis[i].fs;
		attr.net |= sandbox_landlock_abis[i].net;
		attr.scoped |= sandbox_landlock_abis[i].scoped;
		size = sandbox_landlock_abis[i].size;
	}
	if ((fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0)) < 0)
		return util_error_sys(e, "landlock_create_ruleset");
	if (syscall(SYS_landlock_restrict_self, fd, 0) != 0) {
		util_error_sys(e, "landlock_restrict_self");
		close(fd);
		return E_SYS;
	}
	close(fd);
	log_debug("webhook listener: Landlock ABI %ld applied", abi);
	return E_OK;
}
#endif

#ifdef HAVE_SECCOMP
enum { SB_ALLOW, SB_EACCES, SB_ENOSYS };

/*
 * What libmicrohttpd's threads (epoll, thread pool, ITC), GnuTLS, libsodium, jansson and
 * glibc's allocator and stdio need once the listener serves. Opening a path fails with
 * EACCES instead of killing: library code that opens files on a side path (thread
 * names, locale data) degrades instead of taking the listener down. clone3 says ENOSYS
 * so that glibc falls back to clone, whose flags can be checked.
 */
static const struct {
	const char	*name;
	int		 action;
} sandbox_syscalls[] = {
	{ "read", SB_ALLOW }, { "readv", SB_ALLOW }, { "write", SB_ALLOW },
	{ "writev", SB_ALLOW }, { "close", SB_ALLOW }, { "lseek", SB_ALLOW },
	{ "fstat", SB_ALLOW }, { "newfstatat", SB_ALLOW }, { "statx", SB_ALLOW },
	{ "fcntl", SB_ALLOW }, { "mmap", SB_ALLOW }, { "munmap", SB_ALLOW },
	{ "mremap", SB_ALLOW }, { "mprotect", SB_ALLOW }, { "madvise", SB_ALLOW },
	{ "brk", SB_ALLOW }, { "mlock", SB_ALLOW }, { "munlock", SB_ALLOW },
	{ "futex", SB_ALLOW }, { "set_robust_list", SB_ALLOW },
	{ "rseq", SB_ALLOW }, { "rt_sigaction", SB_ALLOW }, { "rt_sigprocmask", SB_ALLOW },
	{ "rt_sigreturn", SB_ALLOW }, { "rt_sigtimedwait", SB_ALLOW },
	{ "sigaltstack", SB_ALLOW }, { "restart_syscall", SB_ALLOW }, { "exit", SB_ALLOW },
	{ "exit_group", SB_ALLOW }, { "getpid", SB_ALLOW }, { "gettid", SB_ALLOW },
	{ "getppid", SB_ALLOW }, { "getuid", SB_ALLOW }, { "geteuid", SB_ALLOW },
	{ "tgkill", SB_ALLOW }, { "clock_gettime", SB_ALLOW }, { "clock_getres", SB_ALLOW },
	{ "gettimeofday", SB_ALLOW }, { "nanosleep", SB_ALLOW },
	{ "clock_nanosleep", SB_ALLOW }, { "sched_yield", SB_ALLOW },
	{ "sched_getaffinity", SB_ALLOW }, { "getrandom", SB_ALLOW },
	{ "epoll_create1", SB_ALLOW }, { "epoll_ctl", SB_ALLOW }, { "epoll_wait", SB_ALLOW },
	{ "epoll_pwait", SB_ALLOW }, { "poll", SB_ALLOW }, { "ppoll", SB_ALLOW },
	{ "select", SB_ALLOW }, { "pselect6", SB_ALLOW }, { "eventfd2", SB_ALLOW },
	{ "pipe2", SB_ALLOW }, { "accept", SB_ALLOW }, { "accept4", SB_ALLOW },
	{ "recvfrom", SB_ALLOW }, { "recvmsg", SB_ALLOW }, { "sendto", SB_ALLOW },
	{ "sendmsg", SB_ALLOW }, { "shutdown", SB_ALLOW }, { "getsockname", SB_ALLOW },
	{ "getpeername", SB_ALLOW }, { "getsockopt", SB_ALLOW }, { "setsockopt", SB_ALLOW },
	{ "open", SB_EACCES }, { "openat", SB_EACCES }, { "openat2", SB_EACCES },
	{ "creat", SB_EACCES }, { "clone3", SB_ENOSYS },
};

/* Threads only (CLONE_THREAD); thread names only (PR_SET_NAME). */
static int
sandbox_seccomp_args(scmp_filter_ctx ctx)
{
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) != 0)
		return -1;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
	    SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
}

/*
 * Anything else kills the listener (SIGSYS): an unexpected system call means a
 * compromise or an unreviewed path, and a kill is loud (the daemon logs it) and
 * recovers (the daemon respawns it), where EPERM would let an exploit probe quietly.
 * Sanitizer builds fail with EPERM instead: AddressSanitizer's reports and
 * UndefinedBehaviorSanitizer's use calls no listener makes.
 */
static int
sandbox_seccomp(struct error *e)
{
	scmp_filter_ctx ctx;
	uint32_t act;
	size_t i;
	int nr, rc;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
	ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
#else
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
#endif
	if (ctx == NULL)
		return util_error(e, E_SYS, "seccomp_init failed");
	for (i = 0; i < sizeof(sandbox_syscalls) / sizeof(sandbox_syscalls[0]); i++) {
		/* A name this architecture lacks (say, open on arm64) is skipped. */
		if ((nr = seccomp_syscall_resolve_name(sandbox_syscalls[i].name)) ==
		    __NR_SCMP_ERROR)
			continue;
		act = sandbox_syscalls[i].action == SB_ALLOW ? SCMP_ACT_ALLOW :
		    sandbox_syscalls[i].action == SB_EACCES ? SCMP_ACT_ERRNO(EACCES) :
		    SCMP_ACT_ERRNO(ENOSYS);
		if ((rc = seccomp_rule_add(ctx, act, nr, 0)) != 0) {
			seccomp_release(ctx);
			return util_error(e, E_SYS, "seccomp rule for %s: %s",
			    sandbox_syscalls[i].name, strerror(-rc));
		}
	}
	if (sandbox_seccomp_args(ctx) != 0 || (rc = seccomp_load(ctx)) != 0) {
		seccomp_release(ctx);
		return util_error(e, E_SYS, "cannot load the seccomp filter");
	}
	seccomp_release(ctx);
	return E_OK;
}
#endif

/*
 * Confine the calling process for good, before it serves a request: the user (when
 * root), no new privileges, not dumpable, Landlock, then seccomp last (it forbids
 * the calls the others make). Everything it needs must be open already.
 */
int
sandbox_apply(const struct sandbox_opts *o, struct error *e)
{
	int rc;

	if ((rc = sandbox_drop(o->user, e)) != E_OK)
		return rc;
#ifdef __linux__
	/* A change of user clears the parent-death signal: arm it again. */
	if (o->pdeathsig != 0 && prctl(PR_SET_PDEATHSIG, o->pdeathsig, 0, 0, 0) != 0)
		return util_error_sys(e, "PR_SET_PDEATHSIG");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return util_error_sys(e, "PR_SET_NO_NEW_PRIVS");
	/* Another process of the same user must not ptrace it or read its memory. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if ((rc = sandbox_landlock(e)) != E_OK)
		return rc;
#endif
#ifdef HAVE_SECCOMP
	if (o->no_seccomp)
		log_warn("webhook listener: seccomp filter off (DEPLOYD_SANDBOX_NO_SECCOMP=1)");
	else if ((rc = sandbox_seccomp(e)) != E_OK)
		return rc;
#else
	(void)o;
#endif
	return E_OK;
}
