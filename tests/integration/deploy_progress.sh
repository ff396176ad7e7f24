#!/bin/bash
# deploy_progress.sh: `deploy --wait` shows live progress as plain lines and on a terminal; the events stream behind it.
# timeout: 180
. "$(dirname "$0")/../lib.sh"

need() { command -v "$1" >/dev/null || bail "$1 is not installed"; }
need script
need curl

mkdir -p "$TMP/srv"
make_repo "$TMP/srv/site" || bail "make_repo failed"
make_big_repo "$TMP/srv/site" 2000 || bail "make_big_repo failed"
H1=$(repo_head "$TMP/srv/site")
PORT=$(free_port) || bail "no free port"
spawn "$TMP/git-daemon.log" git daemon --reuseaddr --listen=127.0.0.1 --port="$PORT" \
	--base-path="$TMP/srv" --export-all --informative-errors
wait_for "git daemon on port $PORT" 10 git ls-remote "git://127.0.0.1:$PORT/site.git" ||
	bail "git daemon did not come up: $(cat "$TMP/git-daemon.log")"

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$PORT/site.git" "$WWW" poll=0)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "the start-up deploy goes live" wait_live "$WWW" "$H1" 60
wait_for "idle" 10 site_field_is www state idle
SOCK=$TMP/deployd.sock

# 1. Not a terminal: one plain line per step, progress with counts, then the outcome.
commit_file "$TMP/srv/site" index2.html "two" "two" || bail "commit failed"
H2=$(repo_head "$TMP/srv/site")
out=$(dctl deploy www --wait 2>&1)
is "deploy --wait (plain): exit 0" "$?" 0
diag "plain output:" "$out"
like "plain: a fetching line" "$out" '^www: fetching'
like "plain: fetch progress with object counts and bytes" "$out" \
	'www: fetching [0-9]+/[0-9]+ objects, [0-9.]+ (B|KiB|MiB)'
like "plain: a writing line" "$out" '^www: writing'
like "plain: write progress with file counts (the tree has 2,000+ files)" "$out" \
	'www: writing 2[0-9]{3}/2[0-9]{3} files'
like "plain: an activating line" "$out" '^www: activating'
like "plain: the outcome names the commit and release" "$out" \
	"^www: deployed; ${H2:0:12} is live as [0-9]{8}T[0-9]{6}Z-${H2:0:12}\$"
check_not "plain: no terminal control sequences" grep -q $'\033' <<<"$out"
is "plain: the outcome is the last line" "$(tail -n 1 <<<"$out" | cut -c1-14)" "www: deployed;"
check "plain: the commit is live when --wait returns" current_matches "$WWW" "$TMP/srv/site" "$H2"

# 2. A terminal (script(1) gives the client a pty): one line rewritten in place, with a bar.
commit_file "$TMP/srv/site" index3.html "three" "three" || bail "commit failed"
H3=$(repo_head "$TMP/srv/site")
script -qefc "$(printf '%q ' "$DEPLOYD_BIN" deploy www --wait -c "$TMP/deployd.yaml")" \
	"$TMP/tty.out" >/dev/null 2>&1 </dev/null
is "deploy --wait (terminal): exit 0" "$?" 0
tty=$(cat "$TMP/tty.out")
diag "terminal output:" "$(tr '\r\033' '|^' <"$TMP/tty.out")"
like "terminal: lines are rewritten in place (CR, erase line)" "$tty" $'\r\033\\[K'
like "terminal: a progress bar while fetching" "$tty" 'fetching \[[#.]{20}\] [0-9]+/[0-9]+ objects'
like "terminal: a progress bar while writing" "$tty" 'writing \[[#.]{20}\] [0-9]+/2[0-9]{3} files'
like "terminal: the elapsed time is shown" "$tty" '\.\.\. [0-9.]+(ms|s)'
like "terminal: the outcome" "$tty" "www: deployed; ${H3:0:12} is live"
check "terminal: the commit is live" current_is "$WWW" "$H3"

