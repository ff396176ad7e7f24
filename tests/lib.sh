# tests/lib.sh: shared helpers for the integration scripts (TAP output, temp dirs, repos, daemon).
#
# Source it first thing:  . "$(dirname "$0")/../lib.sh"
#
# TAP:      ok DESC | fail DESC [DIAG...] | check DESC CMD... | is DESC GOT WANT | isnt DESC GOT BAD
#           like DESC GOT REGEX | diag MSG... | bail MSG | done_testing (prints 1..N, exit 1 on failure)
# Temp:     $TMP (per script, removed on exit); $HOME points into it, so no user git config leaks in.
# Procs:    spawn LOG CMD... (background, PID in $LAST_PID, killed on exit) | track_pid PID
#           at_exit CMD... (run at exit after processes are stopped, last registered first)
# Waiting:  wait_for DESC SECONDS CMD...  (retries every 0.1 s; 0 on success, 1 + diag on timeout)
# Git:      make_repo DIR (DIR.git bare + DIR work clone) | commit_file WORK PATH CONTENT MSG
#           make_big_repo WORK N | repo_head WORK | push_work WORK [-f]
# Config:   free_port | site_yaml NAME REPO PATH [key=value...] | write_config FILE [SITE_YAML...]
# Daemon:   start_daemon CONFIG | stop_daemon | kill9_daemon | daemon_running | dctl ARGS...
#           status_json [SITE] | site_field SITE JQ_FIELD | site_field_is SITE FIELD VALUE | has_error SITE
# Releases: current_commit PATH | current_release PATH | current_is PATH COMMIT | current_of PATH COMMIT...
#           wait_live PATH COMMIT SECS
#           tree_matches DIR WORK COMMIT | current_matches PATH WORK COMMIT | release_count PATH
#           tmp_releases PATH | no_tmp_releases PATH | $ISO_RE $RELEASE_RE | iso_to_epoch TIME
#
# check runs its command in a subshell: call start_daemon/stop_daemon/spawn directly, e.g.
# `start_daemon "$CFG" || bail "daemon did not start"`.

set -u
export LC_ALL=C
umask 022

if [ -z "${DEPLOYD_BIN:-}" ] || [ ! -x "${DEPLOYD_BIN}" ]; then
	echo "Bail out! DEPLOYD_BIN is not set or not executable ('${DEPLOYD_BIN:-}'); run through tests/run BUILDDIR"
	exit 1
fi
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$LIB_DIR/.." && pwd)}
TEST_NAME=$(basename "$0" .sh)

# ---- TAP ----

_tap_n=0
_tap_failed=0
_tap_done=0

diag() {
	local line
	for line in "$@"; do
		printf '%s\n' "$line" | sed 's/^# //; s/^/# /'
	done
}

ok() {
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - $1"
}

fail() {
	_tap_n=$((_tap_n + 1))
	_tap_failed=$((_tap_failed + 1))
	echo "not ok $_tap_n - $1"
	shift
	[ $# -gt 0 ] && diag "$@"
	return 0
}

# check DESC CMD...: ok if CMD succeeds, else fail with its output. Returns CMD's status.
check() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		ok "$desc"
	else
		fail "$desc" "command failed (status $rc): $*" "$out"
	fi
	return "$rc"
}

# check_not DESC CMD...: ok if CMD fails.
check_not() {
	local desc=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then
		ok "$desc"
		return 0
	fi
	fail "$desc" "command unexpectedly succeeded: $*" "$out"
	return 1
}

is() {
	if [ "$2" = "$3" ]; then
		ok "$1"
		return 0
	fi
	fail "$1" "got:      '$2'" "expected: '$3'"
	return 1
}

isnt() {
	if [ "$2" != "$3" ]; then
		ok "$1"
		return 0
	fi
	fail "$1" "got '$2', which it should not be"
	return 1
}

# like DESC GOT ERE: GOT matches the extended regular expression.
like() {
	if printf '%s' "$2" | grep -Eq -- "$3"; then
		ok "$1"
		return 0
	fi
	fail "$1" "got:          '$2'" "expected ERE: '$3'"
	return 1
}

