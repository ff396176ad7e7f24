#!/bin/bash
# fleet_run_once.sh: hooks.run_once in a fleet of three: once per commit, on one node, in its prepared release, before the cutover; never two at once, never again after success (a restart of every node included), run again when its node dies midway, and no cutover when it fails.
# timeout: 300
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"
. "$(dirname "$0")/../lib-fleet.sh"

fleet_repo || bail "repository"
start_etcd 1 || bail "etcd did not start"
H0=$(repo_head "$WORK")

# The "migration": one line when it starts and one when it ends, with the commit and whether
# any node had it live yet; $TMP/fail makes it fail, $TMP/slow makes it take a while. A lock
# file catches two runs at once.
cat >"$TMP/migrate" <<EOF
#!/bin/sh
live=none
for d in "$TMP"/n*/www; do
	case "\$(readlink "\$d/current" 2>/dev/null)" in *"\$(echo "\$DEPLOYD_COMMIT" | cut -c1-12)") live=some ;; esac
done
mkdir "$TMP/migrate.lock" 2>/dev/null || echo "overlap \$DEPLOYD_COMMIT" >>"$TMP/run_once.log"
echo "start \$DEPLOYD_COMMIT live=\$live cwd=\$(pwd)" >>"$TMP/run_once.log"
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

# ---- its node dies midway: the next coordinator runs it again ----
touch "$TMP/slow"
commit_file "$WORK" index.html "v3" "v3" || bail "commit v3"
H3=$(repo_head "$WORK")
hook 2 "$H3" r-3 >/dev/null
check "run_once starts" wait_for "run_once of H3" 40 grep -q "^start $H3" "$TMP/run_once.log"
coord=$(fleet_key "sites/www/run_once/$H3" | jq -r .node)
ci=${coord#n}
node_kill "$ci"
# The killed node's hook would run on as an orphan: end it too (a rerun cannot start before
# the dead node's lease and lock are gone, a few seconds on).
pkill -KILL -f "$TMP/migrate" 2>/dev/null
rmdir "$TMP/migrate.lock" 2>/dev/null
rm -f "$TMP/slow"
live=(); for i in 0 1 2; do [ "$i" -ne "$ci" ] && live+=("$i"); done
check "once the node that ran it is gone, the others go live" wait_for "H3 live" 60 all_live "$H3" "${live[@]}"
is "after run_once ran again to its end" "$(starts "$H3")/$(ends "$H3")" "2/1"
node_start "$ci" || bail "restart $coord"
check "the node that died catches up" wait_for "H3 on all" 60 all_live "$H3"
is "without running it a third time" "$(starts "$H3")" 2

check_not "run_once never ran twice at once" grep -q overlap "$TMP/run_once.log"
check "no node was ever live on a commit that was not a cutover" no_node_ahead "$H0"
for i in 0 1 2; do node_stop $i; done
done_testing
