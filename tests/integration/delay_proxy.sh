#!/bin/bash
# delay_proxy.sh: the test bed's link (tests/netbed/delay-proxy) adds its one-way delay each way, carries bulk data and half-closes intact, goes silent when cut and delivers what it held when healed.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
PROXY=$BUILD/tests/netbed/delay-proxy
[ -x "$PROXY" ] || bail "delay-proxy was not built ($PROXY)"

PROBE="python3 $SRCDIR/tests/netbed/probe.py"
fact() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

spawn "$TMP/echo.log" $PROBE serve
ECHO_PID=$LAST_PID
wait_for "echo server" 10 test -s "$TMP/echo.log" || bail "echo server did not start"
EPORT=$(head -n 1 "$TMP/echo.log")

spawn "$TMP/proxy.log" "$PROXY" -l 127.0.0.1:0 -t "127.0.0.1:$EPORT" -d 40
PROXY_PID=$LAST_PID
wait_for "proxy" 10 test -s "$TMP/proxy.log" || bail "delay-proxy did not start"
PPORT=$(head -n 1 "$TMP/proxy.log")
like "the proxy prints the port it listens on" "$PPORT" '^[0-9]+$'

$PROBE rtt 127.0.0.1 "$EPORT" >"$TMP/direct" 2>&1
$PROBE rtt 127.0.0.1 "$PPORT" >"$TMP/delayed" 2>&1
direct=$(fact rtt_median "$TMP/direct")
min=$(fact rtt_min "$TMP/delayed")
median=$(fact rtt_median "$TMP/delayed")
# 40 ms each way: no round trip under 80 ms; a loaded machine may add, never subtract.
check "a round trip through it takes at least 2 x 40 ms (fastest $min ms; direct $direct ms)" \
	test "${min:-0}" -ge 80
check "and not much more (median $median ms)" test "${median:-999999}" -lt 400

$PROBE bulk 127.0.0.1 "$PPORT" >"$TMP/bulk" 2>&1
is "3 MB of random bytes come back intact" "$(fact bulk_same "$TMP/bulk")" 1
is "a half-close passes through: the reply ends where the data did" "$(fact eof "$TMP/bulk")" 1

kill -USR1 "$PROXY_PID"
sleep 0.2
$PROBE held 127.0.0.1 "$PPORT" "$PROXY_PID" >"$TMP/cut" 2>&1
is "cut: what is sent meets silence, not a reset" "$(fact held_got "$TMP/cut")" silence
is "healed: what was held is delivered" "$(fact healed_got "$TMP/cut")" 'held!'
$PROBE rtt 127.0.0.1 "$PPORT" >"$TMP/after" 2>&1
check "after the heal the delay is as before" test "$(fact rtt_min "$TMP/after")" -ge 80

# The far side goes away: a new connection is closed, not left hanging.
kill "$ECHO_PID"
wait "$ECHO_PID" 2>/dev/null
$PROBE closed 127.0.0.1 "$PPORT" >"$TMP/refused" 2>&1
is "a target that refuses: the client's connection is closed" "$(cat "$TMP/refused")" "closed_got b''"
check "the proxy is still running" pid_alive "$PROXY_PID"
kill "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null
# done_testing looks for sanitizer reports in daemon.log.
cat "$TMP/proxy.log" >"$TMP/daemon.log"
rc=0
out=$("$PROXY" -l nowhere 2>&1) || rc=$?
is "a bad address exits 2" "$rc" 2
like "saying how it is used" "$out" '^usage: delay-proxy -l ADDR:PORT \(-t ADDR:PORT \| -T\)'
done_testing
