#!/bin/bash
# soak.sh: one daemon, three sites per worker, ROUNDS rounds of webhooks, polls, deploys, failing deploys, hook timeouts, reloads, rollbacks and resumes; fails if descriptors, threads, children, zombies or memory grow.
#
# usage: tests/soak.sh DEPLOYD_BIN [ROUNDS]      (default 300 rounds)
#
# Sites: "a" (webhook and CLI deploys, rollback and resume, a post_activate hook), "b"
# (CLI deploys whose pre_activate hook fails or hangs past hooks.timeout for some commits,
# so current must stay put) and "c" (found by polling every second, paused and resumed).
# Every round does one of those things. With SOAK_JOBS=J (default 1), J workers each drive
# their own three sites (a, b, c, then a2, b2, c2, ...) through ROUNDS rounds at once, so
# the daemon deploys several sites concurrently; only the first worker reloads.
# Every SOAK_SAMPLE rounds (default ROUNDS/10, at least 20) the workers meet, the script
# waits until no deploy is running and samples, over every process of the daemon's tree:
# open descriptors, threads, child processes, zombies and PSS (/proc/PID/smaps_rollup).
# It prints the series as a table, and fails if, from the first sample (taken after a
# warm-up of one sample period) to the last, descriptors grew by more than 3, threads or
# children by more than 2, or any sample held a zombie still unreaped a second later (site
# c's poll helpers come and go between samples); or if the smallest PSS of the
# second half of the run exceeds the largest of the first half (after the warm-up) by more
# than SOAK_PSS_SLACK_KB (default 2048) plus 5 %.
# Environment: SOAK_JOBS, SOAK_SAMPLE, SOAK_PSS_SLACK_KB, SOAK_FILES (files in site c, 200).

if [ -n "${1:-}" ]; then
	DEPLOYD_BIN=$(realpath -e "$1") || { echo "Bail out! no such binary: $1"; exit 1; }
	export DEPLOYD_BIN
fi
ROUNDS=${2:-300}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case $ROUNDS in ''|*[!0-9]*|0) bail "usage: tests/soak.sh DEPLOYD_BIN [ROUNDS]" ;; esac
JOBS=${SOAK_JOBS:-1}
case $JOBS in ''|*[!0-9]*|0) bail "SOAK_JOBS must be a positive number" ;; esac
SAMPLE=${SOAK_SAMPLE:-$((ROUNDS / 10))}
[ "$SAMPLE" -ge 20 ] || SAMPLE=20
SLACK_KB=${SOAK_PSS_SLACK_KB:-2048}
SECRET='soak-secret-0123456789abcdef'
T0=$SECONDS
TOP=$TMP

# ---- sites: worker W has its files in $TOP/wW and sites aS, bS, cS (S empty for W=1) ----
printf '%s\n' "$SECRET" >"$TOP/secret"
chmod 600 "$TOP/secret"
# b's pre_activate runs in the new release: a file named fail or hang there decides.
cat >"$TOP/pre-b.sh" <<'EOF2'
#!/bin/sh
[ -e fail ] && { echo "refusing a release with a fail file"; exit 3; }
[ -e hang ] && exec sleep 60
exit 0
EOF2
cat >"$TOP/post-a.sh" <<EOF2
#!/bin/sh
echo "\$DEPLOYD_SITE \$DEPLOYD_COMMIT" >>"$TOP/post-a.log"
EOF2
chmod 755 "$TOP/pre-b.sh" "$TOP/post-a.sh"

suffix() { [ "$1" -eq 1 ] || echo "$1"; }

SITES=()
for ((w = 1; w <= JOBS; w++)); do
	W=$TOP/w$w
	S=$(suffix "$w")
	make_repo "$W/a" && commit_file "$W/a" index.html "a0" "a0" || bail "repo a$S"
	make_repo "$W/b" && commit_file "$W/b" index.html "b0" "b0" || bail "repo b$S"
	make_repo "$W/c" || bail "repo c$S"
	make_big_repo "$W/c" "${SOAK_FILES:-200}" || bail "repo c$S"
	SITES+=("$(site_yaml "a$S" "$W/a.git" "$W/www-a" poll=0 secret_file="$TOP/secret" keep=3 \
		"hooks={post_activate: [$TOP/post-a.sh]}")" \
		"$(site_yaml "b$S" "$W/b.git" "$W/www-b" poll=0 keep=3 \
		"hooks={pre_activate: [$TOP/pre-b.sh], timeout: 1s}")" \
		"$(site_yaml "c$S" "$W/c.git" "$W/www-c" poll=1s keep=2)")
