#!/bin/bash
# config_errors.sh: `deployd check` names each bad configuration as FILE:LINE:COL and exits 2; a good one is OK.
# timeout: 60
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
printf 'secret\n' >"$TMP/secret.ok"
chmod 600 "$TMP/secret.ok"
printf 'secret\n' >"$TMP/secret.0640"
chmod 640 "$TMP/secret.0640"
printf 'secret\n' >"$TMP/secret.world"
chmod 644 "$TMP/secret.world"
printf 'secret\n' >"$TMP/secret.gw"
chmod 620 "$TMP/secret.gw"

# Lines 1-8 of every file; line 9 on is the case under test.
head8() {
	cat <<EOF
listen: 127.0.0.1:8090
control_socket: $TMP/deployd.sock
state_dir: $TMP/state
sites:
  - name: www
    repo: $TMP/src.git
    branch: main
    path: $TMP/www
EOF
}

n=0
# conf LINES...: a config file: head8 then LINES; its name in $F.
conf() {
	n=$((n + 1))
	F=$TMP/case$n.yaml
	{ head8; [ $# -gt 0 ] && printf '%s\n' "$@"; printf 'user: %s\n' "$(id -un)"; } >"$F"
}

# expect_error DESC POSITIONS [MSG_ERE]: `check -c $F` exits 2 and prints $F:LINE:COL: message for
# one of POSITIONS ("9:5|9:11"); the message matches MSG_ERE if given.
expect_error() {
	local desc=$1 pos=$2 ere=${3:-} out rc line
	out=$("$DEPLOYD_BIN" check -c "$F" 2>&1)
	rc=$?
	is "$desc: exit status 2" "$rc" 2
	line=$(printf '%s\n' "$out" | grep -E "^$F:($pos): .+" | head -n 1)
	if [ -n "$line" ]; then
		ok "$desc: reported at $F:${line#"$F:"}"
	else
		fail "$desc: reported as FILE:LINE:COL at $pos" "output:" "$out" "config:" "$(cat -n "$F")"
	fi
	if [ -n "$ere" ]; then
		if printf '%s\n' "$line" | grep -Eq -- "$ere"; then
			ok "$desc: the message says why"
		else
			fail "$desc: the message says why (/$ere/)" "got: $line"
		fi
	fi
	if printf '%s\n' "$out" | grep -q "configuration OK"; then
		fail "$desc: does not say configuration OK" "$out"
	fi
}

# ---- good configurations ----
conf
out=$("$DEPLOYD_BIN" check -c "$F" 2>&1)
is "a minimal good config: exit 0" "$?" 0
like "a minimal good config: configuration OK" "$out" '^configuration OK$'
conf "    secret_file: $TMP/secret.ok" "    keep: 3" "    poll: 2m" "    webhook_grace: 0" \
	"    reuse: copy" "    providers: [github, gitlab]" "    shared: [uploads]" \
	"    subdir: public/" "    health_check: {url: 'http://127.0.0.1:8080/healthz', expect: 204}" \
	"    hooks:" "      timeout: 30s" \
	"  - name: blog_2" "    repo: file://$TMP/src.git" "    tags: \"v*\"" "    path: $TMP/blog" \
	"    poll: 0" "    secret_file: $TMP/secret.0640" \
	"log_level: debug" "max_parallel_deploys: 4" "limits:" "  max_body: 1MiB" "  request_timeout: 10s"
out=$("$DEPLOYD_BIN" check -c "$F" 2>&1)
is "a full good config (two sites, 0600 and 0640 secrets): exit 0" "$?" 0
like "a full good config: configuration OK" "$out" 'configuration OK'

# ---- bad configurations (line 9, key at column 5, value at column 11 or after the key) ----
conf "    colour: blue"
expect_error "unknown site key" "9:5" 'colour'
sed -i '1i colour: blue' "$F"
expect_error "unknown top-level key" "1:1" 'colour'
conf "    keep: lots"
expect_error "wrong type (keep: lots)" "9:11|9:5" 'keep'
conf "    keep: [1, 2]"
expect_error "wrong type (keep: a list)" "9:11|9:5" 'keep'
conf "    keep: 1"
expect_error "out of range (keep: 1)" "9:11|9:5" 'keep'
conf "    allow_sha1: perhaps"
expect_error "wrong type (allow_sha1: perhaps)" "9:17|9:5" 'allow_sha1'
conf "    poll: 10x"
expect_error "bad duration (poll: 10x)" "9:11|9:5" 'poll|duration'
conf "    poll: 1.5.s"
expect_error "bad duration (poll: 1.5.s)" "9:11|9:5" 'poll|duration'
conf "    hooks:" "      timeout: soon"
expect_error "bad duration in a nested map (hooks.timeout)" "10:16|10:7" 'timeout|duration'
conf "limits:" "  max_body: huge"
expect_error "bad size (limits.max_body)" "10:13|10:3" 'max_body|size'
conf "    subdir: /srv/public"
expect_error "subdir: an absolute path" "9:13" 'subdir.*relative path inside the repository'
conf "    subdir: public/../.."
expect_error "subdir: climbing out with .." "9:13" 'subdir.*relative path'
conf "    subdir: site/.git"
expect_error "subdir: into .git" "9:13" 'subdir.*relative path'
conf "    health_check:" "      url: /healthz"
expect_error "health_check.url: a relative URL" "10:12" 'url.*not an absolute http'
conf "    health_check:" "      url: ftp://127.0.0.1/"
expect_error "health_check.url: not http" "10:12" 'url.*not an absolute http'
conf "    health_check:" "      expect: 200"
expect_error "health_check without url" "10:7|9:5" "required key 'url'"
conf "    health_check:" "      url: http://127.0.0.1/" "      expect: 700"
expect_error "health_check.expect out of range" "11:15" 'expect.*out of range'
conf "    health_check:" "      url: http://127.0.0.1/" "      retry: 3"
expect_error "health_check: unknown key" "11:7" "unknown key 'retry'"

# Missing required key: the site without repo, reported where that site begins.
head8 | sed '/repo:/d' >"$TMP/norepo.yaml"
F=$TMP/norepo.yaml
expect_error "missing required key (repo)" "5:5|5:3" 'repo'
head8 | sed '/path:/d' >"$TMP/nopath.yaml"
F=$TMP/nopath.yaml
expect_error "missing required key (path)" "5:5|5:3" 'path'

conf "  - name: www" "    repo: $TMP/src.git" "    branch: main" "    path: $TMP/www2"
expect_error "duplicate site name" "9:11|9:5|9:3" 'www|duplicate|twice|already'
conf "  - name: other" "    repo: $TMP/src.git" "    branch: main" "    path: $TMP/www"
expect_error "two sites with the same path" "12:11|12:5|9:5|9:3" 'path|same|already'
conf "    tags: \"v*\""
expect_error "branch and tags together" "9:5|9:11|7:5|5:5|5:3" 'branch|tags'

conf "    secret_file: $TMP/secret.world"
expect_error "world-readable secret_file" "9:18|9:5" 'secret|readable|permission|mode'
conf "    secret_file: $TMP/secret.gw"
expect_error "group-writable secret_file" "9:18|9:5" 'secret|writable|permission|mode'
conf "    secret_file: $TMP/no-such-secret"
expect_error "missing secret_file" "9:18|9:5" 'secret|No such|exist|read'
# A GitLab signing key must be canonical base64: a byte outside the alphabet, a wrong
# padding or a bare prefix fails every delivery, so check says so; a good key passes.
printf 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n' >"$TMP/whsec.ok"
printf 'whsec_MDEyMzQ1Njc4OWFi\3252RlZjAxMjM0NTY3ODlhYmNkZWY=\n' >"$TMP/whsec.high"
printf 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\n' >"$TMP/whsec.nopad"
printf 'whsec_\n' >"$TMP/whsec.empty"
chmod 600 "$TMP"/whsec.*
conf "    secret_file: $TMP/whsec.ok"
out=$("$DEPLOYD_BIN" check -c "$F" 2>&1)
is "a whsec_ signing key in canonical base64: exit 0" "$?" 0
for kind in high nopad empty; do
	conf "    secret_file: $TMP/whsec.$kind"
	expect_error "whsec_ key that is not canonical base64 ($kind)" "9:18|9:5" 'whsec_.*base64'
done
if "$DEPLOYD_BIN" check -c "$F" 2>&1 | grep -q 'MDEy'; then
	fail "the message never shows the key"
else
	ok "the message never shows the key"
fi

# Unreadable for the user running check: a 0600 root file, checked as nobody.
if setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
	conf "    secret_file: $TMP/secret.ok"
	chmod 644 "$F"
	out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$DEPLOYD_BIN" check -c "$F" 2>&1)
	is "unreadable secret_file (as nobody): exit 2" "$?" 2
	like "unreadable secret_file (as nobody): FILE:LINE:COL" "$out" "^$F:9:(18|5): .*(secret|ermission|read|denied)"
else
	fail "setpriv can run check as nobody (needed for the unreadable secret case)"
fi

# YAML that does not parse: still FILE:LINE:COL, exit 2.
conf "    repo: [unclosed" "    keep: 3"
expect_error "YAML syntax error" "(9|10|11):[0-9]+"
conf "    colour: blue" "    poll: 10x"
expect_error "two errors in one file: the first" "9:5" 'colour'
expect_error "two errors in one file: the second" "10:11|10:5" 'poll|duration'

out=$("$DEPLOYD_BIN" check -c "$TMP/does-not-exist.yaml" 2>&1)
is "a missing config file: exit 2" "$?" 2
like "a missing config file: names the file" "$out" "does-not-exist.yaml"

done_testing
