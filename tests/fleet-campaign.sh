#!/bin/bash
# fleet-campaign.sh: faults at random instants in the two-clouds bed while pushes keep arriving at random nodes; an outside observer and the logs prove the fleet's promises held.
#
# usage: tests/fleet-campaign.sh DEPLOYD_BIN [FAULTS]      (default 30; run as root)
#
# Six nodes, three etcd members and git daemon in two clouds 20 ms apart (tests/lib-netbed.sh),
# a site of FC_FILES (30) files with a run_once hook. A pusher commits and sends a signed
# webhook to a random node every 0.5-2.5 s. Meanwhile, at random instants, one of: SIGKILL of
# a node, of the coordinator or of an etcd member; a node, a whole cloud or the git server cut
# off; each undone (restart, heal) 1-6 s later, several at once at times.
# Checked continuously, from outside (tests/netbed/observe.py, every 10 ms): every node's
# current is its commit's exact tree. Afterwards (tests/netbed/campaign-check.py), from the
# observer's log, etcd's history of the target and cutover keys and the faults' times: no node
# was live on a commit before it was written as a cutover; a node connected all along was on
# the cutover or the one before it a lease after its instant; run_once never ran twice at once
# nor again after it succeeded. Progress too: every FC_ROUND (25) faults, and after the last,
# everything is healed, the pusher held, and every node must reach the newest tip
# within 2 x lease_ttl plus one deploy (the slowest quiet fleet deploy measured before the
# faults, at least 2 s, times TIME_SCALE) plus the sites' fetch_timeout (FC_FETCH_TIMEOUT_S, 8):
# libgit2 1.5 has no server timeout, so a fetch a partition left hanging ends only then.
# The final push is sent again on 503, as a sender honouring Retry-After would.
# Output is TAP; the last line is "faults=N violations=M" and the faults by kind.
# Environment: FC_SEED (for $RANDOM), FC_FILES (30), FC_LEASE_MS (3000), FC_FETCH_TIMEOUT_S (8),
# FC_ROUND (25), FC_TIME_LIMIT (s; stop injecting after it, 0 = none).

if [ -n "${1:-}" ]; then
	DEPLOYD_BIN=$(realpath -e "$1") || { echo "Bail out! no such binary: $1"; exit 1; }
	export DEPLOYD_BIN
fi
FAULTS=${2:-30}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-servers.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-netbed.sh"

case $FAULTS in '' | *[!0-9]*) bail "usage: tests/fleet-campaign.sh DEPLOYD_BIN [FAULTS]" ;; esac
[ "$(id -u)" -eq 0 ] || bail "the test bed needs root"
need ip:iproute2 nft:nftables etcd:etcd-server etcdctl:etcd-client jq:jq flock:util-linux ||
	bail "the campaign needs ip, nft, etcd, jq and flock"
