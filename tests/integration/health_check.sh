#!/bin/bash
# health_check.sh: after the swap deployd asks lighttpd (serving current, a CGI page in the release)
# until it answers; a release whose page answers 500 fails the deploy and, with rollback_on_failure,
# is swapped back and marked bad; a server that does not answer fails it and the release stays live.
# timeout: 150
. "$(dirname "$0")/../lib.sh"
. "$SRCDIR/tests/lib-servers.sh"

need lighttpd:lighttpd || bail "lighttpd is missing"
WEB_PORT=$(free_port) || bail "no free port"
mkdir -p "$TMP/web"
cat >"$TMP/web/lighttpd.conf" <<EOF
server.modules = ( "mod_cgi" )
server.document-root = "$TMP/www/current"
server.bind = "127.0.0.1"
server.port = $WEB_PORT
server.errorlog = "$TMP/web/error.log"
server.stat-cache-engine = "disable"
cgi.assign = ( ".cgi" => "" )
EOF
lighttpd -tt -f "$TMP/web/lighttpd.conf" >"$TMP/web/check" 2>&1 ||
	bail "lighttpd refused the test config: $(cat "$TMP/web/check")"
mkdir -p "$TMP/www"
spawn "$TMP/web/lighttpd.log" lighttpd -D -f "$TMP/web/lighttpd.conf"
wait_port "$WEB_PORT" 10 || bail "lighttpd did not start: $(cat "$TMP/web/error.log" 2>/dev/null)"

# health_page STATUS: health.cgi answers STATUS and counts the requests in $TMP/hits.
make_repo "$TMP/src" || bail "make_repo failed"
health_page() {
	printf '#!/bin/sh\necho x >>%s/hits\nprintf "Status: %s\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n"\n' \
		"$TMP" "$1" "$1" >"$TMP/src/health.cgi"
	chmod 755 "$TMP/src/health.cgi"
	printf 'page %s\n' "$2" >"$TMP/src/index.html"
	git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "$2" && push_work "$TMP/src"
}
hits() { cat "$TMP/hits" 2>/dev/null | wc -l; }

URL=http://127.0.0.1:$WEB_PORT/health.cgi
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 rollback_on_failure=true \
		"health_check={url: '$URL', retries: 2, interval: 1s, timeout: 5s}")" \
	"$(site_yaml blog "$TMP/src.git" "$TMP/blog" poll=0 \
		"health_check={url: 'http://127.0.0.1:$(free_port)/', retries: 1}")"
check "deployd check accepts health_check" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

# A healthy release: one request, answered 200.
health_page 200 C1 || bail "commit C1 failed"
C1=$(repo_head "$TMP/src")
out=$(dctl deploy www --wait 2>&1)
is "a healthy release deploys: exit 0" "$?" 0
like "deploy --wait shows the health-check phase" "$out" "health-check"
like "and what it answered" "$out" "health check $URL answered 200 \\(attempt 1 of 3"
check "C1 is live" current_is "$TMP/www" "$C1"
is "the page was asked once" "$(hits)" 1
like "status shows what the check answered" "$(site_field www note)" "answered 200"
is "lighttpd serves the release" "$(curl -sS "http://127.0.0.1:$WEB_PORT/index.html")" "page C1"
R1=$(current_release "$TMP/www")

# A release that answers 500: asked 1 + retries times, then swapped back and marked bad.
health_page 500 C2 || bail "commit C2 failed"
C2=$(repo_head "$TMP/src")
: >"$TMP/hits"
t0=$(now_ms)
out=$(dctl deploy www --wait 2>&1)
isnt "a release answering 500 fails the deploy" "$?" 0
like "the error says what the check got" "$out" \
	"health check $URL: answered 500, expected 200 \\(3 attempts\\); rolled back to $R1"
is "the page was asked 1 + retries times" "$(hits)" 3
check "the checks were an interval apart (took $(($(now_ms) - t0)) ms)" \
	test $(($(now_ms) - t0)) -ge 2000
is "current is R1 again" "$(current_release "$TMP/www")" "$R1"
is "lighttpd serves R1 again" "$(curl -sS "http://127.0.0.1:$WEB_PORT/index.html")" "page C1"
is "C2's release is marked bad" \
	"$(jq -r --arg c "$C2" '[.releases[] | select(.commit == $c) | .bad][0]' \
		"$TMP/state/www/state.json")" true
is "status: the site's commit is C1" "$(site_field www commit)" "$C1"
like "status: the last error is the health check's" "$(site_field www last_error)" \
	"answered 500, expected 200"
is "status: the site is failed" "$(site_field www state)" failed
like "the log has a line per failed request" \
	"$(grep -c "health check $URL: answered 500, expected 200 (attempt" "$TMP/daemon.log")" '^3$'
out=$(dctl deploy www --wait 2>&1)
like "a plain deploy does not deploy the bad commit again" "$out" "up to date"
is "and asks nothing" "$(hits)" 3

# Healthy again: a new commit deploys and the error is over.
health_page 200 C3 || bail "commit C3 failed"
C3=$(repo_head "$TMP/src")
out=$(dctl deploy www --wait 2>&1)
is "a healthy commit deploys again: exit 0" "$?" 0
check "C3 is live" current_is "$TMP/www" "$C3"
is "status: no error" "$(site_field www last_error)" null

# No server answers, and no rollback_on_failure: the deploy fails, the release stays live.
out=$(dctl deploy blog --wait 2>&1)
isnt "a health check nobody answers fails the deploy" "$?" 0
like "the error says the connection failed" "$(site_field blog last_error)" \
	"health check http://127.0.0.1:[0-9]+/: .*(connect|Connection refused).*\\(2 attempts\\)"
check "without rollback_on_failure the new release stays live" current_is "$TMP/blog" "$C3"
is "status: the site is failed" "$(site_field blog state)" failed
like "the failure is in the history" \
	"$(jq -r '.history[-1].ok, .history[-1].error' "$TMP/state/blog/state.json" | tr '\n' ' ')" \
	"^false health check"
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
