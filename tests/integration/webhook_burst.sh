#!/bin/bash
# webhook_burst.sh: 50 webhooks during a slow deploy coalesce: at most two deploys run, ending on the newest tip.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

FIX=$SRCDIR/tests/unit/data/hooks
SECRET='burst-secret-0123456789'

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v0" "v0" || bail "commit failed"
H0=$(repo_head "$TMP/src")
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"

# The pre_activate hook makes every deploy take six seconds, so the burst lands during one
# even on a loaded machine.
CFG_LISTEN=127.0.0.1:$(free_port)
# 50 deliveries at once from one address: above the default per-address limit of 32.
CFG_EXTRA=$'limits:\n  max_connections_per_ip: 100'
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret" keep=20 \
		'hooks={pre_activate: [/bin/sleep, "6"], timeout: 30s}')"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H0" 30 || bail "the first deploy did not happen"
wait_for "www idle" 10 site_field_is www state idle

# ring FILE DELIVERY: one signed GitHub push; prints "status time_total queued".
ring() {
	local out
	out=$(curl -sS -o "$TMP/resp.$2" -w '%{http_code} %{time_total}' --max-time 10 \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-GitHub-Delivery: $2" -H "X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$1")" \
		--data-binary "@$1" "http://$CFG_LISTEN/hooks/www")
	# one write per line: the burst's jobs share the output file
	printf '%s %s\n' "$out" "$(jq -r .queued "$TMP/resp.$2" 2>/dev/null)"
}

done0=$(site_field www deploy.done_id)
commit_file "$TMP/src" index.html "v1" "v1" || bail "commit failed"
H1=$(repo_head "$TMP/src")
jq -cj --arg a "$H1" '.after = $a' "$FIX/github-push.json" >"$TMP/p1.json"
is "the first webhook is queued" "$(ring "$TMP/p1.json" first | cut -d' ' -f1,3)" "202 true"
if ! wait_for "the deploy to reach its hook" 10 site_field_is www state hook; then
	fail "the deploy is slow (pre_activate runs)" "state: $(site_field www state)"
fi

# While it runs: two more commits, and 50 deliveries in a burst.
commit_file "$TMP/src" index.html "v2" "v2" || bail "commit failed"
commit_file "$TMP/src" index.html "v3" "v3" || bail "commit failed"
H3=$(repo_head "$TMP/src")
jq -cj --arg a "$H3" '.after = $a' "$FIX/github-push.json" >"$TMP/p3.json"
pids=()
for ((i = 0; i < 50; i++)); do
	ring "$TMP/p3.json" "burst-$i" &
	pids+=($!)
done >"$TMP/burst.out"
wait "${pids[@]}"	# not a bare wait: the daemon is a child too
is "50 deliveries in a burst: all 202 queued" \
	"$(cut -d' ' -f1,3 "$TMP/burst.out" | sort | uniq -c | awk '{print $1, $2, $3}')" "50 202 true"
slowest=$(cut -d' ' -f2 "$TMP/burst.out" | sort -n | tail -n 1)
if awk -v t="$slowest" -v k="$TIME_SCALE" 'BEGIN { exit !(t < 1.0 * k) }'; then
	ok "every burst delivery was answered at once (slowest ${slowest}s, bound $TIME_SCALE s)"
else
	fail "every burst delivery was answered at once" "slowest ${slowest}s, bound $TIME_SCALE s"
fi
is "the first deploy was still running during the burst" "$(site_field www state)" hook

check "the newest tip goes live" wait_live "$TMP/www" "$H3" 30
wait_for "www idle" 30 site_field_is www state idle
wait_for "nothing queued" 10 site_field_is www deploy.queued_id 0
done1=$(site_field www deploy.done_id)
ran=$((done1 - done0))
if [ "$ran" -ge 1 ] && [ "$ran" -le 2 ]; then
	ok "at most two deploys ran for 51 deliveries ($ran)"
else
	fail "at most two deploys ran for 51 deliveries" "deploy ids went from $done0 to $done1"
fi
is "releases: the start-up one, v1 and v3; v2 was never deployed" "$(release_count "$TMP/www")" 3
sleep 3
is "and nothing ran afterwards" "$(site_field www deploy.done_id)" "$done1"
check "the daemon keeps serving" daemon_running
done_testing
