# lib-netbed.sh: two "clouds" of network namespaces on one machine, joined by a router whose links delay (delay-proxy -T) and can be cut; sourced by tests and benchmarks. Needs root, ip and nft.
#
# Cloud A is 10.77.1.0/24, cloud B 10.77.2.0/24. Each host is a namespace with one interface,
# eth0, on its cloud's bridge; the bridges live in a namespace of their own (NB-sw), so nothing
# is added to the machine's own network. The router (NB-wan) has 10.77.1.254 and 10.77.2.254,
# forwards nothing, and redirects every TCP connection to its delay-proxy, which connects on to
# the original destination NB_DELAY_MS later each way: traffic between the clouds is TCP only,
# and delayed. Inside a cloud, hosts talk over the bridge without delay.
#
#   netbed_up                 make it all (first removing what an earlier run left)
#   netbed_down               remove every namespace and process of it; safe to repeat
#   nb_exec HOST CMD...       run CMD in HOST's namespace
#   nb_addr HOST              HOST's address
#   nb_cut_host HOST          HOST's link down: it reaches no one and no one reaches it
#   nb_heal_host HOST
#   nb_cut_cloud a|b          the router drops everything to and from that cloud
#   nb_heal_cloud a|b
#
# The router's proxy logs to $TMP/NB-proxy.log; its pid is in $TMP/NB-proxy.pid.
# NB (default "nb") prefixes every name, so that teardown finds what set-up made.

NB=${NB:-nb}
NB_PROXY=${NB_PROXY:-${BUILDDIR:-build}/tests/netbed/delay-proxy}
NB_DELAY_MS=${NB_DELAY_MS:-20}
NB_PROXY_PORT=7999
# HOST:CLOUD:LAST-OCTET
NB_HOSTS=${NB_HOSTS:-"a-git:1:10 a-etcd1:1:11 a-etcd2:1:12 a-n1:1:21 a-n2:1:22 a-n3:1:23
	b-etcd1:2:11 b-n1:2:21 b-n2:2:22 b-n3:2:23"}

_nb_field() {
	local h
	for h in $NB_HOSTS; do
		[ "${h%%:*}" = "$1" ] && { echo "$h" | cut -d: -f"$2"; return 0; }
	done
	return 1
}

nb_addr() {
	local c o
	c=$(_nb_field "$1" 2) && o=$(_nb_field "$1" 3) || return 1
	echo "10.77.$c.$o"
}

nb_exec() {
	local h=$1
	shift
	ip netns exec "$NB-$h" "$@"
}

# Every namespace of the bed, whatever NB_HOSTS says now: the prefix is what counts.
_nb_namespaces() {
	ip netns list 2>/dev/null | awk -v p="$NB-" 'index($1, p) == 1 {print $1}'
}

netbed_down() {
	local ns pid
	for ns in $(_nb_namespaces); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
	done
	for ns in $(_nb_namespaces); do
		ip netns del "$ns" 2>/dev/null
	done
	[ -z "$(_nb_namespaces)" ]
}

netbed_up() {
	local h name c o ns
	netbed_down || return 1
	ip netns add "$NB-sw" && ip netns add "$NB-wan" || return 1
	ip -n "$NB-sw" link set lo up
	ip -n "$NB-wan" link set lo up
	for c in 1 2; do
		ip -n "$NB-sw" link add "br$c" type bridge &&
			ip -n "$NB-sw" link set "br$c" up &&
			ip -n "$NB-sw" link add "wan$c" type veth peer name "eth$c" netns "$NB-wan" &&
			ip -n "$NB-sw" link set "wan$c" master "br$c" up &&
			ip -n "$NB-wan" addr add "10.77.$c.254/24" dev "eth$c" &&
			ip -n "$NB-wan" link set "eth$c" up || return 1
	done
	for h in $NB_HOSTS; do
		name=${h%%:*}
		c=$(_nb_field "$name" 2)
		o=$(_nb_field "$name" 3)
		ns=$NB-$name
		ip netns add "$ns" && ip -n "$ns" link set lo up &&
			ip -n "$NB-sw" link add "h-$name" type veth peer name eth0 netns "$ns" &&
			ip -n "$NB-sw" link set "h-$name" master "br$c" up &&
			ip -n "$ns" addr add "10.77.$c.$o/24" dev eth0 &&
			ip -n "$ns" link set eth0 up &&
			ip -n "$ns" route add default via "10.77.$c.254" || return 1
	done
	# The router: no forwarding; TCP to any address of the bed goes to the proxy.
	ip netns exec "$NB-wan" sysctl -qw net.ipv4.ip_forward=0 &&
		ip netns exec "$NB-wan" nft -f - <<EOF || return 1
table ip netbed {
	chain relay {
		type nat hook prerouting priority dstnat;
		ip daddr 10.77.0.0/16 tcp dport != $NB_PROXY_PORT redirect to :$NB_PROXY_PORT
	}
	chain cut_in {
		type filter hook prerouting priority raw;
	}
	chain cut_out {
		type filter hook output priority raw;
	}
}
EOF
	ip netns exec "$NB-wan" "$NB_PROXY" -l "0.0.0.0:$NB_PROXY_PORT" -T -d "$NB_DELAY_MS" \
		</dev/null >"${TMP:-/tmp}/$NB-proxy.log" 2>&1 &
	echo $! >"${TMP:-/tmp}/$NB-proxy.pid"
	local i
	for i in $(seq 50); do
		[ -s "${TMP:-/tmp}/$NB-proxy.log" ] && return 0
		sleep 0.1
	done
	return 1
}

nb_cut_host() { ip -n "$NB-sw" link set "h-$1" down; }

# Up again, and the neighbours it failed to reach meanwhile forgotten on both sides: a FAILED
# entry would answer "no route to host" for seconds after the link is back.
nb_heal_host() {
	local addr ns
	addr=$(nb_addr "$1") || return 1
	ip -n "$NB-sw" link set "h-$1" up || return 1
	ip -n "$NB-$1" neigh flush dev eth0
	for ns in $(_nb_namespaces); do
		ip -n "$ns" neigh flush to "$addr" 2>/dev/null
	done
	return 0
}

_nb_cloud_dev() {
	case $1 in a) echo eth1 ;; b) echo eth2 ;; *) return 1 ;; esac
}

nb_cut_cloud() {
	local dev
	dev=$(_nb_cloud_dev "$1") || return 1
	ip netns exec "$NB-wan" nft add rule ip netbed cut_in iifname "$dev" drop &&
		ip netns exec "$NB-wan" nft add rule ip netbed cut_out oifname "$dev" drop
}

nb_heal_cloud() {
	local dev chain h
	dev=$(_nb_cloud_dev "$1") || return 1
	for chain in cut_in cut_out; do
		for h in $(ip netns exec "$NB-wan" nft -a list chain ip netbed "$chain" |
			awk -v d="\"$dev\"" '$2 == d && /drop/ {print $NF}'); do
			ip netns exec "$NB-wan" nft delete rule ip netbed "$chain" handle "$h" || return 1
		done
	done
}
