#!/bin/bash
# cache_corrupt.sh: a damaged or deleted repository cache is rebuilt; deploys go on and current stays complete.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "one" || bail "commit failed"
H1=$(repo_head "$TMP/src")
CACHE=$TMP/state/www/cache.git

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$H1" 30 || bail "first deploy did not happen"
check "the cache exists" test -d "$CACHE"

# 1. The cache's objects and HEAD are garbage while the daemon is stopped.
stop_daemon
find "$CACHE/objects" -type f -exec sh -c 'printf garbage >"$1"' _ {} \;
printf 'garbage\n' >"$CACHE/HEAD"
commit_file "$TMP/src" index.html "two" "two" || bail "commit failed"
H2=$(repo_head "$TMP/src")
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
check "with a corrupt cache the next commit still goes live" wait_live "$WWW" "$H2" 30
check "and matches exactly" tree_matches "$WWW/current" "$TMP/src" "$H2"

# 2. The cache disappears while the daemon runs.
rm -rf "$CACHE"
commit_file "$TMP/src" index.html "three" "three" || bail "commit failed"
H3=$(repo_head "$TMP/src")
check "with the cache deleted the next commit still goes live" wait_live "$WWW" "$H3" 30
check "and matches exactly" tree_matches "$WWW/current" "$TMP/src" "$H3"

# 3. The cache lost its pack files (objects missing, refs intact).
rm -rf "$CACHE/objects/pack" "$CACHE"/objects/??
commit_file "$TMP/src" index.html "four" "four" || bail "commit failed"
H4=$(repo_head "$TMP/src")
check "with objects missing from the cache the next commit still goes live" wait_live "$WWW" "$H4" 30
check "and matches exactly" tree_matches "$WWW/current" "$TMP/src" "$H4"
check "the site returns to idle (not failed)" wait_for "idle" 10 site_field_is www state idle
is "no temporary release left" "$(tmp_releases "$WWW")" ""

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