SEED=${FC_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
LEASE_MS=${FC_LEASE_MS:-3000}
LIMIT=${FC_TIME_LIMIT:-0}
NB=nbc$$
BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
NB_PROXY=$BUILD/tests/netbed/delay-proxy
[ -x "$NB_PROXY" ] || NB_PROXY=$(dirname "$DEPLOYD_BIN")/tests/netbed/delay-proxy
[ -x "$NB_PROXY" ] || bail "delay-proxy was not built"
NB_LEASE_TTL=$((LEASE_MS / 1000))s
NB_POLL=5s
at_exit netbed_down
T0=$SECONDS
echo "# seed $SEED, $FAULTS faults, lease $NB_LEASE_TTL"

# ---- the run_once hook: a lock that two runs at once cannot both take, and a log ----
cat >"$TMP/migrate" <<HOOK
#!/bin/bash
exec 9>>"$TMP/run_once.lock"
flock -n 9 || echo "overlap \$DEPLOYD_COMMIT \$(date +%s%3N)" >>"$TMP/run_once.log"
echo "start \$DEPLOYD_COMMIT \$(date +%s%3N)" >>"$TMP/run_once.log"
sleep 0.\$((RANDOM % 4))
echo "end \$DEPLOYD_COMMIT \$(date +%s%3N)" >>"$TMP/run_once.log"
HOOK
chmod 755 "$TMP/migrate"
touch "$TMP/run_once.log" "$TMP/faults.log"
NB_SITE_EXTRA=("hooks={run_once: [$TMP/migrate]}" fetch_timeout="${FC_FETCH_TIMEOUT_S:-8}s")

netbed_up || bail "the test bed did not come up"
nb_git_start || bail "git daemon did not start in the bed"
for ((i = 0; i < ${FC_FILES:-30}; i++)); do
	mkdir -p "$NB_WORK/d$((i % 5))"
	printf 'file %d\n' "$i" >"$NB_WORK/d$((i % 5))/f$i.txt"
done
ln -s d0/f0.txt "$NB_WORK/link"
git_q -C "$NB_WORK" add -A && git_q -C "$NB_WORK" commit -q -m files && push_work "$NB_WORK" ||
	bail "commit failed"
nb_etcd_start || bail "etcd did not start in the bed"
for h in $NB_NODES; do
	nb_node_start "$h" || bail "node $h did not start"
done
spawn "$TMP/live.log" python3 "$SRCDIR/tests/netbed/observe.py" "$NB_WORK" "$TMP/stop-observe" \
	$(for h in $NB_NODES; do printf '%s=%s ' "$h" "$TMP/$h/www"; done)
wait_for "the first commit everywhere" $((60 * TIME_SCALE)) nb_live "$(repo_head "$NB_WORK")" $NB_NODES ||
	bail "the fleet's first deploy did not go live everywhere"

# change N: a commit that rewrites a file or two, now and then adds or removes one and flips a
# mode, so releases differ in every way the tree check sees.
change() {
	local n=$1 f=$((RANDOM % ${FC_FILES:-30}))
	printf 'change %d\n' "$n" >>"$NB_WORK/d$((f % 5))/f$f.txt"
	case $((RANDOM % 4)) in
	0) printf 'new %d\n' "$n" >"$NB_WORK/d$((n % 5))/new$n.txt" ;;
	1) git_q -C "$NB_WORK" rm -q --ignore-unmatch "d$((n % 5))/new$((n - 3)).txt" ;;
	2) chmod "$([ $((n % 2)) -eq 0 ] && echo 755 || echo 644)" "$NB_WORK/d$((f % 5))/f$f.txt" ;;
	esac
	git_q -C "$NB_WORK" add -A && git_q -C "$NB_WORK" commit -q -m "change $n" && push_work "$NB_WORK"
}

# One deploy: quiet pushes before any fault, the slowest taken (at least 2 s).
DEPLOY_MS=2000
for n in 1 2 3; do
	change $((1000 + n)) || bail "commit failed"
	t=$(now_ms)
	nb_push "a-n$n" "$(repo_head "$NB_WORK")" "q-$n" >/dev/null
	wait_for "quiet push $n" $((60 * TIME_SCALE)) nb_live "$(repo_head "$NB_WORK")" $NB_NODES ||
		bail "a quiet push did not go live everywhere"
	[ $(($(now_ms) - t)) -gt "$DEPLOY_MS" ] && DEPLOY_MS=$(($(now_ms) - t))
done
DEPLOY_MS=$((DEPLOY_MS * TIME_SCALE))
echo "# one deploy, quiet: $DEPLOY_MS ms (the slowest of three, at least 2 s, times TIME_SCALE)"

# ---- the pusher (held while a convergence is checked: it says so in $TMP/held) ----
(
	n=0
	while [ ! -e "$TMP/stop-push" ]; do
		if [ -e "$TMP/hold-push" ]; then
			touch "$TMP/held"
			sleep 0.1
			continue
		fi
		rm -f "$TMP/held"
		n=$((n + 1))
		set -- $NB_NODES
		shift $((RANDOM % 6))
		if change "$n"; then
			echo "$(now_ms) push $n $1 $(nb_push "$1" "$(repo_head "$NB_WORK")" "p-$n" 2>/dev/null)" \
				>>"$TMP/pushes.log"
		fi
		sleep "$((RANDOM % 3)).$((RANDOM % 10))"
	done
) &
PUSHER=$!
track_pid "$PUSHER"

