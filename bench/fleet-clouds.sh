#!/bin/bash
# bench/fleet-clouds.sh: six deployd fleet nodes in two clouds 20 ms apart against real Capistrano on the same six hosts and one deployd on its own: cutover skew, push-to-live, rollback, a cloud rejoining.
#
# usage: bench/fleet-clouds.sh [--quick] [DEPLOYD_BIN]      (root: it builds tests/lib-netbed.sh)
#
# The bed: cloud A (git daemon, two etcd members, nodes a-n1..3 and a-solo), cloud B (one etcd
# member, nodes b-n1..3), every cross-cloud TCP connection delayed NB_DELAY_MS (20) each way.
# Each of the six fleet hosts also runs an sshd, and Capistrano 3.17 (Debian's) deploys the
# same repository to them from cloud A, with its defaults (in parallel on all hosts), into a
# deploy_to of their own. a-solo is one deployd without fleet:. One sampler outside reads all
# thirteen `current` links every millisecond and at once when their folders change (inotify;
# tests/netbed/sampler.py); every time below is from its samples: a swap's instant is when the
# sampler first read the link's new target.
#
# Rounds alternate the contenders' order. Per round, a one-file change of the generated site:
#   deployd fleet  signed webhook to a-n1 -> the last of the six nodes live; skew = last - first
#   deployd alone  signed webhook to a-solo -> live
#   Capistrano     `cap netbed deploy` started -> the last of the six hosts live; its skew too
# Then: more fleet cutovers for the skew alone (a one-line change each), again with each node's
# clock offset by -2..+2 ms (libfaketime); rollbacks (`deployd rollback` on one node, `cap
# netbed deploy:rollback`); and cloud B cut off while a commit goes live in A, then healed.
#
# Prints "ROW|measure|deployd|baseline|ratio|target|result" and "NOTE|text" lines on stdout
# (bench/run adds them to its table) and its progress on stderr. Medians over the rounds.
set -uo pipefail
QUICK=0
BIN=
for a in "$@"; do
	case $a in
	--quick) QUICK=1 ;;
	-h|--help) sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) BIN=$a ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$SRC/build/deployd}
[ -x "$BIN" ] || { echo "bench/fleet-clouds.sh: no deployd at $BIN" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench/fleet-clouds.sh: needs root (network namespaces)" >&2; exit 2; }
export DEPLOYD_BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export TEST_NAME=fleet-clouds
BUILDDIR=$(dirname "$DEPLOYD_BIN")
. "$SRC/tests/lib.sh" >/dev/null
. "$SRC/tests/lib-servers.sh"
. "$SRC/tests/lib-netbed.sh"

if [ "$QUICK" -eq 1 ]; then
	FILES=300 BYTES=1500000 ROUNDS=3 SKEW_ROUNDS=5
else
	FILES=20000 BYTES=100000000 ROUNDS=5 SKEW_ROUNDS=20
fi
FILES=${BENCH_FILES:-$FILES} ROUNDS=${BENCH_ROUNDS:-$ROUNDS} SKEW_ROUNDS=${BENCH_SKEW_ROUNDS:-$SKEW_ROUNDS}
NB=nbb$$
NB_PROXY=$BUILDDIR/tests/netbed/delay-proxy
NB_HOSTS="$NB_HOSTS a-solo:1:30"
NB_LEASE_TTL=3s
NB_POLL=1h	# only the timed webhooks deploy: a poll would start a round before its clock
FLEET="a-n1 a-n2 a-n3 b-n1 b-n2 b-n3"
LIBFAKETIME=
for f in /usr/lib/*/faketime/libfaketime.so.1; do
	[ -e "$f" ] && LIBFAKETIME=$f
done
# A sanitizer's runtime must come first: no preloaded library beside it.
[[ $(ldd "$DEPLOYD_BIN" 2>/dev/null) == *libasan* ]] && LIBFAKETIME=
at_exit netbed_down

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
row() { printf 'ROW|%s|%s|%s|%s|%s|%s\n' "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# p99 of a list (one a line): the smallest value at or above 99 % of them
p99() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else {i = int(NR * 0.99); if (i < NR * 0.99) i++; print a[i]}}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo MISS; fi; }
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# swaps PREFIX PATTERN SINCE_US: "count first last" (µs) of the links named PREFIX* whose
# target, first seen at or after SINCE_US, matches PATTERN.
swaps() {
	awk -v p="$1" -v pat="$2" -v s="$3" '$1 >= s && index($2, p) == 1 && $3 ~ pat && !($2 in t) {
		t[$2] = $1; n++; if (!min || $1 < min) min = $1; if ($1 > max) max = $1 }
		END {printf "%d %.0f %.0f\n", n, min, max}' "$TMP/samples"
}
# wait_swaps N PREFIX PATTERN SINCE_US SECS: until N links have swapped; prints "first last"
wait_swaps() {
	local end=$((SECONDS + $5)) n f l
	while [ "$SECONDS" -le "$end" ]; do
		read -r n f l < <(swaps "$2" "$3" "$4")
		[ "$n" -ge "$1" ] && { echo "$f $l"; return 0; }
		sleep 0.01
	done
	return 1
}
ms_of() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) / 1000}'; }

# next_commit [FILE]: a one-line change of the site's marker page (or FILE), pushed; sets H.
next_commit() {
	REV=$((REV + 1))
	if [ -n "${1:-}" ]; then
		printf 'skew %s\n' "$REV" >"$NB_WORK/$1"
		git_q -C "$NB_WORK" add -- "$1"
	else
		sed -i "1s/.*/<!-- rev $REV -->/" "$NB_WORK/$MARKER"
	fi
	git_q -C "$NB_WORK" commit -qam "rev $REV" && push_work "$NB_WORK" || die "commit $REV"
	H=$(repo_head "$NB_WORK")
}

