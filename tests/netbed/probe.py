# probe.py: the test bed's echo server and the client that says what a link did, one "key value" line per fact.
#
#   probe.py serve [ADDR]            echo on ADDR:0 (default 127.0.0.1); prints the port
#   probe.py rtt HOST PORT           five round trips: rtt_min, rtt_median and rtt_max in ms
#   probe.py bulk HOST PORT          3 MB there and back: bulk_same 1, eof 1
#   probe.py held HOST PORT PID      sends while cut: held_got silence; SIGUSR2 to PID heals;
#                                    then healed_got with what arrived
#   probe.py closed HOST PORT        what a connection gets: closed_got b'' when it is closed
#   probe.py reach HOST PORT SECS    reach 1 if a round trip completes within SECS (tried again
#                                    until then), else reach 0
import hashlib
import os
import signal
import socket
import sys
import threading
import time


def serve(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 0))
    s.listen(64)
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


def connect(host, port, timeout=10):
    c = socket.create_connection((host, int(port)), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_exactly(c, n):
    got = b""
    while len(got) < n:
        d = c.recv(n - len(got))
        if not d:
            break
        got += d
    return got


def main(argv):
    what = argv[1]
    if what == "serve":
        serve(argv[2] if len(argv) > 2 else "127.0.0.1")
    if what == "reach":
        # Tried again until SECS have passed: a refusal or "no route" may be brief.
        deadline = time.monotonic() + float(argv[4])
        ok = False
        while not ok and time.monotonic() < deadline:
            try:
                c = connect(argv[2], argv[3], max(0.1, deadline - time.monotonic()))
                c.settimeout(max(0.1, deadline - time.monotonic()))
                c.sendall(b"ping!")
                ok = recv_exactly(c, 5) == b"ping!"
            except OSError:
                time.sleep(0.1)
        print("reach %d" % ok)
        return
    c = connect(argv[2], argv[3])
    if what == "rtt":
        rtts = []
        for i in range(5):
            t = time.monotonic()
            c.sendall(b"ping%d" % i)
            recv_exactly(c, 5)
            rtts.append((time.monotonic() - t) * 1000)
        rtts.sort()
        print("rtt_min %d" % rtts[0])
        print("rtt_median %d" % rtts[2])
        print("rtt_max %d" % rtts[4])
    elif what == "bulk":
        data = os.urandom(3 * 1024 * 1024)
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        back = recv_exactly(c, len(data) + 1)
        print("bulk_same %d" % (hashlib.sha256(back).digest() == hashlib.sha256(data).digest()))
        print("eof %d" % (len(back) == len(data)))
    elif what == "held":
        c.sendall(b"held!")
        c.settimeout(1.0)
        try:
            print("held_got %r" % c.recv(5))
        except socket.timeout:
            print("held_got silence")
        except OSError as e:
            print("held_got error-%s" % e.errno)
        os.kill(int(argv[4]), signal.SIGUSR2)
        c.settimeout(5.0)
        print("healed_got %s" % recv_exactly(c, 5).decode(errors="replace"))
    elif what == "closed":
        c.settimeout(5.0)
        try:
            print("closed_got %r" % c.recv(5))
        except OSError as e:
            print("closed_got error-%s" % e.errno)


main(sys.argv)
