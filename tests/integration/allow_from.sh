#!/bin/bash
# allow_from.sh: allow_from (global and per site) answers 403 before the body is read, trusted_proxies' X-Forwarded-For decides the client, refusals are counted and summarised once a minute, reload applies new lists.
# timeout: 300
. "$(dirname "$0")/../lib.sh"

FIX=$SRCDIR/tests/unit/data/hooks
SECRET='allow-secret-4242'

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v0" "v0" || bail "commit failed"
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"
n=0

# push SITE FROM URL_BASE [CURL-ARGS...]: commit, then send the commit's signed GitHub push to
# /hooks/SITE from source address FROM (127.0.0.x; "-" for none). The HTTP status is in $ST,
# the commit in $HEAD, the answer in $TMP/resp.
push() {
	local site=$1 from=$2 base=$3 iface=()
	shift 3
	[ "$from" != - ] && iface=(--interface "$from")
	n=$((n + 1))
	commit_file "$TMP/src" index.html "v$n" "v$n" >/dev/null 2>&1 || bail "commit failed"
	HEAD=$(repo_head "$TMP/src")
	jq -cj --arg a "$HEAD" '.after = $a' "$FIX/github-push.json" >"$TMP/p.json"
	ST=$(curl -sS -o "$TMP/resp" -w '%{http_code}' --max-time 10 "${iface[@]}" \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-GitHub-Delivery: d-$n" \
		-H "X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/p.json")" \
		--data-binary "@$TMP/p.json" "$@" "$base/hooks/$site")
}

# get PATH FROM URL_BASE [CURL-ARGS...]: the status of a GET.
get() {
	local path=$1 from=$2 base=$3
	shift 3
	curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --interface "$from" "$@" "$base$path"
}

# served FROM URL_BASE [CURL-ARGS...]: /healthz answers 200 (for wait_for: asked on each try).
served() {
	local from=$1 base=$2 iface=()
	shift 2
	[ "$from" != - ] && iface=(--interface "$from")
	[ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${iface[@]}" "$@" \
		"$base/healthz")" = 200 ]
}

# accepted DESC SITE FROM [CURL-ARGS...]: a signed push is queued and goes live.
accepted() {
	local desc=$1 site=$2 from=$3
	shift 3
	push "$site" "$from" "$BASE" "$@"
	is "$desc: 202 queued" "$ST $(jq -r .queued "$TMP/resp" 2>/dev/null)" "202 true"
	check "$desc: deploys" wait_live "$TMP/$site" "$HEAD" 30
}

# refused DESC SITE FROM [CURL-ARGS...]: 403 for the address, and nothing deploys.
refused() {
	local desc=$1 site=$2 from=$3
	shift 3
	push "$site" "$from" "$BASE" "$@"
	is "$desc: 403" "$ST $(jq -r .error "$TMP/resp" 2>/dev/null)" "403 address not allowed"
	sleep 0.3
	check_not "$desc: nothing deploys" current_is "$TMP/$site" "$HEAD"
}

# log_count ERE: lines of the daemon log that match.
log_count() {
	grep -cE -- "$1" "$TMP/daemon.log"
}

# metric LINE-PREFIX: the value of one series in /metrics, asked from 127.0.0.1.
metric() {
	curl -sS --max-time 10 --interface 127.0.0.1 "$BASE/metrics" |
		awk -v k="$1" 'index($0, k " ") == 1 { print $2 }'
}

# ---- bad ranges are configuration errors, named FILE:LINE:COL ----
PORT=$(free_port)
CFG_LISTEN=127.0.0.1:$PORT
BASE=http://127.0.0.1:$PORT
CFG_EXTRA='allow_from: [140.82.112.0/20, 2a0a:a440::/29]
trusted_proxies: [127.0.0.1/32, "::1", unix]'
write_config "$TMP/good.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 \
	secret_file="$TMP/secret" 'allow_from=[140.82.112.0/24]')"
