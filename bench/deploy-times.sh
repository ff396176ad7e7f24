#!/bin/bash
# bench/deploy-times.sh: median time of a first deploy and of a one-commit update of an N-file repo.
#
# usage: bench/deploy-times.sh [DEPLOYD_BIN] [FILES] [RUNS] [WORKDIR]
# Each run starts a fresh daemon (polling off) and times `deployd deploy SITE --wait`, which
# includes the fetch, the write, syncfs and the swap. Prints each run and the medians.
set -euo pipefail
BIN=${1:-$(dirname "$0")/../build/deployd}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
FILES=${2:-2000}
RUNS=${3:-5}
WORK=${4:-$(mktemp -d /tmp/deployd-bench.XXXXXX)}
mkdir -p "$WORK"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

git init -q --bare -b main "$WORK/src.git"
git clone -q "$WORK/src.git" "$WORK/work" 2>/dev/null
git -C "$WORK/work" config user.email bench@localhost
git -C "$WORK/work" config user.name bench
for ((i = 0; i < FILES; i++)); do
	d=$WORK/work/dir$((i % 50))/sub$((i % 7))
	mkdir -p "$d"
	head -c $((2000 + (i * 37) % 6000)) /dev/urandom | base64 > "$d/page$i.html"
done
git -C "$WORK/work" add -A
git -C "$WORK/work" commit -qm "bench site"
git -C "$WORK/work" push -q origin main

first=()
update=()
for ((r = 1; r <= RUNS; r++)); do
	rm -rf "$WORK/site" "$WORK/state"
	cat > "$WORK/deployd.yaml" <<YAML
listen: 127.0.0.1:$((20000 + RANDOM % 30000))
control_socket: $WORK/ctl.sock
user: $(id -un)
state_dir: $WORK/state
sites:
  - name: bench
    repo: $WORK/src.git
    branch: main
    path: $WORK/site
    poll: 0
YAML
	# The daemon deploys at start-up; measure that first deploy by waiting for current.
	t0=$(now)
	"$BIN" serve -c "$WORK/deployd.yaml" 2>"$WORK/daemon.log" &
	PID=$!
	until [ -L "$WORK/site/current" ]; do sleep 0.005; done
	t1=$(now)
	first+=("$(echo "$t1 - $t0" | bc)")
	until "$BIN" status -s "$WORK/ctl.sock" >/dev/null 2>&1; do sleep 0.01; done
	echo "change $r" >> "$WORK/work/dir1/sub1/page1.html"
	git -C "$WORK/work" commit -qam "change $r"
	git -C "$WORK/work" push -q origin main
	t0=$(now)
	"$BIN" deploy bench --wait -s "$WORK/ctl.sock" >/dev/null
	t1=$(now)
	update+=("$(echo "$t1 - $t0" | bc)")
	kill "$PID"; wait "$PID" || true; PID=
	printf 'run %d: first deploy %.3f s, one-commit update %.3f s\n' "$r" "${first[-1]}" "${update[-1]}"
done
printf 'files=%d runs=%d dir=%s\n' "$FILES" "$RUNS" "$WORK"
printf 'median first deploy: %.3f s\n' "$(printf '%s\n' "${first[@]}" | median)"
printf 'median one-commit update: %.3f s\n' "$(printf '%s\n' "${update[@]}" | median)"