# 3. The events stream itself, as curl sees it: JSON lines, in order. Opened before the deploy
# is asked for, so it sees every step.
commit_file "$TMP/srv/site" index4.html "four" "four" || bail "commit failed"
H4=$(repo_head "$TMP/srv/site")
curl -sSN --unix-socket "$SOCK" http://localhost/v1/sites/www/events >"$TMP/events.out" 2>"$TMP/events.err" &
CURL=$!
track_pid "$CURL"
wait_for "the stream's first line" 5 test -s "$TMP/events.out"
id=$(curl -sS --unix-socket "$SOCK" -X POST -d '{}' http://localhost/v1/sites/www/deploy | jq -r .id)
like "a deploy request returns an id" "$id" '^[0-9]+$'
check "the stream reports the job done" wait_for "job $id done" 60 \
	eval "jq -e -s 'map(select(.done_id >= $id)) | length > 0' '$TMP/events.out' >/dev/null"
kill "$CURL" 2>/dev/null
wait "$CURL" 2>/dev/null
n=$(wc -l <"$TMP/events.out")
check "the stream has several events ($n)" test "$n" -ge 4
check "every line is a JSON object" jq -e -s 'all(type == "object")' "$TMP/events.out"
is "seq only grows" "$(jq -s '[.[].seq] | . == (sort)' "$TMP/events.out")" true
# Each line is the state when the stream caught up: a slow reader (a loaded machine, a
# sanitizer build) may see short steps merged, but never out of order. A cache upkeep
# may follow the deploy (after done_id moves) before the site is idle again.
like "states seen in order: idle, the job's steps, idle" \
	"$(jq -r .state "$TMP/events.out" | uniq | tr '\n' ' ')" \
	'^idle ((queued|starting|fetching|writing|hook|activating) )*(fetching|writing|activating) ((queued|starting|fetching|writing|hook|activating|health-check|cache-upkeep) )*idle $'
order=$(jq -r .state "$TMP/events.out" | uniq | awk '{ r["idle"]=0; r["queued"]=1; r["starting"]=2;
	r["fetching"]=3; r["writing"]=4; r["hook"]=5; r["activating"]=6; r["health-check"]=7
	r["cache-upkeep"]=8 }
	NR > 1 && $0 != "idle" && r[$0] < last { bad = 1 } { last = ($0 == "idle") ? 0 : r[$0] } END { print bad + 0 }')
is "the job's steps never go backwards" "$order" 0
is "the job's last event: done, ok, the commit" \
	"$(jq -c "select(.done_id >= $id) | [.done_ok, .done_commit]" "$TMP/events.out" | head -n 1)" \
	"[true,\"$H4\"]"
is "and the new release" "$(jq -r "select(.done_id >= $id) | .done_release" "$TMP/events.out" | head -n 1)" \
	"$(current_release "$WWW")"
check "fetch progress counts objects" \
	jq -e -s 'map(select(.progress.objects_total > 0)) | length > 0' "$TMP/events.out"
check "write progress counts files against the tree's total" \
	jq -e -s 'map(select(.progress.files_total > 2000 and .progress.files > 0)) | length > 0' "$TMP/events.out"
is "events carry the running commit once it is known" \
	"$(jq -r 'select(.state == "writing" or .state == "activating") | .commit' "$TMP/events.out" | head -n 1)" "$H4"

# events?id=N of a job already done: one line, and the stream ends by itself.
timeout 10 curl -sSN --unix-socket "$SOCK" "http://localhost/v1/sites/www/events?id=$id" >"$TMP/done.out"
is "events?id=N ends by itself once job N is done" "$?" 0
is "with the job's outcome" "$(jq -c '[.done_ok, .done_commit]' "$TMP/done.out")" "[true,\"$H4\"]"

# 4. Without id the stream stays open; it sends the current snapshot at once.
timeout 2 curl -sSN --unix-socket "$SOCK" http://localhost/v1/sites/www/events >"$TMP/open.out" 2>/dev/null
is "an open stream is still open after 2 s (timeout ended it)" "$?" 124
is "and sent the idle snapshot first" "$(head -n 1 "$TMP/open.out" | jq -r .state)" idle

# 5. Bad requests: unknown site, bad id; the daemon is unaffected.
code=$(curl -s -o "$TMP/e.json" -w '%{http_code}' --unix-socket "$SOCK" http://localhost/v1/sites/nope/events)
is "events of an unknown site: 404" "$code" 404
like "and says so" "$(cat "$TMP/e.json")" "unknown site"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://localhost/v1/sites/www/events?id=abc")
is "events with a bad id: 400" "$code" 400
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" -X POST http://localhost/v1/sites/www/events)
is "POST to events: 405" "$code" 405

# 6. A stream open while the daemon stops ends cleanly, and the daemon does not hang.
curl -sSN --unix-socket "$SOCK" http://localhost/v1/sites/www/events >/dev/null 2>&1 &
CURL=$!
sleep 0.5
stop_daemon
is "the daemon stops promptly with a stream open (exit 0)" "$DAEMON_STATUS" 0
check "the stream ended with the daemon" wait_for "curl to exit" 5 eval '! kill -0 '"$CURL"' 2>/dev/null'

# 7. deploy --wait when the daemon dies under it: exit 1, and it says the deploy did not finish.
write_config "$TMP/deployd.yaml" "$(site_yaml www "git://127.0.0.1:$PORT/site.git" "$WWW" poll=0 \
	'hooks={pre_activate: [/bin/sleep, "20"], timeout: 60s}')"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
wait_for "idle" 30 site_field_is www state idle
commit_file "$TMP/srv/site" index5.html "five" "five" || bail "commit failed"
dctl deploy www --wait >"$TMP/dying.out" 2>&1 &
WAITER=$!
wait_for "the deploy to reach its hook" 60 grep -q '^www: hook' "$TMP/dying.out"
kill9_daemon
wait "$WAITER"
is "deploy --wait: exit 1 when the daemon dies" "$?" 1
like "and it says the deploy did not finish" "$(cat "$TMP/dying.out")" \
	"www: the daemon stopped before the deploy finished"
done_testing
