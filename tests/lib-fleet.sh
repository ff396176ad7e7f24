# lib-fleet.sh: a fleet on loopback for the tests: one repository served by git daemon, an etcd,
# and N deployd nodes, each with its own name, state directory, deploy path, control socket
# and listener port. Source after lib.sh and lib-servers.sh.
#
# fleet_repo                  the repository ($WORK is its work clone, $REPO_URL the git:// URL)
# fleet_config I [KEY=VAL...] node I's deployd.yaml ($TMP/nI/deployd.yaml); KEY=VAL go to the site
# node_start I / node_kill I / node_stop I / node_stopped I (SIGSTOP) / node_cont I
# nctl I ARGS...              a client command against node I
# node_path I                 node I's deploy path of site www
# all_live COMMIT [I...]      every node (or those named) has COMMIT's release live
# fleet_key KEY               a key's value under the fleet's prefix (etcdctl)
# swap_skew                   the last cutover's skew from the nodes' records (max - min, ms)
# fleet_observe               sample every node's live commit every 10 ms from outside
# no_node_ahead               every commit a node was seen live on was written as a cutover first

FLEET_PREFIX=/deployd/
FLEET_N=${FLEET_N:-3}
FLEET_SECRET='fleet-secret-0123456789'
FLEET_TTL=${FLEET_TTL:-3s}
NODE_PID=()
NODE_PORT=()

fleet_repo() {
	start_git_daemon || return 1
	make_repo "$GITD_ROOT/www" || return 1
	WORK=$GITD_ROOT/www
	REPO_URL=git://127.0.0.1:$GIT_PORT/www.git
	commit_file "$WORK" index.html "v0" "v0" || return 1
	printf '%s\n' "$FLEET_SECRET" >"$TMP/secret"
	chmod 600 "$TMP/secret"
}

fleet_config() {
	local i=$1
	shift
	mkdir -p "$TMP/n$i"
	[ -n "${NODE_PORT[i]:-}" ] || NODE_PORT[i]=$(free_port)
	CFG_LISTEN=127.0.0.1:${NODE_PORT[i]} CFG_SOCKET=$TMP/n$i/deployd.sock CFG_STATE=$TMP/n$i/state \
		CFG_EXTRA="fleet:
  etcd: [$ETCD_ENDPOINTS]
  node: n$i
  zone: zone-$((i % 2))
  lease_ttl: $FLEET_TTL
  prepare_timeout: ${FLEET_PREPARE_TIMEOUT:-60s}
  min_ready: ${FLEET_MIN_READY:-all}" \
		write_config "$TMP/n$i/deployd.yaml" \
		"$(site_yaml www "$REPO_URL" "$TMP/n$i/www" poll=${FLEET_POLL:-60s} \
			secret_file="$TMP/secret" keep=10 "$@")"
}

node_start() {
	local i=$1
	echo "---- start $(date -u +%H:%M:%S.%N) ----" >>"$TMP/n$i/daemon.log"
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		"$DEPLOYD_BIN" serve -c "$TMP/n$i/deployd.yaml" </dev/null >>"$TMP/n$i/daemon.log" 2>&1 &
	NODE_PID[i]=$!
	track_pid "${NODE_PID[i]}"
	wait_answering "${NODE_PID[i]}" "node n$i" "$TMP/n$i/daemon.log" nctl "$i" status
}

nctl() {
	local i=$1
	shift
	"$DEPLOYD_BIN" "$@" -c "$TMP/n$i/deployd.yaml"
}

node_kill() {
	local c
	for c in $(child_pids "${NODE_PID[$1]}"); do track_pid "$c"; done
	kill -KILL "${NODE_PID[$1]}" 2>/dev/null
	wait "${NODE_PID[$1]}" 2>/dev/null
	NODE_PID[$1]=
}

node_stop() {
	[ -n "${NODE_PID[$1]:-}" ] || return 0
	stop_pid "${NODE_PID[$1]}" "$DAEMON_STOP_TIMEOUT"
	wait "${NODE_PID[$1]}" 2>/dev/null
	NODE_PID[$1]=
}

node_path() {
	echo "$TMP/n$1/www"
}

all_live() {
	local c=$1 i nodes=()
	shift
	if [ $# -gt 0 ]; then
		nodes=("$@")
	else
		for i in "${!NODE_PID[@]}"; do [ -n "${NODE_PID[i]}" ] && nodes+=("$i"); done
	fi
	for i in "${nodes[@]}"; do
		current_is "$(node_path "$i")" "$c" || return 1
	done
}

fleet_key() {
	etcdctl_ get --print-value-only "$FLEET_PREFIX$1"
}

# The cutover's skew as the nodes recorded their swaps: last minus first, in ms.
swap_skew() {
	local gen
	gen=$(fleet_key sites/www/cutover | jq -r .gen)
	etcdctl_ get --print-value-only --prefix "${FLEET_PREFIX}sites/www/nodes/" |
		jq -s --argjson g "$gen" '[.[] | select(.swapped_gen == $g) | .swapped_at] |
			if length < 2 then "none" else (max - min) end'
}

# An outside observer: every node's live commit every 10 ms, one process with no pipeline,
# so that the end of the script stops it for good. The cutovers come from etcd's history.
fleet_observe() {
	spawn "$TMP/live.raw" bash -c '
		while :; do
			for d in "$0"/n*/www; do
				r=$(readlink "$d/current" 2>/dev/null) && echo "${d%/www} ${r##*-}"
			done
			sleep 0.01
		done' "$TMP"
}

# Every value the cutover key ever had (the tests' etcd never compacts), one a line.
cutover_history() {
	timeout 5 env ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" watch --rev 1 \
		"${FLEET_PREFIX}sites/www/cutover" 2>/dev/null | grep '^{'
}

# No node ran ahead: each commit seen live was a cutover (or the fleet's first, $1).
no_node_ahead() {
	local first=${1:0:12} n c bad=0
	cutover_history >"$TMP/cutovers.log"
	[ -s "$TMP/cutovers.log" ] || { diag "no cutover in etcd's history"; return 1; }
	while read -r n c; do
		[ "$c" = "$first" ] && continue
		grep -q "\"commit\":\"$c" "$TMP/cutovers.log" && continue
		diag "node $n went live on $c, which was never a cutover"
		bad=1
	done < <(sort -u "$TMP/live.raw" | sed "s|^$TMP/||")
	return $bad
}

# every_tree_matches COMMIT: every running node's current holds exactly COMMIT's tree.
every_tree_matches() {
	local i
	for i in "${!NODE_PORT[@]}"; do
		[ -n "${NODE_PID[i]:-}" ] || continue
		tree_matches "$(node_path "$i")/current" "$WORK" "$1" || return 1
	done
}
