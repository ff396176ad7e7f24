#!/bin/bash
# pack_memory.sh: a deploy from a 64 MB pack maps at most a bounded part of it: the daemon's peak stays well under the pack's size.
# timeout: 300
#
# libgit2 maps a pack in windows; by default one window covers the whole pack, and every page
# a deploy reads stays resident. deployd caps the mapping (deploy/repo.c): this test fails when
# the cap is gone (the daemon's peak then grows by the whole 64 MB of incompressible blobs).
# The fetch helper is not checked: indexing a received pack keeps its written pages mapped
# whatever the cap (libgit2 1.5's indexer), though they are page cache the kernel can reclaim.
. "$(dirname "$0")/../lib.sh"

PACK_MB=64

# A small site goes live first, so the daemon's resident set is known before the big push.
make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "<h1>small</h1>" "small" || bail "first commit failed"
WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=0)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
dctl deploy www --wait >/dev/null 2>&1
is "the small site is live" "$(current_commit "$WWW")" "$(repo_head "$TMP/src" | cut -c1-12)"
rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")

mkdir -p "$TMP/src/blobs"
for ((i = 0; i < PACK_MB; i++)); do
	head -c 1048576 /dev/urandom >"$TMP/src/blobs/b$i.bin"
done
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "64 MB of noise" ||
	bail "big commit failed"
# A second version of every blob: the pack holds deltas too, as a real site's does.
for ((i = 0; i < PACK_MB; i++)); do
	echo "version 2" >>"$TMP/src/blobs/b$i.bin"
done
git_q -C "$TMP/src" commit -qam "a line more each" && push_work "$TMP/src" ||
	bail "second big commit failed"
git_q -C "$TMP/src.git" repack -adq || bail "repack failed"
H=$(repo_head "$TMP/src")
pack_kb=$(du -sk "$TMP/src.git/objects/pack" | cut -f1)
ok "the source holds one pack of $((pack_kb / 1024)) MB"

sanitized=0
ldd "$DEPLOYD_BIN" 2>/dev/null | grep -q libasan && sanitized=1

dctl deploy www --wait >/dev/null 2>&1
is "the big push went live" "$(current_commit "$WWW")" "${H:0:12}"
check "the release holds every blob" cmp "$WWW/current/blobs/b$((PACK_MB - 1)).bin" \
	"$TMP/src/blobs/b$((PACK_MB - 1)).bin"
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
if [ "$sanitized" -eq 1 ]; then
	ok "# SKIP daemon peak +$(((hwm - rss0) / 1024)) MB: AddressSanitizer keeps freed blobs in quarantine"
else
	check "the daemon's peak grew by $(((hwm - rss0) / 1024)) MB, under 3/4 of the pack" \
		test $((hwm - rss0)) -lt $((pack_kb * 3 / 4))
fi
stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
