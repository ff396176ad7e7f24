#!/bin/bash
# crash-campaign.sh: SIGKILL the daemon at random instants of real deploys, restart it, and prove after every kill that current is one commit's complete tree.
#
# usage: tests/crash-campaign.sh DEPLOYD_BIN [KILLS]      (default 50 kills)
#
# A repository of CRASH_FILES (2,000) files; the daemon polls every second, keeps 3 releases
# (so every deploy prunes) and runs a pre_activate hook, so a kill can land in the poll,
# the fetch child, the write of the release, the hook, the rename, the swap, the state save
# or the prune. Each round pushes a commit that rewrites a tenth of the files, adds and
# removes some and flips an executable bit; half the rounds also ask for a deploy at once.
# After a random 0-N ms it SIGKILLs the daemon, restarts it and, once `deployd status`
# answers (recovery has run), checks:
#   - current resolves to a release named after one of the pushed commits, and that release
#     matches `git archive` of that commit exactly: paths, bytes (git blob ids), symlink
#     targets and executable bits, with no set-id bit and every file world-readable (the
#     daemon is frozen with SIGSTOP meanwhile, so a deploy it starts cannot change the tree);
#   - no temporary release of the killed daemon survived the restart (each is marked before
#     the restart, so a new deploy's .tmp-* is not mistaken for it);
#   - state.json is intact JSON.
# At the end the newest commit must go live. Output is TAP (tests/lib.sh), one line per kill,
# then "kills=N violations=M" with the phases the kills landed in.
#
# Environment: CRASH_FILES (2000), CRASH_MAX_DELAY_MS (fixed; default: 1.2 times a measured
# deploy with its prune, narrowed while kills find the deploy done and widened while they find it not begun),
# CRASH_TIME_LIMIT (seconds; stop starting new kills after it, 0 = none), CRASH_MIN_KILLS (how
# many kills must have happened by then; default all of them), CRASH_SEED (for
# $RANDOM), CRASH_HOOK (0 to run without the pre_activate hook; with it, reuse: auto never
# picks hard links), CRASH_REUSE (the site's reuse: auto, reflink, hardlink or copy).

if [ -n "${1:-}" ]; then
	DEPLOYD_BIN=$(realpath -e "$1") || { echo "Bail out! no such binary: $1"; exit 1; }
	export DEPLOYD_BIN
fi
KILLS=${2:-50}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case $KILLS in ''|*[!0-9]*) bail "usage: tests/crash-campaign.sh DEPLOYD_BIN [KILLS]" ;; esac
FILES=${CRASH_FILES:-2000}
LIMIT=${CRASH_TIME_LIMIT:-0}
MIN_KILLS=${CRASH_MIN_KILLS:-$KILLS}
RANDOM=${CRASH_SEED:-$$}
MARK=.crash-campaign-killed
T0=$SECONDS

make_repo "$TMP/src" || bail "make_repo failed"
make_big_repo "$TMP/src" "$FILES" || bail "make_big_repo failed"
ALL=("$(repo_head "$TMP/src")")
WWW=$TMP/www
extra=()
[ "${CRASH_HOOK:-1}" != 0 ] && extra+=('hooks={pre_activate: [/bin/sleep, "0.05"], timeout: 30s}')
[ -n "${CRASH_REUSE:-}" ] && extra+=("reuse=$CRASH_REUSE")
CFG_LOG_LEVEL=info write_config "$TMP/deployd.yaml" \
	"$(site_yaml www "$TMP/src.git" "$WWW" poll=1s keep=3 "${extra[@]}")"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "${ALL[0]}" 120 || bail "the first deploy did not happen"
check "the first release of $FILES files matches its commit" \
	tree_matches "$WWW/current" "$TMP/src" "${ALL[0]}" || bail "the first release is wrong"

# manifest DIR: one sorted line per entry: path, type, and for a file its owner-exec bit and
# git blob id (so bytes are compared), for a symlink its target. Much faster than diff -r on
# 2,000 files, and as exact. Unsafe modes (set-id bits, not world-readable) are listed too.
cat >"$TMP/manifest.py" <<'EOF'
import hashlib, os, stat, sys, tarfile

