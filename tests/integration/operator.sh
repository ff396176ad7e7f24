#!/bin/bash
# operator.sh: rollback, pause, resume, releases, deploy --rev, reload and the control API's bad input.
# timeout: 240
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "one" || bail "commit failed"
H1=$(repo_head "$TMP/src")
WWW=$TMP/www
SECRET=$TMP/www.secret
printf 'op-secret\n' >"$SECRET"
chmod 600 "$SECRET"
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s secret_file="$SECRET")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$H1" 20 || bail "first deploy did not go live"

# ---- releases, rollback, pause, resume ----
out=$(dctl rollback www 2>&1)
is "rollback with no previous release: exit 1" "$?" 1
like "rollback with no previous release: says so" "$out" "no previous good release"
check "and current is untouched" current_is "$WWW" "$H1"

commit_file "$TMP/src" index.html "two" "two" || bail "commit failed"
H2=$(repo_head "$TMP/src")
wait_live "$WWW" "$H2" 20 || fail "second commit went live by polling"
R2=$(current_release "$WWW")

out=$(dctl releases www)
is "releases: exit 0" "$?" 0
like "releases: the live release is marked current" "$out" "$R2 +${H2:0:12} .*current"
is "releases --json lists two releases" "$(dctl releases www --json | jq '.releases | length')" 2

out=$(dctl rollback www 2>&1)
is "rollback: exit 0" "$?" 0
like "rollback: names the commit now live" "$out" "${H1:0:12}"
check "rollback: the first commit is live again" current_matches "$WWW" "$TMP/src" "$H1"
check "rollback: the release rolled away from is kept on disk" test -d "$WWW/releases/$R2"
like "releases: it is marked bad" "$(dctl releases www)" "$R2 .*bad"
is "status: paused" "$(site_field www paused)" true
like "status: the pause says why" "$(site_field www pause_reason)" "rolled back"
like "plain status shows paused" "$(dctl status)" "^www +paused"
is "status: trigger rollback" "$(site_field www trigger)" rollback

sleep 2.5
check "paused: polling does not re-deploy the bad commit" current_is "$WWW" "$H1"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: op-1' \
	-H "X-Hub-Signature-256: sha256=$(printf '{"ref":"refs/heads/main","after":"%s"}' "$H2" |
		openssl dgst -sha256 -hmac op-secret | sed 's/^.*= //')" \
	--data-binary "$(printf '{"ref":"refs/heads/main","after":"%s"}' "$H2")" \
	"http://$CFG_LISTEN/hooks/www")
is "paused: a webhook is answered 202" "$code" 202
like "paused: and ignored, with the reason" "$(cat "$TMP/body")" '"ignored":true.*paus|paus.*"ignored":true'
sleep 1.5
check "paused: the webhook did not deploy" current_is "$WWW" "$H1"

out=$(dctl resume www 2>&1)
is "resume: exit 0" "$?" 0
sleep 2.5
is "resume: not paused" "$(site_field www paused)" false
check "resume: the bad commit is not deployed again" current_is "$WWW" "$H1"

commit_file "$TMP/src" index.html "three" "three" || bail "commit failed"
H3=$(repo_head "$TMP/src")
wait_live "$WWW" "$H3" 20 || fail "after resume, a newer commit goes live"
check "the newer commit matches its tree" current_matches "$WWW" "$TMP/src" "$H3"

# ---- pause and resume by hand ----
out=$(dctl pause www 2>&1)
is "pause: exit 0" "$?" 0
commit_file "$TMP/src" index.html "four" "four" || bail "commit failed"
H4=$(repo_head "$TMP/src")
sleep 2.5
check "pause: polling deploys nothing" current_is "$WWW" "$H3"
dctl resume www >/dev/null 2>&1
wait_live "$WWW" "$H4" 20 || fail "resume: the waiting commit goes live"

# ---- deploy --rev ----
out=$(dctl deploy www --rev "${H2:0:10}" --wait 2>&1)
is "deploy --rev: exit 0" "$?" 0
check "deploy --rev: that commit is live, bad mark or not" current_matches "$WWW" "$TMP/src" "$H2"
is "deploy --rev pauses automatic deploys" "$(site_field www paused)" true
like "and says it is pinned" "$(site_field www pause_reason)" "pinned"
out=$(dctl deploy www --rev 0123456789abcdef --wait 2>&1)
is "deploy --rev of a commit not on the remote: exit 1" "$?" 1
like "deploy --rev of a commit not on the remote: says so" "$out" "0123456789abcdef|not a commit|not found"
check "and current is untouched" current_is "$WWW" "$H2"
out=$(dctl deploy www --rev xyz 2>&1)
is "deploy --rev that is not hex: exit 2" "$?" 2
dctl resume www >/dev/null 2>&1

