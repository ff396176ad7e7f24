#!/bin/bash
# symlinks.sh: a repository symlink that leaves its release fails the deploy unless the site allows it.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
mkdir -p "$TMP/src/a"
ln -s ../index.html "$TMP/src/a/up"
git_q -C "$TMP/src" add -A
commit_file "$TMP/src" index.html "one" "inside links only" || bail "commit failed"
H1=$(repo_head "$TMP/src")
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0)" \
	"$(site_yaml open "$TMP/src.git" "$TMP/open" poll=0 allow_external_symlinks=true)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H1" 20 || fail "a link inside the release deploys"
check "the inside link is kept" test "$(readlink "$TMP/www/current/a/up")" = ../index.html

for target in /etc/passwd ../../../../etc/passwd; do
	ln -sfn "$target" "$TMP/src/out"
	git_q -C "$TMP/src" add -A
	commit_file "$TMP/src" index.html "$target" "link to $target" || bail "commit failed"
	H=$(repo_head "$TMP/src")
	out=$(dctl deploy www --wait 2>&1)
	is "link to $target: deploy fails" "$?" 1
	like "link to $target: the error names the link" "$out" "out: symlink to '$target' points outside the release"
	check "link to $target: current is untouched" current_is "$TMP/www" "$H1"
	check "link to $target: no temporary release is left" no_tmp_releases "$TMP/www"
	like "link to $target: status says why" "$(site_field www last_error)" "points outside the release"
	out=$(dctl deploy open --wait 2>&1)
	is "link to $target with allow_external_symlinks: deploys" "$?" 0
	check "with allow_external_symlinks the link is written as in git" \
		test "$(readlink "$TMP/open/current/out")" = "$target"
done
stop_daemon
is "SIGTERM: exit 0" "$DAEMON_STATUS" 0
done_testing
