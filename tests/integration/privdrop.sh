#!/bin/bash
# privdrop.sh: started as root, the engine becomes `user` once its sockets are bound; every process of the daemon then runs without root, and a webhook, a deploy, a hook and a reload still work.
# timeout: 240
#
# The user is deployd-test (made here when missing, removed at the end if made here). The
# files are laid out as a careful operator would: the repository and the hook are root's
# and readable, the secret is 0640 root:deployd-test, the deploy root's parent and nothing
# else is the user's, and state_dir does not exist yet (the daemon makes it for the user).
# Then the refusals: a user that does not exist, a state_dir the user cannot write, and
# `deployd check` naming what the user cannot reach.
. "$(dirname "$0")/../lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	ok "# SKIP not root: there is no privilege to drop"
	done_testing
fi

U=deployd-test
SECRET='privdrop-secret-0123456789'
if ! id "$U" >/dev/null 2>&1; then
	useradd --system --user-group -M -d /nonexistent -s /usr/sbin/nologin "$U" ||
		bail "cannot create user $U"
	at_exit userdel "$U"
fi
UID_U=$(id -u "$U")
GID_U=$(id -g "$U")

status_field() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" 2>/dev/null | tr -s '\t ' ' '
}

# rooted_procs PID: each process of PID's tree that has uid or gid 0 in any of its four
# slots (real, effective, saved, file system), as "pid comm Uid: ... Gid: ...".
rooted_procs() {
	local p u g
	for p in $(tree_pids "$1"); do
		u=$(status_field "$p" Uid)
		g=$(status_field "$p" Gid)
		[ -n "$u" ] || continue
		case " $u $g " in
		*" 0 "*) echo "$p $(cat "/proc/$p/comm" 2>/dev/null) Uid: $u Gid: $g" ;;
		esac
	done
}

# push COMMIT DELIVERY: a signed GitHub push; prints the HTTP status.
push() {
	github_push "$SECRET" "http://$CFG_LISTEN/hooks/www" "$1" "$2"
}

# ---- the layout ----
make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v1" "v1" || bail "commit failed"
H1=$(repo_head "$TMP/src")
mkdir -p "$TMP/etc" "$TMP/srv"
chown "$U:$U" "$TMP/srv"
printf '%s\n' "$SECRET" >"$TMP/etc/www.secret"
chown "root:$U" "$TMP/etc/www.secret"
chmod 0640 "$TMP/etc/www.secret"
cat >"$TMP/etc/post.sh" <<EOF
#!/bin/sh
# Who the hook ran as, with which groups; written where only the user may write.
echo "\$(id -un) \$(id -u) \$(id -g) \$DEPLOYD_COMMIT" >>"$TMP/srv/hook.log"
EOF
chmod 0755 "$TMP/etc/post.sh"

CFG_USER=$U
CFG_STATE=$TMP/state
CFG_SOCKET=$TMP/run/deployd.sock
CFG_LISTEN=127.0.0.1:$(free_port)
SITE_WWW=$(site_yaml www "$TMP/src.git" "$TMP/srv/www" poll=0 \
	secret_file="$TMP/etc/www.secret" "hooks={post_activate: [$TMP/etc/post.sh]}")
write_config "$TMP/deployd.yaml" "$SITE_WWW"

# ---- deployd check, as root, asks as the user ----
out=$("$DEPLOYD_BIN" check -c "$TMP/deployd.yaml" 2>&1)
is "check accepts a layout the user can reach (status)" "$?" 0
is "check accepts a layout the user can reach (output)" "$out" "configuration OK"

# ---- started as root ----
[ ! -e "$TMP/state" ] || bail "state_dir exists before the start"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start as root"
check "the first deploy goes live" wait_live "$TMP/srv/www" "$H1" 30
is "the engine runs as $U (real, effective, saved, fs uid)" "$(status_field "$DAEMON_PID" Uid)" \
	"$UID_U $UID_U $UID_U $UID_U"
is "and with its group" "$(status_field "$DAEMON_PID" Gid)" "$GID_U $GID_U $GID_U $GID_U"
is "and only that user's groups" "$(status_field "$DAEMON_PID" Groups | tr -d ' ')" "$GID_U"
check "the log says which user the engine became" \
	grep -q "engine runs as user $U (uid $UID_U)" "$TMP/daemon.log"
is "no process of the daemon has root" "$(rooted_procs "$DAEMON_PID")" ""
L1=
for p in $(child_pids "$DAEMON_PID"); do
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q ' __listen ' && L1=$p
done
if [ -n "$L1" ]; then
	is "the listener, started before the drop, runs as nobody" \
		"$(status_field "$L1" Uid | cut -d' ' -f1)" "$(id -u nobody)"
else
	fail "the daemon has a listener child"
fi
is "state_dir was made for the user" "$(stat -c %U "$TMP/state")" "$U"
is "so is the state lock" "$(stat -c %U "$TMP/state/deployd.lock")" "$U"
is "the control socket is the user's" "$(stat -c %U "$TMP/run/deployd.sock")" "$U"
is "every file of the cache and the site's state is the user's" \
	"$(find "$TMP/state" ! -user "$U" | head -n 5)" ""
is "every file of the deploy root is the user's" "$(find "$TMP/srv/www" ! -user "$U" | head -n 5)" ""
check "the release is the commit's tree" tree_matches "$TMP/srv/www/current" "$TMP/src" "$H1"
wait_for "post_activate to run" 15 test -s "$TMP/srv/hook.log"
is "the hook ran as the user, with its group" "$(cat "$TMP/srv/hook.log" 2>/dev/null)" \
	"$U $UID_U $GID_U $H1"
