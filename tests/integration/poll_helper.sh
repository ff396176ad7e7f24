#!/bin/bash
# poll_helper.sh: polls ask a long-lived fetch helper per worker (no process per poll); a killed helper is replaced; a remote that accepts and never answers times out with current intact.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

need git:git jq:jq python3:python3 || bail "tools missing"
start_git_daemon || bail "git daemon did not start"
make_repo "$GITD_ROOT/www" || bail "make_repo failed"
commit_file "$GITD_ROOT/www" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$GITD_ROOT/www")

# A remote that accepts connections and never says a word.
start_bad_remote silent || bail "the silent remote did not start"
STALL_PORT=$BAD_PORT

# helpers: the daemon's `__fetch --serve` children.
helpers() {
	local c
	for c in $(child_pids "$DAEMON_PID"); do
		tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q -- '__fetch --serve' && echo "$c"
	done
}

# One worker, so exactly one helper.
CFG_MAX_PARALLEL=1 write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "git://127.0.0.1:$GIT_PORT/www.git" "$TMP/www" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "first deploy over git://" wait_live "$TMP/www" "$C1" 30
sleep 3	# a few polls
h1=$(helpers)
is "polls use one long-lived helper" "$(wc -w <<<"$h1")" 1
sleep 3
is "the same helper answers the next polls" "$(helpers)" "$h1"

commit_file "$GITD_ROOT/www" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$GITD_ROOT/www")
check "a new commit is found by the helper's poll and goes live" wait_live "$TMP/www" "$C2" 20
is "still the same helper" "$(helpers)" "$h1"

# A helper that dies between polls is replaced, and polling goes on.
kill -9 "$h1"
commit_file "$GITD_ROOT/www" index.html "three" "C3" || bail "commit failed"
C3=$(repo_head "$GITD_ROOT/www")
check "after the helper was killed, the next commit still goes live" wait_live "$TMP/www" "$C3" 20
h2=$(helpers)
check "a new helper took its place" test -n "$h2" -a "$h2" != "$h1"
is "no failure was recorded for the replaced helper" "$(jq '[.history[] | select(.ok == false)] | length' "$TMP/state/www/state.json")" 0
stop_daemon
is "daemon exits 0" "$DAEMON_STATUS" 0
check "the helper is gone with the daemon" wait_for "helper $h2 to exit" 5 eval "! pid_alive $h2"

# A remote that accepts and never answers: the poll times out, current stays, status says why,
# and the stuck helper is killed rather than left behind.
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "git://127.0.0.1:$GIT_PORT/www.git" "$TMP/www" poll=1s)" \
	"$(site_yaml mute "git://127.0.0.1:$STALL_PORT/www.git" "$TMP/mute" poll=1s fetch_timeout=2s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
has_timeout() {
	site_field mute last_error | grep -q 'timed out after 2 s'
}
check "the silent remote: status says the fetch timed out" wait_for "timeout" 20 has_timeout
check "the silent remote: nothing went live" test ! -e "$TMP/mute/current"
check "the other site is still served meanwhile" current_is "$TMP/www" "$C3"
commit_file "$GITD_ROOT/www" index.html "four" "C4" || bail "commit failed"
C4=$(repo_head "$GITD_ROOT/www")
check "the other site's next commit goes live" wait_live "$TMP/www" "$C4" 30
n=$(helpers | wc -w)
check "helpers stay bounded by the workers ($n)" test "$n" -le 2
stop_daemon
is "daemon exits 0 with a stuck remote" "$DAEMON_STATUS" 0
done_testing
