#!/bin/bash
# webhook_bad_input.sh: every bad request of the listener gets its exact status (or a closed connection), and the daemon keeps serving.
# timeout: 240
. "$(dirname "$0")/../lib.sh"

FIX=$SRCDIR/tests/unit/data/hooks
SECRET='correct horse battery staple'

# post SITE FILE HEADER...: POST FILE to /hooks/SITE; prints the status, body in $TMP/resp.
post() {
	local site=$1 file=$2 h args=()
	shift 2
	for h in "$@"; do args+=(-H "$h"); done
	curl -sS -o "$TMP/resp" -w '%{http_code}' --max-time 10 "${args[@]}" \
		--data-binary "@$file" "http://$CFG_LISTEN/hooks/$site" 2>/dev/null
}

# github SITE FILE SIG [EXTRA HEADER...]: a GitHub push with the given X-Hub-Signature-256,
# and the delivery id $DELIVERY (default: a new one).
github() {
	local site=$1 file=$2 sig=$3
	shift 3
	post "$site" "$file" "Content-Type: application/json" "X-GitHub-Event: push" \
		"X-GitHub-Delivery: ${DELIVERY:-$(cat /proc/sys/kernel/random/uuid)}" \
		${sig:+"X-Hub-Signature-256: $sig"} "$@"
}

# refused DESC WANT GOT: the status, and an answer that holds neither the secret nor the MAC.
refused() {
	is "$1: $2" "$3" "$2"
	if grep -qF -e "$SECRET" -e "$GOOD" "$TMP/resp"; then
		fail "$1: the answer reveals neither the secret nor the expected MAC" "$(cat "$TMP/resp")"
	fi
}

rss_kib() {
	sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$DAEMON_PID/status"
}

make_repo "$TMP/src" || bail "make_repo failed"
# Every deploy of "failing" fails: a file stands where its releases/ directory should be.
mkdir -p "$TMP/failing"
printf 'not a directory\n' >"$TMP/failing/releases"
commit_file "$TMP/src" index.html "first" "first page" || bail "commit failed"
H0=$(repo_head "$TMP/src")
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"

CFG_LISTEN=127.0.0.1:$(free_port)
CFG_EXTRA='limits:
  max_body: 64KiB
  max_header: 8KiB
  request_timeout: 3s'
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")" \
	"$(site_yaml ghonly "$TMP/src.git" "$TMP/ghonly" poll=0 secret_file="$TMP/secret" \
		'providers=[github]')" \
	"$(site_yaml legacy "$TMP/src.git" "$TMP/legacy" poll=0 secret_file="$TMP/secret" \
		allow_sha1=true)" \
	"$(site_yaml failing "$TMP/src.git" "$TMP/failing" poll=0 secret_file="$TMP/secret")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H0" 30 || bail "the first deploy did not happen"
URL=http://$CFG_LISTEN

jq -cj --arg a "$H0" '.after = $a' "$FIX/github-push.json" >"$TMP/push.json"
GOOD=$(hmac256 "$SECRET" "$TMP/push.json")

