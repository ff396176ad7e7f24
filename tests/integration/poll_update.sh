#!/bin/bash
# poll_update.sh: pushed commits go live by polling alone; a poll that finds nothing new changes nothing.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v1" "v1" || bail "commit failed"
commit_file "$TMP/src" old/gone.html "to be removed" "add a file to remove later" || bail "commit failed"
H1=$(repo_head "$TMP/src")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "file://$TMP/src.git" "$WWW" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$H1" 30 || bail "first deploy did not happen"
check "first release matches" tree_matches "$WWW/current" "$TMP/src" "$H1"

# A change: new content, a removed file, a new executable and a new nested directory.
printf 'v2\n' >"$TMP/src/index.html"
git_q -C "$TMP/src" rm -q old/gone.html
mkdir -p "$TMP/src/new/dir"
printf '#!/bin/sh\n' >"$TMP/src/new/dir/run"
chmod 755 "$TMP/src/new/dir/run"
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "v2: change, remove, add" &&
	push_work "$TMP/src" || bail "push failed"
H2=$(repo_head "$TMP/src")
t0=$(now_ms)
if wait_live "$WWW" "$H2" 15; then
	ok "a pushed commit goes live by polling within 15 s ($(( $(now_ms) - t0 )) ms)"
else
	fail "a pushed commit goes live by polling within 15 s"
fi
check "the new release matches the new commit exactly (removed file gone)" \
	tree_matches "$WWW/current" "$TMP/src" "$H2"
is "two releases exist" "$(release_count "$WWW")" 2
wait_for "idle" 10 site_field_is www state idle
is "status: trigger is poll" "$(site_field www trigger)" poll
is "status: subject is the new subject" "$(site_field www subject)" "v2: change, remove, add"

# A mode-only change is a change too.
chmod 644 "$TMP/src/new/dir/run"
git_q -C "$TMP/src" commit -q -am "v3: not executable any more" && push_work "$TMP/src" || bail "push failed"
H3=$(repo_head "$TMP/src")
check "a mode-only change goes live" wait_live "$WWW" "$H3" 15
check "the release has the new mode" tree_matches "$WWW/current" "$TMP/src" "$H3"

# Polls that find the same tip create nothing.
wait_for "idle" 10 site_field_is www state idle
listing=$(ls -A "$WWW/releases")
cur=$(readlink "$WWW/current")
deployed=$(site_field www deployed_at)
np1=$(site_field www next_poll_at)
sleep 3.5
np2=$(site_field www next_poll_at)
is "no-change polls create no release" "$(ls -A "$WWW/releases")" "$listing"
is "no-change polls leave current alone" "$(readlink "$WWW/current")" "$cur"
is "no-change polls leave deployed_at alone" "$(site_field www deployed_at)" "$deployed"
like "next_poll_at is an ISO time" "$np2" "$ISO_RE"
if [ "$np1" != null ] && [ "$np2" != null ] &&
	[ "$(iso_to_epoch "$np2")" -gt "$(iso_to_epoch "$np1")" ]; then
	ok "next_poll_at moves on while polling ($np1 -> $np2)"
else
	fail "next_poll_at moves on while polling" "before: $np1, 3.5 s later: $np2"
fi
is "no error recorded" "$(site_field www last_error)" null

# Two quick pushes: the newest one wins.
commit_file "$TMP/src" index.html "v4" "v4" || bail "push failed"
commit_file "$TMP/src" index.html "v5" "v5" || bail "push failed"
H5=$(repo_head "$TMP/src")
check "after two quick pushes the newest is live" wait_live "$WWW" "$H5" 15
check "and matches" tree_matches "$WWW/current" "$TMP/src" "$H5"

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