def blob(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

out = []
if sys.argv[1] == "-":
    # a `git archive` tar on stdin, read in place of extracting it
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
        for m in t:
            rel = m.name.rstrip("/")
            if m.issym():
                out.append("%s\tlink\t%s" % (rel, m.linkname))
            elif m.isdir():
                out.append("%s\tdir" % rel)
            elif m.isreg():
                x = "755" if m.mode & stat.S_IXUSR else "644"
                out.append("%s\tfile\t%s\t%s" % (rel, x, blob(t.extractfile(m).read())))
            else:
                out.append("%s\tother" % rel)
else:
    root = sys.argv[1]
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out.append("%s\tlink\t%s" % (rel, os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                out.append("%s\tdir" % rel)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = blob(f.read())
                x = "755" if st.st_mode & stat.S_IXUSR else "644"
                out.append("%s\tfile\t%s\t%s" % (rel, x, h))
                if st.st_mode & (stat.S_ISUID | stat.S_ISGID) or not st.st_mode & stat.S_IROTH:
                    out.append("%s\tUNSAFE-MODE\t%o" % (rel, st.st_mode & 0o7777))
            else:
                out.append("%s\tother" % rel)
out.sort()
print("\n".join(out))
EOF

# commit_manifest COMMIT: the manifest of `git archive COMMIT`, made once per commit.
commit_manifest() {
	local m=$TMP/manifests/$1 part
	if [ ! -f "$m" ]; then
		mkdir -p "$TMP/manifests"
		part=$m.$BASHPID	# two callers may build it at once
		git_q -C "$TMP/src" archive --format=tar "$1" |
			python3 "$TMP/manifest.py" - >"$part" && mv "$part" "$m" || return 1
	fi
	cat "$m"
}

# release_matches DIR COMMIT: DIR holds exactly COMMIT's tree; the differences otherwise.
release_matches() {
	local got want
	got=$(python3 "$TMP/manifest.py" "$(realpath -e "$1")") || return 1
	want=$(commit_manifest "$2") || { echo "cannot archive $2"; return 1; }
	if [ "$got" != "$want" ]; then
		diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | head -n 20 |
			sed 's/^</commit: /; s/^>/release:/'
		return 1
	fi
	return 0
}

# new_commit I: rewrite a tenth of the files, add one, remove one, flip an executable
# bit, and now and then retarget the symlink; commit and push.
new_commit() {
	local i=$1 f x
	for f in $(cd "$TMP/src" && git ls-files 'site/d*' | awk -v s="$i" 'NR % 10 == s % 10'); do
		printf 'rewritten in round %d\n' "$i" >>"$TMP/src/$f"
	done
	printf 'round %d\n' "$i" >"$TMP/src/site/round-$i.txt"
	[ "$i" -gt 3 ] && git_q -C "$TMP/src" rm -q --ignore-unmatch "site/round-$((i - 3)).txt"
	x=$TMP/src/site/d$((i % 10))/e$((i % 7))/f$(( (i % 10) + 10 * (i % 7) )).html
	if [ -f "$x" ]; then
		if [ -x "$x" ]; then chmod -x "$x"; else chmod +x "$x"; fi
	fi
	[ $((i % 7)) -eq 0 ] && ln -sfn "round-$i.txt" "$TMP/src/site/index.html"
	git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "round $i" &&
		push_work "$TMP/src"
}

# Calibrate: how long does one update take from the push to the swap, and to the end of
# its prune (the site idle again)?
new_commit 0 || bail "commit failed"
ALL+=("$(repo_head "$TMP/src")")
t=$(now_ms)
dctl deploy www >/dev/null 2>&1
wait_live "$WWW" "${ALL[-1]}" 120 || bail "the calibration deploy did not happen"
DEPLOY_MS=$(( $(now_ms) - t ))
wait_for "the calibration deploy to finish" 120 site_field_is www state idle
DONE_MS=$(( $(now_ms) - t ))
# The fast check agrees with lib.sh's diff-based one, and it can fail.
check "the manifest check accepts the release of its commit" release_matches "$WWW/current" "${ALL[-1]}"
check_not "the manifest check refuses the release of another commit" \
	release_matches "$WWW/current" "${ALL[0]}"
check "lib.sh's tree_matches agrees" tree_matches "$WWW/current" "$TMP/src" "${ALL[-1]}"
MAXD=${CRASH_MAX_DELAY_MS:-$(( DONE_MS * 6 / 5 > 600 ? DONE_MS * 6 / 5 : 600 ))}
diag "an update of $FILES files is live after ${DEPLOY_MS} ms and done after ${DONE_MS} ms;" \
	"kills land 0-${MAXD} ms after the push"

# lib.sh stops every PID it tracked when the script ends, and kill9_daemon tracks the
# killed daemon's helpers. With pid_max at 32768 and dozens of processes a round, the PID of
# a helper that died long ago may be someone else's by then: forget the dead ones each round.
forget_dead_pids() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		pid_alive "${p%%:*}" && keep+=("$p")	# entries are PID:START
	done
	PIDS=("${keep[@]}")
}

violations=0
kills=0
declare -A phases=()

violation() {
	violations=$((violations + 1))
	fail "$@"
}

for ((k = 1; k <= KILLS; k++)); do
	if [ "$LIMIT" -gt 0 ] && [ $((SECONDS - T0)) -ge "$LIMIT" ]; then
		diag "time limit of ${LIMIT}s reached after $kills kills"
		break
	fi
	# Every other round lets the restarted daemon finish its own deploy first, so kills
	# land all along a fresh deploy too, not only in the one that follows a restart.
	[ $((k % 2)) -eq 1 ] && wait_for "the site to be idle" 30 site_field_is www state idle >/dev/null
	new_commit "$k" || bail "commit $k failed"
	ALL+=("$(repo_head "$TMP/src")")
	commit_manifest "${ALL[-1]}" >/dev/null 2>&1 &	# ready by the time it is needed
	how=poll
	if [ $((RANDOM % 2)) -eq 0 ]; then
		how=request
		dctl deploy www >/dev/null 2>&1
	fi
	d=$(( (RANDOM * 32768 + RANDOM) % (MAXD + 1) ))
	sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
	phase=$("$DEPLOYD_BIN" status www --json -c "$DAEMON_CONFIG" 2>/dev/null | jq -r .state 2>/dev/null)
	kill9_daemon
	kills=$((kills + 1))
	phase=${phase:-unknown}
	phases[$phase]=$(( ${phases[$phase]:-0} + 1 ))

	# What the crash left: the commit current names, and temporary releases, which get a
	# mark so that the restart is seen to remove exactly them.
	before=$(current_commit "$WWW" 2>/dev/null)
	# Deploys speed up and slow down with the machine's load: a kill that finds the
	# deploy already done narrows the window, one that finds it not begun widens it.
	if [ -z "${CRASH_MAX_DELAY_MS:-}" ] && [ "$phase" = idle ]; then
		if [ "$before" = "${ALL[-1]:0:12}" ]; then
			MAXD=$(( MAXD * 9 / 10 > 300 ? MAXD * 9 / 10 : 300 ))
		else
			MAXD=$(( MAXD * 11 / 10 < DONE_MS * 4 ? MAXD * 11 / 10 : MAXD ))
		fi
	fi
	tmps=$(tmp_releases "$WWW")
	for t in $tmps; do
		: >"$WWW/releases/$t/$MARK" 2>/dev/null
	done
	problems=()
	jq -e . "$TMP/state/www/state.json" >/dev/null 2>&1 ||
		problems+=("state.json is not intact JSON after the kill")

	if ! start_daemon "$TMP/deployd.yaml"; then
		violation "kill $k: the daemon restarts" "$(tail -n 20 "$TMP/daemon.log")"
		bail "the daemon does not restart after kill $k"
	fi
	# Recovery ran before the control socket answered. Freeze the daemon while its tree is
	# checked: a deploy or prune it starts meanwhile must not change what is being read.
	kill -STOP "$DAEMON_PID"
	left=$(find "$WWW/releases" -mindepth 2 -maxdepth 2 -name "$MARK" -printf '%h\n' 2>/dev/null)
	[ -n "$left" ] && problems+=("temporary release(s) of the killed daemon survived: $left")
	if ! c=$(current_of "$WWW" "${ALL[@]}"); then
		problems+=("current -> $(readlink "$WWW/current" 2>&1) names none of the pushed commits")
	elif ! out=$(release_matches "$WWW/current" "$c" 2>&1); then
		problems+=("current (${c:0:12}) does not match that commit's tree" "$out")
	fi
	kill -CONT "$DAEMON_PID"
	what="kill $k after ${d} ms ($how, phase $phase; current ${before:-none}, temporary: ${tmps:-none})"
	forget_dead_pids
	if [ ${#problems[@]} -eq 0 ]; then
		ok "$what: after the restart current is ${c:0:12}, complete and exact"
	else
		violation "$what" "${problems[@]}"
	fi
done

summary=""
for p in "${!phases[@]}"; do
	summary="$summary $p=${phases[$p]}"
done
diag "kills by the phase status showed just before:$summary (window at the end: 0-${MAXD} ms)"

if wait_live "$WWW" "${ALL[-1]}" 120; then
	ok "the newest commit goes live after the last kill"
else
	violation "the newest commit goes live after the last kill" "current -> $(readlink "$WWW/current")"
fi
if out=$(release_matches "$WWW/current" "${ALL[-1]}" 2>&1); then
	ok "the newest release matches its commit exactly"
else
	violation "the newest release matches its commit exactly" "$out"
fi
wait_for "the site to be idle" 30 site_field_is www state idle
if wait_for "no temporary release" 10 no_tmp_releases "$WWW"; then
	ok "no temporary release at the end"
else
	violation "no temporary release at the end" "$(tmp_releases "$WWW")"
fi
if [ "$MIN_KILLS" -ge "$KILLS" ]; then
	[ "$kills" -ge "$KILLS" ] || fail "all $KILLS kills happened within the time limit" "only $kills"
else
	if [ "$kills" -ge "$MIN_KILLS" ]; then
		ok "$kills of $KILLS kills happened within the time limit (at least $MIN_KILLS)"
	else
		fail "at least $MIN_KILLS of $KILLS kills happened within the time limit" "only $kills"
	fi
fi
stop_daemon
is "the daemon exits 0 on SIGTERM at the end" "$DAEMON_STATUS" 0
# How the releases' unchanged files were actually taken (the log line of each release written).
reuse=$(grep -o 'reused by [a-z]*' "$TMP/daemon.log" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $4, $1; sep = ","}')
echo "# kills=$kills violations=$violations time=$((SECONDS - T0))s releases reused by: ${reuse:-none}"
done_testing
