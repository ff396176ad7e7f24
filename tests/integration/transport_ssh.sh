#!/bin/bash
# transport_ssh.sh: deploys over a real sshd with a deploy key, git-shell and pinned host keys;
# wrong keys and unknown or changed host keys are refused, and key files are re-read at each fetch.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

start_sshd || bail "sshd did not start"
ssh_repo www || bail "make_repo failed"
WORK=$SSH_ROOT/www
URL="ssh://$SSH_USER@127.0.0.1:$SSH_PORT$SSH_ROOT/www.git"
commit_file "$WORK" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$WORK")

# The site reads copies that the test swaps underneath the running daemon.
KEY=$TMP/key
KH=$TMP/known_hosts
cp "$SSH_DIR/deploy" "$KEY" && chmod 600 "$KEY"
cp "$SSH_DIR/known_hosts" "$KH"

# A second site that must never connect: SSH without known_hosts.
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$URL" "$TMP/www" poll=1s ssh_key="$KEY" known_hosts="$KH")" \
	"$(site_yaml nokh "$URL" "$TMP/nokh" poll=1s ssh_key="$KEY")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

if wait_live "$TMP/www" "$C1" 30; then
	ok "first deploy over ssh"
else
	fail "first deploy over ssh" "$(status_json www)" "$(tail -n 20 "$TMP/sshd.log")"
fi
check "the release matches the commit" current_matches "$TMP/www" "$WORK" "$C1"
like "sshd saw the deploy key" "$(grep -c 'Accepted publickey for '"$SSH_USER" "$TMP/sshd.log")" '^[1-9]'

has_error_like() {
	local e
	e=$(site_field "$1" last_error) || return 1
	printf '%s' "$e" | grep -Eq -- "$2"
}

# No known_hosts: refused before any key is sent, never trusted on first use.
if wait_for "nokh: error" 20 has_error_like nokh 'known_hosts is not set'; then
	ok "SSH without known_hosts is refused with a clear error"
else
	fail "SSH without known_hosts is refused with a clear error" "$(status_json nokh)"
fi
is "nokh: nothing deployed" "$(release_count "$TMP/nokh")" 0

# A new commit goes out by polling.
commit_file "$WORK" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$WORK")
check "a pushed commit is deployed by the poll" wait_live "$TMP/www" "$C2" 20

# ---- wrong key (rotated in without a restart): refused at once, current untouched ----
cp "$SSH_DIR/stranger" "$KEY"
commit_file "$WORK" index.html "three" "C3" || bail "commit failed"
C3=$(repo_head "$WORK")
if wait_for "www: auth error" 20 has_error_like www "authentication failed for ssh://127\.0\.0\.1:$SSH_PORT"; then
	ok "a wrong deploy key fails with 'authentication failed'"
else
	fail "a wrong deploy key fails with 'authentication failed'" "$(status_json www)"
fi
check "www: state is failed" wait_for "failed" 10 site_field_is www state failed
check "wrong key: current untouched" current_is "$TMP/www" "$C2"
unlike_secret=$(status_json www)
if printf '%s' "$unlike_secret" | grep -q "$(sed -n 2p "$SSH_DIR/stranger")"; then
	fail "the key never appears in status"
else
	ok "the key never appears in status"
fi
# Fails fast: one refusal, not a loop until the deadline.
dur=$(jq -r '[.history[] | select(.ok == false)] | last | .duration_ms' "$TMP/state/www/state.json")
if [ "$dur" != null ] && [ "$dur" -lt 5000 ]; then
	ok "a refused key fails fast ($dur ms)"
else
	fail "a refused key fails fast" "duration_ms: $dur"
fi

# Back to the right key: the next poll deploys, without a restart.
cp "$SSH_DIR/deploy" "$KEY"
check "after the key is fixed, the pending commit deploys" wait_live "$TMP/www" "$C3" 20
check "and the error is cleared" wait_for "no error" 10 site_field_is www last_error null

# ---- changed host key: refused ----
mkdir -p "$TMP/other"
ssh-keygen -q -t ed25519 -N '' -f "$TMP/other/ed" && ssh-keygen -q -t ecdsa -b 256 -N '' -f "$TMP/other/ec"
ssh_known_hosts_of "$TMP/other/ed.pub" "$TMP/other/ec.pub" >"$KH"
commit_file "$WORK" index.html "four" "C4" || bail "commit failed"
C4=$(repo_head "$WORK")
if wait_for "www: changed" 20 has_error_like www "host key for 127\.0\.0\.1:$SSH_PORT has CHANGED"; then
	ok "a changed host key is refused"
else
	fail "a changed host key is refused" "$(status_json www)"
fi
check "changed host key: current untouched" current_is "$TMP/www" "$C3"

# ---- unknown host: refused, not trusted on first use ----
printf '127.0.0.2 %s\n' "$(cut -d' ' -f1,2 "$SSH_DIR/host_ed25519.pub")" >"$KH"
if wait_for "www: unknown" 20 has_error_like www "host key for 127\.0\.0\.1:$SSH_PORT is not in $KH"; then
	ok "an unknown host is refused"
else
	fail "an unknown host is refused" "$(status_json www)"
fi
check "unknown host: current untouched" current_is "$TMP/www" "$C3"
is "refused deploys left no release behind" "$(tmp_releases "$TMP/www")" ""
# Only the ed25519 key pinned: the ECDSA key libssh2 prefers is not vouched for.
ssh_known_hosts_of "$SSH_DIR/host_ed25519.pub" >"$KH"
if wait_for "www: type" 20 has_error_like www 'pins only ssh-ed25519'; then
	ok "a host key type that is not pinned is refused and named"
else
	fail "a host key type that is not pinned is refused and named" "$(status_json www)"
fi

# Hashed known_hosts (ssh-keygen -H), as many admins keep them.
ssh_known_hosts_of "$SSH_DIR/host_ecdsa.pub" "$SSH_DIR/host_ed25519.pub" >"$KH"
ssh-keygen -q -H -f "$KH" >/dev/null 2>&1 && rm -f "$KH.old"
like "the known_hosts file is hashed" "$(head -c 3 "$KH")" '^\|1\|'
check "with the right (hashed) host keys the pending commit deploys" wait_live "$TMP/www" "$C4" 20
check "it matches" current_matches "$TMP/www" "$WORK" "$C4"
check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
