#!/bin/bash
# remote_down.sh: a missing or unreachable repository: no release, current untouched, the error in status, retried.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

# "later": its repository does not exist yet. "moved": deployed, then its repository goes away.
# "down": a git:// remote where nothing listens.
make_repo "$TMP/moved" || bail "make_repo failed"
commit_file "$TMP/moved" index.html "M1" "M1" || bail "commit failed"
M1=$(repo_head "$TMP/moved")
DOWN_PORT=$(free_port)

write_config "$TMP/deployd.yaml" \
	"$(site_yaml later "$TMP/later.git" "$TMP/later-www" poll=1s)" \
	"$(site_yaml moved "$TMP/moved.git" "$TMP/moved-www" poll=1s)" \
	"$(site_yaml down "git://127.0.0.1:$DOWN_PORT/nothing.git" "$TMP/down-www" poll=1s)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/moved-www" "$M1" 30 || bail "moved: first deploy did not happen"

for s in later down; do
	if wait_for "$s: last_error" 20 has_error "$s"; then
		ok "$s: the error shows in status --json ($(site_field "$s" last_error))"
	else
		fail "$s: the error shows in status --json" "$(status_json "$s")"
	fi
	like "$s: last_error_at is an ISO time" "$(site_field "$s" last_error_at)" "$ISO_RE"
	# Between retries the state is "failed" (while retrying, "fetching").
	check "$s: state is failed between retries" wait_for "$s failed" 10 site_field_is "$s" state failed
	is "$s: no current" "$(readlink "$TMP/$s-www/current")" ""
	is "$s: no release created" "$(release_count "$TMP/$s-www")" 0
	is "$s: no temporary release either" "$(tmp_releases "$TMP/$s-www")" ""
	is "$s: release is null" "$(site_field "$s" release)" null
	if wait_for "$s failed in the table" 10 eval 'dctl status | grep -Eq "^$s +failed "'; then
		ok "$s: the plain status row shows the failure"
	else
		fail "$s: the plain status row shows the failure" "$(dctl status)"
	fi
done
like "later: the error says the repository is missing" "$(site_field later last_error)" \
	'[Nn]ot found|[Nn]o such|does not exist|missing|not a (git )?repository'
like "down: the error says the remote cannot be reached" "$(site_field down last_error)" \
	'[Cc]onnect|refused|unreachable'
check "the daemon keeps serving" daemon_running

# The repository behind a live site disappears.
cur=$(readlink "$TMP/moved-www/current")
listing=$(ls -A "$TMP/moved-www/releases")
mv "$TMP/moved.git" "$TMP/moved.away"
if wait_for "moved: last_error" 20 has_error moved; then
	ok "moved: the fetch error shows in status"
else
	fail "moved: the fetch error shows in status" "$(status_json moved)"
fi
sleep 2	# more failing polls
is "moved: current is untouched" "$(readlink "$TMP/moved-www/current")" "$cur"
check "moved: current still matches its commit" tree_matches "$TMP/moved-www/current" "$TMP/moved" "$M1"
is "moved: no release added or removed" "$(ls -A "$TMP/moved-www/releases")" "$listing"
is "moved: status still names the live release" "$(site_field moved release)" "${cur#releases/}"

# The repositories come (back): the next polls deploy.
mv "$TMP/moved.away" "$TMP/moved.git"
commit_file "$TMP/moved" index.html "M2" "M2" || bail "commit failed"
M2=$(repo_head "$TMP/moved")
check "moved: a later poll deploys once the repository is back" wait_live "$TMP/moved-www" "$M2" 20
check "moved: and it matches" tree_matches "$TMP/moved-www/current" "$TMP/moved" "$M2"

make_repo "$TMP/later" || bail "make_repo failed"
commit_file "$TMP/later" index.html "L1" "L1" || bail "commit failed"
L1=$(repo_head "$TMP/later")
check "later: a later poll deploys once the repository exists" wait_live "$TMP/later-www" "$L1" 20
check "later: and it matches" tree_matches "$TMP/later-www/current" "$TMP/later" "$L1"
check "later: state returns to idle after the successful deploy" wait_for "later idle" 10 site_field_is later state idle
diag "later: last_error after recovery: $(site_field later last_error)"

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
