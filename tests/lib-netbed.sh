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
#   nb_cut_port HOST PORT     the router drops TCP to and from PORT on HOST across the clouds:
#                             e.g. an etcd member's peer port, so that it loses its quorum while
#                             its clients still reach it
#   nb_heal_port HOST PORT
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

nb_cut_port() {
	local a
	a=$(nb_addr "$1") || return 1
	ip netns exec "$NB-wan" nft add rule ip netbed cut_in ip saddr "$a" tcp dport "$2" drop \
		comment "\"port-$1-$2\"" &&
		ip netns exec "$NB-wan" nft add rule ip netbed cut_in ip daddr "$a" tcp dport "$2" \
		drop comment "\"port-$1-$2\""
}

nb_heal_port() {
	local h
	for h in $(ip netns exec "$NB-wan" nft -a list chain ip netbed cut_in |
		awk -v c="\"port-$1-$2\"" '$0 ~ c {print $NF}'); do
		ip netns exec "$NB-wan" nft delete rule ip netbed cut_in handle "$h" || return 1
	done
}

# ---- a fleet in the bed (source lib.sh first) ----
#
#   nb_git_start               git daemon on a-git; $NB_WORK is the work clone, $NB_REPO_URL
#   nb_etcd_start              etcd members on NB_ETCD_HOSTS (a-etcd1 a-etcd2 b-etcd1)
#   nb_etcd_kill HOST / nb_etcd_restart HOST   SIGKILL a member; start it again on its data
#   nb_etcdctl ARGS...         etcdctl from cloud A (a-git's namespace)
#   nb_node_start HOST         deployd as fleet node HOST (config in $TMP/HOST), in HOST's namespace
#   nb_node_kill HOST          SIGKILL
#   nb_nctl HOST ARGS...       a client command against node HOST (its socket is a file)
#   nb_push HOST COMMIT ID     a signed GitHub push naming COMMIT to HOST's listener: the status
#   nb_live COMMIT HOST...     every HOST named has COMMIT's release live

NB_NODES=${NB_NODES:-"a-n1 a-n2 a-n3 b-n1 b-n2 b-n3"}
NB_ETCD_HOSTS=${NB_ETCD_HOSTS:-"a-etcd1 a-etcd2 b-etcd1"}
NB_SECRET='netbed-fleet-secret-0123456789'
NB_SITE_EXTRA=()	# more KEY=VAL for every node's site (site_yaml)
NB_NODE_ENV=()		# VAR=VALUE for the next nb_node_start's daemon (e.g. libfaketime)
NB_NODE_ETCD=		# the next nb_node_start's etcd endpoints, when not NB_ETCD_ENDPOINTS
declare -A NB_ETCD_PID

nb_git_start() {
	mkdir -p "$TMP/nbgit"
	make_repo "$TMP/nbgit/www" || return 1
	NB_WORK=$TMP/nbgit/www
	NB_REPO_URL=git://$(nb_addr a-git)/www.git
	commit_file "$NB_WORK" index.html "v0" "v0" || return 1
	spawn "$TMP/nb-git.log" ip netns exec "$NB-a-git" git daemon --reuseaddr \
		--listen="$(nb_addr a-git)" --base-path="$TMP/nbgit" --export-all "$TMP/nbgit"
	wait_for "git daemon in the bed" 10 \
		ip netns exec "$NB-a-n1" git ls-remote "$NB_REPO_URL" >/dev/null
}

nb_etcd_start() {
	local h a cluster="" urls=""
	need etcd:etcd-server etcdctl:etcd-client || return 1
	for h in $NB_ETCD_HOSTS; do
		a=$(nb_addr "$h")
		cluster+="${cluster:+,}$h=http://$a:2380"
		urls+="${urls:+,}http://$a:2379"
	done
	NB_ETCD_ENDPOINTS=$urls
	for h in $NB_ETCD_HOSTS; do
		a=$(nb_addr "$h")
		# Heartbeats at 100 ms, elections at 1 s: a round trip between clouds is 2 x NB_DELAY_MS.
		# --pre-vote, as README tells operators (etcd 3.4 has it off): without it a member
		# coming back from a cut starts elections with a higher term, and the burst of them
		# can cost nodes their leases.
		# The command in a file of its own, so that nb_etcd_restart can start it again.
		printf '%q ' exec ip netns exec "$NB-$h" etcd --name "$h" \
			--data-dir "$TMP/nb-etcd/$h" \
			--listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
			--listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
			--initial-cluster "$cluster" --initial-cluster-token "netbed-$$" \
			--heartbeat-interval 100 --election-timeout 1000 --pre-vote >"$TMP/nb-etcd-$h.sh"
		nb_etcd_restart "$h"
	done
	wait_for "etcd in the bed" 40 nb_etcdctl endpoint health >/dev/null
}

