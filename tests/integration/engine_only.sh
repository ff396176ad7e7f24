#!/bin/bash
# engine_only.sh: the engine without the daemon (deployd-engine links the floor and the engine alone) deploys a real repository in two phases, across restarts and SIGKILLs.
# timeout: 300
. "$(dirname "$0")/../lib.sh"

ENGINE=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}/deployd-engine
[ -x "$ENGINE" ] || bail "deployd-engine was not built ($ENGINE)"

# No object of the daemon is in it: none of server/'s functions, and no HTTP server.
daemon=$(nm "$ENGINE" 2>/dev/null | grep -E ' [Tt] (sched_|serve_|control_|privsep_|listener_|http_|config_load|metrics_|client_|cmd_)' | head -n 5)
is "deployd-engine holds no function of the daemon" "$daemon" ""
if ldd "$ENGINE" | grep -qE 'libmicrohttpd|libyaml'; then
	fail "deployd-engine needs neither libmicrohttpd nor libyaml" "$(ldd "$ENGINE")"
else
	ok "deployd-engine needs neither libmicrohttpd nor libyaml"
fi

make_repo "$TMP/src" || bail "make_repo failed"
W=$TMP/src
P=$TMP/www
OUT=

# eng CMD [ARGS...]: one run of the engine on the test site; its one line in $OUT.
eng() {
	local cmd=$1
	shift
	OUT=$("$ENGINE" "$cmd" -r "$W.git" -b main -p "$P" -s "$TMP/state" "$@" 2>>"$TMP/engine.log")
}
prepared_name() {
	jq -r '.prepared.name // ""' "$TMP/state/engine/state.json"
}
word() {
	cut -d' ' -f"$1" <<<"$OUT"
}

commit_file "$W" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$W")
eng deploy
is "deploy: exit 0" "$?" 0
is "deploy: the commit went live" "$(word 1) $(word 3)" "$C1 live"
check "deploy: current is the commit's tree" current_matches "$P" "$W" "$C1"

# ---- prepare, then activate ----
commit_file "$W" index.html "two" "C2" || bail "commit failed"
commit_file "$W" extra.html "extra" "C2b" || bail "commit failed"
C2=$(repo_head "$W")
eng prepare
is "prepare: exit 0" "$?" 0
is "prepare: the commit is prepared, not live" "$(word 1) $(word 3)" "$C2 prepared"
R2=$(word 2)
check "prepare: current still names the first commit" current_is "$P" "$C1"
check "prepare: current still holds the first commit's tree" tree_matches "$P/current" "$W" "$C1"
check "prepare: the prepared release is the commit's whole tree" \
	tree_matches "$P/releases/$R2" "$W" "$C2"
is "prepare: state.json names it as prepared" "$(prepared_name)" "$R2"
eng activate
is "activate: exit 0" "$?" 0
is "activate: the prepared release went live" "$(word 2) $(word 3)" "$R2 live"
check "activate: current is the commit's tree" current_matches "$P" "$W" "$C2"
is "activate: nothing is prepared any more" "$(prepared_name)" ""

# ---- prepare, then discard ----
commit_file "$W" index.html "three" "C3" || bail "commit failed"
C3=$(repo_head "$W")
eng prepare
R3=$(word 2)
eng discard
is "discard: exit 0" "$?" 0
check "discard: the prepared release is gone" test ! -e "$P/releases/$R3"
check "discard: current untouched" current_matches "$P" "$W" "$C2"
is "discard: state forgets it" "$(prepared_name)" ""
check_not "activate with nothing prepared fails" eng activate
check "and current is untouched" current_matches "$P" "$W" "$C2"

# ---- prepare, restart (recovery at start-up), activate: every run is a new process ----
eng prepare
R3=$(word 2)
eng recover
is "recover after a prepare: exit 0" "$?" 0
check "recover keeps the prepared release" test -d "$P/releases/$R3"
is "recover keeps its record" "$(prepared_name)" "$R3"
eng activate --release "$R3" --rev "${C3:0:12}"
is "activate after the restart: exit 0" "$?" 0
check "activate after the restart: current is the commit's tree" current_matches "$P" "$W" "$C3"

