#!/bin/bash
# bench/fleet-skew.sh: a three-node fleet on loopback against one deployd on its own: cutover skew, and push-to-live of the same commits.
#
# usage: bench/fleet-skew.sh [DEPLOYD_BIN] [ROUNDS]
# One repository served by git daemon, a one-member etcd, three fleet nodes and one node without
# fleet:, all following the repository. Each round commits a one-file change and rings the
# webhook of one fleet node and of the single node, in an order that alternates between rounds;
# an outside loop reads every `current` every 2 ms. Per round: the fleet's skew as the nodes
# recorded their swaps (last minus first), and for both the time from the webhook to the last
# `current` showing the commit. Prints each round, then the medians, the worst skew and the
# ratio of the fleet's push-to-live to the single node's.
set -uo pipefail
BIN=${1:-$(dirname "$0")/../build/deployd}
ROUNDS=${2:-20}
export DEPLOYD_BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export TEST_NAME=fleet-skew
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh" >/dev/null
. "$SRC/tests/lib-servers.sh"
. "$SRC/tests/lib-fleet.sh"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

fleet_repo || bail "repository"
start_etcd 1 || bail "etcd"
export FLEET_POLL=1h
for i in 0 1 2; do fleet_config $i || bail "config"; done
for i in 0 1 2; do node_start $i || bail "node n$i"; done
# The single node: the same site, no fleet.
mkdir -p "$TMP/solo"
SOLO_PORT=$(free_port)
CFG_LISTEN=127.0.0.1:$SOLO_PORT CFG_SOCKET=$TMP/solo/deployd.sock CFG_STATE=$TMP/solo/state \
	CFG_LOG_LEVEL=info write_config "$TMP/solo/deployd.yaml" \
	"$(site_yaml www "$REPO_URL" "$TMP/solo/www" poll=1h secret_file="$TMP/secret" keep=10)"
start_daemon "$TMP/solo/deployd.yaml" || bail "single node"
H=$(repo_head "$WORK")
wait_for "first deploy" 60 all_live "$H" 0 1 2 || bail "fleet's first deploy"
wait_for "first deploy" 60 current_is "$TMP/solo/www" "$H" || bail "single node's first deploy"

# live_at DIR... COMMIT: unix ms when the last DIR's current shows COMMIT (read every 2 ms).
live_at() {
	local c=${!#} d n=$(($# - 1)) all
	while :; do
		all=1
		for d in "${@:1:n}"; do
			current_is "$d" "$c" || { all=0; break; }
		done
		[ $all -eq 1 ] && { now_ms; return 0; }
		sleep 0.002
	done
}

ring() {	# ring PORT COMMIT ID
	github_push "$FLEET_SECRET" "http://127.0.0.1:$1/hooks/www" "$2" "$3" >/dev/null
}

printf '%-6s %10s %16s %16s\n' round skew_ms fleet_live_ms single_live_ms
for ((r = 1; r <= ROUNDS; r++)); do
	commit_file "$WORK" "page$((r % 5)).html" "round $r" "round $r" >/dev/null || bail "commit"
	H=$(repo_head "$WORK")
	node=$((r % 3))
	if ((r % 2)); then
		t0=$(now_ms); ring "${NODE_PORT[node]}" "$H" "f-$r"
		tf=$(live_at "$(node_path 0)" "$(node_path 1)" "$(node_path 2)" "$H")
		t1=$(now_ms); ring "$SOLO_PORT" "$H" "s-$r"
		ts=$(live_at "$TMP/solo/www" "$H")
	else
		t1=$(now_ms); ring "$SOLO_PORT" "$H" "s-$r"
		ts=$(live_at "$TMP/solo/www" "$H")
		t0=$(now_ms); ring "${NODE_PORT[node]}" "$H" "f-$r"
		tf=$(live_at "$(node_path 0)" "$(node_path 1)" "$(node_path 2)" "$H")
	fi
	sleep 0.3	# the last node's record
	skew=$(swap_skew)
	printf '%-6s %10s %16s %16s\n' "$r" "$skew" $((tf - t0)) $((ts - t1)) | tee -a "$TMP/rounds"
done
skews=$(awk '{print $2}' "$TMP/rounds")
fm=$(awk '{print $3}' "$TMP/rounds" | median)
sm=$(awk '{print $4}' "$TMP/rounds" | median)
echo "skew across 3 nodes: median $(echo "$skews" | median) ms, worst $(echo "$skews" | sort -n | tail -1) ms ($ROUNDS cutovers)"
echo "push-to-live: fleet of 3 median $fm ms, single node median $sm ms, ratio $(awk -v a="$fm" -v b="$sm" 'BEGIN { printf "%.2f", a / b }')"
for i in 0 1 2; do node_stop $i; done
stop_daemon
ok "fleet-skew: $ROUNDS rounds" >/dev/null
done_testing >/dev/null
