#!/bin/bash
# bad_root.sh: a deploy root that cannot hold releases: a clear error in status and nothing half-made.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "hello" "hello" || bail "commit failed"
H=$(repo_head "$TMP/src")

# expect_clean_failure SITE PATH WANT_LISTING ERE: error shown, no current, PATH holds only WANT.
expect_clean_failure() {
	local s=$1 p=$2 want=$3 ere=$4 err
	if wait_for "$s: last_error" 20 has_error "$s"; then
		err=$(site_field "$s" last_error)
		ok "$s: status shows an error: $err"
		like "$s: the error says what is wrong" "$err" "$ere"
	else
		fail "$s: status shows an error" "$(status_json "$s")"
	fi
	check "$s: state is failed between retries" wait_for "$s failed" 10 site_field_is "$s" state failed
	check_not "$s: no current" test -L "$p/current"
	is "$s: nothing half-made in the deploy root" \
		"$(ls -A "$p" 2>/dev/null | grep -vx '.deployd.lock' | tr '\n' ' ')" "$want"
}

# ---- as root: a file where releases/ should be, and a file as the deploy root ----
mkdir -p "$TMP/blocked"
printf 'not a directory\n' >"$TMP/blocked/releases"
printf 'a file, not a directory\n' >"$TMP/pathfile"
write_config "$TMP/root.yaml" \
	"$(site_yaml blocked "$TMP/src.git" "$TMP/blocked" poll=1s)" \
	"$(site_yaml pathfile "$TMP/src.git" "$TMP/pathfile" poll=1s)" \
	"$(site_yaml good "$TMP/src.git" "$TMP/good" poll=1s)"
start_daemon "$TMP/root.yaml" || bail "daemon did not start"
check "control: a good site in the same daemon deploys" wait_live "$TMP/good" "$H" 30
expect_clean_failure blocked "$TMP/blocked" "releases " 'releases'
is "blocked: the file where releases/ should be is untouched" "$(cat "$TMP/blocked/releases")" "not a directory"
if wait_for "pathfile: last_error" 20 has_error pathfile; then
	ok "pathfile: status shows an error: $(site_field pathfile last_error)"
else
	fail "pathfile: status shows an error" "$(status_json pathfile)"
fi
is "pathfile: the file given as deploy root is untouched" "$(cat "$TMP/pathfile")" "a file, not a directory"
check "the daemon keeps serving" daemon_running
stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0

# ---- as nobody: a deploy root in a directory it cannot write, and a releases/ it cannot write ----
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
	fail "setpriv can run a command as nobody (needed for the unprivileged cases)"
	done_testing
fi
NB=$TMP/nb
mkdir -p "$NB" "$TMP/ro" "$NB/rorel/releases"
chown nobody:nogroup "$NB" "$NB/rorel"
chmod 555 "$TMP/ro"
# libgit2 refuses a repository owned by another user (safe.directory): give nobody its own.
cp -a "$TMP/src.git" "$NB/src.git"
chown -R nobody:nogroup "$NB/src.git"
CFG_STATE=$NB/state CFG_SOCKET=$NB/deployd.sock CFG_LISTEN=127.0.0.1:$(free_port) \
	write_config "$TMP/nobody.yaml" \
	"$(site_yaml ro "$NB/src.git" "$TMP/ro/www" poll=1s)" \
	"$(site_yaml rorel "$NB/src.git" "$NB/rorel" poll=1s)" \
	"$(site_yaml rw "$NB/src.git" "$NB/www" poll=1s)"
DAEMON_PREFIX=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
start_daemon "$TMP/nobody.yaml" || bail "daemon did not start as nobody"
is "the daemon runs as nobody" "$(stat -c %U "/proc/$DAEMON_PID")" nobody
check "control: a writable site deploys as nobody" wait_live "$NB/www" "$H" 30
check "control: and matches" tree_matches "$NB/www/current" "$TMP/src" "$H"
expect_clean_failure ro "$TMP/ro" "" 'ro/www|[Pp]ermission|denied|writ'
check_not "ro: the deploy root was not created" test -e "$TMP/ro/www"
expect_clean_failure rorel "$NB/rorel" "releases " 'rorel/releases.*([Pp]ermission|denied)'
is "rorel: releases/ is still empty" "$(ls -A "$NB/rorel/releases")" ""
check "the daemon keeps serving" daemon_running
stop_daemon
is "daemon (nobody) exits 0 on SIGTERM" "$DAEMON_STATUS" 0

done_testing
