#!/bin/bash
# privsep.sh: the webhook listener is a separate, confined process (user, no_new_privs, seccomp, Landlock) that is respawned, reloaded and stopped with the daemon.
# timeout: 180
#
# Run as root (as the suite is), the listener must run as listener_user (nobody).
# "deployd __listen --selftest-open PATH [--no-confine] CONFIG" applies the listener's
# own confinement function and then tries to open PATH, so the test can show that a
# file under a deploy root or state_dir opens without it and not with it.
. "$(dirname "$0")/../lib.sh"

SECRET='privsep-secret-0123456789'

# one_listener: wait until the daemon has exactly one listener child; print its pid.
one_listener() {
	local deadline=$(( $(now_ms) + ${1:-10} * 1000 )) l
	while [ "$(now_ms)" -lt "$deadline" ]; do
		l=$(listener_of "$DAEMON_PID")
		if [ -n "$l" ] && [ "$(echo "$l" | wc -l)" -eq 1 ]; then
			echo "$l"
			return 0
		fi
		sleep 0.05
	done
	return 1
}

status_field() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" 2>/dev/null
}

# push COMMIT DELIVERY: a signed GitHub push; prints "status queued-or-duplicate".
push() {
	github_push "$SECRET" "http://$CFG_LISTEN/hooks/www" "$1" "$2"
	printf ' %s\n' "$(jq -r 'if .queued then "queued" elif .duplicate then "duplicate"
		else "other" end' "$TMP/resp.json" 2>/dev/null)"
}

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "v0" "v0" || bail "commit failed"
H0=$(repo_head "$TMP/src")
printf '%s\n' "$SECRET" >"$TMP/secret"
chmod 600 "$TMP/secret"
CFG_LISTEN=127.0.0.1:$(free_port)
write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$H0" 30 || bail "the first deploy did not happen"

# ---- a separate, confined process ----
L1=$(one_listener) || bail "no listener process under the daemon" "$(tail -n 20 "$TMP/daemon.log")"
ok "the listener is a child process of the daemon (pid $L1)"
isnt "and not the daemon itself" "$L1" "$DAEMON_PID"
NOBODY=$(id -u nobody)
if [ "$(id -u)" -eq 0 ]; then
	is "started as root, the listener runs as nobody (real, effective, saved, fs)" \
		"$(status_field "$L1" Uid | tr -s '\t ' ' ')" "$NOBODY $NOBODY $NOBODY $NOBODY"
	isnt "and with no group root" "$(status_field "$L1" Gid | cut -f1)" 0
	is "and no supplementary groups" "$(status_field "$L1" Groups | tr -d ' ')" ""
	is "the daemon itself stays root here (it drops nothing in this test)" \
		"$(status_field "$DAEMON_PID" Uid | cut -f2)" 0
else
	ok "# SKIP not root: the listener keeps the daemon's user"
fi
is "NoNewPrivs is set" "$(status_field "$L1" NoNewPrivs)" 1
is "a seccomp filter is loaded (mode 2)" "$(status_field "$L1" Seccomp)" 2
# Inherited: stdio, the listening socket (3) and the channel (4); then only what
# libmicrohttpd makes (epoll, eventfd). No file, directory or lock of the daemon's.
is "fds 3 and 4 are the listening socket and the channel" \
	"$(readlink /proc/"$L1"/fd/3 /proc/"$L1"/fd/4 | sed 's/:.*//' | tr '\n' ' ')" \
	"socket socket "
is "it holds no file or directory open (stdio aside)" \
	"$(for f in /proc/"$L1"/fd/*; do
		case ${f##*/} in 0|1|2) continue ;; esac
		readlink "$f"
	done | grep '^/')" ""

# ---- webhooks still deploy, metrics and health still answer ----
commit_file "$TMP/src" index.html "v1" "v1" || bail "commit failed"
H1=$(repo_head "$TMP/src")
is "a signed push is queued through the listener" "$(push "$H1" d-1)" "202 queued"
wait_live "$TMP/www" "$H1" 30 && ok "and the pushed commit goes live" ||
	fail "and the pushed commit goes live"
is "the same delivery again is a duplicate (the daemon keeps the ring)" "$(push "$H1" d-1)" \
	"202 duplicate"
is "/healthz answers" "$(curl -sS --max-time 5 "http://$CFG_LISTEN/healthz")" '{"status":"ok"}'
curl -sS --max-time 5 "http://$CFG_LISTEN/metrics" >"$TMP/metrics"
like "/metrics carries the daemon's counters" "$(cat "$TMP/metrics")" \
	'deployd_webhooks_total\{site="www",provider="github",result="queued"\} 1'
like "and the duplicate, counted by the daemon" "$(cat "$TMP/metrics")" \
	'result="duplicate"\} 1'

