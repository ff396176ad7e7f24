#!/bin/bash
# valgrind_daemon.sh: the daemon's whole integration path under valgrind memcheck: no definite leak, no memory error.
# timeout: 240
#
# A first deploy, an update found by polling, a signed GitHub webhook (with a deploy after
# it), status and releases over the control socket, then SIGTERM. valgrind runs with
# --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
# --trace-children=no; the fetch helper and the webhook listener process, separate execs,
# get a valgrind of their own with the same options. Without valgrind this fails: it is
# part of the suite.
. "$(dirname "$0")/../lib.sh"

if ! command -v valgrind >/dev/null 2>&1; then
	fail "valgrind is installed" "apt-get install valgrind"
	done_testing
fi
if ldd "$DEPLOYD_BIN" 2>/dev/null | grep -q 'libasan'; then
	# valgrind cannot run AddressSanitizer binaries; the ASan pass already checks leaks.
	ok "# SKIP $DEPLOYD_BIN is an ASan build: LeakSanitizer checks it instead"
	done_testing
fi

# The fetch helper is spawned as /proc/self/exe, which under valgrind is valgrind's own
# tool binary ("You cannot run '/proc/self/exe' directly"). A preloaded shim points that
# one path at the real binary; the helper then runs natively (--trace-children=no).
cat >"$TMP/selfexe.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
    const posix_spawnattr_t *, char *const[], char *const[]);

int
posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
    const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	spawn_fn real = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	const char *exe = getenv("SELFEXE_REAL");

	if (exe != NULL && strcmp(path, "/proc/self/exe") == 0)
		path = exe;
	return real(pid, path, fa, attr, argv, envp);
}
EOF
gcc -shared -fPIC -o "$TMP/selfexe.so" "$TMP/selfexe.c" -ldl || bail "cannot build the spawn shim"
# The helper is checked too, each run in a log of its own.
cat >"$TMP/helper" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \\
	--show-leak-kinds=definite --error-exitcode=99 --num-callers=30 \\
	--log-file="$TMP/valgrind-helper.%p.log" "$DEPLOYD_BIN" "\$@"
EOF
chmod 755 "$TMP/helper"
export SELFEXE_REAL=$TMP/helper
# valgrind runs the listener's system calls itself, and seccomp would kill it for the
# ones it adds: this knob (documented in deployd(8)) leaves only the filter out.
export DEPLOYD_SANDBOX_NO_SECCOMP=1

VG_LOG=$TMP/valgrind.log
VG_OPTS=(--tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
	--show-leak-kinds=definite --error-exitcode=99 --trace-children=no --num-callers=30)

# The checks below can fail: the same options on a program that leaks give status 99.
printf '#include <stdlib.h>\n#include <string.h>\nint main(void) { char *p = malloc(64);\n memset(p, 1, 64); p = 0; return p != 0; }\n' >"$TMP/leak.c"
gcc -O0 -o "$TMP/leak" "$TMP/leak.c" || bail "cannot build the leak probe"
valgrind "${VG_OPTS[@]}" --log-file="$TMP/probe.log" "$TMP/leak"
is "valgrind reports a definite leak with status 99 (the probe)" "$?" 99
like "and the report names it" "$(grep 'definitely lost' "$TMP/probe.log")" 'definitely lost: 64 bytes'
DAEMON_PREFIX=(env LD_PRELOAD="$TMP/selfexe.so" valgrind "${VG_OPTS[@]}" --log-file="$VG_LOG")
DAEMON_START_TIMEOUT=90
DAEMON_STOP_TIMEOUT=90

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" site/index.html '<h1>one</h1>' "one" || bail "commit failed"
mkdir -p "$TMP/src/site/css"
printf 'body{}\n' >"$TMP/src/site/css/a.css"
ln -s index.html "$TMP/src/site/home.html"
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "two" && push_work "$TMP/src" ||
	bail "commit failed"
C1=$(repo_head "$TMP/src")

SECRET="valgrind-secret-$$"
printf '%s\n' "$SECRET" >"$TMP/www.secret"
chmod 600 "$TMP/www.secret"
PORT=$(free_port) || bail "no free port"
CFG_LISTEN=127.0.0.1:$PORT
WWW=$TMP/www
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=2 secret_file="$TMP/www.secret" \
		'hooks={pre_activate: [/bin/true], post_activate: [/bin/true], timeout: 60s}')"