done

CFG_LOG_LEVEL=info
CFG_LISTEN=127.0.0.1:$(free_port)
write_config "$TOP/deployd.yaml" "${SITES[@]}"
start_daemon "$TOP/deployd.yaml" || bail "daemon did not start"
for ((w = 1; w <= JOBS; w++)); do
	W=$TOP/w$w
	wait_live "$W/www-a" "$(repo_head "$W/a")" 30 || bail "site a$(suffix "$w") did not deploy"
	wait_live "$W/www-b" "$(repo_head "$W/b")" 30 || bail "site b$(suffix "$w") did not deploy"
	wait_live "$W/www-c" "$(repo_head "$W/c")" 60 || bail "site c$(suffix "$w") did not deploy"
done

# ---- what a round does ----
N_OK=0
N_FAIL=0
N_HOOK_TIMEOUT=0
N_WEBHOOK=0
N_RELOAD=0
N_ROLLBACK=0
BAD=0

bad() {
	BAD=$((BAD + 1))
	[ "$BAD" -le 10 ] && diag "round $1: $2"
}

# deploy_b KIND ROUND: a commit to b with a fail or hang file, or neither; deploy and check.
deploy_b() {
	local kind=$1 i=$2 before want rc
	before=$(current_release "$TMP/www-b")
	rm -f "$TMP/b/fail" "$TMP/b/hang"
	[ "$kind" = good ] || printf '%s\n' "$i" >"$TMP/b/$kind"
	printf 'b%s' "$i" >"$TMP/b/index.html"
	git_q -C "$TMP/b" add -A && git_q -C "$TMP/b" commit -q -m "b$i $kind" &&
		push_work "$TMP/b" || { bad "$i" "cannot push to b"; return; }
	want=$(repo_head "$TMP/b")
	dctl deploy "b$S" --wait >"$TMP/deploy.out" 2>&1
	rc=$?
	case $kind in
	good)
		if [ "$rc" -eq 0 ] && current_is "$TMP/www-b" "$want"; then
			N_OK=$((N_OK + 1))
		else
			bad "$i" "b: a good deploy failed (status $rc): $(tail -n 2 "$TMP/deploy.out")"
		fi ;;
	*)
		[ "$kind" = hang ] && N_HOOK_TIMEOUT=$((N_HOOK_TIMEOUT + 1))
		if [ "$rc" -ne 0 ] && [ "$(current_release "$TMP/www-b")" = "$before" ]; then
			N_FAIL=$((N_FAIL + 1))
		else
			bad "$i" "b: a $kind deploy did not fail cleanly (status $rc, current $(current_release "$TMP/www-b"), was $before)"
		fi ;;
	esac
}

# commit_a ROUND: a new commit on a; prints its id.
commit_a() {
	commit_file "$TMP/a" "page$(( $1 % 5 )).html" "a$1" "a$1" >/dev/null 2>&1 &&
		repo_head "$TMP/a"
}

