#!/bin/bash
# tests/packaging/unit.sh: checks the systemd unit: verify, security score, settings, and Type=notify.
#
# usage: DEPLOYD_BIN=BUILDDIR/deployd tests/packaging/unit.sh
#
# There is no systemd running as PID 1 here, so the unit is never started. Instead:
# systemd-analyze verify runs against a root made by `make install DESTDIR=` (so
# ExecStart= names an installed binary), systemd-analyze security --offline=true
# must rate it 2.0 or better, and the built binary, run with the unit's ExecStart
# arguments, must send READY=1 to $NOTIFY_SOCKET as Type=notify requires.
. "$(dirname "$0")/../lib.sh"

UNIT=$SRCDIR/packaging/systemd/deployd.service
BUILDDIR=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}

for tool in systemd-analyze python3 make kill; do
	command -v "$tool" >/dev/null || bail "$tool is missing (apt-get install systemd python3 make procps)"
done

# ---- the installed tree ----
ROOT=$TMP/root
if make -C "$BUILDDIR" install DESTDIR="$ROOT" >"$TMP/install.log" 2>&1; then
	ok "make install DESTDIR= works"
else
	fail "make install DESTDIR= works" "$(tail -n 20 "$TMP/install.log")"
fi
# The packages put the binary in /usr/sbin; a source build may use another prefix.
PREFIX=$(sed -n 's/^prefix = //p' "$BUILDDIR/Makefile")
mkdir -p "$ROOT/usr/sbin" "$ROOT/lib/systemd" "$ROOT/bin"
[ -x "$ROOT/usr/sbin/deployd" ] || cp "$ROOT$PREFIX/sbin/deployd" "$ROOT/usr/sbin/deployd" 2>/dev/null
# systemd-analyze --root resolves the unit's dependencies (sysinit.target, ...)
# and ExecReload's /bin/kill inside the root.
cp -a /lib/systemd/system "$ROOT/lib/systemd/"
cp "$(type -P kill)" "$ROOT/bin/kill" || bail "no kill program (apt-get install procps)"
cp "$UNIT" "$ROOT/lib/systemd/system/deployd.service"