is "check: a good allow_from and trusted_proxies" "$("$DEPLOYD_BIN" check -c "$TMP/good.yaml" 2>&1)" \
	"configuration OK"
bad=0
for range in 10.0.0.0/33 300.1.1.1 fe80::/129 abc '""' 10.0.0.1/24 10.0.0.0/ '"::1%lo"' 10.1/16; do
	bad=$((bad + 1))
	CFG_EXTRA="allow_from:
  - 127.0.0.1
  - $range"
	write_config "$TMP/bad$bad.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0)"
	line=$(grep -n -- "  - $range\$" "$TMP/bad$bad.yaml" | cut -d: -f1)
	out=$("$DEPLOYD_BIN" check -c "$TMP/bad$bad.yaml" 2>&1)
	is "check: allow_from $range: exit status 2" "$?" 2
	like "check: allow_from $range: named at FILE:LINE:COL" "$out" \
		"^$TMP/bad$bad.yaml:$line:5: allow_from: "
done
# A site's list, and trusted_proxies, are checked the same way; an empty allow_from is refused.
CFG_EXTRA='trusted_proxies: [127.0.0.1, nobody]'
write_config "$TMP/bad-tp.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 \
	'allow_from=[10.0.0.0/8, 2001:db8::/129]')"
out=$("$DEPLOYD_BIN" check -c "$TMP/bad-tp.yaml" 2>&1)
like "check: trusted_proxies: a bad item named" "$out" \
	"^$TMP/bad-tp.yaml:[0-9]+:[0-9]+: trusted_proxies: 'nobody' is not an IPv4 or IPv6"
like "check: a site's allow_from: a bad item named" "$out" \
	"$TMP/bad-tp.yaml:[0-9]+:[0-9]+: allow_from: '2001:db8::/129': the prefix length"
CFG_EXTRA='allow_from: [140.82.112.0/20]'
write_config "$TMP/outside.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 \
	'allow_from=[140.82.112.0/24, 10.0.0.0/8]')"
out=$("$DEPLOYD_BIN" check -c "$TMP/outside.yaml" 2>&1)
like "check: a site range outside the global list is a warning" "$out" \
	"warning: site 'www': allow_from 10\.0\.0\.0/8 is outside the global allow_from"
check_not "check: ... only for that range" grep -q '140\.82\.112\.0/24 is outside' <<<"$out"
CFG_EXTRA='allow_from: []'
write_config "$TMP/bad-empty.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0)"
like "check: an empty allow_from is an error" "$("$DEPLOYD_BIN" check -c "$TMP/bad-empty.yaml" 2>&1)" \
	"^$TMP/bad-empty.yaml:[0-9]+:[0-9]+: allow_from: the list is empty"

# ---- IPv4: the global list, the per-site list, and trusted proxies ----
# 127.0.0.1 and 127.0.0.8/29 may ring; 127.0.0.3 and 127.0.0.4 are proxies; blog narrows
# the global list to 127.0.0.9.
CFG_EXTRA='allow_from: [127.0.0.1/32, 127.0.0.8/29, "::1"]
trusted_proxies: [127.0.0.3/32, 127.0.0.4]'
WWW=$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")
BLOG=$(site_yaml blog "$TMP/src.git" "$TMP/blog" poll=0 secret_file="$TMP/secret" \
	'allow_from=[127.0.0.9/32]')
write_config "$TMP/a.yaml" "$WWW" "$BLOG"
start_daemon "$TMP/a.yaml" || bail "daemon did not start"
T0=$(now_ms)
refused2=0	# refusals logged under addr=127.0.0.2, for the summary