nb_etcd_restart() {
	spawn "$TMP/nb-etcd-$1.log" bash "$TMP/nb-etcd-$1.sh"
	NB_ETCD_PID[$1]=$LAST_PID
}

nb_etcd_kill() {
	kill -KILL "${NB_ETCD_PID[$1]}" 2>/dev/null
	wait "${NB_ETCD_PID[$1]}" 2>/dev/null
	return 0
}

# nb_store_dump: the fleet's keys (leases and revisions) and its leases' time to live, as
# cloud A's members see them: for a failure's diagnosis.
nb_store_dump() {
	local l a
	a=$(tr ',' '\n' <<<"$NB_ETCD_ENDPOINTS" | grep '//10\.77\.1\.' | paste -sd,)
	echo "the store from cloud A at $(date -u +%T.%N):"
	# python3, not jq: a lease id is a 64-bit integer, which jq would round to a double.
	NB_ETCD_ENDPOINTS=$a nb_etcdctl get --prefix "" -w json | python3 -c '
import base64, json, sys
for kv in json.load(sys.stdin).get("kvs", []):
    v = base64.b64decode(kv.get("value", "")).decode(errors="replace")[:160]
    print(base64.b64decode(kv["key"]).decode(), "lease=%x" % kv.get("lease", 0),
          "create=%d mod=%d" % (kv["create_revision"], kv["mod_revision"]), v)' 2>&1
	for l in $(NB_ETCD_ENDPOINTS=$a nb_etcdctl lease list | tail -n +2); do
		NB_ETCD_ENDPOINTS=$a nb_etcdctl lease timetolive "$l"
	done 2>&1
}

nb_etcdctl() {
	ETCDCTL_API=3 ip netns exec "$NB-a-git" etcdctl --endpoints "$NB_ETCD_ENDPOINTS" \
		--dial-timeout 2s "$@"
}

nb_node_start() {
	local h=$1 pid
	mkdir -p "$TMP/$h"
	if [ ! -f "$TMP/nb.secret" ]; then
		printf '%s\n' "$NB_SECRET" >"$TMP/nb.secret"
		chmod 600 "$TMP/nb.secret"
	fi
	CFG_LISTEN=$(nb_addr "$h"):8080 CFG_SOCKET=$TMP/$h/deployd.sock CFG_STATE=$TMP/$h/state \
		CFG_EXTRA="fleet:
  etcd: [${NB_NODE_ETCD:-$NB_ETCD_ENDPOINTS}]
  node: $h
  zone: cloud-${h%%-*}
  lease_ttl: ${NB_LEASE_TTL:-3s}
  prepare_timeout: 60s
  min_ready: all" \
		write_config "$TMP/$h/deployd.yaml" \
		"$(site_yaml www "$NB_REPO_URL" "$TMP/$h/www" poll="${NB_POLL:-60s}" secret_file="$TMP/nb.secret" \
			keep=10 "${NB_SITE_EXTRA[@]}")"
	echo "---- start $(date -u +%H:%M:%S.%N) ----" >>"$TMP/$h/daemon.log"
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		ip netns exec "$NB-$h" env "${NB_NODE_ENV[@]}" "$DEPLOYD_BIN" serve -c "$TMP/$h/deployd.yaml" \
		</dev/null >>"$TMP/$h/daemon.log" 2>&1 &
	pid=$!
	track_pid "$pid"
	echo "$pid" >"$TMP/$h/pid"
	wait_answering "$pid" "node $h" "$TMP/$h/daemon.log" nb_nctl "$h" status
}

nb_node_kill() {
	local pid c
	pid=$(cat "$TMP/$1/pid" 2>/dev/null) || return 0
	for c in $(child_pids "$pid"); do track_pid "$c"; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$TMP/$1/pid"
}

nb_nctl() {
	local h=$1
	shift
	"$DEPLOYD_BIN" "$@" -c "$TMP/$h/deployd.yaml"
}

nb_push() {
	local h=$1 body=$TMP/nb-push-$3.json
	jq -cj --arg a "$2" '.after = $a' "$SRCDIR/tests/unit/data/hooks/github-push.json" >"$body"
	ip netns exec "$NB-$h" curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-GitHub-Delivery: $3" \
		-H "X-Hub-Signature-256: sha256=$(hmac256 "$NB_SECRET" "$body")" \
		--data-binary "@$body" "http://$(nb_addr "$h"):8080/hooks/www"
}