out=$(systemd-analyze verify --man=no --root="$ROOT" deployd.service 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
	ok "systemd-analyze verify accepts the unit"
else
	fail "systemd-analyze verify accepts the unit" "status $rc" "$out"
fi
# A missing binary must be noticed, or the check above proves nothing.
mv "$ROOT/usr/sbin/deployd" "$ROOT/usr/sbin/deployd.moved"
out=$(systemd-analyze verify --man=no --root="$ROOT" deployd.service 2>&1)
like "systemd-analyze verify notices a missing ExecStart binary" "$out" "/usr/sbin/deployd is not executable"
mv "$ROOT/usr/sbin/deployd.moved" "$ROOT/usr/sbin/deployd"

# ---- security score ----
out=$(cd "$TMP" && systemd-analyze security --offline=true "$UNIT" 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for deployd.service: \([0-9.]*\).*/\1/p')
diag "systemd-analyze security --offline=true: exposure $score (0 best, 10 worst)"
printf '%s\n' "$out" | grep -E '^(✗|-) ' | sed -E 's/ {2,}/  /g; s/^/#   /'
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
	ok "security exposure $score is 2.0 or better"
else
	fail "security exposure '$score' is 2.0 or better" "$out"
fi
if (cd "$TMP" && systemd-analyze security --offline=true --threshold=20 "$UNIT") >/dev/null 2>&1; then
	ok "systemd-analyze security --threshold=20 passes"
else
	fail "systemd-analyze security --threshold=20 passes"
fi

# ---- settings the design relies on ----
unit_value() {
	sed -n "s/^$1=//p" "$UNIT" | tail -n 1
}
is "runs as User=deployd" "$(unit_value User)" deployd
is "runs as Group=deployd" "$(unit_value Group)" deployd
is "Type=notify" "$(unit_value Type)" notify
is "ExecStart= serves the packaged config" "$(unit_value ExecStart)" \
	"/usr/sbin/deployd serve -c /etc/deployd/deployd.yaml"
is "ExecReload= sends SIGHUP" "$(unit_value ExecReload)" '/bin/kill -HUP $MAINPID'
is "StateDirectory=deployd" "$(unit_value StateDirectory)" deployd
is "RuntimeDirectory=deployd" "$(unit_value RuntimeDirectory)" deployd
is "RuntimeDirectoryPreserve=yes keeps the control socket's directory" \
	"$(unit_value RuntimeDirectoryPreserve)" yes
is "ConfigurationDirectory=deployd" "$(unit_value ConfigurationDirectory)" deployd
is "ProtectSystem=strict" "$(unit_value ProtectSystem)" strict
is "ReadWritePaths=/srv/www" "$(unit_value ReadWritePaths)" /srv/www
is "NoNewPrivileges=yes" "$(unit_value NoNewPrivileges)" yes
is "CapabilityBoundingSet is empty" "$(grep -c '^CapabilityBoundingSet=$' "$UNIT")" 1
is "MemoryDenyWriteExecute stays off for JIT hooks" "$(unit_value MemoryDenyWriteExecute)" no
# The default config's socket must be in the RuntimeDirectory, its state in the StateDirectory.
like "the default control_socket is in /run/deployd" \
	"$(grep -E '^#?control_socket:' "$SRCDIR/packaging/deployd.yaml")" '/run/deployd/deployd\.sock$'
like "the default state_dir is /var/lib/deployd" \
	"$(grep -E '^#?state_dir:' "$SRCDIR/packaging/deployd.yaml")" '/var/lib/deployd$'

# ---- Type=notify: the binary tells systemd it is ready ----
# A datagram socket stands in for systemd's; the daemon runs with the unit's
# ExecStart arguments and a config whose paths point into $TMP.
cat >"$TMP/notify.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(float(sys.argv[3]))
with open(sys.argv[2], "w") as out:
    try:
        while True:
            msg = s.recv(4096).decode(errors="replace")
            out.write(msg.replace("\n", " ") + "\n")
            out.flush()
            if "STOPPING=1" in msg:
                break
    except socket.timeout:
        pass
EOF
python3 "$TMP/notify.py" "$TMP/notify.sock" "$TMP/notify.log" 30 &
NPID=$!
track_pid "$NPID"
wait_for "notify socket" 5 test -S "$TMP/notify.sock"
CFG_SOCKET=$TMP/ctl.sock CFG_STATE=$TMP/state CFG_LOG_LEVEL=info write_config "$TMP/deployd.yaml"
args=$(unit_value ExecStart)
args=${args#/usr/sbin/deployd }
args=${args//\/etc\/deployd\/deployd.yaml/$TMP\/deployd.yaml}
# shellcheck disable=SC2086
NOTIFY_SOCKET=$TMP/notify.sock "$DEPLOYD_BIN" $args </dev/null >"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
track_pid "$DAEMON_PID"
if wait_for "READY=1" 15 grep -q 'READY=1' "$TMP/notify.log"; then
	ok "deployd serve sends READY=1 to NOTIFY_SOCKET"
else
	fail "deployd serve sends READY=1 to NOTIFY_SOCKET" "$(cat "$TMP/notify.log" 2>/dev/null)"
fi
like "the READY message carries a STATUS= line" "$(cat "$TMP/notify.log" 2>/dev/null)" 'STATUS=[^ ]'
if "$DEPLOYD_BIN" status -c "$TMP/deployd.yaml" >/dev/null 2>&1; then
	ok "the control socket answers once READY=1 was sent"
else
	fail "the control socket answers once READY=1 was sent"
fi
kill -TERM "$DAEMON_PID"
wait_for "daemon exit" 20 eval '! pid_alive '"$DAEMON_PID"
wait "$DAEMON_PID"
is "SIGTERM stops the daemon with status 0" "$?" 0
like "it sends STOPPING=1 on the way out" "$(cat "$TMP/notify.log")" 'STOPPING=1'
DAEMON_PID=

done_testing
