#!/bin/bash
# fleet_run_once.sh: hooks.run_once in a fleet of three: once per commit, on one node, in its prepared release, before the cutover; never two at once, never again after success (a restart of every node included), run again when its node dies midway, a stopped node's late record refused, killed before its lease can end, and no cutover when it fails.
# timeout: 300
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"
. "$(dirname "$0")/../lib-fleet.sh"

fleet_repo || bail "repository"
start_etcd 1 || bail "etcd did not start"
H0=$(repo_head "$WORK")

# The "migration": one line when it starts and one when it ends, with the commit and whether
# any node had it live yet; $TMP/fail makes it fail, $TMP/slow makes it take a while, and the
# one run that takes $TMP/stale fails after 1.5 s. A lock file catches two runs at once.
cat >"$TMP/migrate" <<EOF
#!/bin/sh
live=none
for d in "$TMP"/n*/www; do
	case "\$(readlink "\$d/current" 2>/dev/null)" in *"\$(echo "\$DEPLOYD_COMMIT" | cut -c1-12)") live=some ;; esac
done
mkdir "$TMP/migrate.lock" 2>/dev/null || echo "overlap \$DEPLOYD_COMMIT" >>"$TMP/run_once.log"
echo "start \$DEPLOYD_COMMIT live=\$live cwd=\$(pwd)" >>"$TMP/run_once.log"
if mv "$TMP/stale" "$TMP/stale.taken" 2>/dev/null; then
	sleep 1.5
	rmdir "$TMP/migrate.lock"
	echo "stale run failed"
	exit 4
fi
[ -e "$TMP/slow" ] && sleep 6
rmdir "$TMP/migrate.lock"
[ -e "$TMP/fail" ] && { echo "migration failed: table exists"; exit 3; }
echo "end \$DEPLOYD_COMMIT" >>"$TMP/run_once.log"
EOF
chmod 755 "$TMP/migrate"
touch "$TMP/run_once.log"
for i in 0 1 2; do fleet_config $i "hooks={run_once: [$TMP/migrate]}" || bail "config n$i"; done
fleet_observe
for i in 0 1 2; do node_start $i || bail "node n$i did not start"; done
hook() { github_push "$FLEET_SECRET" "http://127.0.0.1:${NODE_PORT[$1]}/hooks/www" "$2" "$3"; }
starts() { grep -c "^start $1" "$TMP/run_once.log"; }
ends() { grep -c "^end $1" "$TMP/run_once.log"; }

check "the fleet goes live on the tip" wait_for "H0 live" 60 all_live "$H0"
is "run_once ran once for the first commit" "$(starts "$H0")/$(ends "$H0")" "1/1"
like "before any node had it live, in a prepared release" "$(grep "^start $H0" "$TMP/run_once.log")" \
	"live=none cwd=$TMP/n[012]/www/releases/[0-9T]+Z-${H0:0:12}"
is "its record says done" "$(fleet_key "sites/www/run_once/$H0" | jq -r .state)" done

# ---- a new commit: once again, for it ----
commit_file "$WORK" index.html "v1" "v1" || bail "commit v1"
H1=$(repo_head "$WORK")
hook 1 "$H1" r-1 >/dev/null
check "a push goes live on every node" wait_for "H1 live" 60 all_live "$H1"
is "after run_once ran once for it" "$(starts "$H1")/$(ends "$H1")" "1/1"

# ---- never again after success: restart every node ----
for i in 0 1 2; do node_stop $i; done
for i in 0 1 2; do node_start $i || bail "restart n$i"; done
sleep 4
is "a restart of the whole fleet runs nothing again" "$(starts "$H1")" 1

# ---- a failing run_once: no cutover, status says why ----
touch "$TMP/fail"
commit_file "$WORK" index.html "v2" "v2" || bail "commit v2"
H2=$(repo_head "$WORK")
hook 0 "$H2" r-2 >/dev/null
failed() { fleet_key sites/www/target | jq -e '.failed | test("run_once failed")' >/dev/null; }
check "a failing run_once gives the target up" wait_for "target failed" 40 failed
check "no node cut over" all_live "$H1"
like "status --fleet says why, with the hook's error" "$(nctl 2 status --fleet)" \
	"no cutover: run_once failed on node n[012]: run_once .*3"
