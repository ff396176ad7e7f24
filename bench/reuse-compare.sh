#!/bin/bash
# bench/reuse-compare.sh: a one-file change deployed by two deployd binaries, side by side.
#
# usage: bench/reuse-compare.sh OLD_BIN NEW_BIN [FILES] [RUNS] [WORKDIR]
# Generates a FILES-file site (default 20000 files, about 95 MB of base64 text), starts one
# daemon per binary (polling off, both on WORKDIR's disk), lets each deploy it at start-up,
# then RUNS times (default 5): commits a one-line change to one file, and times
# `deployd deploy SITE --wait` for the old binary's site and for the new binary's sites with
# reuse: auto and reuse: copy, in an order that alternates between runs. Prints each run and
# the medians. Meant for comparing a build without incremental releases (OLD_BIN) with one
# that has them (NEW_BIN).
set -euo pipefail
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
OLD=$(abs "${1:?usage: bench/reuse-compare.sh OLD_BIN NEW_BIN [FILES] [RUNS] [WORKDIR]}")
NEW=$(abs "${2:?usage: bench/reuse-compare.sh OLD_BIN NEW_BIN [FILES] [RUNS] [WORKDIR]}")
FILES=${3:-20000}
RUNS=${4:-5}
WORK=${5:-$(mktemp -d /tmp/deployd-reuse.XXXXXX)}
mkdir -p "$WORK"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

git init -q --bare -b main "$WORK/src.git"
git clone -q "$WORK/src.git" "$WORK/work" 2>/dev/null
git -C "$WORK/work" config user.email bench@localhost
git -C "$WORK/work" config user.name bench
# One process writes every file: 1,000 to 6,000 random bytes each, base64 (4.7 KB average).
python3 - "$WORK/work" "$FILES" <<'EOF'
import base64, os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "dir%d" % (i % 100), "sub%d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "page%d.html" % i), "wb") as f:
        f.write(base64.encodebytes(os.urandom(1000 + (i * 37) % 5000)))
EOF
git -C "$WORK/work" add -A
git -C "$WORK/work" commit -qm "bench site"
git -C "$WORK/work" push -q origin main
echo "site: $FILES files, $(du -sh --exclude=.git "$WORK/work" | cut -f1) in $WORK/work"

# daemon NAME BIN SITE:REUSE...: a config and a running daemon with those sites.
daemon() {
	local name=$1 bin=$2 s
	shift 2
	{
		echo "listen: 127.0.0.1:$((20000 + RANDOM % 30000))"
		echo "control_socket: $WORK/$name.sock"
		echo "user: $(id -un)"
		echo "state_dir: $WORK/state-$name"
		echo "sites:"
		for s in "$@"; do
			printf '  - name: %s\n    repo: %s\n    branch: main\n    path: %s\n    poll: 0\n    reuse: %s\n' \
				"${s%%:*}" "$WORK/src.git" "$WORK/site-${s%%:*}" "${s#*:}"
		done
	} >"$WORK/$name.yaml"
	"$bin" serve -c "$WORK/$name.yaml" 2>"$WORK/$name.log" &
	PIDS+=($!)
}
daemon old "$OLD" old:auto
daemon new "$NEW" auto:auto copy:copy
for s in old auto copy; do
	until [ -L "$WORK/site-$s/current" ]; do sleep 0.05; done
done
until "$OLD" status -s "$WORK/old.sock" >/dev/null 2>&1 &&
	"$NEW" status -s "$WORK/new.sock" >/dev/null 2>&1; do sleep 0.05; done

declare -A T
order=(old auto copy)
for ((r = 1; r <= RUNS; r++)); do
	echo "change $r" >>"$WORK/work/dir1/sub1/page1.html"
	git -C "$WORK/work" commit -qam "change $r"
	git -C "$WORK/work" push -q origin main
	line="run $r:"
	for s in "${order[@]}"; do
		if [ "$s" = old ]; then bin=$OLD sock=$WORK/old.sock; else bin=$NEW sock=$WORK/new.sock; fi
		sync
		t0=$(now)
		"$bin" deploy "$s" --wait -s "$sock" >/dev/null
		t1=$(now)
		T[$s]="${T[$s]:-} $(echo "$t1 - $t0" | bc)"
		line+=$(printf ' %s %.3f s' "$s" "$(echo "$t1 - $t0" | bc)")
	done
	echo "$line"
	order=("${order[2]}" "${order[0]}" "${order[1]}")	# rotate who goes first
done
printf 'files=%d runs=%d disk=%s\n' "$FILES" "$RUNS" "$(df --output=fstype "$WORK" | tail -n 1)"
for s in old auto copy; do
	printf 'median one-file update, %-4s: %.3f s\n' "$s" "$(printf '%s\n' ${T[$s]} | median)"
done
grep -h 'wrote release' "$WORK/new.log" | tail -n 2
