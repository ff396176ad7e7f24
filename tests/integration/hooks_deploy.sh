#!/bin/bash
# hooks_deploy.sh: pre_activate, post_activate and on_failure as real processes in the running
# daemon: environment and cwd, output in the log, a failing and a hanging pre_activate (current
# untouched), a failing post_activate with rollback_on_failure (swapped back, not redeployed).
# timeout: 240
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$TMP/src")

# Each hook does what its mode file says, so the test can change it under the running daemon.
cat >"$TMP/pre.sh" <<EOF
#!/bin/sh
case \$(cat "$TMP/pre.mode") in
ok)	echo "building \$DEPLOYD_COMMIT"
	echo "log line with an escape \$(printf '\\033')[31m"
	tr '\\000' '\\n' </proc/\$\$/environ | sort >built.env
	pwd -P >built.cwd ;;
fail)	echo "tests failed: 3 of 10" >&2; exit 2 ;;
hang)	echo \$\$ >"$TMP/hang.pid"; sleep 300 & echo \$! >"$TMP/hang-child.pid"; wait ;;
esac
EOF
cat >"$TMP/post.sh" <<EOF
#!/bin/sh
tr '\\000' '\\n' </proc/\$\$/environ | sort >"$TMP/post.env"
readlink "\$DEPLOYD_RELEASE/../../current" >"$TMP/post.current"
case \$(cat "$TMP/post.mode") in
ok)	echo "reloaded" ;;
fail)	echo "reload failed" >&2; exit 1 ;;
esac
EOF
cat >"$TMP/fail.sh" <<EOF
#!/bin/sh
printf '%s|%s\n' "\$DEPLOYD_ERROR" "\$DEPLOYD_COMMIT" >>"$TMP/failures.log"
EOF
chmod 755 "$TMP/pre.sh" "$TMP/post.sh" "$TMP/fail.sh"
echo ok >"$TMP/pre.mode"
echo ok >"$TMP/post.mode"

write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=1s \
	rollback_on_failure=true \
	"hooks={pre_activate: [$TMP/pre.sh], post_activate: [$TMP/post.sh], on_failure: [$TMP/fail.sh], timeout: 2s}")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

# ---- hooks that succeed ----
check "first deploy with hooks" wait_live "$TMP/www" "$C1" 30
R1=$(current_release "$TMP/www")
want=$(printf '%s\n' "DEPLOYD_COMMIT=$C1" "DEPLOYD_PREVIOUS_COMMIT=" "DEPLOYD_REF=refs/heads/main" \
	"DEPLOYD_RELEASE=$TMP/www/releases/$R1" "DEPLOYD_SITE=www" "PATH=/usr/local/bin:/usr/bin:/bin")
is "pre_activate ran in the release with exactly the documented environment" \
	"$(cat "$TMP/www/current/built.env" 2>/dev/null)" "$want"
is "pre_activate's cwd was the new release" "$(cat "$TMP/www/current/built.cwd" 2>/dev/null)" \
	"$TMP/www/releases/$R1"
# post_activate runs after the swap: current can be live a moment before it has run.
wait_for "post_activate to run" 15 test -s "$TMP/post.current"
is "post_activate ran after the swap" "$(cat "$TMP/post.current" 2>/dev/null)" "releases/$R1"
like "post_activate had the same environment" "$(cat "$TMP/post.env" 2>/dev/null)" "DEPLOYD_COMMIT=$C1"
check "hook output is in the log with the site" grep -q "site=www pre_activate: building $C1" "$TMP/daemon.log"
check "escape characters in hook output are neutralised in the log" \
	grep -qF 'log line with an escape \x1b[31m' "$TMP/daemon.log"
# A poll may be running at any moment (state fetching): idle must come, and stay the rule.
check "state idle after a good deploy" wait_for "idle" 10 site_field_is www state idle
is "hook output is in the deploy history" \
	"$(jq -r '.history[-1].output' "$TMP/state/www/state.json" | grep -c -e '^\[pre_activate\]$' -e '^reloaded$')" 2

has_error_like() {
	local e
	e=$(site_field "$1" last_error) || return 1
	printf '%s' "$e" | grep -Eq -- "$2"
}

# ---- pre_activate fails: aborted, current untouched ----
echo fail >"$TMP/pre.mode"
commit_file "$TMP/src" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$TMP/src")
if wait_for "pre fail" 30 has_error_like www '^pre_activate hook failed \(exit status 2\)$'; then
	ok "a failing pre_activate fails the deploy"
