#!/bin/bash
# demo.sh: `deployd demo` as the README's quick start uses it: the printed commands really work.
# timeout: 90
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
done_testing
