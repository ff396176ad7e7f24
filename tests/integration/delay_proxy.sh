#!/bin/bash
# delay_proxy.sh: the test bed's link (tests/netbed/delay-proxy) adds its one-way delay each way, carries bulk data and half-closes intact, goes silent when cut and delivers what it held when healed.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
PROXY=$BUILD/tests/netbed/delay-proxy
[ -x "$PROXY" ] || bail "delay-proxy was not built ($PROXY)"

# An echo server; and a client that says what it saw, one "key value" line per fact.
cat >"$TMP/echo.py" <<'EOF'
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def echo(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
EOF
cat >"$TMP/client.py" <<'EOF'
import hashlib, os, socket, sys, time
port, what = int(sys.argv[1]), sys.argv[2]
c = socket.create_connection(("127.0.0.1", port), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def recv_exactly(n):
    got = b""
    while len(got) < n:
        d = c.recv(n - len(got))
        if not d:
            break
        got += d
    return got
if what == "rtt":
    rtts = []
    for i in range(5):
        t = time.monotonic()
        c.sendall(b"ping%d" % i)
        recv_exactly(5)
        rtts.append((time.monotonic() - t) * 1000)
    rtts.sort()
    print("rtt_min %d" % rtts[0])
    print("rtt_median %d" % rtts[2])
elif what == "bulk":
    data = os.urandom(3 * 1024 * 1024)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    back = recv_exactly(len(data) + 1)
    print("bulk_same %d" % (hashlib.sha256(back).digest() == hashlib.sha256(data).digest()))
    print("eof %d" % (len(back) == len(data)))
elif what == "cut":
    # Sent while cut: silence for a second, no reset; then the heal lets it through.
    c.sendall(b"held!")
    c.settimeout(1.0)
    try:
        print("cut_got %r" % c.recv(5))
    except socket.timeout:
        print("cut_got silence")
    except OSError as e:
        print("cut_got error-%s" % e.errno)
    os.kill(int(sys.argv[3]), 10 + 2)   # SIGUSR2: heal
    c.settimeout(5.0)
    print("healed_got %s" % recv_exactly(5).decode(errors="replace"))
elif what == "refused":
    c.settimeout(5.0)
    try:
        print("refused_got %r" % c.recv(5))
    except OSError as e:
        print("refused_got error-%s" % e.errno)
EOF
fact() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

spawn "$TMP/echo.log" python3 "$TMP/echo.py"
ECHO_PID=$LAST_PID
wait_for "echo server" 10 test -s "$TMP/echo.log" || bail "echo server did not start"
EPORT=$(head -n 1 "$TMP/echo.log")

spawn "$TMP/proxy.log" "$PROXY" -l 127.0.0.1:0 -t "127.0.0.1:$EPORT" -d 40
PROXY_PID=$LAST_PID
wait_for "proxy" 10 test -s "$TMP/proxy.log" || bail "delay-proxy did not start"
PPORT=$(head -n 1 "$TMP/proxy.log")
like "the proxy prints the port it listens on" "$PPORT" '^[0-9]+$'

python3 "$TMP/client.py" "$EPORT" rtt >"$TMP/direct" 2>&1
python3 "$TMP/client.py" "$PPORT" rtt >"$TMP/delayed" 2>&1
direct=$(fact rtt_median "$TMP/direct")
min=$(fact rtt_min "$TMP/delayed")
median=$(fact rtt_median "$TMP/delayed")
# 40 ms each way: no round trip under 80 ms; a loaded machine may add, never subtract.
check "a round trip through it takes at least 2 x 40 ms (fastest $min ms; direct $direct ms)" \
	test "${min:-0}" -ge 80
check "and not much more (median $median ms)" test "${median:-999999}" -lt 400

python3 "$TMP/client.py" "$PPORT" bulk >"$TMP/bulk" 2>&1
is "3 MB of random bytes come back intact" "$(fact bulk_same "$TMP/bulk")" 1
is "a half-close passes through: the reply ends where the data did" "$(fact eof "$TMP/bulk")" 1

kill -USR1 "$PROXY_PID"
sleep 0.2
python3 "$TMP/client.py" "$PPORT" cut "$PROXY_PID" >"$TMP/cut" 2>&1
is "cut: what is sent meets silence, not a reset" "$(awk '$1 == "cut_got" {print $2}' "$TMP/cut")" silence
is "healed: what was held is delivered" "$(fact healed_got "$TMP/cut")" 'held!'
python3 "$TMP/client.py" "$PPORT" rtt >"$TMP/after" 2>&1
check "after the heal the delay is as before" test "$(fact rtt_min "$TMP/after")" -ge 80

# The far side goes away: a new connection is closed, not left hanging.
kill "$ECHO_PID"
wait "$ECHO_PID" 2>/dev/null
python3 "$TMP/client.py" "$PPORT" refused >"$TMP/refused" 2>&1
is "a target that refuses: the client's connection is closed" "$(cat "$TMP/refused")" "refused_got b''"
check "the proxy is still running" pid_alive "$PROXY_PID"
kill "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null
# done_testing looks for sanitizer reports in daemon.log.
cat "$TMP/proxy.log" >"$TMP/daemon.log"
rc=0
out=$("$PROXY" -l nowhere 2>&1) || rc=$?
is "a bad address exits 2" "$rc" 2
like "saying how it is used" "$out" '^usage: delay-proxy -l ADDR:PORT -t ADDR:PORT'
done_testing
