#!/bin/bash
# force_push.sh: a force-pushed unrelated history, and a rewind to an older commit, both go live.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "A" "A" || bail "commit failed"
A=$(repo_head "$TMP/src")
commit_file "$TMP/src" page.html "B" "B" || bail "commit failed"
B=$(repo_head "$TMP/src")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$B" 30 || bail "first deploy did not happen"
ok "B is live"

# An unrelated history: an orphan branch with other files, force-pushed over main.
git_q -C "$TMP/src" checkout -q --orphan rewrite
git_q -C "$TMP/src" rm -rq --cached . && rm -f "$TMP/src/index.html" "$TMP/src/page.html"
mkdir -p "$TMP/src/other"
printf 'rewritten\n' >"$TMP/src/other/readme.txt"
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "C: unrelated history" || bail "orphan commit failed"
C=$(repo_head "$TMP/src")
check "force-push accepted by the remote" push_work "$TMP/src" -f
check_not "C shares no history with B" git_q -C "$TMP/src" merge-base "$B" "$C"
check "the force-pushed unrelated history goes live" wait_live "$WWW" "$C" 15
check "its release matches C exactly (no file of B left)" tree_matches "$WWW/current" "$TMP/src" "$C"

# A rewind: main goes back to A, which was never live as the tip before.
git_q -C "$TMP/src" push -q -f origin "$A:refs/heads/main" || bail "rewind push failed"
check "a rewind to an older commit goes live" wait_live "$WWW" "$A" 15
check "its release matches A exactly" tree_matches "$WWW/current" "$TMP/src" "$A"
wait_for "idle" 10 site_field_is www state idle
is "no error recorded" "$(site_field www last_error)" null

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