start_daemon "$TMP/deployd.yaml" || bail "the daemon did not start under valgrind"
ok "the daemon starts under valgrind"
if wait_live "$WWW" "$C1" 90; then
	check "first deploy matches" tree_matches "$WWW/current" "$TMP/src" "$C1"
else
	fail "first deploy under valgrind" "$(tail -n 20 "$TMP/daemon.log")"
fi

# An update that only polling can find.
commit_file "$TMP/src" site/index.html '<h1>three</h1>' "three" || bail "commit failed"
C2=$(repo_head "$TMP/src")
if wait_live "$WWW" "$C2" 90; then
	check "the polled update matches" tree_matches "$WWW/current" "$TMP/src" "$C2"
else
	fail "the update found by polling goes live" "$(tail -n 20 "$TMP/daemon.log")"
fi

# A signed GitHub push, sent right after the commit it announces.
commit_file "$TMP/src" site/news.html 'news' "four" || bail "commit failed"
C3=$(repo_head "$TMP/src")
BODY=$SRCDIR/tests/unit/data/hooks/github-push.json
SIG=$(openssl dgst -sha256 -hmac "$SECRET" -r "$BODY" | cut -d' ' -f1)
resp=$(curl -s -m 60 -w '\n%{http_code}' -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: vg-$$" \
	-H "X-Hub-Signature-256: sha256=$SIG" --data-binary @"$BODY" \
	"http://127.0.0.1:$PORT/hooks/www")
is "the signed webhook is accepted (202)" "$(tail -n 1 <<<"$resp")" 202
like "the webhook queued a deploy" "$(head -n 1 <<<"$resp")" '"queued":true'
resp=$(curl -s -m 60 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H 'X-Hub-Signature-256: sha256=00' --data-binary @"$BODY" \
	"http://127.0.0.1:$PORT/hooks/www")
is "a badly signed webhook is refused (401)" "$resp" 401
if wait_live "$WWW" "$C3" 90; then
	check "the release after the webhook matches" tree_matches "$WWW/current" "$TMP/src" "$C3"
else
	fail "the commit announced by the webhook goes live" "$(tail -n 20 "$TMP/daemon.log")"
fi
wait_for "the site to be idle" 60 site_field_is www state idle
check "status answers" dctl status
check "releases answers" dctl releases www
is "metrics answer" "$(curl -s -m 60 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")" 200

stop_daemon
is "the daemon exits 0 on SIGTERM under valgrind (99: valgrind found errors)" "$DAEMON_STATUS" 0
if [ ! -s "$VG_LOG" ]; then
	fail "valgrind wrote its report" "no $VG_LOG"
	done_testing
fi
helpers=("$TMP"/valgrind-helper.*.log)
if [ -f "${helpers[0]}" ]; then
	ok "the fetch helper ran under valgrind too (${#helpers[@]} runs)"
	like "so did the webhook listener process" "$(grep -h 'Command: .* __listen ' \
		"${helpers[@]}")" '__listen'
	bad=$(grep -L 'ERROR SUMMARY: 0 errors' "${helpers[@]}")
	if [ -z "$bad" ]; then
		ok "valgrind: no error or definite leak in any fetch helper or listener run"
	else
		fail "valgrind: no error or definite leak in any fetch helper or listener run" \
			"$(head -n 60 $(head -n 1 <<<"$bad"))"
	fi
else
	fail "the fetch helper ran under valgrind too" "no $TMP/valgrind-helper.*.log"
fi
summary=$(grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable' "$VG_LOG")
diag "$summary"
like "valgrind: 0 errors" "$(grep 'ERROR SUMMARY' "$VG_LOG" | tail -n 1)" 'ERROR SUMMARY: 0 errors'
if grep -q 'definitely lost: [1-9]' "$VG_LOG"; then
	fail "valgrind: no definite leak" "$(grep -B 2 -A 25 'definitely lost in' "$VG_LOG" | head -n 80)"
else
	ok "valgrind: no definite leak"
fi
if grep -qE '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination)' "$VG_LOG"; then
	fail "valgrind: no memory error" "$(grep -E -A 20 -m 3 '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination)' "$VG_LOG")"
else
	ok "valgrind: no memory error"
fi
done_testing
