#!/bin/bash
# faults_hand.sh: faults from outside: releases/ removed by hand, current replaced by a directory, a remote that answers garbage, the clock jumping back a day, SIGHUP during a deploy.
# timeout: 240
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

command -v python3 >/dev/null || bail "python3 is needed"
command -v faketime >/dev/null || bail "faketime is needed (apt-get install faketime)"
make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$TMP/src")
WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=3)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$C1" 30 || bail "first deploy did not happen"

# ---- releases/ removed by hand while the daemon runs ----
rm -rf "${WWW:?}/releases"
commit_file "$TMP/src" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$TMP/src")
check "releases/ removed by hand: the next commit still goes live" wait_live "$WWW" "$C2" 20
check "releases/ removed by hand: and it is complete" current_matches "$WWW" "$TMP/src" "$C2"
check "releases/ removed by hand: releases/ is back" test -d "$WWW/releases"

# ---- current replaced by a directory by hand: refused, nothing of it touched ----
wait_for "idle" 10 site_field_is www state idle
rm "$WWW/current"
mkdir "$WWW/current"
printf 'hand made\n' >"$WWW/current/index.html"
commit_file "$TMP/src" index.html "three" "C3" || bail "commit failed"
C3=$(repo_head "$TMP/src")
has_dir_error() {
	site_field www last_error | grep -q 'current is a directory'
}
check "current made a directory: the deploy is refused with a clear error" wait_for "error" 20 has_dir_error
is "current made a directory: status says failed" "$(site_field www state)" failed
is "current made a directory: the hand-made directory is untouched" "$(cat "$WWW/current/index.html")" "hand made"
mv "$WWW/current" "$TMP/moved-away"
check "moved away: the next poll deploys the tip" wait_live "$WWW" "$C3" 20
check "moved away: complete" current_matches "$WWW" "$TMP/src" "$C3"
wait_for "idle" 10 site_field_is www state idle

# ---- a remote that answers garbage: the deploy fails, current stays, status says why ----
start_bad_remote garbage || bail "the garbage remote did not start"
GPORT=$BAD_PORT
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$GPORT/www.git" "$WWW" poll=1s keep=3)"
dctl reload >/dev/null 2>&1 || fail "reload to the garbage remote"
has_proto_error() {
	local e
	e=$(site_field www last_error)
	[ -n "$e" ] && [ "$e" != null ] && ! grep -q 'current is a directory' <<<"$e"
}
check "garbage remote: the deploy fails with an error in status" wait_for "error" 20 has_proto_error
diag "garbage remote: last_error: $(site_field www last_error)"
check "garbage remote: current is untouched" current_matches "$WWW" "$TMP/src" "$C3"
check "garbage remote: no temporary release is left" no_tmp_releases "$WWW"
check "garbage remote: the daemon keeps serving" daemon_running

# ---- SIGHUP during a deploy: the deploy finishes, the new config applies after ----
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=0 keep=3 \
	'hooks={pre_activate: [/bin/sleep, "3"]}')"
dctl reload >/dev/null 2>&1 || fail "reload back to the good remote"
commit_file "$TMP/src" index.html "four" "C4" || bail "commit failed"
C4=$(repo_head "$TMP/src")
dctl deploy www >/dev/null 2>&1
wait_for "the deploy to reach its hook" 15 site_field_is www state hook || fail "the deploy reached its hook"
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=3)"
kill -HUP "$DAEMON_PID"
check "SIGHUP during a deploy: the deploy completes" wait_live "$WWW" "$C4" 30
check "SIGHUP during a deploy: and is complete" current_matches "$WWW" "$TMP/src" "$C4"
like "SIGHUP during a deploy: the reload waited for it" "$(cat "$TMP/daemon.log")" "reload waits for 1 deploy"
commit_file "$TMP/src" index.html "five" "C5" || bail "commit failed"
C5=$(repo_head "$TMP/src")
check "SIGHUP during a deploy: the new config (polling again) applies after" wait_live "$WWW" "$C5" 20
stop_daemon
is "daemon exits 0" "$DAEMON_STATUS" 0

# ---- the clock jumps back a day: names sort wrong, activation order still rules ----
# libfaketime preloaded directly (faketime(1) would stand between the test and the daemon's PID).
# FORCE_MONOTONIC_FIX=0, or libfaketime 0.9.10 on glibc 2.36 spins every monotonic timed wait.
FT_LIB=$(find /usr/lib -name libfaketime.so.1 2>/dev/null | head -n 1)
[ -n "$FT_LIB" ] || bail "libfaketime.so.1 not found"
DAEMON_PREFIX=(env LD_PRELOAD="$FT_LIB" FAKETIME=-1d FAKETIME_DONT_FAKE_MONOTONIC=1
	FAKETIME_FORCE_MONOTONIC_FIX=0
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:verify_asan_link_order=0")
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start under faketime"
DAEMON_PREFIX=()
commit_file "$TMP/src" index.html "six" "C6" || bail "commit failed"
C6=$(repo_head "$TMP/src")
check "clock a day back: the new commit goes live" wait_live "$WWW" "$C6" 30
rel6=$(current_release "$WWW")
newest_name=$(ls "$WWW/releases" | sort | tail -n 1)
isnt "clock a day back: its release name sorts before the older ones" "$newest_name" "$rel6"
wait_for "idle" 10 site_field_is www state idle
check "clock a day back: current is complete" current_matches "$WWW" "$TMP/src" "$C6"
is "clock a day back: status names the live release" "$(site_field www release)" "$rel6"
is "clock a day back: releases lists it first (newest by activation)" \
	"$(dctl releases www --json | jq -r '.releases[0].name')" "$rel6"
is "clock a day back: keep=3 still holds three releases" "$(release_count "$WWW")" 3
check "clock a day back: the live release survived the prune" test -d "$WWW/releases/$rel6"
out=$(dctl rollback www 2>&1)
is "clock a day back: rollback works" "$?" 0
check "clock a day back: rollback goes to the release activated before (C5)" current_is "$WWW" "$C5"
stop_daemon
is "daemon exits 0" "$DAEMON_STATUS" 0
done_testing
