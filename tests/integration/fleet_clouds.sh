#!/bin/bash
# fleet_clouds.sh: a fleet of six nodes in two clouds (tests/lib-netbed.sh), 20 ms apart, with etcd members in both: pushes go live everywhere, also while B's member has lost its quorum; a cloud cut off, with the coordinator in it, stays on its last release while the other cuts over (also when one of its nodes talks to the cut-off cloud's etcd member first), and catches up once healed; so does one node cut off.
# timeout: 420
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"
. "$(dirname "$0")/../lib-netbed.sh"

[ "$(id -u)" -eq 0 ] || { ok "# SKIP the test bed needs root"; done_testing; }
need ip:iproute2 nft:nftables etcd:etcd-server etcdctl:etcd-client jq:jq ||
	bail "the test bed needs ip, nft, etcd and jq"
NB=nbf$$
BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
NB_PROXY=$BUILD/tests/netbed/delay-proxy
NB_LEASE_TTL=3s
at_exit netbed_down
A_NODES="a-n1 a-n2 a-n3"
B_NODES="b-n1 b-n2 b-n3"

# live_within SECS COMMIT HOST...: until every HOST has COMMIT live (SECS times TIME_SCALE).
live_within() {
	local secs=$1 c=$2
	shift 2
	wait_for "$c on $*" $((secs * TIME_SCALE)) nb_live "$c" "$@"
}

# Every node's current is a whole release: its files are exactly its commit's tree.
all_whole() {
	local h c
	for h in $NB_NODES; do
		c=$(git_q -C "$NB_WORK" rev-parse "$(current_commit "$TMP/$h/www")") || return 1
		tree_matches "$TMP/$h/www/current" "$NB_WORK" "$c" || return 1
	done
}

netbed_up || bail "the test bed did not come up"
nb_git_start || bail "git daemon did not start in the bed"
nb_etcd_start || bail "etcd did not start in the bed: $(tail -n 5 "$TMP"/nb-etcd-*.log)"
ok "etcd has a member in each cloud and a quorum of three"
# Cloud B's nodes first, so that one of them coordinates when B is cut off. a-n1 lists B's
# etcd member first: its election call waits there when the cut comes, with its key, made
# through that member, kept alive by its renewals in A. It must give up on the dead member
# (a quick read there fails), or its key holds off A's election until the heal.
# Cloud B's nodes talk to B's member first, as an operator would set them up.
NB_NODE_ETCD=http://$(nb_addr b-etcd1):2379,http://$(nb_addr a-etcd1):2379,http://$(nb_addr a-etcd2):2379
for h in $B_NODES; do
	nb_node_start "$h" || bail "node $h did not start"
done
wait_for "a coordinator in cloud B" 30 grep -q 'is the coordinator' "$TMP"/b-n?/daemon.log ||
	bail "no node of cloud B coordinates"
for h in $A_NODES; do
	nb_node_start "$h" || bail "node $h did not start"
	NB_NODE_ETCD=
done
C0=$(repo_head "$NB_WORK")
check "the six nodes go live on the first commit" live_within 60 "$C0" $NB_NODES

# ---- a push through a node in cloud B goes live in both clouds ----
commit_file "$NB_WORK" index.html "v1" "v1" || bail "commit failed"
C1=$(repo_head "$NB_WORK")
is "a push to a node in cloud B: 202" "$(nb_push b-n2 "$C1" d-1)" 202
check "every node in both clouds goes live on it" live_within 60 "$C1" $NB_NODES
check "each with the commit's whole tree" all_whole
# A cutover's instant goes beyond the slowest node's round trips to etcd, which each node
# publishes from its own renewals: across the clouds that is at least twice the link's delay.
max_rtt() {
	local h
	for h in $NB_NODES; do
		nb_etcdctl get "/deployd/nodes/$h" --print-value-only | jq '.rtt_ms // 0'
	done | sort -n | tail -n 1
}
rtt_seen() { [ "$(max_rtt)" -ge $((2 * NB_DELAY_MS)) ]; }
check "the nodes publish their round trips to etcd; the slowest crosses the clouds" \
	wait_for "a round trip of two link delays in nodes/" 20 rtt_seen

