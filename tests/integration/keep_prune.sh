#!/bin/bash
# keep_prune.sh: after five deploys only `keep` releases remain: the newest ones, current among them.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "1" "commit 1" || bail "commit failed"
COMMITS=("$(repo_head "$TMP/src")")

write_config "$TMP/deployd.yaml" \
	"$(site_yaml two "$TMP/src.git" "$TMP/two" poll=1s keep=2)" \
	"$(site_yaml three "$TMP/src.git" "$TMP/three" poll=1s keep=3)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/two" "${COMMITS[0]}" 30 || bail "first deploy did not happen"
wait_live "$TMP/three" "${COMMITS[0]}" 30 || bail "first deploy did not happen"

for i in 2 3 4 5; do
	commit_file "$TMP/src" index.html "$i" "commit $i" || bail "commit failed"
	COMMITS+=("$(repo_head "$TMP/src")")
	if wait_live "$TMP/two" "${COMMITS[-1]}" 20 && wait_live "$TMP/three" "${COMMITS[-1]}" 20; then
		ok "commit $i went live on both sites"
	else
		fail "commit $i went live on both sites"
	fi
	# Pruning follows the swap; give it a moment.
	if wait_for "keep 2 pruned" 5 eval '[ "$(release_count "$TMP/two")" -le 2 ]'; then
		ok "keep 2: at most 2 releases after commit $i"
	else
		fail "keep 2: at most 2 releases after commit $i" "$(ls -A "$TMP/two/releases")"
	fi
done

# Which commits the remaining releases hold, as a sorted list.
held() {
	ls "$1/releases" | sed -n 's/^[0-9]\{8\}T[0-9]\{6\}Z-\([0-9a-f]\{12\}\)$/\1/p' | sort | tr '\n' ' '
}
commits() {
	local i
	for i in "$@"; do echo "${COMMITS[$i]:0:12}"; done | sort | tr '\n' ' '
}
c() { echo "${COMMITS[$1]:0:12}"; }

wait_for "idle" 10 site_field_is two state idle
is "keep 2: exactly 2 releases left" "$(release_count "$TMP/two")" 2
is "keep 2: the newest two commits are kept" "$(held "$TMP/two")" "$(commits 3 4)"
is "keep 2: current is among them (the newest)" "$(current_commit "$TMP/two")" "$(c 4)"
check "keep 2: current matches the tip" tree_matches "$TMP/two/current" "$TMP/src" "${COMMITS[4]}"
is "keep 3: exactly 3 releases left" "$(release_count "$TMP/three")" 3
is "keep 3: the newest three commits are kept" "$(held "$TMP/three")" "$(commits 2 3 4)"
is "keep 3: current is the newest" "$(current_commit "$TMP/three")" "$(c 4)"
is "no temporary releases" "$(tmp_releases "$TMP/two")$(tmp_releases "$TMP/three")" ""

# The kept older release is complete, not a husk: it still matches its commit.
old=$(ls "$TMP/two/releases" | grep -- "-$(c 3)\$")
check "the kept previous release still matches its commit" \
	tree_matches "$TMP/two/releases/$old" "$TMP/src" "${COMMITS[3]}"

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
