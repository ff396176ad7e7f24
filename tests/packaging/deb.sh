#!/bin/bash
# tests/packaging/deb.sh: build the .deb, install it into a clean Debian 12 root, and deploy a site with it.
#
# usage: tests/packaging/deb.sh          (DEPLOYD_DEB=FILE.deb skips the build)
#
# The root is a debootstrap of bookworm from the mirror apt is configured with,
# cached as /var/cache/deployd-test/bookworm-root.tar (delete it to refresh;
# DEPLOYD_TEST_CACHE moves it). The package is installed there with apt, which
# also fetches its dependencies. Then the installed binary, run as the deployd
# user with the unit's ExecStart= line, deploys a site from a local repository.
# systemd is not PID 1 here, so the unit itself is not started: the directories
# it would create (StateDirectory=, RuntimeDirectory=) are made by hand, and its
# sandboxing is not applied. Needs root (chroot, unshare).

# lib.sh wants a binary for the integration tests; this test uses the packaged one.
export DEPLOYD_BIN=${DEPLOYD_BIN:-/bin/true}
. "$(dirname "$0")/../lib.sh"

CACHE=${DEPLOYD_TEST_CACHE:-/var/cache/deployd-test}
BASE_TAR=$CACHE/bookworm-root.tar
ARCHIVES=$CACHE/apt-archives

[ "$(id -u)" -eq 0 ] || bail "needs root (chroot, unshare, dpkg in a chroot)"
for tool in debootstrap unshare chroot setpriv git python3 systemd-analyze dpkg-deb; do
	command -v "$tool" >/dev/null ||
		bail "$tool is missing (apt-get install debootstrap util-linux git python3 systemd dpkg)"
done

# The chroot lives outside $TMP and is removed here, first, and only when nothing
# is mounted below it: every mount in this test is made in a private mount
# namespace (unshare --mount) and dies with it, so this is a last safety net.
ROOT=$(mktemp -d /var/tmp/deployd-debroot.XXXXXX) || bail "mktemp failed"
chmod 0755 "$ROOT"	# it is the root directory: every user must get through it
_deb_cleanup() {
	# The daemon runs from the root: stop it before the root goes.
	[ -n "${DAEMON_PID:-}" ] && stop_pid "$DAEMON_PID" 5
	if grep -q " ${ROOT}[/ ]" /proc/mounts; then
		echo "# something is still mounted below $ROOT; not removing it"
		return
	fi
	rm -rf --one-file-system "$ROOT"
}
trap 'rc=$?; _deb_cleanup; (exit $rc); _lib_cleanup' EXIT

# in_root CMD...: run CMD in the chroot with /proc mounted, in a private mount namespace.
in_root() {
	unshare --mount --propagation private /bin/sh -c \
		'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$ROOT" "$@"
}
# as_deployd CMD...: the same, as the deployd user with its groups and no privileges.
as_deployd() {
	in_root setpriv --reuid=deployd --regid=deployd --init-groups --inh-caps=-all \
		--bounding-set=-all --no-new-privs -- "$@"
}

# ---- the package ----
if [ -n "${DEPLOYD_DEB:-}" ]; then
	DEB=$DEPLOYD_DEB
	[ -f "$DEB" ] || bail "DEPLOYD_DEB=$DEB does not exist"
	ok "using $DEB"
else
	start=$SECONDS
	if "$SRCDIR/packaging/build-deb" "$TMP/deb" >"$TMP/build-deb.log" 2>&1; then
		ok "packaging/build-deb builds the .deb and lintian passes ($((SECONDS - start)) s)"
	else
		fail "packaging/build-deb builds the .deb and lintian passes" "$(tail -n 40 "$TMP/build-deb.log")"
		done_testing
	fi
	grep -E '^(E|W|O): ' "$TMP/deb/lintian.log" | sed 's/^/# lintian: /'
	DEB=$(ls "$TMP"/deb/deployd_*.deb | head -n 1)
fi

contents=$(dpkg-deb -c "$DEB" | awk '{ print $6 }')
for f in ./usr/sbin/deployd ./lib/systemd/system/deployd.service ./etc/deployd/deployd.yaml \
	./usr/lib/sysusers.d/deployd.conf ./usr/share/man/man8/deployd.8.gz \
	./usr/share/man/man5/deployd.yaml.5.gz ./usr/share/bash-completion/completions/deployd; do
	printf '%s\n' "$contents" | grep -qxF "$f" || missing="${missing:-} $f"