# ---- B's member loses its quorum while its clients still reach it ----
# Its peer port is cut: it answers, but has no leader. A member without a leader holds a call
# (or answers a watch "created", then nothing) until the call's time runs out; B's nodes
# watched there, never saw the next target, and with min_ready all, held up the whole fleet
# while their leases lived on through A's members. Asked for a leader (hasleader), the member
# says "no leader" at once, and ends its watches when it loses its leader.
b1_healthy() {
	NB_ETCD_ENDPOINTS=http://$(nb_addr b-etcd1):2379 nb_etcdctl --command-timeout 1s \
		endpoint health >/dev/null 2>&1
}
b1_leaderless() { ! b1_healthy; }
nb_cut_port b-etcd1 2380 || bail "could not cut b-etcd1's peer port"
wait_for "b-etcd1 to lose its leader" 30 b1_leaderless || bail "b-etcd1 kept a leader"
commit_file "$NB_WORK" index.html "v1b" "v1b" || bail "commit failed"
C1B=$(repo_head "$NB_WORK")
is "a push while B's member has no leader: 202" "$(nb_push a-n2 "$C1B" d-1b)" 202
check "every node goes live on it, B's through A's members" live_within 60 "$C1B" $NB_NODES ||
	diag "$(nb_store_dump)"
nb_heal_port b-etcd1 2380 || bail "could not heal b-etcd1's peer port"
wait_for "b-etcd1 to have a leader again" 30 b1_healthy || bail "b-etcd1 did not rejoin"
C1=$C1B

# ---- cloud B cut off: A has etcd's quorum and goes on; B stays whole on C1 ----
nb_cut_cloud b || bail "could not cut cloud B"
commit_file "$NB_WORK" index.html "v2" "v2" || bail "commit failed"
C2=$(repo_head "$NB_WORK")
is "a push to a node in cloud A while B is cut: 202" "$(nb_push a-n1 "$C2" d-2)" 202
check "cloud A cuts over without B once B's leases are gone" live_within 60 "$C2" $A_NODES ||
	diag "$(nb_store_dump)"
diag "$(grep -h 'is the coordinator' "$TMP"/?-n?/daemon.log | tail -n 2)"
is "a-n1, asking B's member first, kept its lease through the cut (renewed through A's)" \
	"$(grep -c 'lost its lease' "$TMP/a-n1/daemon.log")" 0
check "cloud B stays on C1" nb_live "$C1" $B_NODES
check "and every node's release is whole" all_whole

# ---- healed: B catches up within two lease times and a deploy ----
nb_heal_cloud b || bail "could not heal cloud B"
t0=$(now_ms)
check "healed, cloud B catches up with C2" live_within 60 "$C2" $B_NODES
diag "cloud B caught up in $(($(now_ms) - t0)) ms"

# ---- one node cut off: the other five go on, it catches up when healed ----
nb_cut_host a-n3
commit_file "$NB_WORK" index.html "v3" "v3" || bail "commit failed"
C3=$(repo_head "$NB_WORK")
is "a push while a-n3 is cut off: 202" "$(nb_push b-n1 "$C3" d-3)" 202
check "the five others cut over" live_within 90 "$C3" a-n1 a-n2 $B_NODES
check "a-n3 stays on C2, whole" nb_live "$C2" a-n3
nb_heal_host a-n3
check "healed, a-n3 catches up" live_within 60 "$C3" a-n3
check "and every release is whole" all_whole

for h in $NB_NODES; do
	pid=$(cat "$TMP/$h/pid")
	stop_pid "$pid" "$DAEMON_STOP_TIMEOUT"
	wait "$pid" 2>/dev/null
	is "node $h exits 0 on SIGTERM" "$?" 0
	cat "$TMP/$h/daemon.log" >>"$TMP/daemon.log"
done
check "the bed goes down and leaves nothing" netbed_down
done_testing