# ---- faults ----
declare -A COUNT DOWN
UNDO=()	# "due_ms kind target", in no order
violations=0
flog() { echo "$(now_ms) $1 $2 $3" >>"$TMP/faults.log"; }
up_nodes() { local h; for h in $NB_NODES; do [ -z "${DOWN[$h]:-}" ] && echo "$h"; done; }
pick() { shift $((RANDOM % $#)); echo "$1"; }

undo() {
	local kind=$1 target=$2
	case $kind in
	kill-node | kill-coord)
		if ! nb_node_start "$target"; then
			fail "node $target restarts after its SIGKILL"
			violations=$((violations + 1))
		fi ;;
	kill-etcd) nb_etcd_restart "$target" ;;
	cut-node) nb_heal_host "$target" ;;
	cut-git) nb_heal_host a-git ;;
	cut-cloud) nb_heal_cloud "$target" ;;
	esac
	flog end "$kind" "$target"
	if [ "$kind" = cut-cloud ]; then unset "DOWN[cloud]"; else unset "DOWN[$target]"; fi
}

undo_due() {
	local now=$1 keep=() e
	for e in "${UNDO[@]}"; do
		set -- $e
		if [ "$1" -le "$now" ]; then undo "$2" "$3"; else keep+=("$e"); fi
	done
	UNDO=("${keep[@]}")
}

inject() {
	local kind target etcd_down=0 h
	for h in $NB_ETCD_HOSTS; do [ -n "${DOWN[$h]:-}" ] && etcd_down=$((etcd_down + 1)); done
	kind=$(pick kill-node kill-coord kill-etcd cut-node cut-cloud cut-git)
	case $kind in
	kill-node | cut-node)
		target=$(pick $(up_nodes)) || return 1 ;;
	kill-coord)
		target=$(nb_nctl "$(pick $(up_nodes))" status --fleet --json 2>/dev/null |
			jq -r '.coordinator // empty')
		[ -n "$target" ] && [ -z "${DOWN[$target]:-}" ] || return 1 ;;
	kill-etcd)
		[ "$etcd_down" -lt 2 ] || return 1
		target=$(pick $(for h in $NB_ETCD_HOSTS; do [ -z "${DOWN[$h]:-}" ] && echo "$h"; done)) ;;
	cut-cloud)
		[ -z "${DOWN[cloud]:-}" ] || return 1
		target=$(pick a b) ;;
	cut-git)
		target=a-git
		[ -z "${DOWN[$target]:-}" ] || return 1 ;;
	esac
	[ -n "$target" ] || return 1
	case $kind in
	kill-node | kill-coord) nb_node_kill "$target" ;;
	kill-etcd) nb_etcd_kill "$target" ;;
	cut-node | cut-git) nb_cut_host "$target" ;;
	cut-cloud) nb_cut_cloud "$target" ;;
	esac
	flog start "$kind" "$target"
	if [ "$kind" = cut-cloud ]; then DOWN[cloud]=1; else DOWN[$target]=1; fi
	UNDO+=("$(($(now_ms) + 1000 + RANDOM % 5000)) $kind $target")
	COUNT[$kind]=$((${COUNT[$kind]:-0} + 1))
	echo "# fault $1: $kind $target"
}

# converge WHEN: with every fault undone and the pusher held, the newest tip on every node within
# 2 x lease + one deploy. The push is sent to a random node and, like a sender that honours
# 503 + Retry-After, again until it is taken: a node just reconnected may not have the store.
# libgit2 1.5 has no server timeout: a fetch whose connection a partition left half-open ends
# only at fetch_timeout, after which the node deploys again. Until deployd notices a stalled
# fetch sooner, that is part of the bound.
FETCH_MS=$((${FC_FETCH_TIMEOUT_S:-8} * 1000))
BOUND=$((2 * LEASE_MS + DEPLOY_MS + FETCH_MS))
converge() {
	local t0 target took tip
	touch "$TMP/hold-push"
	[ -e "$TMP/stop-push" ] || wait_for "the pusher to hold" 30 test -e "$TMP/held"
	CONVERGED=$((CONVERGED + 1))
	change "$((100000 + CONVERGED))" || bail "commit failed"
	tip=$(repo_head "$NB_WORK")
	t0=$(now_ms)
	target=$(pick $NB_NODES)
	while [ "$(nb_push "$target" "$tip" "converge-$CONVERGED" 2>/dev/null)" != 202 ] &&
		[ $(($(now_ms) - t0)) -lt "$BOUND" ]; do
		sleep 0.2
	done
	echo "# after $1: the push was taken by $target $(($(now_ms) - t0)) ms later"
	if wait_for "the tip everywhere" $(((BOUND + 999) / 1000 + 30)) nb_live "$tip" $NB_NODES; then
		took=$(($(now_ms) - t0))
		if [ "$took" -le "$BOUND" ]; then
			ok "after $1 every node reached the newest tip in $took ms (bound $BOUND ms)"
		else
			fail "after $1 every node reached the newest tip within $BOUND ms" "took $took ms"
			violations=$((violations + 1))
		fi
	else
		fail "after $1 every node reached the newest tip" \
			"$(for h in $NB_NODES; do echo "$h: $(current_commit "$TMP/$h/www")"; done)"
		violations=$((violations + 1))
	fi
	rm -f "$TMP/hold-push"
}