check "status answers root over the control socket" status_json www

# ---- a signed webhook, and a deploy from the CLI ----
commit_file "$TMP/src" index.html "v2" "v2" || bail "commit failed"
H2=$(repo_head "$TMP/src")
is "a signed webhook is accepted" "$(push "$H2" privdrop-1)" 202
check "and its commit goes live" wait_live "$TMP/srv/www" "$H2" 30
commit_file "$TMP/src" about.html "about" "v3" || bail "commit failed"
H3=$(repo_head "$TMP/src")
out=$(dctl deploy www --wait 2>&1)
is "deployd deploy --wait succeeds" "$?" 0
check "and its commit is live" current_is "$TMP/srv/www" "$H3"
check "and complete" tree_matches "$TMP/srv/www/current" "$TMP/src" "$H3"
wait_for "post_activate for v3" 15 grep -q " $H3\$" "$TMP/srv/hook.log"
is "hooks keep running as the user" "$(tail -n 1 "$TMP/srv/hook.log")" "$U $UID_U $GID_U $H3"
is "still no process of the daemon has root (fetch helpers included)" \
	"$(rooted_procs "$DAEMON_PID")" ""

# ---- a reload adds a site ----
mkdir -p "$TMP/srv2"
chown "$U:$U" "$TMP/srv2"
write_config "$TMP/deployd.yaml" "$SITE_WWW" "$(site_yaml docs "$TMP/src.git" "$TMP/srv2/docs" poll=0)"
out=$(dctl reload 2>&1)
is "reload succeeds" "$?" 0
out=$(dctl deploy docs --wait 2>&1)
is "the site added by the reload deploys" "$?" 0
check "and is live" current_is "$TMP/srv2/docs" "$H3"
check "the daemon kept its pid" daemon_running
# The engine may no longer signal the first listener (nobody): it closes its retire pipe.
listener_gone() { ! pid_alive "$L1"; }
check "the listener started before the drop has been retired" wait_for "listener $L1 to exit" 10 listener_gone
L2=
for p in $(child_pids "$DAEMON_PID"); do
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q ' __listen ' && L2=$p
done
is "the listener started by the reload runs as $U (the engine can no longer change user)" \
	"$(status_field "${L2:-0}" Uid | cut -d' ' -f1)" "$UID_U"
is "after the reload no process of the daemon has root" "$(rooted_procs "$DAEMON_PID")" ""
is "a signed webhook is still accepted after the reload" "$(push "$H3" privdrop-2)" 202
# A listener the engine cannot signal would make it wait, then kill it (status 137).
stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0

# ---- refusals ----
CFG_USER=privdrop-no-such-user write_config "$TMP/nouser.yaml" "$SITE_WWW"
out=$(timeout 20 "$DEPLOYD_BIN" serve -c "$TMP/nouser.yaml" 2>&1)
is "a user that does not exist: serve exits 2" "$?" 2
like "and says how to fix it" "$out" "user privdrop-no-such-user: no such user; create it"
out=$("$DEPLOYD_BIN" check -c "$TMP/nouser.yaml" 2>&1)
is "check refuses it too (status)" "$?" 2
like "check refuses it too (message)" "$out" "no such user"

mkdir -p "$TMP/rootstate"
chmod 0755 "$TMP/rootstate"
CFG_STATE=$TMP/rootstate write_config "$TMP/rootstate.yaml" "$SITE_WWW"
out=$(timeout 20 "$DEPLOYD_BIN" serve -c "$TMP/rootstate.yaml" 2>&1)
is "a state_dir the user cannot write: serve exits 2" "$?" 2
like "and names it with the fix" "$out" \
	"state_dir $TMP/rootstate is not writable by user $U .*chown -R $U: $TMP/rootstate"
is "and leaves current as it was" "$(current_commit "$TMP/srv/www")" "${H3:0:12}"

# check names, at FILE:LINE:COL, each path the user cannot reach, and only those.
printf '%s\n' "$SECRET" >"$TMP/etc/root.secret"
chmod 0600 "$TMP/etc/root.secret"
mkdir -p "$TMP/rootonly"
CFG_STATE=$TMP/state2 write_config "$TMP/bad.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/srv/www" poll=0 secret_file="$TMP/etc/root.secret")" \
	"$(site_yaml docs "$TMP/src.git" "$TMP/rootonly/docs" poll=0)"
out=$("$DEPLOYD_BIN" check -c "$TMP/bad.yaml" 2>&1)
is "check exits 2 when the user cannot reach a path" "$?" 2
like "it names the unreadable secret at FILE:LINE:COL" "$out" \
	"^$TMP/bad.yaml:[0-9]+:[0-9]+: site 'www': secret_file $TMP/etc/root.secret: user $U cannot read it \\(Permission denied\\)"
like "and the deploy root the user cannot create" "$out" \
	"site 'docs': path $TMP/rootonly: user $U cannot create the deploy root in it"
is "and nothing else" "$(printf '%s\n' "$out" | grep -v -e "site 'www': secret_file" \
	-e "site 'docs': path" -e ': warning: ')" ""
check_not "and says nothing of the secret's contents" grep -q "$SECRET" <<<"$out"

done_testing