done
is "the .deb holds the binary, unit, sysusers file, config, man pages and completion" "${missing:-}" ""
is "/etc/deployd/deployd.yaml is a conffile" "$(dpkg-deb -f "$DEB" Package >/dev/null &&
	dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)" /etc/deployd/deployd.yaml

# ---- a clean Debian 12 root ----
# debootstrap from the mirror apt already uses (the only one reachable here).
apt_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u != "" { print u; exit }' "$f"
	done
	grep -hsE '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]+ +bookworm ' /etc/apt/sources.list \
		/etc/apt/sources.list.d/*.list | sed -E 's/^deb +(\[[^]]*\] +)?([^ ]+).*/\2/'
}
if [ ! -s "$BASE_TAR" ]; then
	MIRROR=$(apt_mirror | head -n 1)
	[ -n "$MIRROR" ] || bail "no bookworm mirror in /etc/apt/sources.list*"
	diag "no cached root: debootstrap bookworm from $MIRROR (about 2 minutes, once)"
	mkdir -p "$CACHE"
	start=$SECONDS
	# Its own mount namespace: debootstrap mounts /proc and /sys in the target,
	# and a bind mount must never outlive an interrupted run.
	if unshare --mount --propagation private \
		debootstrap bookworm "$ROOT" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
		rm -f "$ROOT"/var/cache/apt/archives/*.deb
		tar -C "$ROOT" -cf "$BASE_TAR.$$.tmp" . && mv "$BASE_TAR.$$.tmp" "$BASE_TAR"
		ok "debootstrap bookworm ($((SECONDS - start)) s), cached as $BASE_TAR"
	else
		fail "debootstrap bookworm from $MIRROR" "$(tail -n 20 "$TMP/debootstrap.log")"
		done_testing
	fi
else
	tar -C "$ROOT" -xf "$BASE_TAR" || bail "cannot unpack $BASE_TAR"
	ok "clean bookworm root from $BASE_TAR"
fi
like "the root is Debian 12" "$(cat "$ROOT/etc/debian_version")" '^12\.'
in_root id deployd >/dev/null 2>&1 && fail "the clean root has no deployd user yet"

# The host's apt sources (same mirror, plus updates and security) and resolver.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list >/dev/null 2>&1; then
	rm -f "$ROOT/etc/apt/sources.list"
fi
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
	[ -f "$f" ] && cp "$f" "$ROOT$f"
done
mkdir -p "$ARCHIVES"
cp "$ARCHIVES"/*.deb "$ROOT/var/cache/apt/archives/" 2>/dev/null
cp "$DEB" "$ROOT/tmp/deployd.deb"

start=$SECONDS
if in_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$TMP/apt.log" 2>&1 &&
	in_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
		install /tmp/deployd.deb >>"$TMP/apt.log" 2>&1; then
	ok "apt-get install ./deployd.deb in the clean root, with its dependencies ($((SECONDS - start)) s)"
else
	fail "apt-get install ./deployd.deb in the clean root" "$(tail -n 30 "$TMP/apt.log")"
	done_testing
fi
cp -n "$ROOT"/var/cache/apt/archives/*.deb "$ARCHIVES"/ 2>/dev/null

# ---- what the package installed ----
like "the deployd user exists" "$(in_root getent passwd deployd)" \
	'^deployd:x:[0-9]+:[0-9]+:deployd:/var/lib/deployd:/usr/sbin/nologin$'
like "its group exists" "$(in_root getent group deployd)" '^deployd:x:[0-9]+:'
uid=$(in_root id -u deployd)
if [ -n "$uid" ] && [ "$uid" -lt 1000 ] && [ "$uid" -gt 0 ]; then
	ok "deployd is a system user (uid $uid)"
else
	fail "deployd is a system user" "uid '$uid'"
fi
for f in /usr/sbin/deployd /lib/systemd/system/deployd.service /etc/deployd/deployd.yaml \
	/usr/share/man/man8/deployd.8.gz /usr/share/man/man5/deployd.yaml.5.gz \
	/usr/share/bash-completion/completions/deployd /usr/share/doc/deployd/copyright; do
	[ -e "$ROOT$f" ] || missing2="${missing2:-} $f"
done
is "binary, unit, config, man pages, completion and copyright are installed" "${missing2:-}" ""
if [ -x "$ROOT/usr/sbin/deployd" ]; then
	ok "/usr/sbin/deployd is executable"
else
	fail "/usr/sbin/deployd is executable"
fi
if [ -L "$ROOT/etc/systemd/system/multi-user.target.wants/deployd.service" ]; then
	ok "the unit is enabled (multi-user.target.wants)"
else
	fail "the unit is enabled (multi-user.target.wants)"
fi
out=$(zcat "$ROOT/usr/share/man/man8/deployd.8.gz" | groff -man -ww -z 2>&1)
is "the installed deployd(8) formats cleanly" "$out" ""
like "the installed deployd --version runs" "$(in_root /usr/sbin/deployd --version 2>&1)" '^deployd [0-9]'
out=$(in_root /usr/sbin/deployd check 2>&1)
rc=$?
is "the installed deployd check accepts the installed config (status)" "$rc" 0
is "the installed deployd check accepts the installed config (output)" "$out" "configuration OK"
out=$(as_deployd /usr/sbin/deployd check -c /etc/deployd/deployd.yaml 2>&1)
is "so does deployd check run as the deployd user" "$out" "configuration OK"

out=$(systemd-analyze verify --man=no --root="$ROOT" deployd.service 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
	ok "systemd-analyze verify accepts the installed unit in the root"
else
	fail "systemd-analyze verify accepts the installed unit in the root" "status $rc" "$out"
fi

# ---- run it as the unit would, and deploy a site ----
EXECSTART=$(sed -n 's/^ExecStart=//p' "$ROOT/lib/systemd/system/deployd.service")
is "the unit's ExecStart= line" "$EXECSTART" "/usr/sbin/deployd serve -c /etc/deployd/deployd.yaml"

# What the administrator does (README): a deploy root the deployd user owns, and
# a site in the config. The source repository stays owned by root.
git_q init -q --bare -b main "$ROOT/srv/git/site.git"
git_q clone -q "$ROOT/srv/git/site.git" "$TMP/work" 2>/dev/null
git_q -C "$TMP/work" config user.name "Deployd Test"
git_q -C "$TMP/work" config user.email "test@deployd.invalid"
commit_file "$TMP/work" index.html "<h1>version one</h1>" "first" || bail "cannot push to the test repository"
C1=$(repo_head "$TMP/work")
chmod -R a+rX "$ROOT/srv/git"
in_root install -d -o deployd -g deployd -m 0755 /srv/www /srv/www/site
PORT=$(free_port)
sed -i -e "s|^sites: \[\]|sites:\n  - name: site\n    repo: /srv/git/site.git\n    branch: main\n    path: /srv/www/site\n    poll: 1s|" \
	-e "s|^#listen: .*|listen: 127.0.0.1:$PORT|" "$ROOT/etc/deployd/deployd.yaml"
out=$(in_root /usr/sbin/deployd check 2>&1)
is "the config with a test site passes deployd check" "$out" "configuration OK"
# What StateDirectory= and RuntimeDirectory= would create.
in_root install -d -o deployd -g deployd -m 0750 /var/lib/deployd
in_root install -d -o deployd -g deployd -m 0755 /run/deployd

# A stand-in for systemd's notification socket.
cat >"$TMP/notify.py" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
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
python3 "$TMP/notify.py" "$ROOT/run/notify.sock" "$TMP/notify.log" 120 &
track_pid $!
wait_for "notify socket" 5 test -S "$ROOT/run/notify.sock"

# shellcheck disable=SC2086
unshare --mount --propagation private /bin/sh -c \
	'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$ROOT" \
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET=/run/notify.sock \
	setpriv --reuid=deployd --regid=deployd --init-groups --inh-caps=-all --bounding-set=-all \
	--no-new-privs -- $EXECSTART </dev/null >"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
track_pid "$DAEMON_PID"
if wait_for "READY=1" 20 grep -q READY=1 "$TMP/notify.log"; then
	ok "the daemon, run as deployd with ExecStart=, sends READY=1"
else
	fail "the daemon, run as deployd with ExecStart=, sends READY=1" "$(tail -n 20 "$TMP/daemon.log")"
fi
like "it runs as the deployd user" "$(ps -o uid= -p "$DAEMON_PID" 2>/dev/null)" "^ *$uid\$"
if [ -S "$ROOT/run/deployd/deployd.sock" ]; then
	ok "the control socket is /run/deployd/deployd.sock"
	like "the control socket is owned by the deployd group, mode 0660" \
		"$(in_root stat -c '%a %G' /run/deployd/deployd.sock 2>/dev/null)" '^660 deployd$'
else
	fail "the control socket is /run/deployd/deployd.sock" "$(ls -la "$ROOT/run/deployd")"
fi

current_file() {
	cat "$ROOT/srv/www/site/current/index.html" 2>/dev/null
}
if wait_for "first deploy" 30 eval '[ "$(current_file)" = "<h1>version one</h1>" ]'; then
	ok "the site's first commit is live in /srv/www/site/current"
else
	fail "the site's first commit is live in /srv/www/site/current" "$(ls -la "$ROOT/srv/www/site" 2>&1)" \
		"$(tail -n 20 "$TMP/daemon.log")"
fi
like "current is a relative link to releases/<time>-<commit>" \
	"$(readlink "$ROOT/srv/www/site/current" 2>/dev/null)" "^releases/[0-9]{8}T[0-9]{6}Z-${C1:0:12}\$"
like "released files are owned by deployd and readable by all" \
	"$(in_root stat -L -c '%U %A' /srv/www/site/current/index.html 2>/dev/null)" '^deployd -r.-r..r..$'

commit_file "$TMP/work" index.html "<h1>version two</h1>" "second"
out=$(as_deployd /usr/sbin/deployd deploy site --wait 2>&1)
rc=$?
is "deployd deploy site --wait, as deployd, succeeds" "$rc" 0
[ "$rc" -eq 0 ] || diag "$out"
is "the second commit is live" "$(current_file)" "<h1>version two</h1>"
out=$(as_deployd /usr/sbin/deployd status --json 2>&1)
like "deployd status --json, as deployd, reports the site" "$out" '"name": *"site"'
like "and its live commit" "$out" "\"commit\": *\"$(repo_head "$TMP/work")\""
if [ -d "$ROOT/srv/www/site/current/" ] && [ ! -e "$ROOT/srv/www/site/current/.git" ]; then
	ok "no .git in the served tree"
else
	fail "no .git in the served tree" "$(ls -la "$ROOT/srv/www/site/current/" 2>&1)"
fi
if [ -d "$ROOT/var/lib/deployd/site" ]; then
	ok "per-site state is under /var/lib/deployd"
else
	fail "per-site state is under /var/lib/deployd" "$(ls -la "$ROOT/var/lib/deployd")"
fi

kill -TERM "$DAEMON_PID" 2>/dev/null
if wait_for "daemon exit" 30 eval '! pid_alive '"$DAEMON_PID"; then
	wait "$DAEMON_PID"
	is "SIGTERM stops it with status 0" "$?" 0
else
	fail "SIGTERM stops it within 30 s"
fi
DAEMON_PID=
like "it sent STOPPING=1" "$(cat "$TMP/notify.log")" 'STOPPING=1'

# ---- removal ----
if in_root env DEBIAN_FRONTEND=noninteractive dpkg --purge deployd >"$TMP/purge.log" 2>&1; then
	ok "dpkg --purge deployd"
else
	fail "dpkg --purge deployd" "$(tail -n 20 "$TMP/purge.log")"
fi
for f in /usr/sbin/deployd /lib/systemd/system/deployd.service /etc/deployd/deployd.yaml \
	/etc/systemd/system/multi-user.target.wants/deployd.service; do
	[ -e "$ROOT$f" ] || [ -L "$ROOT$f" ] && left="${left:-} $f"
done
is "purging removes the binary, the unit, its enablement and the conffile" "${left:-}" ""
is "the deployed site is left alone" "$(current_file)" "<h1>version two</h1>"

done_testing