nb_live() {
	local c=$1 h
	shift
	for h in "$@"; do
		current_is "$TMP/$h/www" "$c" || return 1
	done
}

# ---- real Capistrano on the same hosts ----
#
#   nb_sshd_start HOST...      an sshd on HOST's address, port 22, root by key only. Each runs
#                              in a mount namespace of its own where $NB_CAP_ROOT is HOST's
#                              $TMP/HOST/cap: one deploy_to for Capistrano, six trees on disk.
#   nb_cap_setup HOST...       a Capistrano 3 project in $TMP/cap deploying $NB_REPO_URL's main
#                              to those hosts as "web" servers (its defaults: in parallel)
#   nb_cap ARGS...             cap in a-git's namespace (cloud A), e.g. nb_cap netbed deploy
#   nb_cap_current HOST        the release HOST's Capistrano current names ("" if none)

NB_CAP_ROOT=${TMP:-/tmp}/nb-cap-www

nb_sshd_start() {
	local h d=$TMP/nb-ssh
	need /usr/sbin/sshd:openssh-server ssh-keygen:openssh-client || return 1
	mkdir -p "$d" "$NB_CAP_ROOT" /run/sshd
	if [ ! -f "$d/host_ecdsa" ]; then
		# ECDSA for both keys: net-ssh reads them without extra gems.
		ssh-keygen -q -t ecdsa -b 256 -N '' -C nb-host -f "$d/host_ecdsa" &&
			ssh-keygen -q -t ecdsa -b 256 -N '' -C nb-cap -m PEM -f "$d/cap" || return 1
		cp "$d/cap.pub" "$d/authorized_keys"
		cat >"$d/sshd_config" <<-EOC
			Port 22
			HostKey $d/host_ecdsa
			AuthorizedKeysFile $d/authorized_keys
			PermitRootLogin prohibit-password
			StrictModes no
			UsePAM no
			PasswordAuthentication no
			KbdInteractiveAuthentication no
			PubkeyAuthentication yes
			X11Forwarding no
			AllowTcpForwarding no
			MaxStartups 100
			MaxSessions 100
			LogLevel ERROR
		EOC
		/usr/sbin/sshd -t -f "$d/sshd_config" || return 1
	fi
	: >"$d/known_hosts"
	for h in $NB_NODES; do
		printf '%s %s\n' "$(nb_addr "$h")" "$(cut -d' ' -f1,2 "$d/host_ecdsa.pub")" >>"$d/known_hosts"
	done
	for h in "$@"; do
		mkdir -p "$TMP/$h/cap"
		spawn "$TMP/$h/sshd.log" ip netns exec "$NB-$h" unshare -m sh -c \
			'mount --bind "$1" "$2" && exec /usr/sbin/sshd -D -e -f "$3" -o ListenAddress="$4"' \
			sh "$TMP/$h/cap" "$NB_CAP_ROOT" "$d/sshd_config" "$(nb_addr "$h")"
		wait_for "sshd on $h" 10 nb_exec a-git bash -c \
			"exec 3<>/dev/tcp/$(nb_addr "$h")/22" 2>/dev/null || return 1
	done
}

nb_cap_setup() {
	local h c=$TMP/cap
	need cap:capistrano || return 1
	mkdir -p "$c/config/deploy"
	cat >"$c/Capfile" <<-'EOC'
		require "capistrano/setup"
		require "capistrano/deploy"
		require "capistrano/scm/git"
		install_plugin Capistrano::SCM::Git
	EOC
	cat >"$c/config/deploy.rb" <<-EOC
		set :application, "www"
		set :repo_url, "$NB_REPO_URL"
		set :branch, "main"
		set :deploy_to, "$NB_CAP_ROOT"
		set :tmp_dir, "$NB_CAP_ROOT/tmp"	# one host's, not the /tmp all six share
		set :keep_releases, 10
		set :log_level, :info
		set :format, :pretty
		set :ssh_options, {
		  user: "root", keys: ["$TMP/nb-ssh/cap"], keys_only: true, auth_methods: %w[publickey],
		  user_known_hosts_file: "$TMP/nb-ssh/known_hosts", verify_host_key: :always
		}
	EOC
	: >"$c/config/deploy/netbed.rb"
	for h in "$@"; do
		printf 'server "%s", roles: %%w[web]\n' "$(nb_addr "$h")" >>"$c/config/deploy/netbed.rb"
	done
}

nb_cap() {
	(cd "$TMP/cap" && ip netns exec "$NB-a-git" cap "$@")
}

nb_cap_current() {
	basename "$(readlink "$TMP/$1/cap/current" 2>/dev/null)" 2>/dev/null
}
