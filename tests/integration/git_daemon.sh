#!/bin/bash
# git_daemon.sh: a site fetched over git:// from `git daemon` on 127.0.0.1; pushes go live by polling,
# and a webhook naming a new commit costs one upload-pack connection, not an ls-remote first.
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
make_repo "$TMP/srv/hooked" || bail "make_repo failed"
commit_file "$TMP/srv/hooked" index.html "hooked one" "one" || bail "commit failed"

PORT=$(free_port) || bail "no free port"
spawn "$TMP/git-daemon.log" git daemon --reuseaddr --listen=127.0.0.1 --port="$PORT" \
	--base-path="$TMP/srv" --export-all --informative-errors --verbose
GITD=$LAST_PID
wait_for "git daemon on port $PORT" 10 git ls-remote "git://127.0.0.1:$PORT/site.git" ||
	bail "git daemon did not come up: $(cat "$TMP/git-daemon.log")"
ok "git daemon serves the repository on 127.0.0.1:$PORT"

WWW=$TMP/www
printf 'hooked-secret\n' >"$TMP/hooked.secret"
chmod 600 "$TMP/hooked.secret"
CFG_LISTEN=127.0.0.1:$(free_port)
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$PORT/site.git" "$WWW" poll=1s)" \
	"$(site_yaml hooked "git://127.0.0.1:$PORT/hooked.git" "$TMP/hooked" poll=0 \
		secret_file="$TMP/hooked.secret")"
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

# ---- a webhook for a new commit: the fetch is the only request to the server ----
check "the webhook-only site deploys at startup" wait_live "$TMP/hooked" "$(repo_head "$TMP/srv/hooked")" 15
wait_for "hooked idle" 10 site_field_is hooked state idle
requests() { grep -c "upload-pack for '/hooked.git'" "$TMP/git-daemon.log"; }
before=$(requests)
commit_file "$TMP/srv/hooked" index.html "hooked two" "two" || bail "commit failed"
HK=$(repo_head "$TMP/srv/hooked")
is "a push naming a new commit: 202" \
	"$(github_push hooked-secret "http://$CFG_LISTEN/hooks/hooked" "$HK" hk-1)" 202
check "it goes live" wait_live "$TMP/hooked" "$HK" 15
wait_for "hooked idle" 10 site_field_is hooked state idle
is "one upload-pack request: the fetch, no ls-remote before it" "$(($(requests) - before))" 1

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