# ---- signatures ----
st=$(github www "$TMP/push.json" "")
refused "missing signature" 401 "$st"
st=$(github www "$TMP/push.json" "sha256=$(printf '%064d' 0)")
refused "wrong signature" 401 "$st"
printf '{"ref":"refs/heads/main","after":"%s"}' "$H0" >"$TMP/other.json"
st=$(github www "$TMP/push.json" "sha256=$(hmac256 "$SECRET" "$TMP/other.json")")
refused "signature of another body" 401 "$st"
st=$(github www "$TMP/push.json" "sha256=$(printf '%s' "$GOOD" | tr a-f A-F)")
refused "uppercase hex" 401 "$st"
st=$(github www "$TMP/push.json" "sha256=${GOOD:0:63}")
refused "truncated hex" 401 "$st"
st=$(github www "$TMP/push.json" "sha256=$(hmac256 "$SECRET!" "$TMP/push.json")")
refused "wrong secret" 401 "$st"
sha1=$(openssl dgst -sha1 -hmac "$SECRET" -r <"$TMP/push.json" | cut -d' ' -f1)
st=$(github www "$TMP/push.json" "" "X-Hub-Signature: sha1=$sha1")
refused "SHA-1 signature alone, site without allow_sha1" 401 "$st"
like "SHA-1 refusal says why" "$(cat "$TMP/resp")" 'allow_sha1'
st=$(github legacy "$TMP/push.json" "" "X-Hub-Signature: sha1=$sha1")
is "SHA-1 signature alone, site with allow_sha1: 202" "$st" 202
jq -cj --arg a "$H0" '.after = $a' "$FIX/gitlab-push.json" >"$TMP/gl.json"
for tok in "${SECRET}x" "${SECRET%?}" "${SECRET%?}f" "x${SECRET#?}"; do
	st=$(post www "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
		"X-Gitlab-Token: $tok")
	refused "GitLab token off by one byte ('${tok:0:3}...${tok: -3}')" 401 "$st"
done
st=$(post ghonly "$TMP/gl.json" "Content-Type: application/json" "X-Gitlab-Event: Push Hook" \
	"X-Gitlab-Token: $SECRET")
refused "provider not allowed for the site" 403 "$st"

# ---- routes and methods ----
st=$(github nosuchsite "$TMP/push.json" "sha256=$GOOD")
refused "unknown site" 404 "$st"
st=$(curl -sS -o "$TMP/resp" -D "$TMP/hdrs" -w '%{http_code}' --max-time 10 "$URL/hooks/www")
is "GET on a hook URL: 405" "$st" 405
like "405 names the allowed method" "$(tr -d '\r' <"$TMP/hdrs" | grep -i '^Allow:')" '^Allow: POST$'
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE "$URL/hooks/www")
is "DELETE on a hook URL: 405" "$st" 405
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$URL/healthz")
is "POST on /healthz: 405" "$st" 405

# ---- bodies ----
printf 'this is not JSON at all' >"$TMP/notjson"
st=$(github www "$TMP/notjson" "sha256=$(hmac256 "$SECRET" "$TMP/notjson")")
refused "non-JSON body with a JSON content type" 400 "$st"
printf 'ref=refs%%2Fheads%%2Fmain&after=%s' "$H0" >"$TMP/noform"
st=$(post www "$TMP/noform" "Content-Type: application/x-www-form-urlencoded" \
	"X-GitHub-Event: push" "X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/noform")")
refused "form body without payload=" 400 "$st"
st=$(post www "$TMP/push.json" "Content-Type: text/plain" "X-GitHub-Event: push" \
	"X-Hub-Signature-256: sha256=$GOOD")
refused "unknown content type" 415 "$st"
st=$(post www "$TMP/push.json" "Content-Type: application/xml" "X-GitHub-Event: push" \
	"X-Hub-Signature-256: sha256=$GOOD")
refused "another unknown content type" 415 "$st"

# Content-Length over max_body: answered from the headers alone, no body sent.
exec 3<>"/dev/tcp/${CFG_LISTEN%:*}/${CFG_LISTEN##*:}"
printf 'POST /hooks/www HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nContent-Length: 26214400\r\n\r\n' >&3
line=$(timeout 5 head -n 1 <&3 | tr -d '\r')
exec 3>&-
like "Content-Length over max_body: 413 before any body byte is sent" "$line" '^HTTP/1\.1 413 '

head -c 100000 /dev/zero | tr '\0' 'a' >"$TMP/big"
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Transfer-Encoding: chunked' \
	-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' --data-binary "@$TMP/big" \
	"$URL/hooks/www" 2>/dev/null)
is "chunked body growing over max_body: the connection is closed, no answer" "$st" 000