round() {
	local i=$1 h rc code
	case $((i % 10)) in
	0)
		if [ $((i % 50)) -eq 0 ] && [ -z "$S" ]; then
			dctl reload >/dev/null 2>&1 || bad "$i" "reload failed"
			N_RELOAD=$((N_RELOAD + 1))
		else
			dctl deploy "a$S" --wait >/dev/null 2>&1 || bad "$i" "a: a deploy of the live tip failed"
		fi ;;
	1|8)
		h=$(commit_a "$i") || { bad "$i" "cannot push to a"; return; }
		if [ $((i % 10)) -eq 1 ]; then
			code=$(github_push "$SECRET" "http://$CFG_LISTEN/hooks/a$S" "$h" "soak$S-$i")
			[ "$code" = 202 ] || bad "$i" "a: webhook answered $code"
			N_WEBHOOK=$((N_WEBHOOK + 1))
			wait_live "$TMP/www-a" "$h" 30 >/dev/null 2>&1 ||
				{ bad "$i" "a: webhook deploy not live"; return; }
		else
			dctl deploy "a$S" --wait >/dev/null 2>&1 && current_is "$TMP/www-a" "$h" ||
				{ bad "$i" "a: CLI deploy failed"; return; }
		fi
		N_OK=$((N_OK + 1)) ;;
	2) deploy_b good "$i" ;;
	3) deploy_b fail "$i" ;;
	4)
		commit_file "$TMP/c" "site/round.html" "c$i" "c$i" >/dev/null 2>&1 ||
			{ bad "$i" "cannot push to c"; return; }
		wait_live "$TMP/www-c" "$(repo_head "$TMP/c")" 30 >/dev/null 2>&1 ||
			{ bad "$i" "c: the poll did not deploy"; return; }
		N_OK=$((N_OK + 1)) ;;
	5)
		if [ $((i % 20)) -eq 5 ]; then
			deploy_b hang "$i"
		else
			code=$(github_push "wrong-$SECRET" "http://$CFG_LISTEN/hooks/a$S" "$(repo_head "$TMP/a")" "soak$S-bad-$i")
			[ "$code" = 401 ] || bad "$i" "a: a bad signature answered $code"
		fi ;;
	6)
		if [ "$(release_count "$TMP/www-a")" -ge 2 ]; then
			dctl rollback "a$S" >/dev/null 2>&1 || bad "$i" "a: rollback failed"
			N_ROLLBACK=$((N_ROLLBACK + 1))
		fi
		dctl resume "a$S" >/dev/null 2>&1 || bad "$i" "a: resume failed" ;;
	7)
		dctl pause "c$S" >/dev/null 2>&1 || bad "$i" "c: pause failed"
		dctl resume "c$S" >/dev/null 2>&1 || bad "$i" "c: resume failed" ;;
	9)
		code=$(github_push "$SECRET" "http://$CFG_LISTEN/hooks/a$S" "$(repo_head "$TMP/a")" "soak$S-$((i - 8))")
		[ "$code" = 202 ] || bad "$i" "a: a redelivery answered $code" ;;
	esac
}

# ---- sampling ----

# quiet: until no site is deploying or queued (so hooks and fetches are not counted).
quiet_now() {
	[ -z "$(status_json | jq -r '.. | objects | select(has("state")) | .state' 2>/dev/null |
		grep -vxE 'idle|failed|paused')" ]
}

# zombie_after PID MS: Z if PID is still a zombie after MS ms. A child that has just exited
# is a zombie until its parent's next wait, which is no leak; one still unreaped a second
# later is.
zombie_after() {
	local end=$(($(now_ms) + $2)) st
	while [ "$(now_ms)" -lt "$end" ]; do
		st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
		[ "$st" = Z ] || return 0
		sleep 0.05
	done
	echo Z
}

# sample ROUND: one row "round deploys fds threads children zombies pss_kb", added to SERIES.
SERIES=()
sample() {
	local p fds=0 thr=0 kids=0 zomb=0 pss=0 n st
	wait_for "the daemon to be idle" 60 quiet_now || bad "$1" "the daemon did not become idle"
	for p in $(tree_pids "$DAEMON_PID"); do
		[ -d "/proc/$p" ] || continue
		[ "$p" = "$DAEMON_PID" ] || kids=$((kids + 1))
		st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$p/status" 2>/dev/null)
		if [ "$st" = Z ]; then
			diag "zombie: pid $p ($(cat "/proc/$p/comm" 2>/dev/null)), parent $(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null)"
			if [ "$(zombie_after "$p" 1000)" = Z ]; then
				zomb=$((zomb + 1))
			fi
			continue
		fi
		n=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		fds=$((fds + n))
		n=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$p/status" 2>/dev/null)
		thr=$((thr + ${n:-0}))
		n=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
		pss=$((pss + ${n:-0}))
	done
	SERIES+=("$1 $((N_OK + N_FAIL)) $fds $thr $kids $zomb $pss")
	# As it goes too, so that a long run stopped early still shows its series.
	diag "sample: ${SERIES[-1]} ($((SECONDS - T0)) s)"
}