solo_start() {
	mkdir -p "$TMP/a-solo"
	CFG_LISTEN=$(nb_addr a-solo):8080 CFG_SOCKET=$TMP/a-solo/deployd.sock \
		CFG_STATE=$TMP/a-solo/state CFG_LOG_LEVEL=info write_config "$TMP/a-solo/deployd.yaml" \
		"$(site_yaml www "$NB_REPO_URL" "$TMP/a-solo/www" poll=1h secret_file="$TMP/nb.secret" keep=10)"
	spawn "$TMP/a-solo/daemon.log" ip netns exec "$NB-a-solo" "$DEPLOYD_BIN" serve \
		-c "$TMP/a-solo/deployd.yaml"
	wait_answering "$LAST_PID" "a-solo" "$TMP/a-solo/daemon.log" \
		"$DEPLOYD_BIN" status -c "$TMP/a-solo/deployd.yaml"
}

# fleet_round ID: a signed push to a-n1; appends to FLEET_LIVE (ms) and SKEWS (ms)
fleet_round() {
	local t0 f l
	t0=$(now_us)
	[ "$(nb_push a-n1 "$H" "$1")" = 202 ] || die "fleet webhook $1 not accepted"
	read -r f l < <(wait_swaps 6 d- "-${H:0:12}\$" "$t0" 300) || die "fleet: $H not live on six nodes"
	LAST_LIVE=$(ms_of "$t0" "$l") LAST_SKEW=$(ms_of "$f" "$l")
}
solo_round() {
	local t0 f l
	t0=$(now_us)
	[ "$(nb_push a-solo "$H" "$1")" = 202 ] || die "solo webhook $1 not accepted"
	read -r f l < <(wait_swaps 1 solo "-${H:0:12}\$" "$t0" 300) || die "solo: $H not live"
	LAST_LIVE=$(ms_of "$t0" "$l")
}
# cap_round [TASK]: `cap netbed TASK` (deploy); LAST_LIVE and LAST_SKEW from its swaps. A run
# of Capistrano that fails is shown and tried once more (the anchor's trouble, not deployd's:
# one failed in CI once, cause unknown); CAP_RETRIES counts them for the notes.
CAP_RETRIES=0
cap_round() {
	local t0 f l mark
	t0=$(now_us)
	mark=$( (wc -l <"$TMP/cap.log") 2>/dev/null || echo 0)
	if ! nb_cap netbed "${1:-deploy}" >>"$TMP/cap.log" 2>&1; then
		say "cap ${1:-deploy} failed; its output:"
		tail -n +"$((mark + 1))" "$TMP/cap.log" | tail -n 30 >&2
		CAP_RETRIES=$((CAP_RETRIES + 1))
		t0=$(now_us)
		nb_cap netbed "${1:-deploy}" >>"$TMP/cap.log" 2>&1 ||
			die "cap ${1:-deploy} failed twice (see $TMP/cap.log)"
	fi
	read -r f l < <(wait_swaps 6 c- . "$t0" 60) || die "cap: not every host swapped"
	LAST_LIVE=$(ms_of "$t0" "$l") LAST_SKEW=$(ms_of "$f" "$l")
}

