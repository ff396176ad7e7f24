#!/bin/bash
# transport_tags.sh: `tags: "v*"` over git://: the highest matching version is deployed (version
# order, not date), annotated tags peel to their commit, and DEPLOYD_REF names the tag.
# timeout: 150
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"

need git:git || bail "git missing"
start_git_daemon || bail "git daemon did not start"
make_repo "$GITD_ROOT/www" || bail "make_repo failed"
WORK=$GITD_ROOT/www
commit_file "$WORK" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$WORK")
commit_file "$WORK" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$WORK")
git_q -C "$WORK" tag v1.9 "$C1"
git_q -C "$WORK" tag -a -m "release 1.10" v1.10 "$C2"
git_q -C "$WORK" tag other-3 "$C2"
git_q -C "$WORK" push -q origin --tags || bail "push failed"
commit_file "$WORK" index.html "three (untagged)" "C3" || bail "commit failed"

cat >"$TMP/pre.sh" <<EOS
#!/bin/sh
echo "\$DEPLOYD_REF" >"$TMP/ref.txt"
EOS
chmod 755 "$TMP/pre.sh"
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$GIT_PORT/www.git" "$TMP/www" \
	poll=1s 'tags="v*"' "hooks={pre_activate: [$TMP/pre.sh]}")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

check "the highest version (an annotated tag) is deployed" wait_live "$TMP/www" "$C2" 30
is "it is the tag's commit, not the branch tip" "$(cat "$TMP/www/current/index.html")" two
is "DEPLOYD_REF names the tag" "$(cat "$TMP/ref.txt")" refs/tags/v1.10
is "status names the commit" "$(site_field www commit)" "$C2"

# A new version on an older commit wins: versions decide, not dates.
git_q -C "$WORK" tag v2.0 "$C1" && git_q -C "$WORK" push -q origin v2.0 || bail "push failed"
check "a higher version tag is deployed by the poll" wait_live "$TMP/www" "$C1" 30
is "DEPLOYD_REF names the new tag" "$(cat "$TMP/ref.txt")" refs/tags/v2.0
n=$(release_count "$TMP/www")
sleep 3
is "polls with no new tag deploy nothing" "$(release_count "$TMP/www")" "$n"

# Tags that do not match the pattern are ignored.
git_q -C "$WORK" tag zz9 "$C2" && git_q -C "$WORK" push -q origin zz9
sleep 3
check "a tag that does not match is ignored" current_is "$TMP/www" "$C1"

check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
