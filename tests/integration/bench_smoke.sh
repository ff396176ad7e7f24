#!/bin/bash
# bench_smoke.sh: bench/run at toy sizes prints its whole table, with numbers where numbers belong (the figures themselves are not checked).
# timeout: 360
. "$(dirname "$0")/../lib.sh"

for t in wrk webhook python3; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "ok 1 # SKIP $t is not installed (./quickstart bench installs it)"
		echo "1..1"
		exit 0
	fi
done

# Sizes far below --quick, so the whole harness runs in well under a minute.
export BENCH_FILES=200 BENCH_BYTES=1000000 BENCH_ROUNDS=2 BENCH_WRK_SECS=1 \
	BENCH_IDLE_SITES=10 BENCH_POLL_SITES=10 BENCH_POLL_EVERY=2 BENCH_POLL_WINDOW=4
rc=0
# The fleet section has a test of its own (bench_fleet.sh).
"$SRCDIR/bench/run" --quick --only ingest,push,first,idle,poll,upkeep --dir "$TMP/bench" \
	"$DEPLOYD_BIN" >"$TMP/out" 2>"$TMP/err" || rc=$?
is "bench/run exits 0" "$rc" 0 || diag "$(tail -n 20 "$TMP/err")"
grep "^| " "$TMP/out" | tail -n +2 >"$TMP/rows"
is "the table has every row" "$(wc -l <"$TMP/rows")" 26

# row LABEL: the row whose first column is LABEL (leading spaces kept)
row() { awk -F' [|] ' -v l="$1" '{sub(/^[|] /, "")} $1 == l' "$TMP/rows"; }
col() { row "$1" | awk -F' [|] ' -v c="$2" '{sub(/^[|] /, ""); sub(/ [|]$/, ""); print $c}'; }
NUM='^[0-9]+(\.[0-9]+)?$'

for label in "Webhook ingest, signed 7 KB push (req/s)" "  p99 latency (ms)" \
	"Bad signatures rejected (req/s)" "Push-to-live, one-file change (s)" "First deploy (s)" \
	"Peak RSS, first deploy (MB)" "Pushes during a 200-file deploy, p99 (ms)" \
	"Memory idle, 10 sites (MB, PSS)" \
	"1,000 sites polled every 60 s (% of a core)" "  CPU per poll (ms)" \
	"No-change deploy after 30 deploys (ms), with upkeep" "  one-file deploy (ms), with upkeep" \
	"No-change deploy after 30 deploys (ms), no upkeep"; do
	v=$(col "$label" 2)
	v=${v%\%}
	like "'$label' has a number for deployd" "$v" "$NUM"
done
like "ingest has a numeric ratio against webhook" \
	"$(col "Webhook ingest, signed 7 KB push (req/s)" 4)" '^[0-9]+(\.[0-9]+)?x$'
like "push-to-live has a numeric ratio against git-sync" \
	"$(col "Push-to-live, one-file change (s)" 4)" '^[0-9]+(\.[0-9]+)?x$'
like "the cache row compares with a mirror clone" \
	"$(col "  cache size (KB), with upkeep" 4)" '^[0-9]+(\.[0-9]+)?x$'
like "the upkeep rows also compare with the site after its first deploy" \
	"$(row "  same, against this site after its first deploy (ms)" | head -n 1 | awk -F' [|] ' '{print $2 " | " $3}')" \
	'^[0-9]+ / [0-9]+ \| [0-9]+ / [0-9]+$'
# strace cannot follow a sanitized daemon through a deploy: that build says so instead.
if ldd "$DEPLOYD_BIN" 2>/dev/null | grep -q libasan; then
	is "the system call row says a sanitized build is not counted" \
		"$(col "  system calls per unchanged file" 2)" "n/a (sanitized build)"
else
	like "the system call row counts links and stats per unchanged file" \
		"$(col "  system calls per unchanged file" 2)" '^[0-9.]+ \(linkat [0-9.]+, stat [0-9.]+\)$'
fi
like "the disk row gives a size and a percentage" \
	"$(col "Disk added per further release (KB)" 2)" '^[0-9]+ \([0-9.]+%\)$'
like "every signed request was answered 2xx" "$(col "  answers not 2xx" 2)" '^0 of [1-9][0-9]*$'
like "every bad signature was answered 401" \
	"$(col "  bad signatures not answered 401" 2)" '^0 of [1-9][0-9]*$'
like "deployd actually served requests" "$(col "Webhook ingest, signed 7 KB push (req/s)" 2)" '^[1-9]'
is "every result is PASS, MISS or -" \
	"$(awk -F' [|] ' '{sub(/ [|]$/, ""); print $NF}' "$TMP/rows" | grep -cvE '^(PASS|MISS|-)$')" 0
like "the table states the machine" "$(cat "$TMP/out")" 'machine: [0-9]+ CPUs'
# done_testing looks for sanitizer reports in daemon.log: give it the daemons' logs.
cat "$TMP"/bench/*/deployd.log >"$TMP/daemon.log" 2>/dev/null
done_testing
