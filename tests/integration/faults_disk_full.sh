#!/bin/bash
# faults_disk_full.sh: the site's filesystem fills up while a release is written (a 2 MiB tmpfs):
# current untouched, the temporary release removed, the error in status, and recovery after.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

MNT=$TMP/www
# Unmount before lib.sh removes $TMP; the daemon goes first so nothing holds the mount.
_disk_cleanup() {
	local rc=$?
	stop_daemon >/dev/null 2>&1
	if mountpoint -q "$MNT" 2>/dev/null; then
		umount "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	(exit "$rc")
	_lib_cleanup
}
trap _disk_cleanup EXIT

[ "$(id -u)" -eq 0 ] || bail "needs root to mount a tmpfs"
mkdir -p "$MNT"
mount -t tmpfs -o size=2m,mode=0755 tmpfs "$MNT" || bail "mount -t tmpfs failed"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "small" "C1" || bail "commit failed"
C1=$(repo_head "$TMP/src")
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$MNT" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "first deploy onto the small filesystem" wait_live "$MNT" "$C1" 30
R1=$(current_release "$MNT")

# 3 MiB of incompressible data cannot fit in 2 MiB.
head -c 3145728 /dev/urandom >"$TMP/src/big.bin"
git_q -C "$TMP/src" add big.bin && git_q -C "$TMP/src" commit -q -m C2 && push_work "$TMP/src" ||
	bail "commit failed"
has_error() {
	site_field www last_error | grep -q 'No space left on device'
}
if wait_for "disk full" 30 has_error; then
	ok "disk full: the error shows in status ($(site_field www last_error))"
else
	fail "disk full: the error shows in status" "$(status_json www)"
fi
check "disk full: state is failed" wait_for failed 10 site_field_is www state failed
is "disk full: current untouched" "$(current_release "$MNT")" "$R1"
check "disk full: current still matches" current_matches "$MNT" "$TMP/src" "$C1"
is "disk full: the temporary release was removed" "$(tmp_releases "$MNT")" ""
is "disk full: no release added" "$(release_count "$MNT")" 1
used=$(df --output=used -k "$MNT" | tail -n 1 | tr -d ' ')
if [ "$used" -lt 1024 ]; then
	ok "disk full: the space is given back (${used} KiB used)"
else
	fail "disk full: the space is given back" "${used} KiB used" "$(du -a "$MNT" | sort -n | tail)"
fi

git_q -C "$TMP/src" rm -q big.bin && git_q -C "$TMP/src" commit -q -m C3 && push_work "$TMP/src"
C3=$(repo_head "$TMP/src")
check "a commit that fits deploys again" wait_live "$MNT" "$C3" 40
check "the error clears" wait_for "no error" 10 site_field_is www last_error null
check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