else
	fail "a failing pre_activate fails the deploy" "$(status_json www)"
fi
check "state is failed" wait_for failed 10 site_field_is www state failed
check "current untouched" current_is "$TMP/www" "$C1"
is "current still serves the first commit" "$(cat "$TMP/www/current/index.html")" one
is "no release added" "$(release_count "$TMP/www")" 1
is "no temporary release left" "$(tmp_releases "$TMP/www")" ""
like "the hook's output is in the failed deploy's history" \
	"$(jq -r '[.history[] | select(.ok == false)] | last | .output' "$TMP/state/www/state.json")" 'tests failed: 3 of 10'
check "on_failure ran with DEPLOYD_ERROR and the commit" \
	grep -qx "pre_activate hook failed (exit status 2)|$C2" "$TMP/failures.log"
n=$(grep -c . "$TMP/failures.log")
sleep 3	# several polls fail the same way
is "on_failure is not repeated for every poll failing the same way" "$(grep -c . "$TMP/failures.log")" "$n"

# ---- pre_activate hangs: killed with its children at hooks.timeout ----
echo hang >"$TMP/pre.mode"
rm -f "$TMP/hang.pid" "$TMP/hang-child.pid"
commit_file "$TMP/src" index.html "three" "C3" || bail "commit failed"
if wait_for "state hook" 30 site_field_is www state hook; then
	ok "status shows the hook phase while a hook runs"
else
	fail "status shows the hook phase while a hook runs" "$(status_json www)"
fi
if wait_for "timeout" 30 has_error_like www '^pre_activate hook timed out after 2 s$'; then
	ok "a hanging pre_activate times out"
else
	fail "a hanging pre_activate times out" "$(status_json www)"
fi
for f in hang.pid hang-child.pid; do
	pid=$(cat "$TMP/$f" 2>/dev/null)
	if [ -n "$pid" ] && ! pid_alive "$pid"; then
		ok "the hung hook's process is gone ($f)"
	else
		fail "the hung hook's process is gone ($f)" "pid '$pid'" "$(ps -o pid,pgid,stat,cmd -p "$pid" 2>&1)"
		[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	fi
done
check "timeout: current untouched" current_is "$TMP/www" "$C1"
is "timeout: no temporary release left" "$(tmp_releases "$TMP/www")" ""

# ---- post_activate fails with rollback_on_failure: swapped back ----
echo ok >"$TMP/pre.mode"
echo fail >"$TMP/post.mode"
commit_file "$TMP/src" index.html "four" "C4" || bail "commit failed"
C4=$(repo_head "$TMP/src")
if wait_for "post fail" 40 has_error_like www "^post_activate hook failed \(exit status 1\); rolled back to $R1$"; then
	ok "a failing post_activate is a failed deploy and rolls back"
else
	fail "a failing post_activate is a failed deploy and rolls back" "$(status_json www)"
fi
check "current is back on the first release" current_is "$TMP/www" "$C1"
is "the current release is the first one" "$(current_release "$TMP/www")" "$R1"
is "status names the release that is live" "$(site_field www release)" "$R1"
is "status names the commit that is live" "$(site_field www commit)" "$C1"
like "post_activate had seen the new release live" "$(cat "$TMP/post.current")" "-${C4:0:12}$"
n=$(release_count "$TMP/www")
is "the rolled-back release is kept for debugging" "$n" 2
sleep 4	# polls see the rolled-back commit as the tip
check "the rolled-back commit is not deployed again" current_is "$TMP/www" "$C1"
is "no further release was made" "$(release_count "$TMP/www")" "$n"
like "the failure still shows" "$(site_field www last_error)" 'rolled back to'

# ---- a new commit with working hooks goes out ----
echo ok >"$TMP/post.mode"
commit_file "$TMP/src" index.html "five" "C5" || bail "commit failed"
C5=$(repo_head "$TMP/src")
check "the next good commit deploys" wait_live "$TMP/www" "$C5" 40
check "the error clears" wait_for "no error" 10 site_field_is www last_error null
like "DEPLOYD_PREVIOUS_COMMIT names the commit that was live" "$(cat "$TMP/post.env")" "DEPLOYD_PREVIOUS_COMMIT=$C1"

check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