# unlike DESC GOT ERE: GOT does not match the extended regular expression.
unlike() {
	if ! printf '%s' "$2" | grep -Eq -- "$3"; then
		ok "$1"
		return 0
	fi
	fail "$1" "got:              '$2'" "expected no match: '$3'"
	return 1
}

bail() {
	echo "Bail out! $*"
	[ -f "${TMP:-/nonexistent}/daemon.log" ] && diag "daemon log (tail):" "$(tail -n 30 "$TMP/daemon.log")"
	_tap_done=1
	exit 1
}

# done_testing: the sanitizer check and the plan; TAP_LAST_LINE, if set, is printed last of all
# (a campaign's summary).
done_testing() {
	local san
	# The daemon and its helpers write sanitizer reports to daemon.log, which dies with $TMP.
	if [ -f "$TMP/daemon.log" ]; then
		san=$(grep -E -m 5 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: AddressSanitizer' "$TMP/daemon.log")
		if [ -n "$san" ]; then
			fail "no sanitizer report in the daemon log" "$san" \
				"$(grep -E -A 30 -m 1 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$TMP/daemon.log")"
		else
			ok "no sanitizer report in the daemon log"
		fi
	fi
	echo "1..$_tap_n"
	_tap_done=1
	if [ "$_tap_failed" -gt 0 ] || [ "$_tap_n" -eq 0 ]; then
		[ "$_tap_failed" -gt 0 ] && diag "$_tap_failed of $_tap_n failed"
		if [ -f "$TMP/daemon.log" ]; then
			diag "daemon log (tail):" "$(tail -n 40 "$TMP/daemon.log")"
		fi
		[ -n "${TAP_LAST_LINE:-}" ] && echo "$TAP_LAST_LINE"
		exit 1
	fi
	[ -n "${TAP_LAST_LINE:-}" ] && echo "$TAP_LAST_LINE"
	exit 0
}

# ---- temp dir and processes ----

TMP=$(mktemp -d "/tmp/deployd-test.$TEST_NAME.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
# 0755 so a daemon run as nobody (bad_root) can reach files made for it.
chmod 755 "$TMP"
mkdir -p "$TMP/home"
export HOME=$TMP/home
export GIT_CONFIG_NOSYSTEM=1
export XDG_CONFIG_HOME=$TMP/home/.config
export TMPDIR=$TMP
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

PIDS=()
LAST_PID=
DAEMON_PID=
DAEMON_STATUS=
DAEMON_CONFIG=
# A command prefix for the daemon, e.g. (setpriv --reuid=nobody --regid=nogroup --clear-groups).
DAEMON_PREFIX=()
DAEMON_START_TIMEOUT=${DAEMON_START_TIMEOUT:-15}
DAEMON_STOP_TIMEOUT=${DAEMON_STOP_TIMEOUT:-20}
# Bounds on answer times are multiplied by this (quickstart sets 3 for the sanitizer build).
TIME_SCALE=${TIME_SCALE:-1}

# ensure_deployd_user: as root, `deployd check` probes what the user named by `user:`
# (default deployd) can reach, so that user must exist; make it as the package would.
ensure_deployd_user() {
	[ "$(id -u)" -eq 0 ] || return 0
	id deployd >/dev/null 2>&1 && return 0
	useradd --system --user-group -M -d /var/lib/deployd -s /usr/sbin/nologin deployd ||
		bail "cannot create the deployd system user"
}

# at_exit CMD...: run CMD when the script ends, after its processes are stopped (e.g. umount).
AT_EXIT=()
at_exit() {
	AT_EXIT+=("$(printf '%q ' "$@")")
}

# The start time of PID (clock ticks since boot), so a reused PID is never mistaken for ours.
pid_start() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	set -- $stat
	echo "${20}"
}

# track_pid PID: stop PID when the script ends (if it is still the same process).
track_pid() {
	local st p live=()
	st=$(pid_start "$1") || return 0
	# Forget processes that are gone, so long loops (crash campaigns) keep the list short.
	for p in "${PIDS[@]}"; do
		[ "$(pid_start "${p%%:*}")" = "${p#*:}" ] && live+=("$p")
	done
	PIDS=("${live[@]}" "$1:$st")
}