# ---- prepare, then a newer prepare ----
commit_file "$W" index.html "four" "C4" || bail "commit failed"
eng prepare
R4=$(word 2)
commit_file "$W" index.html "five" "C5" || bail "commit failed"
C5=$(repo_head "$W")
eng prepare
R5=$(word 2)
check "a newer prepare removes the older prepared release" test ! -e "$P/releases/$R4"
is "a newer prepare is what state names" "$(prepared_name)" "$R5"
check_not "the older one cannot be activated" eng activate --release "$R4"
eng activate
is "the newer one is activated" "$?" 0
check "and current is its tree" current_matches "$P" "$W" "$C5"

# ---- SIGKILL during prepare, at pre_activate: current untouched, nothing left behind ----
commit_file "$W" index.html "six" "C6" || bail "commit failed"
C6=$(repo_head "$W")
"$ENGINE" prepare -r "$W.git" -b main -p "$P" -s "$TMP/state" \
	--pre-activate "/bin/sleep 60" >/dev/null 2>>"$TMP/engine.log" &
pid=$!
track_pid "$pid"
if wait_for "pre_activate runs" 30 pgrep -f -P "$pid" "sleep 60"; then
	hook=$(pgrep -f -P "$pid" "sleep 60")
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	kill -9 $hook 2>/dev/null
	ok "killed deployd-engine with SIGKILL while pre_activate ran"
else
	fail "killed deployd-engine with SIGKILL while pre_activate ran"
	kill -9 "$pid" 2>/dev/null
fi
check "after the kill: current untouched" current_matches "$P" "$W" "$C5"
is "after the kill: nothing is recorded as prepared" "$(prepared_name)" ""
eng recover
is "recover after the kill: exit 0" "$?" 0
is "recover after the kill: no unfinished release left" "$(tmp_releases "$P")" ""
eng deploy
is "a deploy after the kill: exit 0" "$?" 0
check "a deploy after the kill: current is the commit's tree" current_matches "$P" "$W" "$C6"
n6=$(find "$P/releases" -mindepth 1 -maxdepth 1 -name "*-${C6:0:12}" | wc -l)
is "the killed prepare's release was pruned as a leftover" "$n6" 1

# ---- SIGKILL at random instants while a large release is written ----
make_big_repo "$W" 3000 || bail "make_big_repo failed"
CB=$(repo_head "$W")
for delay in 0.05 0.2 0.4 0.7 1.0; do
	"$ENGINE" prepare -r "$W.git" -b main -p "$P" -s "$TMP/state" >/dev/null \
		2>>"$TMP/engine.log" &
	pid=$!
	sleep "$delay"
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	check "kill after ${delay}s: current untouched" current_matches "$P" "$W" "$C6"
	eng recover
	is "kill after ${delay}s: recovery leaves no unfinished release" "$(tmp_releases "$P")" ""
	name=$(prepared_name)
	if [ -n "$name" ]; then
		check "kill after ${delay}s: what is recorded as prepared is whole" \
			tree_matches "$P/releases/$name" "$W" "$CB"
	else
		ok "kill after ${delay}s: nothing recorded as prepared"
	fi
done
eng prepare
is "after the kills, prepare completes" "$?" 0
eng activate
is "and activate makes it live" "$?" 0
check "the large release is the commit's tree" current_matches "$P" "$W" "$CB"
if grep -q "ERROR: AddressSanitizer\|runtime error:" "$TMP/engine.log"; then
	fail "no sanitizer report from deployd-engine" "$(grep -m 3 -A 5 'ERROR\|runtime error' "$TMP/engine.log")"
else
	ok "no sanitizer report from deployd-engine"
fi
done_testing