# ---- the bed, the site, the contenders ----
need ip:iproute2 nft:nftables etcd:etcd-server etcdctl:etcd-client jq:jq cap:capistrano \
	/usr/sbin/sshd:openssh-server python3:python3 || die "missing tools (./quickstart bench installs them)"
say "bed: two clouds, ${NB_DELAY_MS} ms one way between them"
netbed_up || die "the test bed did not come up"
nb_git_start || die "git daemon"
MARKER=$("$SRC/bench/gen-site" "$NB_WORK/site" "$FILES" "$BYTES") || die "gen-site"
MARKER=site/$MARKER
git_q -C "$NB_WORK" add -A && git_q -C "$NB_WORK" commit -qm "generated site" &&
	push_work "$NB_WORK" || die "site commit"
REV=0
say "site: $FILES files; etcd in both clouds; six fleet nodes, one alone, six sshds"
nb_etcd_start || die "etcd"
for h in $FLEET; do nb_node_start "$h" || die "node $h"; done
solo_start || die "a-solo"
nb_sshd_start $FLEET || die "sshd"
nb_cap_setup $FLEET || die "capistrano project"
args=()
for h in $FLEET; do
	args+=("d-$h=$TMP/$h/www/current" "c-$h=$TMP/$h/cap/current")
done
args+=("solo=$TMP/a-solo/www/current")
# At a real-time priority where it may have one: six nodes wake at a cutover's instant on this
# machine's two CPUs, and a sampler waiting behind them would stretch the skew it measures.
RT=()
chrt -f 10 true 2>/dev/null && RT=(chrt -f 10)
spawn "$TMP/samples" "${RT[@]}" python3 "$SRC/tests/netbed/sampler.py" "$TMP/sampler.stop" "${args[@]}"
H=$(repo_head "$NB_WORK")
say "first deploys (fleet, alone, Capistrano)"
t0=$(now_us)
wait_swaps 6 d- "-${H:0:12}\$" 0 900 >/dev/null || die "the fleet's first deploy"
wait_swaps 1 solo "-${H:0:12}\$" 0 900 >/dev/null || die "a-solo's first deploy"
cap_round
say "  Capistrano's first deploy: ${LAST_LIVE} ms"

# ---- push-to-live, order rotated ----
FL=() SL=() CL=() FS=() CS=()
for ((r = 1; r <= ROUNDS; r++)); do
	next_commit
	for i in 0 1 2; do
		case $(((i + r) % 3)) in
		0) fleet_round "push-$r-$$"; FL+=("$LAST_LIVE"); FS+=("$LAST_SKEW") ;;
		1) solo_round "solo-$r-$$"; SL+=("$LAST_LIVE") ;;
		2) cap_round; CL+=("$LAST_LIVE"); CS+=("$LAST_SKEW") ;;
		esac
	done
	say "  round $r: fleet ${FL[-1]} ms (skew ${FS[-1]}), alone ${SL[-1]} ms, Capistrano ${CL[-1]} ms (skew ${CS[-1]})"
done