refused "direct: 127.0.0.2 is not listed" www 127.0.0.2
refused2=$((refused2 + 1))
accepted "direct: 127.0.0.1 is listed" www 127.0.0.1
is "global list: /healthz from 127.0.0.1" "$(get /healthz 127.0.0.1 "$BASE")" 200
is "global list: /healthz from 127.0.0.2 is refused too" "$(get /healthz 127.0.0.2 "$BASE")" 403
is "global list: /metrics from 127.0.0.2 is refused too" "$(get /metrics 127.0.0.2 "$BASE")" 403
is "global list: an unknown site from 127.0.0.2 is 403, not 404" \
	"$(get /hooks/nosuch 127.0.0.2 "$BASE")" 403
refused2=$((refused2 + 3))

# Refused before the body is read: no 413 for a huge Content-Length, no 401 for a bad MAC.
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --interface 127.0.0.2 \
	-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
	-H 'Content-Length: 999999999999' -X POST "$BASE/hooks/www" 2>/dev/null)
is "before the body: a refused address gets 403 where a listed one would get 413" "$st" 403
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --interface 127.0.0.2 \
	-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
	-H 'X-Hub-Signature-256: sha256=00' --data-binary '{}' "$BASE/hooks/www")
is "before the body: a bad signature from a refused address gets 403, not 401" "$st" 403
refused2=$((refused2 + 2))

# X-Forwarded-For from a client that is not a trusted proxy is logged and trusted for nothing.
refused "forged XFF from 127.0.0.2" www 127.0.0.2 -H 'X-Forwarded-For: 127.0.0.1'
refused2=$((refused2 + 1))
accepted "XFF from an untrusted but listed client" www 127.0.0.1 -H 'X-Forwarded-For: 203.0.113.9'
like "untrusted XFF: logged as sent, addr is the peer" \
	"$(grep "delivery=d-$n " "$TMP/daemon.log" | tail -n 1)" 'addr=127\.0\.0\.1 forwarded=203\.0\.113\.9$'

# From a trusted proxy, X-Forwarded-For names the client.
accepted "proxy: XFF names a listed client" www 127.0.0.3 -H 'X-Forwarded-For: 127.0.0.1'
like "proxy: the log names the client and the proxy" \
	"$(grep "delivery=d-$n " "$TMP/daemon.log" | tail -n 1)" \
	'addr=127\.0\.0\.1 peer=127\.0\.0\.3 forwarded=127\.0\.0\.1$'
refused "proxy: XFF names a refused client" www 127.0.0.3 -H 'X-Forwarded-For: 127.0.0.2'
refused2=$((refused2 + 1))
refused "proxy: a proxy that forwards nothing is the client, and is not listed" www 127.0.0.3
accepted "proxy: an IPv4-mapped client matches the IPv4 range" www 127.0.0.3 \
	-H 'X-Forwarded-For: ::ffff:127.0.0.10'
# Chains: the rightmost hop that is not a trusted proxy is the client.
accepted "chain: refused, listed, trusted -> listed" www 127.0.0.3 \
	-H 'X-Forwarded-For: 127.0.0.2, 127.0.0.1, 127.0.0.4'
refused "chain: listed, refused, trusted -> refused (a forged left part is ignored)" www 127.0.0.3 \
	-H 'X-Forwarded-For: 127.0.0.1, 127.0.0.2, 127.0.0.4'
refused2=$((refused2 + 1))
refused "chain: two header lines are one list (the proxy's line last)" www 127.0.0.4 \
	-H 'X-Forwarded-For: 127.0.0.1' -H 'X-Forwarded-For: 127.0.0.2'
refused2=$((refused2 + 1))
refused "chain: every hop trusted -> the leftmost, not listed" www 127.0.0.3 \
	-H 'X-Forwarded-For: 127.0.0.4, 127.0.0.3'
refused "proxy: an unparseable hop fails closed" www 127.0.0.3 -H 'X-Forwarded-For: 127.0.0.1, bogus'
like "proxy: the unparseable hop is logged" \
	"$(grep 'unparseable X-Forwarded-For hop' "$TMP/daemon.log" | tail -n 1)" \
	'refused POST /hooks/www: unparseable X-Forwarded-For hop from a trusted proxy peer=127\.0\.0\.3 forwarded=127\.0\.0\.1, bogus addr=bogus'

