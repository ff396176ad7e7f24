#!/bin/bash
# demo.sh: `deployd demo` as the README's quick start uses it, and `deployd demo --fleet`: the printed commands really work.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

D=$TMP/demo
"$DEPLOYD_BIN" demo --dir "$D" >"$TMP/demo.out" 2>&1 &
PID=$!
track_pid "$PID"
wait_for "the demo site goes live" 20 test -L "$D/site/current" || bail "demo did not deploy"
like "the demo prints the directory" "$(head -n 1 "$TMP/demo.out")" "deployd demo in $D"
like "the page is served from current" "$(cat "$D/site/current/index.html")" "Hello from deployd"

commit=$(grep -o "cd $D/repo && .*my change'" "$TMP/demo.out")
ring=$(grep -o "curl -sS .*hooks/demo" "$TMP/demo.out")
status=$(grep -o "[^ ]*deployd status -c [^ ]*" "$TMP/demo.out")
isnt "the demo prints a commit command" "$commit" ""
isnt "the demo prints a curl command" "$ring" ""
check_not "the printed commands do not contain the secret" grep -qF "$(cat "$D/webhook.secret")" "$TMP/demo.out"

(eval "$commit") || fail "the printed commit command works"
out=$(eval "$ring")
like "the printed curl command is accepted" "$out" '"queued":true'
wait_for "the new page is live" 10 grep -q changed "$D/site/current/index.html" ||
	fail "the webhook deployed the commit"
check "the new page is live" grep -q changed "$D/site/current/index.html"
like "the printed status command works" "$(eval "$status")" "^demo +idle"

kill -TERM "$PID"
wait "$PID"
is "the demo stops on SIGTERM with status 0" "$?" 0

# ---- demo --fleet: an etcd and three nodes that swap together ----
F=$TMP/fleet-demo
"$DEPLOYD_BIN" demo --fleet --dir "$F" >"$TMP/fleet.out" 2>&1 &
PID=$!
track_pid "$PID"
three_live() { local i; for i in 1 2 3; do test -L "$F/node$i/site/current" || return 1; done; }
check "demo --fleet: the three nodes go live" wait_for "three nodes live" 60 three_live
like "it prints the directory" "$(head -n 1 "$TMP/fleet.out")" "deployd demo --fleet in $F"
commit=$(grep -o "cd $F/repo && .*my change'" "$TMP/fleet.out")
ring=$(grep -o "curl -sS .*hooks/demo" "$TMP/fleet.out")
status=$(grep -o "[^ ]*deployd status --fleet -c [^ ]*" "$TMP/fleet.out")
isnt "it prints a commit command" "$commit" ""
isnt "and a curl command" "$ring" ""
(eval "$commit") || fail "the printed commit command works"
like "the printed curl command is accepted by one node" "$(eval "$ring")" '"queued":true'
three_changed() { local i; for i in 1 2 3; do grep -q changed "$F/node$i/site/current/index.html" || return 1; done; }
check "the new page goes live on all three nodes" wait_for "three changed" 60 three_changed
like "the printed status command shows the cutover and its skew" "$(eval "$status")" \
	"site demo: target [0-9a-f]{12} \(generation [0-9]+, webhook\), cutover [0-9a-f]{12} \(generation [0-9]+\), skew [0-9]+ ms"
kill -TERM "$PID"
wait "$PID"
is "demo --fleet stops on SIGTERM with status 0" "$?" 0
check_not "and leaves no etcd running" pgrep -f "etcd --name demo --data-dir $F/etcd"
check_not "and no node" pgrep -f "serve -c $F/node"
done_testing
