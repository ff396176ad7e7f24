#!/bin/bash
# netbed.sh: the two-clouds test bed (tests/lib-netbed.sh): hosts in namespaces, no delay inside a cloud, the proxy's delay between clouds, host and cloud partitions that heal, and a teardown that leaves nothing.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-servers.sh"
. "$(dirname "$0")/../lib-netbed.sh"

[ "$(id -u)" -eq 0 ] || { ok "# SKIP the test bed needs root"; done_testing; }
need ip:iproute2 nft:nftables python3:python3 || bail "the test bed needs ip, nft and python3"
NB=nbt$$
NB_DELAY_MS=25
BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
NB_PROXY=$BUILD/tests/netbed/delay-proxy
PROBE="python3 $SRCDIR/tests/netbed/probe.py"
at_exit netbed_down
fact() { awk -v k="$1" '$1 == k {print $2}'; }

links_before=$(ip -o link | wc -l)
check "the bed comes up" netbed_up
check "and comes up again over itself" netbed_up
is "a namespace per host, the switch and the router" "$(ip netns list | grep -c "^$NB-")" 12
is "nothing was added to the machine's own links" "$(ip -o link | wc -l)" "$links_before"

# An echo server in a-etcd1 and one in b-etcd1.
for h in a-etcd1 b-etcd1; do
	nb_exec "$h" $PROBE serve "$(nb_addr "$h")" >"$TMP/$h.port" 2>&1 &
	track_pid $!
done
wait_for "echo servers" 10 bash -c "test -s '$TMP/a-etcd1.port' && test -s '$TMP/b-etcd1.port'" ||
	bail "echo servers did not start"
AP=$(head -n 1 "$TMP/a-etcd1.port")
BP=$(head -n 1 "$TMP/b-etcd1.port")
A=$(nb_addr a-etcd1)
B=$(nb_addr b-etcd1)

inside=$(nb_exec a-n1 $PROBE rtt "$A" "$AP" | fact rtt_median)
check "inside a cloud there is no added delay ($inside ms)" test "${inside:-999}" -lt 20
across=$(nb_exec b-n1 $PROBE rtt "$A" "$AP")
min=$(echo "$across" | fact rtt_min)
check "between clouds a round trip takes at least 2 x 25 ms ($min ms)" test "${min:-0}" -ge 50
check "and not much more ($(echo "$across" | fact rtt_median) ms)" \
	test "$(echo "$across" | fact rtt_median)" -lt 400
is "the other way too" "$(nb_exec a-n2 $PROBE rtt "$B" "$BP" | fact rtt_min | awk '{print ($1 >= 50)}')" 1
is "bulk data crosses intact" "$(nb_exec b-n2 $PROBE bulk "$A" "$AP" | fact bulk_same)" 1

# ---- a host cut off, then healed ----
nb_cut_host b-n3
is "a cut host reaches no one in its own cloud" "$(nb_exec b-n3 $PROBE reach "$B" "$BP" 2 | fact reach)" 0
is "nor in the other" "$(nb_exec b-n3 $PROBE reach "$A" "$AP" 2 | fact reach)" 0
is "the rest of its cloud still reaches across" "$(nb_exec b-n2 $PROBE reach "$A" "$AP" 5 | fact reach)" 1
nb_heal_host b-n3
is "healed, it reaches its cloud" "$(nb_exec b-n3 $PROBE reach "$B" "$BP" 5 | fact reach)" 1
is "and across" "$(nb_exec b-n3 $PROBE reach "$A" "$AP" 5 | fact reach)" 1

# A connection to a cut host waits in the router: the other links go on meanwhile.
nb_cut_host a-git
nb_exec b-n1 $PROBE reach "$(nb_addr a-git)" 9 2 >/dev/null &
pending=$!
sleep 0.2
slowest=$(nb_exec b-n2 $PROBE rtt "$A" "$AP" | fact rtt_max)
check "a connect to a cut host holds up no other link (slowest round trip $slowest ms)" \
	test "${slowest:-99999}" -lt 1000
wait "$pending"
nb_heal_host a-git

# ---- a whole cloud cut off, then healed ----
check "cloud B is cut" nb_cut_cloud b
is "cut: B reaches no one in A" "$(nb_exec b-n1 $PROBE reach "$A" "$AP" 2 | fact reach)" 0
is "cut: A reaches no one in B" "$(nb_exec a-n1 $PROBE reach "$B" "$BP" 2 | fact reach)" 0
is "cut: inside B all is well" "$(nb_exec b-n1 $PROBE reach "$B" "$BP" 2 | fact reach)" 1
is "cut: inside A too" "$(nb_exec a-n1 $PROBE reach "$A" "$AP" 2 | fact reach)" 1
check "cloud B heals" nb_heal_cloud b
is "healed: B reaches A" "$(nb_exec b-n1 $PROBE reach "$A" "$AP" 5 | fact reach)" 1
is "healed: A reaches B" "$(nb_exec a-n1 $PROBE reach "$B" "$BP" 5 | fact reach)" 1
is "no drop rule is left" "$(ip netns exec "$NB-wan" nft list table ip netbed | grep -c drop)" 0

proxy=$(cat "$TMP/$NB-proxy.pid")
check "the bed goes down" netbed_down
is "no namespace is left" "$(ip netns list | grep -c "^$NB-")" 0
check "its proxy is gone" bash -c "! kill -0 $proxy 2>/dev/null || grep -q '^State:.*Z' /proc/$proxy/status"
check "and down again is fine" netbed_down
is "the machine's links are as before" "$(ip -o link | wc -l)" "$links_before"
cat "$TMP/$NB-proxy.log" >"$TMP/daemon.log" 2>/dev/null
done_testing
