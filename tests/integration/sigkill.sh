#!/bin/bash
# sigkill.sh: SIGKILL at random points of a 2,000-file deploy never leaves current on a partial release.
# timeout: 420
. "$(dirname "$0")/../lib.sh"

LOOPS=${SIGKILL_LOOPS:-5}
make_repo "$TMP/src" || bail "make_repo failed"
make_big_repo "$TMP/src" 2000 || bail "make_big_repo failed"
ALL=("$(repo_head "$TMP/src")")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=3)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "${ALL[0]}" 90 || bail "first deploy did not happen"
check "first release of 2,000 files matches" tree_matches "$WWW/current" "$TMP/src" "${ALL[0]}"

# A new commit touching many files, so writing it takes a while.
new_commit() {
	local i=$1 f
	for f in $(cd "$TMP/src" && git ls-files 'site/d*' | awk -v s="$i" 'NR % 5 == s % 5'); do
		printf 'rewritten in round %d\n' "$i" >>"$TMP/src/$f"
	done
	printf 'round %d\n' "$i" >"$TMP/src/site/round-$i.txt"
	git_q -C "$TMP/src" rm -q "site/d$i/e$i/f$((i * 70 + i)).html" 2>/dev/null
	git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "round $i" && push_work "$TMP/src"
}

# After a kill: current must name a complete release of one of our commits.
check_current() {
	local when=$1 c rel
	# One readlink: after a restart the daemon may swap current between two reads.
	rel=$(readlink "$WWW/current")
	if [ -z "$rel" ] || ! test -d "$WWW/$rel"; then
		fail "$when: current resolves" "current -> $rel"
		return
	fi
	if c=$(for c in "${ALL[@]}"; do [ "${rel##*-}" = "${c:0:12}" ] && echo "$c"; done | grep .); then
		check "$when: current (${c:0:12}) matches that commit exactly" tree_matches "$WWW/$rel" "$TMP/src" "$c"
	else
		fail "$when: current names one of the pushed commits" "current -> $(readlink "$WWW/current")"
	fi
}

# none_left NAME...: none of these temporary releases exists.
none_left() {
	local t
	for t in "$@"; do
		[ -e "$WWW/releases/$t" ] && return 1
	done
	return 0
}

midwrite=0
for ((i = 1; i <= LOOPS + 2; i++)); do
	new_commit "$i" || bail "commit $i failed"
	ALL+=("$(repo_head "$TMP/src")")
	dctl deploy www >/dev/null 2>&1
	if [ "$i" -le "$LOOPS" ]; then
		how="kill $i after $((d = RANDOM % 301)) ms"
		sleep "$(printf '0.%03d' "$d")"
	else
		# The last rounds aim at the writing phase itself.
		how="kill $i while writing"
		wait_for "state writing" 20 site_field_is www state writing || how="kill $i (writing not seen)"
	fi
	kill9_daemon
	tmps=$(tmp_releases "$WWW")
	[ -n "$tmps" ] && midwrite=$((midwrite + 1))
	diag "$how: current $(current_commit "$WWW"), temporary: ${tmps:-none}, helpers left: ${DAEMON_ORPHANS[*]:-none}"
	check_current "after $how"
	check "after $how: state.json is intact JSON" jq -e . "$TMP/state/www/state.json"

	start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart after $how"
	# A new deploy may be writing a new .tmp-* by now; the ones left by the kill must be gone.
	if wait_for "the killed deploy's temporary release to go" 10 none_left $tmps; then
		ok "after $how and a restart: no temporary release of the killed daemon survives"
	else
		fail "after $how and a restart: no temporary release of the killed daemon survives" \
			"$(tmp_releases "$WWW")"
	fi
	for p in "${DAEMON_ORPHANS[@]}"; do
		pid_alive "$p" && diag "helper $p of the killed daemon still runs after the restart: $(tr '\0' ' ' <"/proc/$p/cmdline")"
	done
	check_current "after $how and a restart"
done
diag "$midwrite of $((LOOPS + 2)) kills left a temporary release behind (landed mid-write)"

if wait_live "$WWW" "${ALL[-1]}" 60; then
	ok "eventually the newest commit is live"
else
	fail "eventually the newest commit is live" "current -> $(readlink "$WWW/current")"
fi
check "the newest release matches exactly" tree_matches "$WWW/current" "$TMP/src" "${ALL[-1]}"
wait_for "idle" 20 site_field_is www state idle
is "no temporary release at the end" "$(tmp_releases "$WWW")" ""
n=$(release_count "$WWW")
if [ "$n" -le 3 ]; then
	ok "keep 3 holds after crashes ($n releases)"
else
	fail "keep 3 holds after crashes" "$(ls -A "$WWW/releases")"
fi

stop_daemon
is "daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