# ---- the confinement forbids files, even readable ones ----
selftest() {
	"$DEPLOYD_BIN" __listen --selftest-open "$@" 2>>"$TMP/selftest.err"
}
LIVE=$TMP/www/current/index.html
STATE=$(find "$TMP/state" -name state.json | head -n 1)
[ -f "$LIVE" ] && [ -n "$STATE" ] || bail "no live file or state file to test with"
for f in "$LIVE" "$STATE" "$TMP/secret" /etc/hostname; do
	is "unconfined, $f opens" "$(selftest "$f" --no-confine "$TMP/deployd.yaml")" "open: ok"
	like "confined as the listener, $f does not" "$(selftest "$f" "$TMP/deployd.yaml")" \
		'^open: (EACCES|EPERM) '
done

# ---- a killed listener is respawned; deploys go on ----
kill -KILL "$L1"
deadline=$(( $(now_ms) + 10000 ))
L2=
while [ "$(now_ms)" -lt "$deadline" ]; do
	L2=$(listener_of "$DAEMON_PID")
	[ -n "$L2" ] && [ "$L2" != "$L1" ] && [ "$(echo "$L2" | wc -l)" -eq 1 ] && break
	L2=
	sleep 0.05
done
check "after kill -9 a new listener is running" test -n "$L2"
like "the daemon logged the death and the restart" "$(cat "$TMP/daemon.log")" \
	"webhook listener pid $L1 killed by signal 9 .*; restarting it in"
ok_at=
for ((i = 0; i < 100; i++)); do
	if [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$CFG_LISTEN/healthz")" = 200 ]
	then
		ok_at=$i
		break
	fi
	sleep 0.05
done
check "webhooks are answered again within 5 s" test -n "$ok_at"
commit_file "$TMP/src" index.html "v2" "v2" || bail "commit failed"
H2=$(repo_head "$TMP/src")
is "a push after the restart is queued" "$(push "$H2" d-2)" "202 queued"
wait_live "$TMP/www" "$H2" 30 && ok "and deploys" || fail "and deploys"
check "the daemon itself was not disturbed" daemon_running
is "the respawned listener is confined too" \
	"$(status_field "$L2" NoNewPrivs) $(status_field "$L2" Seccomp)" "1 2"

# ---- reload: a new listener takes over; no request is refused meanwhile ----
: >"$TMP/probe.out"
(
	end=$(( $(now_ms) + 3000 ))
	while [ "$(now_ms)" -lt "$end" ]; do
		curl -s --max-time 5 -o /dev/null -w '%{http_code}\n' "http://$CFG_LISTEN/healthz"
	done
) >>"$TMP/probe.out" 2>/dev/null &
PROBE=$!
sleep 0.5
dctl reload >/dev/null || fail "deployd reload"
wait "$PROBE"
L3=$(one_listener 10)
check "after reload one listener runs, a new one" test -n "$L3" -a "$L3" != "$L2"
check_not "the old listener has exited" pid_alive "$L2"
is "every request during the reload was answered 200 ($(wc -l <"$TMP/probe.out") sent)" \
	"$(sort -u "$TMP/probe.out" | tr '\n' ' ')" "200 "
is "a redelivery after the reload is still a duplicate" "$(push "$H2" d-2)" "202 duplicate"

# ---- a reload whose listener cannot start keeps the old one ----
if [ "$(id -u)" -eq 0 ]; then
	cp "$TMP/deployd.yaml" "$TMP/good.yaml"
	CFG_EXTRA='listener_user: privsep-no-such-user'
	write_config "$TMP/deployd.yaml" \
		"$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 secret_file="$TMP/secret")"
	dctl reload >/dev/null
	wait_for "the failed listener to be reported" 10 \
		grep -q 'the listener keeps the old sites and secrets' "$TMP/daemon.log"
	like "a listener_user that does not exist is reported" "$(cat "$TMP/daemon.log")" \
		'listener_user privsep-no-such-user: no such user'
	check "and the old listener goes on" pid_alive "$L3"
	is "and answers" "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' \
		"http://$CFG_LISTEN/healthz")" 200
	cp "$TMP/good.yaml" "$TMP/deployd.yaml"
	CFG_EXTRA=
fi

# ---- only the daemon stops its listener ----
kill -TERM "$L3"
sleep 0.5
check "a SIGTERM from another process is ignored (systemd signals the whole cgroup)" \
	pid_alive "$L3"

# ---- SIGTERM stops the listener too ----
stop_daemon || fail "the daemon stops on SIGTERM"
check_not "no listener survives SIGTERM" pid_alive "$L3"
is "no __listen process is left for this config" \
	"$(pgrep -f "__listen $TMP/deployd.yaml" | wc -l)" 0

# ---- the backstop: a daemon killed with SIGKILL takes the listener with it ----
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
L4=$(one_listener) || bail "no listener after restart"
kill -KILL "$DAEMON_PID"
deadline=$(( $(now_ms) + 5000 ))
while pid_alive "$L4" && [ "$(now_ms)" -lt "$deadline" ]; do
	sleep 0.05
done
check_not "a daemon killed with SIGKILL leaves no listener (parent-death signal)" pid_alive "$L4"
DAEMON_PID=

done_testing