# spawn LOG CMD...: run CMD in the background with output to LOG; PID in LAST_PID.
spawn() {
	local log=$1
	shift
	"$@" </dev/null >>"$log" 2>&1 &
	LAST_PID=$!
	track_pid "$LAST_PID"
}

# True while PID is alive and not a zombie.
pid_alive() {
	local st
	kill -0 "$1" 2>/dev/null || return 1
	st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# Direct children of PID (all threads).
child_pids() {
	cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$'
}

# listener_of PID: the pids of PID's "deployd __listen" children (the webhook listener).
listener_of() {
	local p
	for p in $(child_pids "$1"); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q ' __listen ' && echo "$p"
	done
}

# tree_pids PID: PID and all its descendants.
tree_pids() {
	local c
	echo "$1"
	for c in $(child_pids "$1"); do
		tree_pids "$c"
	done
}

# wait_answering PID NAME LOG CMD...: until CMD succeeds (0), PID dies or DAEMON_START_TIMEOUT
# passes (1, with LOG's tail as a diagnostic).
wait_answering() {
	local pid=$1 name=$2 log=$3 deadline
	shift 3
	deadline=$(($(now_ms) + DAEMON_START_TIMEOUT * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	diag "$name did not start" "$(tail -n 20 "$log")"
	return 1
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
	local pid=$1 secs=$2 deadline
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	deadline=$(( $(now_ms) + secs * 1000 ))
	while pid_alive "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do
		sleep 0.05
	done
	if pid_alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null
		sleep 0.1
	fi
}

_lib_cleanup() {
	local rc=$? pid c i
	trap - EXIT INT TERM HUP
	# Children first: once the daemon is gone they are orphans we could no longer name.
	for pid in ${DAEMON_PID:+$DAEMON_PID}; do
		for c in $(child_pids "$pid"); do track_pid "$c"; done
	done
	for pid in "${PIDS[@]}"; do
		[ "$(pid_start "${pid%%:*}")" = "${pid#*:}" ] && stop_pid "${pid%%:*}" 5
	done
	for pid in "${PIDS[@]}"; do
		wait "${pid%%:*}" 2>/dev/null
	done
	for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${AT_EXIT[i]}" >/dev/null 2>&1
	done
	if [ "$_tap_done" -eq 0 ]; then
		echo "not ok $((_tap_n + 1)) - $TEST_NAME ended before done_testing (status $rc)"
		[ -f "$TMP/daemon.log" ] && diag "daemon log (tail):" "$(tail -n 40 "$TMP/daemon.log")"
		rc=1
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "# kept $TMP"
	else
		chmod -R u+rwX "$TMP" 2>/dev/null
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap _lib_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---- time and waiting ----

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((10#$t / 1000))
}

# wait_for DESC SECONDS CMD...: retry CMD every 0.1 s until it succeeds or SECONDS pass.
wait_for() {
	local desc=$1 secs=$2 deadline
	shift 2
	deadline=$(( $(now_ms) + ${secs%.*} * 1000 ))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(now_ms)" -ge "$deadline" ] && break
		sleep 0.1
	done
	diag "timed out after ${secs}s waiting for: $desc"
	return 1
}

# ---- git repositories ----

git_q() {
	git -c core.autocrlf=false -c advice.detachedHead=false "$@"
}

# make_repo DIR: DIR.git (bare, branch main) and DIR (a work clone with an identity).
make_repo() {
	local dir=$1
	git_q init -q --bare -b main "$dir.git" || return 1
	git_q clone -q "$dir.git" "$dir" 2>/dev/null || return 1
	git_q -C "$dir" symbolic-ref HEAD refs/heads/main
	git_q -C "$dir" config user.name "Deployd Test"
	git_q -C "$dir" config user.email "test@deployd.invalid"
	git_q -C "$dir" config commit.gpgsign false
}

# push_work WORK [-f]: push WORK's HEAD to main.
push_work() {
	git_q -C "$1" push -q ${2:+"$2"} origin HEAD:refs/heads/main
}

# commit_file WORK PATH CONTENT MSG: write, commit and push one file.
commit_file() {
	local work=$1 path=$2 content=$3 msg=$4
	mkdir -p "$(dirname "$work/$path")"
	printf '%s' "$content" >"$work/$path"
	git_q -C "$work" add -- "$path" &&
		git_q -C "$work" commit -q -m "$msg" &&
		push_work "$work"
}

# make_big_repo WORK N: N files in nested folders (plus an executable and a symlink), one commit.
make_big_repo() {
	local work=$1 n=$2 i d pad
	pad=$(printf 'deployd test content line %.0s\n' {1..12})
	for ((i = 0; i < n; i++)); do
		d=$work/site/d$((i % 10))/e$((i % 7))
		[ -d "$d" ] || mkdir -p "$d"
		printf 'file %d\n%s' "$i" "$pad" >"$d/f$i.html"
	done
	printf '#!/bin/sh\necho hi\n' >"$work/site/run.sh"
	chmod 755 "$work/site/run.sh"
	ln -sfn d0/e0/f0.html "$work/site/index.html"
	git_q -C "$work" add -A &&
		git_q -C "$work" commit -q -m "big tree of $n files" &&
		push_work "$work"
}

repo_head() {
	git_q -C "$1" rev-parse HEAD
}

# ---- configuration ----

# free_port: a TCP port on 127.0.0.1 that nothing listens on now (outside the ephemeral range).
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# site_yaml NAME REPO PATH [key=value...]: one entry of "sites:" (branch main, poll 1s unless given).
# A value is written as is, so lists and quoted strings work: 'hooks={timeout: 5s}'.
site_yaml() {
	local name=$1 repo=$2 path=$3 kv k v have_branch=0 have_poll=0
	shift 3
	printf '  - name: %s\n    repo: %s\n    path: %s\n' "$name" "$repo" "$path"
	for kv in "$@"; do
		k=${kv%%=*}
		case $k in branch|tags) have_branch=1 ;; poll) have_poll=1 ;; esac
	done
	[ "$have_branch" -eq 1 ] || printf '    branch: main\n'
	[ "$have_poll" -eq 1 ] || printf '    poll: 1s\n'
	for kv in "$@"; do
		k=${kv%%=*}
		v=${kv#*=}
		printf '    %s: %s\n' "$k" "$v"
	done
}

# write_config FILE [SITE_YAML...]: a whole deployd.yaml in $TMP. Globals come from
# CFG_LISTEN, CFG_SOCKET, CFG_STATE, CFG_LOG_LEVEL, CFG_MAX_PARALLEL and CFG_EXTRA (raw lines).
# The engine runs as CFG_USER (default: whoever runs the test, so root keeps root; the
# privilege drop has its own test).
write_config() {
	local file=$1 s
	shift
	: "${CFG_LISTEN:=127.0.0.1:$(free_port)}"
	: "${CFG_SOCKET:=$TMP/deployd.sock}"
	: "${CFG_STATE:=$TMP/state}"
	: "${CFG_LOG_LEVEL:=debug}"
	{
		echo "# written by tests/integration/$TEST_NAME.sh"
		echo "listen: $CFG_LISTEN"
		echo "control_socket: $CFG_SOCKET"
		echo "state_dir: $CFG_STATE"
		echo "log_level: $CFG_LOG_LEVEL"
		echo "user: ${CFG_USER:-$(id -un)}"
		[ -n "${CFG_MAX_PARALLEL:-}" ] && echo "max_parallel_deploys: $CFG_MAX_PARALLEL"
		[ -n "${CFG_EXTRA:-}" ] && printf '%s\n' "$CFG_EXTRA"
		echo "sites:"
		for s in "$@"; do
			printf '%s\n' "$s"
		done
	} >"$file"
	DAEMON_CONFIG=$file
}

# ---- webhooks ----

# hmac256 KEY FILE: the hex HMAC-SHA256 of FILE, as GitHub's X-Hub-Signature-256 carries it.
hmac256() {
	openssl dgst -sha256 -hmac "$1" -r <"$2" | cut -d' ' -f1
}

# github_push SECRET URL COMMIT DELIVERY: POST the sample GitHub push naming COMMIT, signed
# with SECRET; prints the HTTP status, and leaves the answer in $TMP/resp.json.
github_push() {
	jq -cj --arg a "$3" '.after = $a' "$SRCDIR/tests/unit/data/hooks/github-push.json" \
		>"$TMP/push.json"
	curl -sS -o "$TMP/resp.json" -w '%{http_code}' --max-time 10 \
		-H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
		-H "X-GitHub-Delivery: $4" \
		-H "X-Hub-Signature-256: sha256=$(hmac256 "$1" "$TMP/push.json")" \
		--data-binary "@$TMP/push.json" "$2"
}

# ---- the daemon ----

daemon_running() {
	[ -n "$DAEMON_PID" ] && pid_alive "$DAEMON_PID"
}

# dctl ARGS...: a client command against the current config (deployd ARGS -c CONFIG).
dctl() {
	"$DEPLOYD_BIN" "$@" -c "$DAEMON_CONFIG"
}

# start_daemon CONFIG: serve in the background and wait until `status` answers.
start_daemon() {
	local cfg=$1 deadline
	DAEMON_CONFIG=$cfg
	echo "---- start $(date -u +%H:%M:%S.%N) ----" >>"$TMP/daemon.log"
	# In sanitizer builds the daemon runs without LeakSanitizer: its exit-time scan has hung
	# the daemon after "stopped" now and then under ASan here. Its leaks are checked by
	# valgrind_daemon.sh instead; the unit tests keep LeakSanitizer.
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		"${DAEMON_PREFIX[@]}" "$DEPLOYD_BIN" serve -c "$cfg" </dev/null >>"$TMP/daemon.log" 2>&1 &
	DAEMON_PID=$!
	DAEMON_STATUS=
	track_pid "$DAEMON_PID"
	deadline=$(( $(now_ms) + DAEMON_START_TIMEOUT * 1000 ))
	while :; do
		"$DEPLOYD_BIN" status -c "$cfg" >/dev/null 2>&1 && return 0
		if ! pid_alive "$DAEMON_PID"; then
			wait "$DAEMON_PID" 2>/dev/null
			DAEMON_STATUS=$?
			diag "daemon exited during start-up (status $DAEMON_STATUS)" "$(tail -n 20 "$TMP/daemon.log")"
			return 1
		fi
		[ "$(now_ms)" -ge "$deadline" ] && break
		sleep 0.1
	done
	diag "daemon did not answer status within ${DAEMON_START_TIMEOUT}s" "$(tail -n 20 "$TMP/daemon.log")"
	return 1
}

# stop_daemon: SIGTERM, bounded wait, then SIGKILL. Exit status in DAEMON_STATUS
# (137 when it had to be killed). Returns 0 if it exited by itself.
stop_daemon() {
	local pid=$DAEMON_PID deadline
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	deadline=$(( $(now_ms) + DAEMON_STOP_TIMEOUT * 1000 ))
	while pid_alive "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do
		sleep 0.05
	done
	if pid_alive "$pid"; then
		diag "daemon ignored SIGTERM for ${DAEMON_STOP_TIMEOUT}s; killing it"
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		DAEMON_STATUS=$?
		DAEMON_PID=
		return 1
	fi
	wait "$pid" 2>/dev/null
	DAEMON_STATUS=$?
	DAEMON_PID=
	return 0
}

# kill9_daemon: SIGKILL, as a crash would. Its helper processes are left running (as after a
# real crash) but tracked, so they die when the script ends; their PIDs are in DAEMON_ORPHANS.
kill9_daemon() {
	local pid=$DAEMON_PID c
	DAEMON_ORPHANS=()
	[ -n "$pid" ] || return 0
	for c in $(child_pids "$pid"); do
		DAEMON_ORPHANS+=("$c")
		track_pid "$c"
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	DAEMON_STATUS=$?
	DAEMON_PID=
	return 0
}
DAEMON_ORPHANS=()

# status_json [SITE]: deployd status --json.
status_json() {
	"$DEPLOYD_BIN" status ${1:+"$1"} --json -c "$DAEMON_CONFIG"
}

# site_field SITE FIELD: one field of the site's status, as jq -r prints it ("null" if null).
site_field() {
	status_json "$1" | jq -r ".$2"
}

# site_field_is SITE FIELD VALUE: for wait_for.
site_field_is() {
	[ "$(site_field "$1" "$2")" = "$3" ]
}

# ---- releases ----

# current_release PATH: the release name that PATH/current points to.
current_release() {
	local t
	t=$(readlink "$1/current") || return 1
	case $t in
	releases/*) echo "${t#releases/}" ;;
	*) return 1 ;;
	esac
}

# current_commit PATH: the 12-hex commit suffix of the live release.
current_commit() {
	local r
	r=$(current_release "$1") || return 1
	[[ $r =~ ^[0-9]{8}T[0-9]{6}Z-([0-9a-f]{12})$ ]] || return 1
	echo "${BASH_REMATCH[1]}"
}

# current_is PATH COMMIT: current names a release of COMMIT (a full or 12-hex id).
current_is() {
	[ "$(current_commit "$1" 2>/dev/null)" = "${2:0:12}" ]
}

# release_count PATH: finished releases (no .tmp-*).
release_count() {
	find "$1/releases" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null | wc -l
}

# tmp_releases PATH: leftover temporary releases, one a line.
tmp_releases() {
	find "$1/releases" -mindepth 1 -maxdepth 1 -name '.tmp-*' -printf '%f\n' 2>/dev/null
}

# A listing of a tree: type, exec bit for files, symlink targets.
_tree_listing() {
	(cd "$1" && find . -mindepth 1 \( -type l -printf '%P l -> %l\n' \) -o \
		\( -type f -perm -u=x -printf '%P f x\n' \) -o \
		\( -type f -printf '%P f -\n' \) -o \( -printf '%P %y\n' \)) | sort
}

# tree_matches DIR WORK COMMIT: DIR (e.g. PATH/current) holds exactly COMMIT's tree: the same
# paths, bytes, symlink targets and executable bits, and nothing else (no .git).
tree_matches() {
	local dir want out
	dir=$(realpath -e "$1" 2>/dev/null) || { diag "tree_matches: $1 does not resolve"; return 1; }
	want=$(mktemp -d "$TMP/want.XXXXXX")
	if ! git_q -C "$2" archive --format=tar "$3" | tar -x -C "$want"; then
		diag "tree_matches: git archive $3 failed"
		return 1
	fi
	if ! out=$(diff -r --no-dereference "$want" "$dir" 2>&1); then
		diag "tree_matches: $1 differs from commit $3:" "$(printf '%s\n' "$out" | head -n 20)"
		rm -rf "$want"
		return 1
	fi
	if ! out=$(diff <(_tree_listing "$want") <(_tree_listing "$dir")); then
		diag "tree_matches: types or modes differ from commit $3 (< commit, > release):" \
			"$(printf '%s\n' "$out" | head -n 20)"
		rm -rf "$want"
		return 1
	fi
	rm -rf "$want"
	return 0
}

# current_matches PATH WORK COMMIT: current names COMMIT's release and it matches the tree.
current_matches() {
	current_is "$1" "$3" && tree_matches "$1/current" "$2" "$3"
}

# wait_live PATH COMMIT SECONDS: until current names COMMIT.
wait_live() {
	wait_for "commit ${2:0:12} live in $1" "$3" current_is "$1" "$2"
}

# An ISO-8601 UTC time as status prints it.
ISO_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'
# A release directory name.
RELEASE_RE='^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$'

# iso_to_epoch TIME: seconds since the epoch, for comparisons.
iso_to_epoch() {
	date -u -d "$1" +%s
}

# no_tmp_releases PATH: no .tmp-* in PATH/releases (for wait_for: re-evaluated on each try).
no_tmp_releases() {
	[ -z "$(tmp_releases "$1")" ]
}

# current_of PATH COMMIT...: print the one of COMMITs (full ids) that PATH/current names.
current_of() {
	local path=$1 cc c
	shift
	cc=$(current_commit "$path") || return 1
	for c in "$@"; do
		[ "${c:0:12}" = "$cc" ] && { echo "$c"; return 0; }
	done
	return 1
}

# has_error SITE: status shows a last_error for SITE.
has_error() {
	local e
	e=$(site_field "$1" last_error) || return 1
	[ -n "$e" ] && [ "$e" != null ]
}