# A site's list narrows the global one.
refused "site list: blog from 127.0.0.1 (globally listed)" blog 127.0.0.1
accepted "site list: blog from 127.0.0.9" blog 127.0.0.9
accepted "site list: www (no list of its own) from 127.0.0.9" www 127.0.0.9
refused "site list: blog through a proxy for 127.0.0.1" blog 127.0.0.3 -H 'X-Forwarded-For: 127.0.0.1'
accepted "site list: blog through a proxy for 127.0.0.9" blog 127.0.0.3 -H 'X-Forwarded-For: 127.0.0.9'

# Counted: webhooks to a site under its name, the rest as requests refused.
is "metrics: www's refusals by address" \
	"$(metric 'deployd_webhooks_total{site="www",provider="unknown",result="address_refused"}')" 10
is "metrics: blog's refusals by address" \
	"$(metric 'deployd_webhooks_total{site="blog",provider="unknown",result="address_refused"}')" 2
is "metrics: refusals that named no site" \
	"$(metric 'deployd_requests_refused_total{result="address_refused"}')" 3
is "metrics: www's queued webhooks" \
	"$(metric 'deployd_webhooks_total{site="www",provider="github",result="queued"}')" 6

# Logged once, then summarised once a minute, not once a request. A slow (sanitizer) run may
# cross the minute before this point: then the summaries so far must add up.
summaries() {
	grep -oE "refused [0-9]+ more requests from 127\.0\.0\.2 in the last [0-9]+ s" "$TMP/daemon.log" |
		awk '{ n += $2 } END { print n + 0 }'
}
is "log: the first refusal from 127.0.0.2 is logged, the next $((refused2 - 1)) are not" \
	"$(log_count 'addr=127\.0\.0\.2 \(further refusals from this address are summarised')" 1
elapsed=$(( ($(now_ms) - T0) / 1000 ))
if [ "$elapsed" -lt 59 ]; then
	is "log: no summary before the minute is over" "$(log_count 'more requests from 127\.0\.0\.2')" 0
	diag "waiting for the summary, $elapsed s into the minute"
	check "log: the summary comes when the minute is over" \
		wait_for "summary" $((75 - elapsed)) grep -q 'more requests from 127\.0\.0\.2 in the last' "$TMP/daemon.log"
	like "log: one summary line for the minute" \
		"$(grep 'more requests from 127\.0\.0\.2' "$TMP/daemon.log")" \
		"refused $((refused2 - 1)) more requests from 127\.0\.0\.2 in the last 6[0-9] s$"
else
	diag "this run took $elapsed s to get here: the minute is over already"
	check "log: a summary was written" grep -q 'more requests from 127\.0\.0\.2 in the last 6[0-9] s' "$TMP/daemon.log"
fi
is "log: the summaries count every refusal after the first" "$(summaries)" $((refused2 - 1))
# A refusal after the summary is counted towards the next one, not logged.
is "log: refused again after the summary" "$(get /healthz 127.0.0.2 "$BASE")" 403
refused2=$((refused2 + 1))
sleep 0.3
is "log: ... and not logged one by one" \
	"$(log_count 'addr=127\.0\.0\.2 \(further refusals from this address are summarised')" 1

# ---- reload applies new lists ----
CFG_EXTRA='allow_from: [127.0.0.2/32]
trusted_proxies: [127.0.0.3/32]'
BLOG=$(site_yaml blog "$TMP/src.git" "$TMP/blog" poll=0 secret_file="$TMP/secret" \
	'allow_from=[127.0.0.1/32]')
write_config "$TMP/a.yaml" "$WWW" "$BLOG"
dctl reload >/dev/null 2>&1 || fail "reload"
# The old listener retires once the new one serves, and writes its pending summary then.
summaries_are() {
	[ "$(summaries)" = "$1" ]
}
check "reload: the old listener's pending summary is written when it retires" \
	wait_for "the old listener's summary" 20 summaries_are $((refused2 - 1))
