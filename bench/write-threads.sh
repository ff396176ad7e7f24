#!/bin/bash
# bench/write-threads.sh: a release written by the threads of deploy/fill.c against the walk alone (DEPLOYD_WRITE_THREADS=1).
#
# usage: bench/write-threads.sh DEPLOYD_BIN SRC_GIT [RUNS] [WORKDIR]
# SRC_GIT is a bare repository with a branch main (bench/run --keep leaves a 20,000-file one in
# DIR/site-20000/src.git). Two daemons, one per setting, each with its own state and site on
# WORKDIR's disk (default: a new directory under /dev/shm), deploy from a copy of SRC_GIT.
# Each of RUNS rounds (default 5) first deploys a fresh site with both (every file written),
# then pushes a one-file change and deploys it with both (every other file linked), the order
# alternating between rounds. Prints the engine's own write times ("wrote .tmp-... in N ms",
# which excludes fetch and syncfs) and the medians of the per-round ratios.
set -euo pipefail
BIN=$(realpath -e "${1:?usage: bench/write-threads.sh DEPLOYD_BIN SRC_GIT [RUNS] [WORKDIR]}")
SRC=$(realpath -e "${2:?usage: bench/write-threads.sh DEPLOYD_BIN SRC_GIT [RUNS] [WORKDIR]}")
RUNS=${3:-5}
WORK=${4:-$(mktemp -d /dev/shm/deployd-threads.XXXXXX)}
mkdir -p "$WORK"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do [ "$p" -gt 0 ] && kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

git clone -q --bare "$SRC" "$WORK/src.git"
git clone -q "$WORK/src.git" "$WORK/work"
MARK=$(git -C "$WORK/work" ls-files | sed -n 1p)

# daemon NAME THREADS: its config, started; the site is "www"
daemon() {
	mkdir -p "$WORK/$1"
	cat >"$WORK/$1/d.yaml" <<EOF
listen: 127.0.0.1:$((20000 + RANDOM % 20000))
control_socket: $WORK/$1/d.sock
user: root
state_dir: $WORK/$1/state
log_level: debug
sites:
  - name: www
    repo: $WORK/src.git
    branch: main
    path: $WORK/$1/www
    poll: 0
    keep: 2
EOF
	DEPLOYD_WRITE_THREADS=$2 "$BIN" serve -c "$WORK/$1/d.yaml" >>"$WORK/$1/log" 2>&1 &
	PIDS+=($!)
}
ctl() { "$BIN" -s "$WORK/$1/d.sock" "${@:2}"; }
# deploy NAME: deploy --wait, then the engine's write time of that deploy (ms)
deploy() {
	local before
	before=$(grep -c 'wrote \.tmp-' "$WORK/$1/log" || true)
	ctl "$1" deploy www --wait >/dev/null
	grep 'wrote \.tmp-' "$WORK/$1/log" | sed -n "$((before + 1))p" | sed -n 's/.* in \([0-9]*\) ms.*/\1/p'
}
# fresh NAME INDEX THREADS: restart NAME's daemon with no releases, state or cache, so that its
# start-up deploy writes every file; sets MS to that write's time. Not in a subshell: PIDS.
fresh() {
	local n
	if [ "${PIDS[$2]}" -gt 0 ]; then
		kill "${PIDS[$2]}" 2>/dev/null || true
		wait "${PIDS[$2]}" 2>/dev/null || true
	fi
	rm -rf "$WORK/$1/state" "$WORK/$1/www" "$WORK/$1/d.sock"
	n=$(grep -c 'wrote \.tmp-' "$WORK/$1/log" || true)
	daemon "$1" "$3"
	PIDS[$2]=${PIDS[-1]}
	unset 'PIDS[-1]'
	for _ in $(seq 1200); do
		[ "$(grep -c 'wrote \.tmp-' "$WORK/$1/log" || true)" -gt "$n" ] && [ -e "$WORK/$1/www/current" ] && break
		sleep 0.05
	done
	MS=$(grep 'wrote \.tmp-' "$WORK/$1/log" | sed -n "$((n + 1))p" | sed -n 's/.* in \([0-9]*\) ms.*/\1/p')
	sleep 0.5	# let it settle (state, prune) before the next deploy
}
mkdir -p "$WORK/pool" "$WORK/one"
: >"$WORK/pool/log"
: >"$WORK/one/log"
PIDS=(0 0)
declare -a fp=() f1=() ip=() i1=()
for ((r = 1; r <= RUNS; r++)); do
	if ((r % 2)); then
		fresh pool 0 0; fp+=("$MS"); fresh one 1 1; f1+=("$MS")
	else
		fresh one 1 1; f1+=("$MS"); fresh pool 0 0; fp+=("$MS")
	fi
	echo "x $r $RANDOM" >>"$WORK/work/$MARK"
	git -C "$WORK/work" -c user.name=b -c user.email=b@localhost commit -qam "round $r"
	git -C "$WORK/work" push -q origin HEAD:main
	if ((r % 2)); then
		ip+=("$(deploy pool)"); i1+=("$(deploy one)")
	else
		i1+=("$(deploy one)"); ip+=("$(deploy pool)")
	fi
	echo "round $r: first deploy ${fp[-1]} ms (threads) vs ${f1[-1]} ms (one); one-file change ${ip[-1]} ms vs ${i1[-1]} ms"
done
ratio() { local -n a=$1 b=$2; for ((k = 0; k < ${#a[@]}; k++)); do awk -v x="${a[$k]}" -v y="${b[$k]}" 'BEGIN {printf "%.3f\n", x / y}'; done | median; }
echo "medians: first deploy $(printf '%s\n' "${fp[@]}" | median) ms vs $(printf '%s\n' "${f1[@]}" | median) ms (ratio $(ratio fp f1)); one-file change $(printf '%s\n' "${ip[@]}" | median) ms vs $(printf '%s\n' "${i1[@]}" | median) ms (ratio $(ratio ip i1)); $(nproc) CPUs, $WORK"
