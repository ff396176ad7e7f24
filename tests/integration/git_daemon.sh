#!/bin/bash
# git_daemon.sh: a site fetched over git:// from `git daemon` on 127.0.0.1; pushes go live by polling.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

mkdir -p "$TMP/srv"
make_repo "$TMP/srv/site" || bail "make_repo failed"
mkdir -p "$TMP/srv/site/assets"
printf 'over git://\n' >"$TMP/srv/site/index.html"
printf '#!/bin/sh\n' >"$TMP/srv/site/assets/x.sh"
chmod 755 "$TMP/srv/site/assets/x.sh"
ln -s ../index.html "$TMP/srv/site/assets/link"
git_q -C "$TMP/srv/site" add -A && git_q -C "$TMP/srv/site" commit -q -m "one" &&
	push_work "$TMP/srv/site" || bail "commit failed"
H1=$(repo_head "$TMP/srv/site")

PORT=$(free_port) || bail "no free port"
spawn "$TMP/git-daemon.log" git daemon --reuseaddr --listen=127.0.0.1 --port="$PORT" \
	--base-path="$TMP/srv" --export-all --informative-errors
GITD=$LAST_PID
wait_for "git daemon on port $PORT" 10 git ls-remote "git://127.0.0.1:$PORT/site.git" ||
	bail "git daemon did not come up: $(cat "$TMP/git-daemon.log")"
ok "git daemon serves the repository on 127.0.0.1:$PORT"

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$PORT/site.git" "$WWW" poll=1s)"
check "configuration with a git:// repo is valid" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "the first deploy over git:// goes live" wait_live "$WWW" "$H1" 30
check "it matches the commit (modes, symlink)" tree_matches "$WWW/current" "$TMP/srv/site" "$H1"

commit_file "$TMP/srv/site" index.html "second over git://" "two" || bail "commit failed"
H2=$(repo_head "$TMP/srv/site")
check "a new commit goes live over git:// by polling" wait_live "$WWW" "$H2" 15
check "it matches" tree_matches "$WWW/current" "$TMP/srv/site" "$H2"
wait_for "idle" 10 site_field_is www state idle
is "no error recorded" "$(site_field www last_error)" null

# The server goes away: the error shows, current stays.
stop_pid "$GITD" 5
if wait_for "an error once git daemon is gone" 15 site_field_is www state failed; then
	ok "with git daemon gone the poll error shows in status: $(site_field www last_error)"
else
	fail "with git daemon gone the poll error shows in status" "$(status_json www)"
fi
check "current still names the last commit" current_matches "$WWW" "$TMP/srv/site" "$H2"

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
