#!/bin/bash
# faults_remote.sh: a git:// remote that goes down and comes back (recovery without a restart),
# a tracked branch deleted on the remote (current kept, status says so), and a cache corrupted on
# disk (detected and cloned afresh).
# timeout: 240
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

need git:git jq:jq || bail "tools missing"
start_git_daemon || bail "git daemon did not start"
make_repo "$GITD_ROOT/www" || bail "make_repo failed"
WORK=$GITD_ROOT/www
commit_file "$WORK" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$WORK")
make_repo "$TMP/gone" || bail "make_repo failed"
commit_file "$TMP/gone" index.html "g1" "G1" || bail "commit failed"
G1=$(repo_head "$TMP/gone")
make_repo "$TMP/rot" || bail "make_repo failed"
commit_file "$TMP/rot" index.html "r1" "R1" || bail "commit failed"
R1=$(repo_head "$TMP/rot")

write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "git://127.0.0.1:$GIT_PORT/www.git" "$TMP/www" poll=1s fetch_timeout=10s)" \
	"$(site_yaml gone "$TMP/gone.git" "$TMP/gone-www" poll=1s)" \
	"$(site_yaml rot "$TMP/rot.git" "$TMP/rot-www" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "www: first deploy over git://" wait_live "$TMP/www" "$C1" 30
check "gone: first deploy" wait_live "$TMP/gone-www" "$G1" 30
check "rot: first deploy" wait_live "$TMP/rot-www" "$R1" 30

has_error_like() {
	local e
	e=$(site_field "$1" last_error) || return 1
	printf '%s' "$e" | grep -Eq -- "$2"
}
failures() {
	jq '[.history[] | select(.ok == false)] | length' "$TMP/state/$1/state.json"
}

# ---- the remote goes down, then comes back on the same port ----
stop_pid "$GITD_PID" 5
commit_file "$WORK" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$WORK")
t0=$(now_ms)
if wait_for "www: down" 20 has_error_like www '[Cc]onnect|refused'; then
	ok "remote down: the error shows in status"
else
	fail "remote down: the error shows in status" "$(status_json www)"
fi
check "remote down: state is failed" wait_for failed 10 site_field_is www state failed
sleep 8
check "remote down: current untouched" current_is "$TMP/www" "$C1"
n=$(failures www)
secs=$(( ($(now_ms) - t0) / 1000 ))
# Polling every second, a site without backoff would have failed about once a second.
if [ "$n" -ge 2 ] && [ "$n" -lt "$secs" ]; then
	ok "failing polls back off ($n failures in ${secs}s)"
else
	fail "failing polls back off" "$n failures in ${secs}s"
fi
is "remote down: no temporary release" "$(tmp_releases "$TMP/www")" ""
spawn "$TMP/git-daemon.log" git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" \
	--base-path="$GITD_ROOT" --export-all "$GITD_ROOT"
GITD_PID=$LAST_PID
wait_port "$GIT_PORT" 10 || bail "git daemon did not come back"
check "remote back: the new commit deploys without a restart" wait_live "$TMP/www" "$C2" 40
check "remote back: the error clears" wait_for "no error" 10 site_field_is www last_error null
check "remote back: state idle" wait_for idle 10 site_field_is www state idle

# ---- the tracked branch is deleted on the remote ----
git_q -C "$TMP/gone.git" update-ref -d refs/heads/main || bail "could not delete the branch"
if wait_for "gone: branch" 20 has_error_like gone "^branch 'main' no longer exists on $TMP/gone.git; current release kept$"; then
	ok "a deleted branch is reported, current kept"
else
	fail "a deleted branch is reported, current kept" "$(status_json gone)"
fi
check "branch deleted: state is failed" wait_for failed 10 site_field_is gone state failed
check "branch deleted: current untouched" current_matches "$TMP/gone-www" "$TMP/gone" "$G1"
is "branch deleted: status still names the live commit" "$(site_field gone commit)" "$G1"
commit_file "$TMP/gone" index.html "g2" "G2" || bail "commit failed"
G2=$(repo_head "$TMP/gone")
check "the branch pushed again: deployed" wait_live "$TMP/gone-www" "$G2" 40
check "and the error clears" wait_for "no error" 10 site_field_is gone last_error null

# ---- the cache is corrupted on disk ----
cache=$TMP/state/rot/cache.git
for p in "$cache"/objects/pack/*.pack; do
	[ -f "$p" ] || continue
	chmod u+w "$p" && truncate -s 40 "$p"
done
find "$cache/objects" -path '*/objects/[0-9a-f][0-9a-f]/*' -type f -exec sh -c 'chmod u+w "$1"; printf garbage >"$1"' _ {} \;
# R2 keeps index.html: its blob is only in the damaged cache, nothing fetches it again.
commit_file "$TMP/rot" new.html "r2" "R2" || bail "commit failed"
R2=$(repo_head "$TMP/rot")
check "a corrupted cache is cloned afresh and the commit deploys" wait_live "$TMP/rot-www" "$R2" 40
check "it matches" current_matches "$TMP/rot-www" "$TMP/rot" "$R2"
check "the log says the cache was re-cloned" grep -q "cloning afresh" "$TMP/daemon.log"
check "no cache.git.new is left" test ! -e "$cache.new"

check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
