#!/bin/bash
# transport_https.sh: deploys from git http-backend behind lighttpd with TLS (a test CA) and a token
# (basic auth); a wrong token is a fast "authentication failed", a rotated token needs no restart.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

TOKEN=glpat-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
BAD_TOKEN=wrong-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_https "$TOKEN" || bail "lighttpd did not start"
https_repo www || bail "make_repo failed"
WORK=$HTTP_ROOT/www
URL="https://127.0.0.1:$HTTPS_PORT/git/www.git"
commit_file "$WORK" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$WORK")

# The server really wants the token.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" "$URL/info/refs?service=git-upload-pack")
is "the server answers 401 without the token" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -u "x-access-token:$TOKEN" \
	"$URL/info/refs?service=git-upload-pack")
is "and 200 with it" "$code" 200

TOK=$TMP/www.token
printf '%s\n' "$TOKEN" >"$TOK"
chmod 600 "$TOK"
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$URL" "$TMP/www" poll=1s token_file="$TOK" ca_file="$TLS_DIR/ca.pem")" \
	"$(site_yaml noca "$URL" "$TMP/noca" poll=1s token_file="$TOK")" \
	"$(site_yaml notoken "$URL" "$TMP/notoken" poll=1s ca_file="$TLS_DIR/ca.pem")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

if wait_live "$TMP/www" "$C1" 30; then
	ok "first deploy over https with a token"
else
	fail "first deploy over https with a token" "$(status_json www)" "$(tail -n 5 "$TMP/lighttpd.error.log")"
fi
check "the release matches the commit" current_matches "$TMP/www" "$WORK" "$C1"
# lighttpd writes its access log in batches.
check "the server saw libgit2 authenticate as the token user" wait_for "access log" 10 \
	grep -q ' x-access-token .*libgit2' "$TMP/lighttpd.access.log"

has_error_like() {
	local e
	e=$(site_field "$1" last_error) || return 1
	printf '%s' "$e" | grep -Eq -- "$2"
}

if wait_for "noca: error" 20 has_error_like noca 'TLS certificate of 127\.0\.0\.1 is not trusted'; then
	ok "a certificate from an unknown CA is refused without ca_file"
else
	fail "a certificate from an unknown CA is refused without ca_file" "$(status_json noca)"
fi
if wait_for "notoken: error" 20 has_error_like notoken 'token_file is not set'; then
	ok "a server asking for credentials without token_file says so"
else
	fail "a server asking for credentials without token_file says so" "$(status_json notoken)"
fi
is "noca: nothing deployed" "$(release_count "$TMP/noca")" 0

# ---- a wrong (expired) token: 401, refused at once, current untouched ----
printf '%s\n' "$BAD_TOKEN" >"$TOK"
n401_before=$(grep -c '" 401 ' "$TMP/lighttpd.access.log")
commit_file "$WORK" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$WORK")
if wait_for "www: auth" 20 has_error_like www "^authentication failed for https://127\.0\.0\.1:$HTTPS_PORT/git/www\.git"; then
	ok "a wrong token fails with 'authentication failed for <url>'"
else
	fail "a wrong token fails with 'authentication failed for <url>'" "$(status_json www)"
fi
check "wrong token: state is failed" wait_for "failed" 10 site_field_is www state failed
check "wrong token: current untouched" current_is "$TMP/www" "$C1"
wait_for "401s logged" 10 bash -c "[ \$(grep -c '\" 401 ' '$TMP/lighttpd.access.log') -ge $((n401_before + 2)) ]"
sleep 1
fails=$(jq '[.history[] | select(.ok == false)] | length' "$TMP/state/www/state.json")
n401=$(( $(grep -c '" 401 ' "$TMP/lighttpd.access.log") - n401_before ))
# One 401 asks for credentials, a second refuses them: then deployd stops asking.
if [ "$fails" -ge 1 ] && [ "$n401" -ge 2 ] && [ "$n401" -le $(( 2 * (fails + 1) )) ]; then
	ok "no credential loop ($n401 answers 401 for $fails failed deploys)"
else
	fail "no credential loop" "$n401 answers 401 for $fails failed deploys"
fi
dur=$(jq -r '[.history[] | select(.ok == false)] | last | .duration_ms' "$TMP/state/www/state.json")
if [ "$dur" != null ] && [ "$dur" -lt 5000 ]; then
	ok "a refused token fails fast ($dur ms)"
else
	fail "a refused token fails fast" "duration_ms: $dur"
fi
for t in "$TOKEN" "$BAD_TOKEN"; do
	if grep -qF -- "$t" "$TMP/daemon.log" "$TMP/state/www/state.json" || status_json | grep -qF -- "$t"; then
		fail "a token never appears in the log, the state or status"
	else
		ok "a token never appears in the log, the state or status"
	fi
done

# ---- the token is rotated: read again at the next fetch, no restart ----
printf '%s\r\n' "$TOKEN" >"$TOK"
check "after the token is fixed, the pending commit deploys" wait_live "$TMP/www" "$C2" 20
check "and the error is cleared" wait_for "no error" 10 site_field_is www last_error null
check "it matches" current_matches "$TMP/www" "$WORK" "$C2"

# A token file readable by others is refused at fetch time too.
chmod 644 "$TOK"
commit_file "$WORK" index.html "three" "C3" || bail "commit failed"
if wait_for "www: perms" 20 has_error_like www 'readable by others'; then
	ok "a token file readable by others is refused"
else
	fail "a token file readable by others is refused" "$(status_json www)"
fi
check "current untouched" current_is "$TMP/www" "$C2"
chmod 600 "$TOK"
check "fixed permissions: deployed" wait_live "$TMP/www" "$(repo_head "$WORK")" 20

# ---- a submodule on the same server: fetched with the site's token and CA ----
https_repo lib || bail "make_repo failed"
commit_file "$HTTP_ROOT/lib" lib.txt "library" "L1" || bail "commit failed"
L1=$(repo_head "$HTTP_ROOT/lib")
printf '[submodule "lib"]\n\tpath = vendor/lib\n\turl = ../lib.git\n' >"$WORK/.gitmodules"
git_q -C "$WORK" add .gitmodules &&
	git_q -C "$WORK" update-index --add --cacheinfo "160000,$L1,vendor/lib" &&
	git_q -C "$WORK" commit -q -m "add lib" && push_work "$WORK" || bail "commit failed"
C4=$(repo_head "$WORK")
check "a commit with a submodule deploys" wait_live "$TMP/www" "$C4" 40
is "the submodule is checked out in the release" "$(cat "$TMP/www/current/vendor/lib/lib.txt" 2>/dev/null)" library
check "the submodule was fetched over https with the token" \
	wait_for "access log" 10 grep -q ' x-access-token .*"GET /git/lib.git/info/refs' "$TMP/lighttpd.access.log"

check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