is "its record says failed, with the output's end" \
	"$(fleet_key "sites/www/run_once/$H2" | jq -r '.state + ": " + .output')" "failed: migration failed: table exists"
rm -f "$TMP/fail"

# Commit vV, push it to node I and wait for its run_once to start: sets H, the node that runs
# it (coord, ci) and the others (live).
push_midway() {
	commit_file "$WORK" index.html "v$1" "v$1" || bail "commit v$1"
	H=$(repo_head "$WORK")
	hook "$2" "$H" "r-$1" >/dev/null
	check "run_once of v$1 starts" wait_for "run_once of v$1" 40 grep -q "^start $H" "$TMP/run_once.log"
	coord=$(fleet_key "sites/www/run_once/$H" | jq -r .node)
	ci=${coord#n}
	live=()
	for i in 0 1 2; do [ "$i" -ne "$ci" ] && live+=("$i"); done
}

# ---- its node dies midway: the next coordinator runs it again ----
touch "$TMP/slow"
push_midway 3 2
H3=$H
node_kill "$ci"
# The killed node's hook would run on as an orphan: end it too (a rerun cannot start before
# the dead node's lease and lock are gone, a few seconds on).
pkill -KILL -f "$TMP/migrate" 2>/dev/null
rmdir "$TMP/migrate.lock" 2>/dev/null
rm -f "$TMP/slow"
check "once the node that ran it is gone, the others go live" wait_for "H3 live" 60 all_live "$H3" "${live[@]}"
is "after run_once ran again to its end" "$(starts "$H3")/$(ends "$H3")" "2/1"
node_start "$ci" || bail "restart $coord"
check "the node that died catches up" wait_for "H3 on all" 60 all_live "$H3"
is "without running it a third time" "$(starts "$H3")" 2

# ---- its node stops midway (SIGSTOP) and its lease ends: the next coordinator runs it, and
# the stopped node's record of its own run, failed, is refused when it wakes up ----
touch "$TMP/stale"
push_midway 4 0
H4=$H
node_stopped "$ci"
check "once its lease has ended, the others go live" wait_for "H4 live" 60 all_live "$H4" "${live[@]}"
is "after run_once ran again, to its end this time" "$(starts "$H4")/$(ends "$H4")" "2/1"
rec() { fleet_key "sites/www/run_once/$H4" | jq -r '.state + " " + .node'; }
by=$(rec)
like "its record says done, by another node" "$by" "^done n[012]$"
isnt "not by the stopped node" "${by#done }" "$coord"
node_cont "$ci"
check "the stopped node wakes up to its run's end and finds the lock gone" \
	wait_for "not recorded" 30 grep -q "run_once failed, not recorded: this node's lock on it has ended" \
	"$TMP/n$ci/daemon.log"
is "the record is still the last holder's" "$(rec)" "$by"
check "the stopped node catches up" wait_for "H4 on all" 60 all_live "$H4"
is "without running it again" "$(starts "$H4")" 2

# ---- the store goes quiet while run_once runs: its node kills it before its lease can end,
# after which another node could take the lock and run it beside it; it runs again later ----
touch "$TMP/slow"
push_midway 5 1
H5=$H
kill -STOP "${ETCD_PIDS[0]}"
check "its node kills it before its lease can end" wait_for "run_once killed" 15 \
	grep -q "run_once hook killed: the lease it ran under was ending" "$TMP/n$ci/daemon.log"
check_not "the hook and its children are gone" pgrep -f "$TMP/migrate"
kill -CONT "${ETCD_PIDS[0]}"
# Killed, it left its lock file behind; a run beside it would have logged "overlap" above.
rmdir "$TMP/migrate.lock" 2>/dev/null
rm -f "$TMP/slow"
check "the fleet goes live on it" wait_for "H5 live" 60 all_live "$H5"
is "after run_once ran again, to its end" "$(starts "$H5")/$(ends "$H5")" "2/1"

check_not "run_once never ran twice at once" grep -q overlap "$TMP/run_once.log"
check "no node was ever live on a commit that was not a cutover" no_node_ahead "$H0"
for i in 0 1 2; do node_stop $i; done
done_testing
