#!/bin/bash
# listener_view.sh: the listener answers pushes from the view the daemon pushes to it (pause, live commit, deliveries seen), exactly as the daemon would, and loses no accepted push.
# timeout: 240
#
# The daemon is stopped with SIGSTOP to tell the listener's own answers from the daemon's:
# a question to a stopped daemon waits 10 s and gets 503, an answer from the view comes at
# once. Floods run 4 clients at once, each request with its own delivery id.
. "$(dirname "$0")/../lib.sh"

SECRET='view-secret-0123456789'

# body COMMIT: a signed GitHub push body for COMMIT in $TMP/body-COMMIT.json, and its MAC.
body() {
	[ -f "$TMP/body-$1.json" ] && return 0
	jq -cj --arg a "$1" '.after = $a' "$SRCDIR/tests/unit/data/hooks/github-push.json" \
		>"$TMP/body-$1.json"
	hmac256 "$SECRET" "$TMP/body-$1.json" >"$TMP/body-$1.sig"
}

# hook COMMIT DELIVERY [MAX_S]: prints "STATUS WHAT" (queued, duplicate, or the reason
# it was ignored); safe to run many at once.
hook() {
	local out code
	body "$1"
	out=$(curl -sS -D "$TMP/hdr-$2" --max-time "${3:-10}" -w '\n%{http_code}' \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-GitHub-Delivery: $2" -H "X-Hub-Signature-256: sha256=$(cat "$TMP/body-$1.sig")" \
		--data-binary "@$TMP/body-$1.json" "http://$CFG_LISTEN/hooks/${SITE:-www}" 2>/dev/null)
	code=${out##*$'\n'}
	printf '%s %s\n' "${code:-000}" "$(jq -r 'if .queued then "queued" elif .duplicate then
		"duplicate" elif .ignored then .reason else "other" end' <<<"${out%$'\n'*}" \
		2>/dev/null | tr ' ' _)"
}

# flood COMMIT PREFIX N: N pushes of COMMIT, 4 at a time; one "DELIVERY STATUS WHAT" a line
flood() {
	body "$1"
	export -f hook body
	export TMP SECRET CFG_LISTEN SRCDIR SITE
	seq 1 "$3" | xargs -P 4 -I{} bash -c 'echo "'"$2"'-{} $(hook '"$1"' '"$2"'-{})"'
}

# webhooks_total RESULT [SITE]: the daemon's count of pushes to SITE (www) with that result
webhooks_total() {
	curl -sS --max-time 10 "http://$CFG_LISTEN/metrics" |
		sed -n 's/^deployd_webhooks_total{site="'"${2:-www}"'",provider="github",result="'"$1"'"} //p' |
		awk '{s += $1} END {print s + 0}'
}

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v0" "v0" || bail "commit failed"
H0=$(repo_head "$TMP/src")
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"
CFG_LISTEN=127.0.0.1:$(free_port)
CFG_LOG_LEVEL=debug
# "slow" deploys the same repository with a 3 s hook, so that a deploy can be made to wait.
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")" \
	"$(site_yaml slow "$TMP/src.git" "$TMP/slow" poll=0 secret_file="$TMP/secret" \
		'hooks={pre_activate: [/bin/sleep, "3"], timeout: 30s}')" \
	"$(site_yaml short "$TMP/src.git" "$TMP/short" poll=0 secret_file="$TMP/secret" \
		'hooks={pre_activate: [/bin/sleep, "0.2"], timeout: 30s}')"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H0" 30 || bail "the first deploy did not happen"
wait_live "$TMP/slow" "$H0" 30 || bail "the first deploy of slow did not happen"
sleep 0.5

# ---- the listener answers from its view while the daemon cannot ----
kill -STOP "$DAEMON_PID"
t0=$(now_ms)
is "daemon stopped: a push of the live commit is answered from the view" "$(hook "$H0" s-1 3)" \
	"202 commit_already_live"
check "at once (under 1 s: $(( $(now_ms) - t0 )) ms)" test $(( $(now_ms) - t0 )) -lt 1000
commit_file "$TMP/src" index.html "v1" "v1" || bail "commit failed"
H1=$(repo_head "$TMP/src")
t0=$(now_ms)
is "a push of a new commit needs the daemon: 503 when it does not answer" \
	"$(hook "$H1" s-2 20)" "503 other"
t1=$(now_ms)
check "after the listener's 10 s wait ($((t1 - t0)) ms)" test $((t1 - t0)) -ge 9000
like "with Retry-After" "$(cat "$TMP/hdr-s-2")" $'Retry-After: [0-9]+\r'
kill -CONT "$DAEMON_PID"
# The record was sent; the daemon takes it when it runs again, so the retry is a duplicate.
wait_live "$TMP/www" "$H1" 30 && ok "the push the daemon took late still deploys" ||
	fail "the push the daemon took late still deploys"
is "its retry is answered as a duplicate" "$(hook "$H1" s-2)" "202 duplicate"

# ---- pause and resume reach the listener ----
dctl pause www >/dev/null || fail "deployd pause"
sleep 0.3
kill -STOP "$DAEMON_PID"
is "paused, daemon stopped: the listener answers 'paused' itself" "$(hook "$H0" p-1 3)" \
	"202 site_paused"
kill -CONT "$DAEMON_PID"
dctl resume www >/dev/null || fail "deployd resume"
wait_for "the resume's catch-up to finish" 20 site_field_is www state idle
sleep 0.3
kill -STOP "$DAEMON_PID"
is "resumed: the live commit is 'already live' again" "$(hook "$H1" p-2 3)" \
	"202 commit_already_live"
kill -CONT "$DAEMON_PID"

# ---- duplicates survive a listener restart ----
commit_file "$TMP/src" index.html "v2" "v2" || bail "commit failed"
H2=$(repo_head "$TMP/src")
is "a new commit is queued" "$(hook "$H2" r-1)" "202 queued"
wait_live "$TMP/www" "$H2" 30 || fail "and goes live"
L1=$(listener_of "$DAEMON_PID")
kill -KILL "$L1"
for ((i = 0; i < 100; i++)); do
	l=$(listener_of "$DAEMON_PID")
	[ -n "$l" ] && [ "$l" != "$L1" ] && break
	sleep 0.1
done
for ((i = 0; i < 100; i++)); do
	[ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$CFG_LISTEN/healthz")" = 200 ] &&
		break
	sleep 0.05
done
is "after kill -9 of the listener, the delivery is still a duplicate" "$(hook "$H2" r-1)" \
	"202 duplicate"
is "while a new delivery of the live commit is ignored" "$(hook "$H2" r-2)" \
	"202 commit_already_live"

# ---- every delivery counted once ----
before=$(webhooks_total ignored)
flood "$H2" m 300 >"$TMP/flood-m"
is "300 pushes of the live commit: all 202 ignored" \
	"$(awk '{print $2, $3}' "$TMP/flood-m" | sort | uniq -c | sed 's/^ *//')" \
	"300 202 commit_already_live"
is "and counted once each" "$(webhooks_total ignored)" "$((before + 300))"

# ---- a pause while pushes are in flight ----
commit_file "$TMP/src" index.html "v3" "v3" || bail "commit failed"
H3=$(repo_head "$TMP/src")
dctl pause www >/dev/null || fail "deployd pause"
dctl resume www >/dev/null || fail "deployd resume"
wait_for "idle" 20 site_field_is www state idle
total0=$(( $(webhooks_total ignored) + $(webhooks_total queued) + $(webhooks_total duplicate) ))
flood "$H3" q 200 >"$TMP/flood-q" &
FLOOD=$!
sleep 0.3
dctl pause www >/dev/null || fail "deployd pause during the flood"
wait "$FLOOD"
is "every push during the pause was answered 202" \
	"$(awk '{print $2}' "$TMP/flood-q" | sort -u | tr '\n' ' ')" "202 "
unlike "none was answered anything but queued, duplicate or ignored" \
	"$(awk '{print $3}' "$TMP/flood-q" | sort -u)" 'other'
is "after the pause, a push is 'paused'" "$(hook "$H3" q-after)" "202 site_paused"
total1=$(( $(webhooks_total ignored) + $(webhooks_total queued) + $(webhooks_total duplicate) ))
is "201 pushes, 201 counted" "$((total1 - total0))" 201
diag "answers during the pause: $(awk '{print $3}' "$TMP/flood-q" | sort | uniq -c | tr '\n' ' ')"
dctl resume www >/dev/null || fail "deployd resume"
wait_live "$TMP/www" "$H3" 30 && ok "resumed: the tip goes live" || fail "resumed: the tip goes live"

# ---- a listener killed mid-flood loses no accepted push ----
commit_file "$TMP/src" index.html "v4" "v4" || bail "commit failed"
H4=$(repo_head "$TMP/src")
q0=$(webhooks_total queued)
flood "$H4" k 300 >"$TMP/flood-k" &
FLOOD=$!
sleep 0.3
kill -KILL "$(listener_of "$DAEMON_PID")"
wait "$FLOOD"
nq=$(grep -c ' 202 queued$' "$TMP/flood-k" || true)
diag "answers around the kill: $(awk '{print $2, $3}' "$TMP/flood-k" | sort | uniq -c | tr '\n' ' ')"
check "some pushes were answered queued ($nq)" test "$nq" -gt 0
wait_live "$TMP/www" "$H4" 30 && ok "the pushed commit goes live" || fail "the pushed commit goes live"
q1=$(webhooks_total queued)
check "the daemon queued at least every push answered 'queued' ($((q1 - q0)) >= $nq)" \
	test $((q1 - q0)) -ge "$nq"
bad=0
for d in $(grep ' 202 queued$' "$TMP/flood-k" | tail -n 20 | cut -d' ' -f1); do
	[ "$(hook "$H4" "$d")" = "202 duplicate" ] || bad=$((bad + 1))
done
is "the last 20 queued deliveries are each known to the daemon (duplicates now)" "$bad" 0
check "the daemon is still running" daemon_running

# ---- a push while a deploy waits joins it, answered by the listener ----
commit_file "$TMP/src" index.html "v5" "v5" || bail "commit failed"
H5=$(repo_head "$TMP/src")
SITE=slow
is "slow: a new commit is queued (a deploy runs)" "$(hook "$H5" w-1)" "202 queued"
is "slow: another push makes one wait" "$(hook "$H5" w-2)" "202 queued"
sleep 0.3
kill -STOP "$DAEMON_PID"
t0=$(now_ms)
is "daemon stopped: a push joins the waiting deploy, answered by the listener" \
	"$(hook "$H5" w-3 3)" "202 queued"
check "at once ($(( $(now_ms) - t0 )) ms)" test $(( $(now_ms) - t0 )) -lt 1000
kill -CONT "$DAEMON_PID"
wait_live "$TMP/slow" "$H5" 30 && ok "slow: the tip goes live" || fail "slow: the tip goes live"
wait_for "slow idle" 20 site_field_is slow state idle
is "slow: the three pushes are counted queued" "$(webhooks_total queued slow)" 3
is "slow: the one the listener answered is known to the daemon (a duplicate now)" \
	"$(hook "$H5" w-3)" "202 duplicate"

# ---- the deploy that waited does not ask the remote what it said a moment ago ----
SITE=short
wait_live "$TMP/short" "$H5" 30 >/dev/null 2>&1 || wait_for "short on H0" 30 test -L "$TMP/short/current"
commit_file "$TMP/src" index.html "v6" "v6" || bail "commit failed"
H6=$(repo_head "$TMP/src")
a=$(hook "$H6" f-1)
b=$(hook "$H6" f-2)
is "short: two pushes of a new commit in a row are queued" "$a / $b" "202 queued / 202 queued"
wait_live "$TMP/short" "$H6" 30 && ok "short: it goes live" || fail "short: it goes live"
wait_for "short idle" 20 site_field_is short state idle
like "the deploy that waited took the tip its predecessor fetched, without asking again" \
	"$(grep "site=short commit=${H6:0:12}" "$TMP/daemon.log")" \
	'the remote named it under 1000 ms ago; not asking again'
SITE=

stop_daemon || fail "the daemon stops"
done_testing