big=$(head -c 10000 /dev/zero | tr '\0' 'h')
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H "X-Padding: $big" "$URL/healthz")
is "headers over max_header: 431" "$st" 431
big=$(head -c 100000 /dev/zero | tr '\0' 'h')
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H "X-Padding: $big" "$URL/healthz")
is "headers far over max_header: 431 from libmicrohttpd" "$st" 431
big=$(head -c 6000 /dev/zero | tr '\0' 'h')
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H "X-Padding: $big" "$URL/healthz")
is "headers under max_header: 200" "$st" 200

# ---- pushes that do not deploy ----
jq -cj '.ref = "refs/heads/feature/x"' "$TMP/push.json" >"$TMP/feature.json"
st=$(github www "$TMP/feature.json" "sha256=$(hmac256 "$SECRET" "$TMP/feature.json")")
is "push to another ref: 202" "$st" 202
is "push to another ref: ignored with a reason" "$(jq -c '[.ignored, .reason]' "$TMP/resp")" \
	'[true,"push to another ref"]'
st=$(github www "$FIX/github-delete.json" "sha256=$(hmac256 "$SECRET" "$FIX/github-delete.json")")
is "deletion of the tracked branch: 202" "$st" 202
is "deletion of the tracked branch: ignored" "$(jq -r .reason "$TMP/resp")" "branch deletion"
st=$(github www "$FIX/github-tag.json" "sha256=$(hmac256 "$SECRET" "$FIX/github-tag.json")")
is "tag push on a branch site: ignored" "$(jq -r .reason "$TMP/resp")" "tag push"
st=$(post www "$FIX/github-ping.json" "Content-Type: application/json" "X-GitHub-Event: issues" \
	"X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$FIX/github-ping.json")")
is "another event: 202 ignored" "$st $(jq -r .reason "$TMP/resp")" "202 event issues ignored"
check "the site is still live after the deletion webhook" current_is "$TMP/www" "$H0"

# ---- duplicates ----
commit_file "$TMP/src" index.html "second" "second" || bail "commit failed"
H1=$(repo_head "$TMP/src")
jq -cj --arg a "$H1" '.after = $a' "$FIX/github-push.json" >"$TMP/p1.json"
S1="sha256=$(hmac256 "$SECRET" "$TMP/p1.json")"
st=$(DELIVERY=dup-0001 github www "$TMP/p1.json" "$S1")
is "first delivery: queued" "$st $(jq -r .queued "$TMP/resp")" "202 true"
wait_live "$TMP/www" "$H1" 30 || fail "the first delivery deployed"
wait_for "www idle" 10 site_field_is www state idle
st=$(DELIVERY=dup-0001 github www "$TMP/p1.json" "$S1")
is "the same delivery again, after its deploy succeeded: duplicate" \
	"$st $(jq -c '[.duplicate, .queued]' "$TMP/resp")" "202 [true,null]"
wait_for "the start-up deploy of 'failing' to fail" 20 site_field_is failing deploy.done_ok false
st=$(DELIVERY=dup-0002 github failing "$TMP/p1.json" "$S1")
is "a delivery for a site whose deploys fail: queued" "$st $(jq -r .queued "$TMP/resp")" "202 true"
wait_for "the delivery's deploy to fail" 20 site_field_is failing deploy.done_ok false
wait_for "the delivery's deploy to finish" 20 site_field_is failing deploy.queued_id 0
st=$(DELIVERY=dup-0002 github failing "$TMP/p1.json" "$S1")
is "the same delivery after its deploy failed rings again" "$st $(jq -r .queued "$TMP/resp")" \
	"202 true"

