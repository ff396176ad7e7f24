#!/bin/bash
# disk_full.sh: a deploy root on a full filesystem (a 3 MiB tmpfs): the deploy fails cleanly and the next one works.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

DISK=$TMP/disk
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=3m,mode=0755 deployd-test "$DISK" 2>"$TMP/mount.err"; then
	fail "mount a 3 MiB tmpfs for the deploy root (needs root)" "$(cat "$TMP/mount.err")"
	done_testing
fi
at_exit umount -l "$DISK"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "small" "small" || bail "commit failed"
H1=$(repo_head "$TMP/src")

WWW=$DISK/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "a small release fits" wait_live "$WWW" "$H1" 30
wait_for "idle" 10 site_field_is www state idle
cur=$(readlink "$WWW/current")
listing=$(ls -A "$WWW/releases")

# 4 MiB that does not compress: it cannot fit in 3 MiB.
mkdir -p "$TMP/src/big"
for i in 1 2 3 4; do
	head -c 1048576 /dev/urandom >"$TMP/src/big/blob$i.bin"
done
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "too big" && push_work "$TMP/src" ||
	bail "commit failed"
H2=$(repo_head "$TMP/src")

if wait_for "the ENOSPC error" 20 has_error www; then
	ok "the failed deploy shows in status"
	like "the error says the disk is full" "$(site_field www last_error)" '[Nn]o space|ENOSPC|full'
else
	fail "the failed deploy shows in status" "$(status_json www)"
fi
sleep 1.5	# another failing poll
is "current is untouched" "$(readlink "$WWW/current")" "$cur"
check "current still matches the old commit" tree_matches "$WWW/current" "$TMP/src" "$H1"
if wait_for "the partial release to be removed" 10 no_tmp_releases "$WWW"; then
	ok "the partial release is removed after the failure"
else
	fail "the partial release is removed after the failure" "$(tmp_releases "$WWW")"
fi
check "the failed release is not left behind under its final name" \
	test "$(ls -A "$WWW/releases" | grep -v '^\.tmp-')" = "$listing"
check "the daemon keeps serving" daemon_running

# Space comes back: the next commit deploys.
git_q -C "$TMP/src" rm -rq big && git_q -C "$TMP/src" commit -q -m "smaller again" && push_work "$TMP/src" ||
	bail "commit failed"
H3=$(repo_head "$TMP/src")
check "after the space problem is gone the next commit deploys" wait_live "$WWW" "$H3" 20
check "and matches" tree_matches "$WWW/current" "$TMP/src" "$H3"
check "the site returns to idle (not failed)" wait_for "idle" 10 site_field_is www state idle

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