# ---- skew alone: more cutovers, then with the clocks apart ----
skew_rounds() {
	local r
	for ((r = 1; r <= SKEW_ROUNDS; r++)); do
		next_commit "skew.txt"
		fleet_round "skew-$1-$r-$$"
		printf '%s\n' "$LAST_SKEW" >>"$TMP/skew-$1"
	done
}
printf '%s\n' "${FS[@]}" >"$TMP/skew-plain"
skew_rounds plain
if [ -n "$LIBFAKETIME" ]; then
	say "restarting the six nodes with clocks -2, -1, 0, +1, +2, -2 ms off"
	offs=(-0.002 -0.001 +0.000 +0.001 +0.002 -0.002)
	i=0
	for h in $FLEET; do
		nb_node_kill "$h"
		# FORCE_MONOTONIC_FIX=0: without it libfaketime 0.9.10 guesses from glibc 2.36 that
		# it must rewrite a monotonic condition variable's deadline, puts it in the past, and
		# each daemon spins a thread on its timed waits (measured: a core's eighth per
		# daemon, and cutovers up to 30 ms late on the starved CPUs).
		NB_NODE_ENV=(LD_PRELOAD="$LIBFAKETIME" FAKETIME="${offs[i]}" FAKETIME_DONT_FAKE_MONOTONIC=1
			FAKETIME_NO_CACHE=1 FAKETIME_FORCE_MONOTONIC_FIX=0)
		nb_node_start "$h" || die "node $h with an offset clock"
		i=$((i + 1))
	done
	NB_NODE_ENV=()
	skew_rounds offset
fi

# ---- rollbacks ----
FR=() CR=()
for ((r = 1; r <= ROUNDS; r++)); do
	t0=$(now_us)
	nb_nctl a-n1 rollback www >>"$TMP/rollback.log" 2>&1 || die "deployd rollback"
	read -r f l < <(wait_swaps 6 d- . "$t0" 60) || die "fleet rollback not everywhere"
	FR+=("$(ms_of "$t0" "$l")")
	nb_nctl a-n1 resume www >>"$TMP/rollback.log" 2>&1
	cap_round deploy:rollback
	CR+=("$LAST_LIVE")
	say "  rollback $r: fleet ${FR[-1]} ms, Capistrano ${CR[-1]} ms"
	# Forward again (not timed), so the next round rolls back from the tip.
	next_commit
	fleet_round "fwd-$r-$$"
	cap_round
done

# ---- cloud B cut off, then healed ----
nb_cut_cloud b || die "cut cloud b"
next_commit
# fleet_round_a: a push to cloud A while B is cut off, until A's three nodes have it. When
# they do not within 120 s, the store, the nodes' views and their logs' ends go to stderr
# (and to BENCH_DIAG, a file, when set), A_STALL is set, and the rejoin row is a MISS.
A_STALL=0
fleet_round_a() {
	local t0 h
	t0=$(now_us)
	[ "$(nb_push a-n1 "$H" "cut-$$")" = 202 ] || die "webhook while B is cut"
	wait_swaps 3 d-a- "-${H:0:12}\$" "$t0" 120 >/dev/null && return 0
	A_STALL=1
	say "cloud A did not go on without B in 120 s; what it looked like:"
	{
		nb_store_dump
		for h in a-n1 a-n2 a-n3; do
			echo "== $h: status --fleet, then the end of its log"
			nb_nctl "$h" status --fleet
			tail -n 12 "$TMP/$h/daemon.log"
		done
	} >"$TMP/diag" 2>&1
	sed 's/^/  | /' "$TMP/diag" >&2
	[ -n "${BENCH_DIAG:-}" ] && cp "$TMP/diag" "$BENCH_DIAG"
	return 1
}
fleet_round_a
t_heal=$(now_us)
nb_heal_cloud b || die "heal cloud b"
# After a stall the push may never have become a target: ring again, as a sender would.
[ "$A_STALL" -eq 1 ] && nb_push a-n1 "$H" "cut-again-$$" >/dev/null
read -r f l < <(wait_swaps 3 d-b- "-${H:0:12}\$" "$t_heal" 300) || die "cloud B did not catch up"
REJOIN=$(ms_of "$t_heal" "$l")
say "cloud B caught up ${REJOIN} ms after the heal"
: >"$TMP/sampler.stop"