# Whatever is still cut or down comes back, in the order it was due.
heal_all() {
	while [ "${#UNDO[@]}" -gt 0 ]; do
		undo_due "$(( $(now_ms) + 1000000 ))"
	done
	flog end heal all
}

ROUND=${FC_ROUND:-25}
CONVERGED=0
faults=0
while [ "$faults" -lt "$FAULTS" ]; do
	if [ "$LIMIT" -gt 0 ] && [ $((SECONDS - T0)) -ge "$LIMIT" ]; then
		echo "# time limit: $faults faults injected"
		break
	fi
	sleep "0.$((3 + RANDOM % 7))"
	undo_due "$(now_ms)"
	# At most three faults at once, so that the fleet also gets stretches to work in.
	[ "${#UNDO[@]}" -ge 3 ] && continue
	inject $((faults + 1)) && faults=$((faults + 1))
	# Every ROUND faults the fleet must also make progress: all healed, a push goes everywhere.
	if [ $((faults % ROUND)) -eq 0 ] && [ "$faults" -lt "$FAULTS" ]; then
		heal_all
		converge "fault $faults"
	fi
done
heal_all
touch "$TMP/stop-push"
wait "$PUSHER" 2>/dev/null
for h in $NB_NODES; do
	pid=$(cat "$TMP/$h/pid" 2>/dev/null)
	check "node $h is running after the campaign" pid_alive "${pid:-0}" ||
		violations=$((violations + 1))
done

converge "the last heal"
sleep 0.5
touch "$TMP/stop-observe"

# ---- what the logs say ----
for key in cutover target; do
	timeout 10 env ETCDCTL_API=3 ip netns exec "$NB-a-git" etcdctl --endpoints "$NB_ETCD_ENDPOINTS" \
		watch --rev 1 "/deployd/sites/www/$key" 2>/dev/null | grep '^{' >"$TMP/${key}s.jsonl"
done
timeout 10 env ETCDCTL_API=3 ip netns exec "$NB-a-git" etcdctl --endpoints "$NB_ETCD_ENDPOINTS" \
	watch --rev 1 --prefix "/deployd/sites/www/run_once/" 2>/dev/null |
	awk '/^\/deployd\/sites\/www\/run_once\// { n = split($0, p, "/"); c = p[n]; next }
		/^\{/ && c != "" { print c, $0 }' >"$TMP/run_onces.log"
out=$(python3 "$SRCDIR/tests/netbed/campaign-check.py" "$TMP" "$LEASE_MS" 2>&1)
n=$(printf '%s\n' "$out" | grep -c '^violation:')
if [ "$n" -eq 0 ] && printf '%s' "$out" | grep -q '^checked'; then
	ok "the logs show no violation: $(printf '%s\n' "$out" | tail -n 1)"
else
	fail "the logs show no violation" "$out"
	violations=$((violations + n))
fi
pushes=$(wc -l <"$TMP/pushes.log" 2>/dev/null || echo 0)
for h in $NB_NODES; do
	pid=$(cat "$TMP/$h/pid" 2>/dev/null) || continue
	stop_pid "$pid" "$DAEMON_STOP_TIMEOUT"
	wait "$pid" 2>/dev/null
	cat "$TMP/$h/daemon.log" >>"$TMP/daemon.log"
done
check "the bed goes down and leaves nothing" netbed_down

kinds=$(for k in "${!COUNT[@]}"; do echo "$k=${COUNT[$k]}"; done | sort | tr '\n' ' ')
TAP_LAST_LINE="faults=$faults violations=$violations pushes=$pushes converged=$CONVERGED time=$((SECONDS - T0))s seed=$SEED by kind: $kinds"
done_testing
