#!/bin/bash
# webhook_listen.sh: the listener on a Unix socket, on [::1], and over TLS; /healthz, /metrics and the per-client connection limit.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

FIX=$SRCDIR/tests/unit/data/hooks
SECRET='listen-secret-9876'

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v0" "v0" || bail "commit failed"
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"
SITE=$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")
n=0

# deliver DESC CURL-ARGS...: push a commit, send its signed webhook with curl CURL-ARGS
# (the address and transport), and check the answer and the deploy.
deliver() {
	local desc=$1 st h
	shift
	n=$((n + 1))
	commit_file "$TMP/src" index.html "v$n" "v$n" || bail "commit failed"
	h=$(repo_head "$TMP/src")
	jq -cj --arg a "$h" '.after = $a' "$FIX/github-push.json" >"$TMP/p.json"
	st=$(curl -sS -o "$TMP/resp" -w '%{http_code}' --max-time 10 \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-Hub-Signature-256: sha256=$(hmac256 "$SECRET" "$TMP/p.json")" \
		--data-binary "@$TMP/p.json" "$@")
	is "$desc: a signed push is queued" "$st $(jq -r .queued "$TMP/resp" 2>/dev/null)" "202 true"
	check "$desc: and deploys" wait_live "$TMP/www" "$h" 30
}

# ---- a Unix socket, for a reverse proxy ----
CFG_LISTEN=unix:$TMP/run/hooks.sock
mkdir -p "$TMP/run"
write_config "$TMP/unix.yaml" "$SITE"
start_daemon "$TMP/unix.yaml" || bail "daemon did not start on a Unix socket"
check "unix: the socket exists" test -S "$TMP/run/hooks.sock"
is "unix: /healthz" "$(curl -sS --max-time 5 --unix-socket "$TMP/run/hooks.sock" \
	-o /dev/null -w '%{http_code}' http://localhost/healthz)" 200
deliver "unix" --unix-socket "$TMP/run/hooks.sock" -H 'X-Forwarded-For: 203.0.113.7' \
	http://localhost/hooks/www
like "unix: the log names the forwarded client" \
	"$(grep 'webhook site=www provider=github' "$TMP/daemon.log" | tail -n 1)" \
	'addr=unix forwarded=203\.0\.113\.7'
# A crash leaves the socket file behind; the next start replaces it.
kill9_daemon
check "unix: a killed daemon leaves a stale socket" test -S "$TMP/run/hooks.sock"
start_daemon "$TMP/unix.yaml" || fail "unix: starts over a stale socket"
is "unix: serving over the stale socket" "$(curl -sS --max-time 5 \
	--unix-socket "$TMP/run/hooks.sock" -o /dev/null -w '%{http_code}' \
	http://localhost/healthz)" 200
stop_daemon || fail "unix: the daemon stops on SIGTERM"
check_not "unix: the socket is removed at exit" test -e "$TMP/run/hooks.sock"
# A regular file in the way is not deleted.
printf 'precious\n' >"$TMP/run/file"
CFG_LISTEN=unix:$TMP/run/file
write_config "$TMP/file.yaml" "$SITE"
if start_daemon "$TMP/file.yaml"; then
	fail "unix: refuses to start when a regular file holds the socket path"
	stop_daemon
else
	ok "unix: refuses to start when a regular file holds the socket path"
fi
is "unix: the file is untouched" "$(cat "$TMP/run/file")" precious

# ---- IPv6 loopback ----
PORT=$(free_port)
CFG_LISTEN="\"[::1]:$PORT\""	# quoted: a bare [ starts a YAML list
write_config "$TMP/v6.yaml" "$SITE"
start_daemon "$TMP/v6.yaml" || bail "daemon did not start on [::1]"
is "ipv6: /healthz" "$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
	"http://[::1]:$PORT/healthz")" 200
deliver "ipv6" "http://[::1]:$PORT/hooks/www"
stop_daemon

# ---- TLS, and the listener's limits ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null || bail "openssl req failed"
chmod 600 "$TMP/tls.key"
PORT=$(free_port)
CFG_LISTEN="127.0.0.1:$PORT"
CFG_EXTRA="tls_cert: $TMP/tls.crt
tls_key: $TMP/tls.key
limits:
  max_connections_per_ip: 4"
write_config "$TMP/tls.yaml" "$SITE"
start_daemon "$TMP/tls.yaml" || bail "daemon did not start with TLS"
is "tls: /healthz over HTTPS" "$(curl -sS --max-time 5 --cacert "$TMP/tls.crt" -o /dev/null \
	-w '%{http_code}' "https://127.0.0.1:$PORT/healthz")" 200
is "tls: plain HTTP gets no answer" "$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
	"http://127.0.0.1:$PORT/healthz" 2>/dev/null)" 000
deliver "tls" --cacert "$TMP/tls.crt" "https://127.0.0.1:$PORT/hooks/www"

curl -sS --max-time 5 --cacert "$TMP/tls.crt" -D "$TMP/mh" -o "$TMP/metrics" \
	"https://127.0.0.1:$PORT/metrics"
like "metrics: Prometheus text format" "$(tr -d '\r' <"$TMP/mh" | grep -i '^Content-Type:')" \
	'text/plain; version=0\.0\.4'
check "metrics: the queued webhook is counted" grep -qx \
	'deployd_webhooks_total{site="www",provider="github",result="queued"} 1' "$TMP/metrics"
for m in deployd_deploys_total deployd_deploy_duration_seconds deployd_live_release_timestamp_seconds \
	deployd_webhooks_missed_total deployd_poll_errors_total; do
	check "metrics: $m is described" grep -q "^# TYPE $m " "$TMP/metrics"
done
check "metrics: the histogram has its +Inf bucket" grep -q \
	'^deployd_deploy_duration_seconds_bucket{site="www",le="+Inf"} [0-9]*$' "$TMP/metrics"

# Four idle connections from one address use up max_connections_per_ip; a fifth is refused.
for fd in 5 6 7 8; do
	eval "exec $fd<>/dev/tcp/127.0.0.1/$PORT" || bail "cannot connect"
done
sleep 0.3
is "per-client limit: a fifth connection is refused" "$(curl -sS --max-time 5 --cacert "$TMP/tls.crt" \
	-o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/healthz" 2>/dev/null)" 000
for fd in 5 6 7 8; do
	eval "exec $fd>&-"
done
check "per-client limit: served again once they close" wait_for "healthz" 10 \
	curl -sSf --max-time 2 --cacert "$TMP/tls.crt" -o /dev/null "https://127.0.0.1:$PORT/healthz"
stop_daemon || fail "tls: the daemon stops on SIGTERM"
done_testing