# ---- rows ----
mf=$(printf '%s\n' "${FL[@]}" | median)
ms=$(printf '%s\n' "${SL[@]}" | median)
mc=$(printf '%s\n' "${CL[@]}" | median)
mcs=$(printf '%s\n' "${CS[@]}" | median)
sp=$(p99 <"$TMP/skew-plain")
n_plain=$(wc -l <"$TMP/skew-plain")
row "Fleet cutover skew, 6 nodes, p99 (ms)" "$sp" "$mcs (Capistrano, median)" "$(ratio "$sp" "$mcs")" \
	"<= 5 ms, <= 0.1x" "$(verdict "$sp <= 5 && $sp <= 0.1 * $mcs")"
if [ -s "$TMP/skew-offset" ]; then
	so=$(p99 <"$TMP/skew-offset")
	row "  same, clocks -2..+2 ms apart (libfaketime)" "$so" "$mcs (Capistrano, median)" \
		"$(ratio "$so" "$mcs")" "<= 5 ms, <= 0.1x" "$(verdict "$so <= 5 && $so <= 0.1 * $mcs")"
else
	row "  same, clocks -2..+2 ms apart (libfaketime)" "n/a (no libfaketime)" "-" "-" "<= 5 ms" MISS
fi
row "Fleet push-to-live, one-file change (ms)" "$mf" "$mc (cap deploy)" "$(ratio "$mf" "$mc")" \
	"<= 0.2x" "$(verdict "$mf <= 0.2 * $mc")"
row "  same, against one deployd alone (ms)" "$mf" "$ms (one node)" "$(ratio "$mf" "$ms")" \
	"<= 1.3x" "$(verdict "$mf <= 1.3 * $ms")"
mfr=$(printf '%s\n' "${FR[@]}" | median)
mcr=$(printf '%s\n' "${CR[@]}" | median)
row "Fleet rollback (ms)" "$mfr" "$mcr (cap deploy:rollback)" "$(ratio "$mfr" "$mcr")" "<= 0.1x" \
	"$(verdict "$mfr <= 0.1 * $mcr")"
bound=$(awk -v t="${NB_LEASE_TTL%s}" -v d="$ms" 'BEGIN {printf "%.0f", 2 * t * 1000 + d}')
row "A cut-off cloud rejoining (ms)" "$REJOIN" "-" "-" "<= 2 x lease_ttl + one deploy ($bound)" \
	"$(verdict "$A_STALL == 0 && $REJOIN <= $bound")"
[ "$A_STALL" -eq 1 ] && echo "NOTE|fleet: MISS: while cloud B was cut off, cloud A did not cut over within 120 s (the store and the nodes' views are on stderr); the rejoin is timed from the heal, with the push rung again."
echo "NOTE|fleet: bench/fleet-clouds.sh$([ "$QUICK" -eq 1 ] && echo ' --quick'): $FILES files; six fleet nodes (three per cloud, $NB_DELAY_MS ms one way between clouds, etcd 2 + 1 members, lease_ttl $NB_LEASE_TTL) against Capistrano $(cap --version 2>/dev/null | awk '{print $3; exit}') on the same six hosts (sshd each, deployed from cloud A, defaults: parallel) and one deployd alone in cloud A; times from an outside sampler reading every current each ms and on each change of its folder (inotify)${RT:+, at real-time priority}; $ROUNDS push rounds (order rotated), $n_plain plain skew cutovers, $(wc -l <"$TMP/skew-offset" 2>/dev/null || echo 0) with clocks offset, $ROUNDS rollbacks each; Capistrano runs retried after a failure: $CAP_RETRIES."
echo "NOTE|fleet rounds (ms): fleet ${FL[*]}; alone ${SL[*]}; Capistrano ${CL[*]}; Capistrano skew ${CS[*]}; fleet skew $(tr '\n' ' ' <"$TMP/skew-plain")| offset $(tr '\n' ' ' <"$TMP/skew-offset" 2>/dev/null); rollbacks fleet ${FR[*]}, Capistrano ${CR[*]}"
ok "fleet-clouds" >/dev/null
done_testing >/dev/null