check "reload: 127.0.0.2 is served by the new listener" \
	wait_for "healthz from 127.0.0.2" 20 served 127.0.0.2 "$BASE"
accepted "reload: 127.0.0.2 may ring now" www 127.0.0.2
refused "reload: 127.0.0.1 may not" www 127.0.0.1
refused "reload: blog's new list is inside a global list that lacks it" blog 127.0.0.1
refused "reload: 127.0.0.4 is no longer a trusted proxy" www 127.0.0.4 -H 'X-Forwarded-For: 127.0.0.2'
# A reload with a bad range keeps the lists that are in force.
CFG_EXTRA='allow_from: [127.0.0.1/33]'
write_config "$TMP/a.yaml" "$WWW"
kill -HUP "$DAEMON_PID"
check "bad reload: the error is logged" wait_for "reload error" 10 grep -q "allow_from: '127.0.0.1/33'" "$TMP/daemon.log"
check "bad reload: the daemon keeps running" daemon_running
accepted "bad reload: the old lists still apply" www 127.0.0.2
stop_daemon || fail "the daemon stops"

# ---- IPv6 ----
PORT=$(free_port)
CFG_LISTEN="\"[::1]:$PORT\""
BASE="http://[::1]:$PORT"
CFG_EXTRA='allow_from: [127.0.0.0/8, "2001:db8::/32"]'
write_config "$TMP/v6.yaml" "$WWW"
start_daemon "$TMP/v6.yaml" || bail "daemon did not start on [::1]"
refused "ipv6: ::1 is not in [127.0.0.0/8, 2001:db8::/32]" www -
is "ipv6: /healthz from ::1 is refused" "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
	"$BASE/healthz")" 403
like "ipv6: the refusal names ::1" "$(grep 'refused POST /hooks/www' "$TMP/daemon.log" | tail -n 1)" \
	'addr=::1 '
CFG_EXTRA='allow_from: ["::1/128"]'
write_config "$TMP/v6.yaml" "$WWW"
kill -HUP "$DAEMON_PID"
check "ipv6: after SIGHUP, ::1 is served" wait_for "healthz from ::1" 20 served - "$BASE"
accepted "ipv6: ::1 is listed" www -
stop_daemon || fail "the daemon stops"

# ---- a Unix socket behind a proxy: trusted_proxies lists unix ----
mkdir -p "$TMP/run"
CFG_LISTEN=unix:$TMP/run/hooks.sock
BASE=http://localhost
CFG_EXTRA='allow_from: [192.0.2.0/24]'
write_config "$TMP/unix.yaml" "$WWW"
like "unix: check warns that every request would be refused" \
	"$("$DEPLOYD_BIN" check -c "$TMP/unix.yaml" 2>&1)" 'warning: allow_from with a Unix socket listener'
CFG_EXTRA='allow_from: [192.0.2.0/24]
trusted_proxies: [unix]'
write_config "$TMP/unix.yaml" "$WWW"
start_daemon "$TMP/unix.yaml" || bail "daemon did not start on a Unix socket"
accepted "unix: the proxy forwards a listed client" www - --unix-socket "$TMP/run/hooks.sock" \
	-H 'X-Forwarded-For: 192.0.2.77'
like "unix: the log names the client and the socket" \
	"$(grep "delivery=d-$n " "$TMP/daemon.log" | tail -n 1)" 'addr=192\.0\.2\.77 peer=unix forwarded=192\.0\.2\.77$'
refused "unix: the proxy forwards a refused client" www - --unix-socket "$TMP/run/hooks.sock" \
	-H 'X-Forwarded-For: 198.51.100.1'
refused "unix: no X-Forwarded-For, no address" www - --unix-socket "$TMP/run/hooks.sock"
stop_daemon || fail "the daemon stops"
done_testing
