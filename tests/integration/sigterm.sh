#!/bin/bash
# sigterm.sh: SIGTERM during a 2,000-file deploy: a prompt exit 0, current complete, no temporary release left.
# timeout: 360
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
make_big_repo "$TMP/src" 2000 || bail "make_big_repo failed"
ALL=("$(repo_head "$TMP/src")")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=3)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "${ALL[0]}" 90 || bail "first deploy did not happen"

# Every file changes, so the new release has to be written in full.
rewrite_all() {
	local i=$1 f
	while IFS= read -r f; do
		printf 'round %d\n' "$i" >>"$TMP/src/$f"
	done < <(git_q -C "$TMP/src" ls-files 'site/d*')
	git_q -C "$TMP/src" commit -q -am "rewrite round $i" && push_work "$TMP/src"
}

STOP_BOUND=15
for i in 1 2 3 4; do
	rewrite_all "$i" || bail "commit failed"
	ALL+=("$(repo_head "$TMP/src")")
	dctl deploy www >/dev/null 2>&1
	case $i in
	1) how="SIGTERM right after the deploy request"; sleep 0.02 ;;
	2) how="SIGTERM while writing"
		wait_for "state writing" 20 site_field_is www state writing || how="SIGTERM (writing not seen)" ;;
	*) d=$((RANDOM % 301)); how="SIGTERM $d ms after the deploy request"; sleep "$(printf '0.%03d' "$d")" ;;
	esac
	t0=$(now_ms)
	DAEMON_STOP_TIMEOUT=$STOP_BOUND stop_daemon
	took=$(( $(now_ms) - t0 ))
	is "$how: the daemon exits with status 0 (after $took ms)" "${DAEMON_STATUS:-none}" 0
	if [ "$took" -le $((STOP_BOUND * 1000)) ]; then
		ok "$how: exit within ${STOP_BOUND}s"
	else
		fail "$how: exit within ${STOP_BOUND}s" "took $took ms"
	fi
	is "$how: no temporary release left (finished or cleaned away)" "$(tmp_releases "$WWW")" ""
	if c=$(current_of "$WWW" "${ALL[@]}"); then
		check "$how: current (${c:0:12}) is a complete release" tree_matches "$WWW/current" "$TMP/src" "$c"
	else
		fail "$how: current names one of the pushed commits" "current -> $(readlink "$WWW/current")"
	fi
	check_not "$how: the control socket is removed" test -e "$TMP/deployd.sock"
	start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
	is "$how: no temporary release after restart" "$(tmp_releases "$WWW")" ""
done

check "eventually the newest commit is live" wait_live "$WWW" "${ALL[-1]}" 90
check "and matches exactly" tree_matches "$WWW/current" "$TMP/src" "${ALL[-1]}"
stop_daemon
is "daemon exits 0 on SIGTERM when idle" "$DAEMON_STATUS" 0
done_testing