# ---- a slow client is cut at request_timeout; others are served meanwhile ----
exec 4<>"/dev/tcp/${CFG_LISTEN%:*}/${CFG_LISTEN##*:}"
(
	req=$'POST /hooks/www HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
	for ((i = 0; i < ${#req}; i++)); do
		printf '%s' "${req:i:1}" >&4 2>/dev/null || exit 0
		sleep 1
	done
) &
track_pid $!
t0=$(now_ms)
sleep 1
fast=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "$URL/healthz")
like "another client is served while the slow one trickles" "$fast" '^200 0\.[0-9]+$'
timeout 20 cat <&4 >/dev/null
t1=$(now_ms)
exec 4>&-
el=$((t1 - t0))
if [ "$el" -ge 2500 ] && [ "$el" -le 8000 ]; then
	ok "a client sending one byte a second is cut at request_timeout (after ${el} ms)"
else
	fail "a client sending one byte a second is cut at request_timeout" "closed after ${el} ms"
fi

# ---- log lines cannot be forged through the request ----
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST "$URL/hooks/evil%0Aforged-line")
is "a site name with a newline: 404" "$st" 404
st=$(DELIVERY=$'a\x1b[31mred' github www "$TMP/push.json" "sha256=0")
is "a delivery id with an escape sequence: 401" "$st" 401
sleep 0.3
check_not "no forged log line" grep -q '^forged-line' "$TMP/daemon.log"
check_not "no raw escape byte in the log" grep -q $'\x1b' "$TMP/daemon.log"

# ---- a flood of bad signatures: all 401, memory flat, valid deliveries still served ----
for ((i = 0; i < 1000; i++)); do
	printf 'url = "%s/hooks/www"\noutput = "/dev/null"\n' "$URL"
done >"$TMP/flood.curl"
flood() {
	curl -sS --parallel --parallel-max 16 -K "$TMP/flood.curl" \
		-w '%{http_code}\n' --max-time 20 -H 'Content-Type: application/json' \
		-H 'X-GitHub-Event: push' -H "X-Hub-Signature-256: sha256=$(printf '%064d' 7)" \
		--data-binary "@$TMP/push.json" 2>/dev/null
}
flood >/dev/null	# warm-up: allocator and thread pools reach their steady size
rss0=$(rss_kib)
lines0=$(grep -c 'refused 401' "$TMP/daemon.log")
codes=$(flood | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
rss1=$(rss_kib)
is "1,000 requests with bad signatures: all 401" "$codes" "401x1000 "
limit=8192
ldd "$DEPLOYD_BIN" | grep -q libasan && limit=131072	# ASan keeps freed memory in quarantine
if [ $((rss1 - rss0)) -le "$limit" ]; then
	ok "memory stays flat over the flood (RSS ${rss0} -> ${rss1} KiB)"
else
	fail "memory stays flat over the flood" "RSS ${rss0} -> ${rss1} KiB (limit +${limit})"
fi
lines1=$(grep -c 'refused 401' "$TMP/daemon.log")
if [ $((lines1 - lines0)) -le 15 ]; then
	ok "refusals are rate-limited in the log ($((lines1 - lines0)) lines for 1,000)"
else
	fail "refusals are rate-limited in the log" "$((lines1 - lines0)) lines for 1,000"
fi
check "a summary line follows" wait_for "summary" 15 \
	grep -qE '[0-9]+ rejected from 127\.0\.0\.1 in 10 s' "$TMP/daemon.log"
commit_file "$TMP/src" index.html "third" "third" || bail "commit failed"
H2=$(repo_head "$TMP/src")
jq -cj --arg a "$H2" '.after = $a' "$FIX/github-push.json" >"$TMP/p2.json"
st=$(github www "$TMP/p2.json" "sha256=$(hmac256 "$SECRET" "$TMP/p2.json")")
is "a valid delivery after the flood: 202" "$st" 202
check "and it deploys" wait_live "$TMP/www" "$H2" 30

# ---- metrics count what happened ----
curl -sS --max-time 5 "$URL/metrics" >"$TMP/metrics"
like "metrics: the flood is counted" \
	"$(grep '^deployd_webhooks_total{site="www",provider="github",result="unauthorized"}' "$TMP/metrics")" \
	' (10[0-9][0-9]|20[0-9][0-9])$'
like "metrics: queued deliveries are counted" \
	"$(grep '^deployd_webhooks_total{site="www",provider="github",result="queued"}' "$TMP/metrics")" ' [0-9]+$'
check_not "metrics: no series for an unknown site" grep -q 'site="nosuchsite"' "$TMP/metrics"
check "the daemon keeps serving" daemon_running
done_testing
