#!/bin/bash
# deploy_cli.sh: `deployd deploy SITE [--wait]` on a site with polling off: live, up to date, failure, unknown site.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "one" || bail "commit failed"
H1=$(repo_head "$TMP/src")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=0)"
check "poll: 0 is a valid setting" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

out=$(dctl deploy www --wait 2>&1)
is "deploy --wait: exit 0" "$?" 0
diag "deploy --wait said: $out"
check "deploy --wait returns with the tip live" current_is "$WWW" "$H1"
check "and the release matches" tree_matches "$WWW/current" "$TMP/src" "$H1"
is "status: next_poll_at is null with polling off" "$(site_field www next_poll_at)" null

commit_file "$TMP/src" index.html "two" "two" || bail "commit failed"
H2=$(repo_head "$TMP/src")
sleep 3
is "with poll: 0 a push is not picked up by itself" "$(current_commit "$WWW")" "${H1:0:12}"
out=$(dctl deploy www --wait 2>&1)
is "deploy --wait of a new commit: exit 0" "$?" 0
check "the new commit is live when deploy --wait returns" current_matches "$WWW" "$TMP/src" "$H2"
is "status: trigger is manual" "$(site_field www trigger)" manual
like "deploy --wait names the commit" "$out" "${H2:0:7}"

listing=$(ls -A "$WWW/releases")
out=$(dctl deploy www --wait 2>&1)
is "deploy --wait when up to date: exit 0" "$?" 0
like "deploy --wait when up to date: says so" "$out" '[Uu]p to date|already'
is "deploy when up to date creates no release" "$(ls -A "$WWW/releases")" "$listing"

# Without --wait: queued, and it happens.
commit_file "$TMP/src" index.html "three" "three" || bail "commit failed"
H3=$(repo_head "$TMP/src")
out=$(dctl deploy www 2>&1)
is "deploy without --wait: exit 0" "$?" 0
check "the queued deploy goes live" wait_live "$WWW" "$H3" 15

# A failing deploy: exit 1, the error shown, current untouched.
cur=$(readlink "$WWW/current")
mv "$TMP/src.git" "$TMP/src.away"
out=$(dctl deploy www --wait 2>&1)
is "deploy --wait that fails: exit 1" "$?" 1
like "deploy --wait that fails: prints the error" "$out" 'src\.git|[Nn]ot found|[Nn]o such|fail'
is "a failed deploy leaves current alone" "$(readlink "$WWW/current")" "$cur"
mv "$TMP/src.away" "$TMP/src.git"

out=$(dctl deploy nosuchsite 2>&1)
is "deploy of an unknown site: exit 1" "$?" 1
like "deploy of an unknown site: says so" "$out" 'nosuchsite'
out=$("$DEPLOYD_BIN" deploy 2>&1)
is "deploy without a site: exit 2 (usage)" "$?" 2

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
out=$(dctl deploy www 2>&1)
is "deploy with the daemon down: exit 1" "$?" 1
done_testing
