#!/bin/bash
# restart_recovery.sh: state survives a restart; start-up removes temporary releases and repairs a dangling current.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "A" "A" || bail "commit failed"
A=$(repo_head "$TMP/src")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$A" 30 || bail "first deploy did not happen"
commit_file "$TMP/src" index.html "B" "B" || bail "commit failed"
B=$(repo_head "$TMP/src")
wait_live "$WWW" "$B" 20 || bail "second deploy did not happen"
wait_for "idle" 10 site_field_is www state idle
before=$(status_json www)

# 1. A plain restart: the same release, the same record, no new release.
stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
listing=$(ls -A "$WWW/releases")
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
sleep 2.5	# at least two polls
after=$(status_json www)
for f in release commit subject deployed_at trigger; do
	is "after a restart, status $f is unchanged" "$(jq -r ".$f" <<<"$after")" "$(jq -r ".$f" <<<"$before")"
done
is "a restart with an unchanged tip creates no release" "$(ls -A "$WWW/releases")" "$listing"

# 2. Debris of a crash: a temporary release, and current pointing at a release that is gone.
stop_daemon
relB=$(current_release "$WWW")
relA=$(ls "$WWW/releases" | grep -- "-${A:0:12}\$")
[ -n "$relA" ] && [ -n "$relB" ] || bail "expected releases of A and B, got: $(ls -A "$WWW/releases")"
mkdir -p "$WWW/releases/.tmp-x/half/written"
printf 'partial' >"$WWW/releases/.tmp-x/half/written/file"
rm -rf "${WWW:?}/releases/$relB"
check_not "set-up: current dangles" test -e "$WWW/current"

start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
if wait_for ".tmp-x to be removed" 5 test ! -e "$WWW/releases/.tmp-x"; then
	ok "start-up removes the temporary release"
else
	fail "start-up removes the temporary release" "$(ls -A "$WWW/releases")"
fi
if wait_for "current to resolve" 5 test -d "$WWW/current"; then
	ok "start-up repairs the dangling current"
else
	fail "start-up repairs the dangling current" "current -> $(readlink "$WWW/current")"
fi
# Whatever current names now must be a complete release of A or of B (redeployed). The
# release is resolved once: polling may move current on to B while this looks.
rel=$(current_release "$WWW")
cc=${rel##*-}
case $cc in
"${A:0:12}") check "current was repaired to the complete release of A" tree_matches "$WWW/releases/$rel" "$TMP/src" "$A" ;;
"${B:0:12}") check "current names a complete release of B" tree_matches "$WWW/releases/$rel" "$TMP/src" "$B" ;;
*) fail "current names a release of A or B" "current -> $(readlink "$WWW/current")" ;;
esac
check "the tip B is live again after recovery" wait_live "$WWW" "$B" 20
check "B's new release is complete" tree_matches "$WWW/current" "$TMP/src" "$B"
check "A's release was kept" test -d "$WWW/releases/$relA"
is "no temporary release remains" "$(tmp_releases "$WWW")" ""

# 3. current missing altogether, with good releases present.
stop_daemon
rm -f "$WWW/current"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
check "a missing current is recreated" wait_for "current" 10 test -d "$WWW/current"
wait_live "$WWW" "$B" 10
check "and names a complete release of the tip" current_matches "$WWW" "$TMP/src" "$B"

# 4. A crash between the swap and the state save: current names a release the state does not
# record. The link is the truth: the restart adopts it instead of deploying the commit again,
# and prunes at once counting from it (keep holds after a crash), so the release before it
# stays as the rollback target.
stop_daemon
cp "$TMP/state/www/state.json" "$TMP/state-before-C.json"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
commit_file "$TMP/src" index.html "C" "C" || bail "commit failed"
C=$(repo_head "$TMP/src")
wait_live "$WWW" "$C" 20 || bail "C did not go live"
wait_for "idle" 10 site_field_is www state idle
stop_daemon
relC=$(current_release "$WWW")
cp "$TMP/state-before-C.json" "$TMP/state/www/state.json"
nrel=$(release_count "$WWW")
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=2)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
sleep 2.5	# at least two polls
is "status reports the adopted commit" "$(site_field www commit)" "$C"
is "status reports the adopted release" "$(site_field www release)" "$relC"
is "state.json records the adopted release" "$(jq -r .release "$TMP/state/www/state.json")" "$relC"
is "there were three releases before the restart" "$nrel" 3
is "the live commit is not deployed a second time" \
	"$(find "$WWW/releases" -mindepth 1 -maxdepth 1 -name "*-${C:0:12}" | wc -l)" 1
is "keep=2 holds at once: adopting prunes as activating would" "$(release_count "$WWW")" 2
is "and the one kept besides it is of the commit before (the rollback target)" \
	"$(find "$WWW/releases" -mindepth 1 -maxdepth 1 -name "*-${B:0:12}" | wc -l)" 1
like "the log says why" "$(cat "$TMP/daemon.log")" "recording it as live"
commit_file "$TMP/src" index.html "D" "D" || bail "commit failed"
D=$(repo_head "$TMP/src")
check "the next commit goes live" wait_live "$WWW" "$D" 20
wait_for "idle" 10 site_field_is www state idle
check "keep=2 keeps the adopted release as the previous one" test -d "$WWW/releases/$relC"
is "and prunes down to two releases" "$(release_count "$WWW")" 2
dctl rollback www >/dev/null 2>&1
check "rollback goes back to the adopted release" wait_for "rollback" 20 current_is "$WWW" "$C"
check "which is C's complete tree" current_matches "$WWW" "$TMP/src" "$C"

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