# work W FROM TO: worker W's rounds FROM..TO in its own directory; leaves its counts in
# $TOP/wW/counts (a subshell's variables do not come back).
work() {
	local w=$1 i
	TMP=$TOP/w$w
	S=$(suffix "$w")
	N_OK=0 N_FAIL=0 N_HOOK_TIMEOUT=0 N_WEBHOOK=0 N_RELOAD=0 N_ROLLBACK=0 BAD=0
	for ((i = $2; i <= $3; i++)); do
		daemon_running || { bad "$i" "the daemon died"; break; }
		round "$i"
	done
	echo "$N_OK $N_FAIL $N_HOOK_TIMEOUT $N_WEBHOOK $N_RELOAD $N_ROLLBACK $BAD" >"$TMP/counts"
}

sample 0
for ((from = 1; from <= ROUNDS; from += SAMPLE)); do
	to=$((from + SAMPLE - 1))
	[ "$to" -le "$ROUNDS" ] || to=$ROUNDS
	pids=()
	for ((w = 1; w <= JOBS; w++)); do
		rm -f "$TOP/w$w/counts"
		work "$w" "$from" "$to" &
		pids+=($!)
	done
	wait "${pids[@]}"	# not a bare wait: the daemon is a background job too
	for ((w = 1; w <= JOBS; w++)); do
		read -r a b c d e f g <"$TOP/w$w/counts" 2>/dev/null ||
			{ a=0 b=0 c=0 d=0 e=0 f=0 g=1; diag "worker $w left no counts"; }
		N_OK=$((N_OK + a)) N_FAIL=$((N_FAIL + b)) N_HOOK_TIMEOUT=$((N_HOOK_TIMEOUT + c))
		N_WEBHOOK=$((N_WEBHOOK + d)) N_RELOAD=$((N_RELOAD + e)) N_ROLLBACK=$((N_ROLLBACK + f))
		BAD=$((BAD + g))
	done
	daemon_running || bail "the daemon died by round $to" "$(tail -n 30 "$TOP/daemon.log")"
	sample "$to"
done

# ---- verdict ----
diag "round deploys fds threads children zombies pss_kb"
for row in "${SERIES[@]}"; do
	diag "$row"
done
is "every round did what it should" "$BAD" 0
is "the daemon is still running" "$(daemon_running && echo yes)" yes
ok "$ROUNDS rounds x $JOBS workers: $N_OK deploys, $N_FAIL failing deploys ($N_HOOK_TIMEOUT hook timeouts), $N_WEBHOOK webhooks, $N_ROLLBACK rollbacks, $N_RELOAD reloads in $((SECONDS - T0)) s"
# Warm-up: the first period fills caches, pools and the helper processes.
if [ "${#SERIES[@]}" -ge 3 ]; then
	read -r _ _ f0 t0 k0 _ p0 <<<"${SERIES[1]}"
	read -r _ _ f1 t1 k1 _ p1 <<<"${SERIES[-1]}"
	zmax=$(printf '%s\n' "${SERIES[@]}" | awk '$6 > m { m = $6 } END { print m + 0 }')
	check "descriptors stay flat ($f0 -> $f1, at most +3)" test "$f1" -le $((f0 + 3))
	check "threads stay flat ($t0 -> $t1, at most +2)" test "$t1" -le $((t0 + 2))
	check "child processes stay flat ($k0 -> $k1, at most +2)" test "$k1" -le $((k0 + 2))
	is "no zombie in any sample" "$zmax" 0
	if ldd "$DEPLOYD_BIN" 2>/dev/null | grep -q 'libasan'; then
		ok "# SKIP PSS ($p0 -> $p1 KB): AddressSanitizer's quarantine holds freed memory by design"
	else
		# Memory moves with the allocator's arenas: a leak lifts even the smallest late
		# sample above the largest early one.
		half=$(( (${#SERIES[@]} + 1) / 2 ))
		p0=$(printf '%s\n' "${SERIES[@]:1:half-1}" | awk '$7 > m { m = $7 } END { print m + 0 }')
		p1=$(printf '%s\n' "${SERIES[@]:half}" | awk 'NR == 1 || $7 < m { m = $7 } END { print m + 0 }')
		check "PSS stays flat (largest early $p0 KB, smallest late $p1 KB, at most +$SLACK_KB KB + 5 %)" \
			test "$p1" -le $((p0 + SLACK_KB + p0 / 20))
	fi
else
	fail "at least three samples (got ${#SERIES[@]}; ROUNDS must be at least 2 x SOAK_SAMPLE)"
fi
stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
