#!/bin/bash
# signed_commits.sh: allowed_signers: only commits SSH-signed by a listed key go live; others are refused with the reason in status.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

command -v ssh-keygen >/dev/null || bail "ssh-keygen is needed (openssh-client)"
unset SSH_AUTH_SOCK

# good and ec are listed; stranger is not.
ssh-keygen -q -t ed25519 -N '' -C good@deployd.invalid -f "$TMP/good" || bail "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -C stranger@deployd.invalid -f "$TMP/stranger" || bail "ssh-keygen failed"
ssh-keygen -q -t ecdsa -b 256 -N '' -C ec@deployd.invalid -f "$TMP/ec" || bail "ssh-keygen failed"
{
	echo "# who may put content live"
	echo "test@deployd.invalid $(cut -d ' ' -f 1,2 "$TMP/good.pub")"
	echo "ec@deployd.invalid namespaces=\"git\" $(cut -d ' ' -f 1,2 "$TMP/ec.pub")"
} >"$TMP/allowed_signers"

make_repo "$TMP/src" || bail "make_repo failed"
W=$TMP/src
WWW=$TMP/www

# signed_commit KEY PATH CONTENT MSG: commit one file signed with KEY (not pushed).
signed_commit() {
	local key=$1
	shift
	printf '%s' "$2" >"$W/$1"
	git_q -C "$W" add -- "$1" &&
		git_q -C "$W" -c gpg.format=ssh -c user.signingkey="$key" commit -q -S -m "$3"
}

# push_id ID: make ID the tip of main, and the work tree's HEAD.
push_id() {
	git_q -C "$W" push -q origin "$1:refs/heads/main" && git_q -C "$W" reset -q --hard "$1"
}

last_error_like() {
	local e
	e=$(site_field www last_error) || return 1
	printf '%s' "$e" | grep -Eq -- "$1"
}

# refused DESC ID ERE: the tip ID is refused with an error matching ERE; nothing changes.
refused() {
	local desc=$1 id=$2 ere=$3
	if wait_for "$desc: last_error" 20 last_error_like "$ere"; then
		ok "$desc: refused, and status says why ($(site_field www last_error))"
	else
		fail "$desc: refused, and status says why" "want last_error like: $ere" \
			"$(status_json www)"
	fi
	sleep 1.5	# another poll or two: still refused
	is "$desc: current is unchanged" "$(readlink "$WWW/current")" "$LIVE"
	check "$desc: current still matches ${S1:0:12}" tree_matches "$WWW/current" "$W" "$S1"
	is "$desc: no release was written" "$(release_count "$WWW")" 1
	is "$desc: no temporary release is left" "$(tmp_releases "$WWW")" ""
	isnt "$desc: the commit is not live" "$(current_commit "$WWW")" "${id:0:12}"
	is "$desc: status still names ${S1:0:12}'s release" "$(site_field www release)" \
		"${LIVE#releases/}"
}

signed_commit "$TMP/good" index.html "<h1>signed</h1>" "signed by a listed key" ||
	bail "signed commit failed"
push_work "$W" || bail "push failed"
S1=$(repo_head "$W")
check "git itself verifies the first commit" \
	git_q -C "$W" -c gpg.ssh.allowedSignersFile="$TMP/allowed_signers" verify-commit "$S1"

write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$WWW" poll=1s allowed_signers="$TMP/allowed_signers")"
check "configuration with allowed_signers is valid" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

wait_live "$WWW" "$S1" 30 || bail "the signed first commit did not go live"
ok "a commit signed by a listed key goes live"
check "release matches the signed commit" current_matches "$WWW" "$W" "$S1"
wait_for "idle" 10 site_field_is www state idle
is "last_error is null after the signed deploy" "$(site_field www last_error)" null
LIVE=$(readlink "$WWW/current")

# 1. Unsigned.
printf 'unsigned\n' >"$W/index.html"
git_q -C "$W" commit -q -a -m "not signed" && push_work "$W" || bail "push failed"
U2=$(repo_head "$W")
refused "unsigned" "$U2" "commit ${U2:0:12} is not signed"
out=$(dctl deploy www --wait 2>&1)
rc=$?
is "deploy --wait of the unsigned tip exits 1" "$rc" 1
like "deploy --wait says why" "$out" "not signed"

# 2. Signed by a key that allowed_signers does not list.
signed_commit "$TMP/stranger" index.html "stranger" "signed by a stranger" &&
	push_work "$W" || bail "push failed"
O3=$(repo_head "$W")
fp=$(ssh-keygen -l -E sha256 -f "$TMP/stranger.pub" | cut -d ' ' -f 2)
refused "unlisted key" "$O3" \
	"commit ${O3:0:12} is signed by a key not in .*allowed_signers \\(${fp//+/\\+}\\)"

# 3. Signed by a listed key, then the message altered with the signature kept.
signed_commit "$TMP/good" index.html "tampered" "the original message" || bail "commit failed"
G=$(repo_head "$W")
T4=$(git_q -C "$W" cat-file commit "$G" | sed 's/the original message/an altered message/' |
	git_q -C "$W" hash-object -t commit -w --stdin)
[ -n "$T4" ] && [ "$T4" != "$G" ] || bail "could not make the tampered commit"
push_id "$T4" || bail "push failed"
refused "tampered" "$T4" "bad signature on commit ${T4:0:12}"

# 4. A valid signature by a listed key, but for another namespace ("file"), spliced in.
printf 'namespace\n' >"$W/index.html"
git_q -C "$W" commit -q -a -m "signed for files" || bail "commit failed"
git_q -C "$W" cat-file commit HEAD >"$TMP/body"
ssh-keygen -q -Y sign -n file -f "$TMP/good" "$TMP/body" || bail "ssh-keygen -Y sign failed"
N5=$(awk -v sig="$TMP/body.sig" 'BEGIN { while ((getline l < sig) > 0) s[n++] = l }
	!done && /^$/ { print "gpgsig " s[0]; for (i = 1; i < n; i++) print " " s[i]; done = 1 }
	{ print }' "$TMP/body" | git_q -C "$W" hash-object -t commit -w --stdin)
[ -n "$N5" ] || bail "could not splice the signature"
push_id "$N5" || bail "push failed"
refused "wrong namespace" "$N5" "commit ${N5:0:12}: signature namespace is 'file', expected 'git'"

check "the daemon keeps serving" daemon_running

# 5. A correctly signed newer commit (ECDSA) goes live and clears the error.
signed_commit "$TMP/ec" index.html "<h1>signed again</h1>" "signed by the ECDSA key" &&
	push_work "$W" || bail "push failed"
S6=$(repo_head "$W")
check "a newer commit signed by a listed ECDSA key goes live" wait_live "$WWW" "$S6" 30
check "release matches the newer signed commit" current_matches "$WWW" "$W" "$S6"
wait_for "idle" 10 site_field_is www state idle
is "last_error is cleared" "$(site_field www last_error)" null
is "two releases: the refused commits left none" "$(release_count "$WWW")" 2

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
