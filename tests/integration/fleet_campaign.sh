#!/bin/bash
# fleet_campaign.sh: the fleet fault campaign at CI size (tests/fleet-campaign.sh, 30 faults in the two-clouds bed), after showing that its checkers catch what they must.
# timeout: 600
#
# See tests/fleet-campaign.sh for the faults and what is checked; long runs:
# tests/fleet-campaign.sh build/deployd 300. FC_FAULTS overrides the count here.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" -eq 0 ] || { ok "# SKIP the test bed needs root"; done_testing; }

# ---- the checkers, on made-up logs with one breach of each kind ----
D=$TMP/made-up
mkdir -p "$D"
printf '%s\n' "1000 a-n1 20261206T000000Z-aaaaaaaaaaaa" "1500 a-n2 20261206T000000Z-bbbbbbbbbbbb" \
	"1600 b-n1 20261206T000000Z-dddddddddddd" "1000 b-n2 20261206T000000Z-aaaaaaaaaaaa" \
	"2500 a-n3 20261206T000000Z-bbbbbbbbbbbb violation not its commit's tree" >"$D/live.log"
printf '%s\n' '{"commit":"aaaaaaaaaaaa","gen":1,"at":900,"written":900}' \
	'{"commit":"bbbbbbbbbbbb","gen":2,"at":2000,"written":1900}' \
	'{"commit":"cccccccccccc","gen":3,"at":3000,"written":2900}' >"$D/cutovers.jsonl"
printf '%s\n' '{"commit":"aaaaaaaaaaaa","gen":1,"at":800}' '{"commit":"bbbbbbbbbbbb","gen":2,"at":1800}' \
	'{"commit":"cccccccccccc","gen":3,"at":2800}' >"$D/targets.jsonl"
: >"$D/faults.log"
# x: recorded done at 2, then run again at 3 (a breach). z: its hook ended at 8 but the record
# was never written (its node died first), so it runs again at 9: at least once, not a breach.
# w: its node wrote "done" at 12 from a cloud cut off, and etcd took it only after the next
# node's run at 13 (seen in a 300-fault run): not a breach either, counted as z.
printf '%s\n' "start x 1 " "end x 2" "start x 3" "start y 4" "overlap y 5" "end y 6" \
	"start z 7" "end z 8" "start z 9" "end z 10" "start w 11" "end w 12" "start w 13" \
	"end w 14" >"$D/run_once.log"
printf '%s\n' 'x {"state":"running","at":1}' 'x {"state":"done","at":2}' \
	'x {"state":"running","at":3}' \
	'z {"state":"running","at":7}' 'z {"state":"running","at":9}' 'z {"state":"done","at":10}' \
	'w {"state":"running","at":11}' 'w {"state":"running","at":13}' 'w {"state":"done","at":14}' \
	'w {"state":"done","at":12}' >"$D/run_onces.log"
out=$(python3 "$SRCDIR/tests/netbed/campaign-check.py" "$D" 3000)
is "the checker fails on them" "$?" 1
like "it sees a release that is not whole" "$out" "a-n3 showed .*bbbbbbbbbbbb, which is not whole"
like "a node live before its cutover was written" "$out" "a-n2 went live on bbbbbbbbbbbb at 1500, before"
like "a node live on a commit that was never a cutover" "$out" "b-n1 went live on dddddddddddd at 1600, which was never"
like "a connected node two cutovers behind" "$out" "b-n2 was on aaaaaaaaaaaa a lease after cutover 3"
like "run_once again after it was recorded done" "$out" "run_once for x ran again at 3 after it was recorded done at 2"
unlike "a run again after a success never recorded is no breach" "$out" "run_once for z"
unlike "nor after a success recorded only after the next run" "$out" "run_once for w"
like "but they are counted" "$out" "(2 again after a run whose success was never recorded)"
like "run_once while another run held the lock" "$out" "run_once for y ran while another run held the lock"
printf '%s\n' "4000 start cut-node b-n2" "4500 end cut-node b-n2" >"$D/faults.log"
out=$(python3 "$SRCDIR/tests/netbed/campaign-check.py" "$D" 3000)
unlike "a node cut off is not held to the lease" "$out" "b-n2 was on"

# The observer's tree check, on a release with a file changed behind its back.
make_repo "$TMP/w" || bail "make_repo failed"
commit_file "$TMP/w" a.txt "alpha" "one" || bail "commit failed"
C=$(repo_head "$TMP/w")
R=$TMP/site/releases/20261206T000000Z-${C:0:12}
mkdir -p "$R"
git -C "$TMP/w" archive HEAD | tar -x -C "$R"
ln -s "releases/${R##*/}" "$TMP/site/current"
run_observer() {
	rm -f "$TMP/stop"
	(sleep 1; touch "$TMP/stop") &
	python3 "$SRCDIR/tests/netbed/observe.py" "$TMP/w" "$TMP/stop" "n1=$TMP/site"
}
unlike "the observer takes a whole release" "$(run_observer)" violation
printf 'changed' >"$R/a.txt"
like "and sees one that is not" "$(run_observer)" "violation not its commit's tree"

# ---- the campaign ----
out=$(bash "$SRCDIR/tests/fleet-campaign.sh" "$DEPLOYD_BIN" "${FC_FAULTS:-30}" 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E '^(# |not ok)' | sed 's/^/    /' | head -n 60
last=$(printf '%s\n' "$out" | tail -n 1)
is "the campaign exits 0" "$rc" 0
like "its last line counts the faults and no violation: $last" "$last" '^faults=[0-9]+ violations=0 '
done_testing