# ---- rollback to a named release, and unknown ones ----
out=$(dctl rollback www nosuchrelease 2>&1)
is "rollback to an unknown release: exit 1" "$?" 1
like "rollback to an unknown release: says so" "$out" "nosuchrelease"
R1=$(ls "$WWW/releases" | grep "${H1:0:12}" | head -n 1)
if [ -n "$R1" ]; then
	out=$(dctl rollback www "${H1:0:8}" 2>&1)
	is "rollback to a commit prefix: exit 0" "$?" 0
	check "rollback to a commit prefix: that release is live" current_is "$WWW" "$H1"
else
	diag "the first release was pruned; skipping the prefix rollback"
	ok "rollback to a commit prefix (release pruned by keep; covered by the error case)"
fi
dctl resume www >/dev/null 2>&1

# ---- unknown site, malformed requests, no daemon, no permission ----
out=$(dctl status nosuch 2>&1)
is "status of an unknown site: exit 1" "$?" 1
like "status of an unknown site: names it" "$out" "nosuch"
out=$(dctl rollback nosuch 2>&1)
is "rollback of an unknown site: exit 1" "$?" 1
S=$CFG_SOCKET
is "control API: unknown route is 404" "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" http://localhost/v2/x)" 404
is "control API: wrong method is 405" "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" -X DELETE http://localhost/v1/sites/www)" 405
is "control API: a body that is not JSON is 400" "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" -d 'not json' http://localhost/v1/sites/www/deploy)" 400
is "control API: a rev that is not a string is 400" "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" -d '{"rev":5}' http://localhost/v1/sites/www/deploy)" 400
is "control API: a bad site name is 404" "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" 'http://localhost/v1/sites/..%2fetc')" 404
is "control API: a 100 KiB body is 413" "$(head -c 102400 /dev/zero | tr '\0' 'a' | curl -s -o /dev/null -w '%{http_code}' --unix-socket "$S" --data-binary @- http://localhost/v1/sites/www/deploy)" 413
check "the daemon still answers after malformed requests" dctl status www

if command -v setpriv >/dev/null; then
	out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$DEPLOYD_BIN" status -s "$S" 2>&1)
	is "a client without access to the socket: exit 1" "$?" 1
	like "a client without access: permission denied with the socket path" "$out" "permission denied: $S"
else
	fail "setpriv is missing (util-linux)"
fi
out=$("$DEPLOYD_BIN" status -s "$TMP/nothing.sock" 2>&1)
is "no daemon: exit 1" "$?" 1
like "no daemon: a clear message" "$out" "not running"

# ---- reload: good, then broken, while webhooks keep being answered ----
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s secret_file="$SECRET")" \
	"$(site_yaml two "$TMP/src.git" "$TMP/two" poll=1s)"
out=$(dctl reload 2>&1)
is "reload with a good config: exit 0" "$?" 0
wait_for "reload: the new site deploys" 20 test -L "$TMP/two/current"
is "status lists both sites" "$(dctl status --json | jq '.sites | length')" 2
cp "$TMP/deployd.yaml" "$TMP/good.yaml"
printf '    colour: blue\n' >>"$TMP/deployd.yaml"
out=$("$DEPLOYD_BIN" reload -s "$S" -c "$TMP/deployd.yaml" 2>&1)
is "reload with a broken config: exit 2" "$?" 2
like "reload with a broken config: prints the error with its position" "$out" "deployd.yaml:[0-9]+:[0-9]+: unknown key 'colour'"
kill -HUP "$DAEMON_PID"
sleep 0.5
check "SIGHUP with a broken config: the daemon keeps running" pid_alive "$DAEMON_PID"
is "and keeps the old sites" "$("$DEPLOYD_BIN" status --json -s "$S" | jq '.sites | length')" 2
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$CFG_LISTEN/healthz")
is "the webhook listener still answers after the reloads" "$code" 200
cp "$TMP/good.yaml" "$TMP/deployd.yaml"

stop_daemon
is "SIGTERM: exit 0" "$DAEMON_STATUS" 0
done_testing
