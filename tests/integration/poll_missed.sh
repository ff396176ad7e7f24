#!/bin/bash
# poll_missed.sh: a push that no webhook announces is caught by polling and reported as a
# missed webhook; failed polls back off and recover without a restart.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "one" || bail "commit failed"
H1=$(repo_head "$TMP/src")
WWW=$TMP/www
printf 'miss-secret\n' >"$TMP/secret"
chmod 600 "$TMP/secret"
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$WWW" poll=1s webhook_grace=2s secret_file="$TMP/secret")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$H1" 20 || bail "first deploy"
is "no missed webhook at first" "$(site_field www webhooks_missed)" 0

# A push with no webhook: polling deploys it, then the grace period runs out.
commit_file "$TMP/src" index.html "two" "two" || bail "commit failed"
H2=$(repo_head "$TMP/src")
wait_live "$WWW" "$H2" 20 || fail "polling deploys a push no webhook announced"
wait_for "the missed webhook is counted" 10 site_field_is www webhooks_missed 1 ||
	fail "status counts the missed webhook" "$(site_field www webhooks_missed)"
isnt "status: last_missed_at is set" "$(site_field www last_missed_at)" null
check "the log says webhook missed" grep -q "site=www commit=${H2:0:12} webhook missed" "$TMP/daemon.log"
like "metrics count it" "$(curl -s "http://$CFG_LISTEN/metrics")" \
	'deployd_webhooks_missed_total\{site="www"\} 1'

# A push announced by its webhook is not a missed one, even if a poll sees it first.
commit_file "$TMP/src" index.html "three" "three" || bail "commit failed"
H3=$(repo_head "$TMP/src")
body=$(printf '{"ref":"refs/heads/main","before":"%s","after":"%s"}' "$H2" "$H3")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	-H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: miss-$H3" \
	-H "X-Hub-Signature-256: sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac miss-secret | sed 's/^.*= //')" \
	--data-binary "$body" "http://$CFG_LISTEN/hooks/www")
is "the webhook is accepted" "$code" 202
wait_live "$WWW" "$H3" 20 || fail "the announced push goes live"
sleep 3.5
is "an announced push is not counted as missed" "$(site_field www webhooks_missed)" 1

# The remote goes away: polls fail, back off, and recover once it is back.
mv "$TMP/src.git" "$TMP/src.gone"
wait_for "polls fail" 15 site_field_is www state failed || fail "a failing poll shows failed"
sleep 6
f=$(site_field www failures)
if [ "$f" -ge 2 ] && [ "$f" -le 5 ]; then
	ok "failed polls back off (failures=$f after ~6 s at poll 1s)"
else
	fail "failed polls back off" "failures=$f after ~6 s at a 1 s interval"
fi
check "current is untouched while the remote is gone" current_is "$WWW" "$H3"
mv "$TMP/src.gone" "$TMP/src.git"
commit_file "$TMP/src" index.html "four" "four" || bail "commit failed"
H4=$(repo_head "$TMP/src")
wait_live "$WWW" "$H4" 40 || fail "polling recovers without a restart"
is "failures reset after a success" "$(site_field www failures)" 0
is "the error is cleared" "$(site_field www last_error)" null
stop_daemon
is "SIGTERM: exit 0" "$DAEMON_STATUS" 0
done_testing
