#!/bin/bash
# cache_upkeep.sh: the repository cache is repacked between deploys once it has too many packs (whole, or only what its base pack lacks): reachable objects and releases on disk stay, what a force-push abandoned goes after the grace period, and SIGKILLs during either kind of upkeep leave a cache git fsck accepts.
# timeout: 400
#
# The thresholds are lowered through the environment (DEPLOYD_UPKEEP_PACKS and
# DEPLOYD_UPKEEP_GRACE); every fetch adds a pack, so a few deploys set an upkeep off.
. "$(dirname "$0")/../lib.sh"

CACHE=$TMP/state/www/cache.git
packs() {
	find "$CACHE/objects/pack" -name 'pack-*.pack' 2>/dev/null | wc -l
}
loose() {
	find "$CACHE/objects" -path "$CACHE/objects/pack" -prune -o -type f -regex '.*/[0-9a-f][0-9a-f]/[0-9a-f]*' -print 2>/dev/null | wc -l
}
fsck_ok() {
	git_q --git-dir="$CACHE" fsck --no-dangling --no-progress >"$TMP/fsck.out" 2>&1
}
has_object() {
	git_q --git-dir="$CACHE" cat-file -e "$1" 2>/dev/null
}
# deploy_commit FILE CONTENT: commit, push, deploy --wait and wait for the upkeep that
# may follow (deploy --wait answers before it); prints the commit.
deploy_commit() {
	commit_file "$TMP/src" "$1" "$2" "$1 $2" >/dev/null 2>&1 || return 1
	dctl deploy www --wait >/dev/null 2>&1 || return 1
	wait_for "the site to be idle" 60 site_field_is www state idle || return 1
	repo_head "$TMP/src"
}
# force_commit FILE CONTENT: commit on the work tree as it is and force-push it.
force_commit() {
	printf '%s' "$2" >"$TMP/src/$1"
	git_q -C "$TMP/src" add -- "$1" && git_q -C "$TMP/src" commit -q -m "$1" &&
		push_work "$TMP/src" -f
}
upkeeps() {
	grep -c "site=www cache upkeep: " "$TMP/daemon.log"
}

make_repo "$TMP/src" || bail "make_repo failed"
# A photo-sized file that never changes: the base pack is large against what deploys add.
head -c 1048576 /dev/urandom >"$TMP/src/photo.bin"
make_big_repo "$TMP/src" 600 || bail "make_big_repo failed"
export DEPLOYD_UPKEEP_PACKS=3 DEPLOYD_UPKEEP_GRACE=3600
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 keep=2)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$TMP/www" "$(repo_head "$TMP/src")" 30 || bail "the first deploy did not happen"

# ---- packs pile up, then one upkeep folds them ----
for i in 1 2 3 4 5; do
	H=$(deploy_commit "site/n$i.html" "n$i") || bail "deploy $i failed"
done
check "an upkeep ran once the cache had more than 3 packs" test "$(upkeeps)" -ge 1
check "the cache has at most 3 packs after 5 more deploys ($(packs))" test "$(packs)" -le 3
check "git fsck accepts the cache" fsck_ok
like "the log says what it did" "$(grep -m1 'cache upkeep: ' "$TMP/daemon.log")" \
	'cache upkeep: [0-9]+ packs, [0-9]+ loose objects, [0-9]+ KiB -> 1 packs, 0 loose objects, [0-9]+ KiB \(full, [0-9]+ objects packed\) in [0-9]+ ms'
check "the live release is the tip's tree" current_matches "$TMP/www" "$TMP/src" "$H"
like "metrics count it" "$(curl -sS "http://$CFG_LISTEN/metrics" | grep '^deployd_cache_upkeeps_total{site="www",result="success"}')" \
	' [1-9][0-9]*$'
like "metrics show the cache's packs" "$(curl -sS "http://$CFG_LISTEN/metrics" | grep '^deployd_cache_packs{site="www"}')" \
	' [0-9]+$'
like "status --json shows the cache" "$(status_json www | jq -c '.cache | [.packs, .loose_objects, (.bytes > 0), (.last_upkeep_at | test("^[0-9]{4}-"))]')" \
	'^\[[0-9]+,[0-9]+,true,true\]$'

# ---- later upkeeps pack only what the base does not hold, and leave the base alone ----
base_pack() {
	sed -n 's/^pack \([0-9a-f]\{40\}\)$/pack-\1.pack/p' "$CACHE/deployd-upkeep-base" 2>/dev/null
}
BASE=$(base_pack)
check "the full repack recorded its pack as the base ($BASE)" test -f "$CACHE/objects/pack/$BASE"
n0=$(upkeeps)
for i in 1 2 3 4; do
	H=$(deploy_commit "site/i$i.html" "i$i") || bail "deploy i$i failed"
done
check "another upkeep ran" test "$(upkeeps)" -gt "$n0"
like "it was incremental, and left the base and one new pack" "$(grep 'cache upkeep: ' "$TMP/daemon.log" | tail -n 1)" \
	'-> 2 packs, 0 loose objects, [0-9]+ KiB \(incremental, [0-9]+ objects packed\)'
check "the base pack is untouched" test -f "$CACHE/objects/pack/$BASE"
is "and is still the base" "$(base_pack)" "$BASE"
check "git fsck accepts the cache" fsck_ok
check "the live release is the tip's tree" current_matches "$TMP/www" "$TMP/src" "$H"
# A marker that does not hold (here: garbage) only means a full repack.
printf 'pack nonsense\n' >"$CACHE/deployd-upkeep-base"
for i in 5 6 7; do
	H=$(deploy_commit "site/i$i.html" "i$i") || bail "deploy i$i failed"
done
like "a damaged base marker gets a full repack" "$(grep 'cache upkeep: ' "$TMP/daemon.log" | tail -n 1)" \
	'-> 1 packs, 0 loose objects, [0-9]+ KiB \(full, '
check "which records a new base" test -f "$CACHE/objects/pack/$(base_pack)"
check "git fsck accepts the cache" fsck_ok

# ---- a force-push: the abandoned commit stays while its release is on disk or in grace ----
H_GONE=$(deploy_commit site/abandoned.html "abandoned $$ content") || bail "deploy failed"
BLOB_GONE=$(git_q -C "$TMP/src" rev-parse HEAD:site/abandoned.html)
git_q -C "$TMP/src" reset -q --hard HEAD~1
force_commit site/after.html "after" || bail "force-push failed"
dctl deploy www --wait >/dev/null 2>&1 || bail "deploy after the force-push failed"
wait_for "the site to be idle" 60 site_field_is www state idle
for i in 6 7 8 9; do
	deploy_commit "site/n$i.html" "n$i" >/dev/null || bail "deploy $i failed"
done
is "the abandoned commit's release has been pruned (keep: 2)" \
	"$(find "$TMP/www/releases" -maxdepth 1 -name "*-${H_GONE:0:12}" | wc -l)" 0
check "within the grace period, its objects stay" has_object "$BLOB_GONE"
check "git fsck accepts the cache" fsck_ok
stop_daemon

# ---- with the grace over, they go; releases on disk keep theirs ----
# From here every deploy sets an upkeep off (more than 1 pack), and each is a full one
# (an incremental upkeep leaves what the base holds until the base is a day old).
export DEPLOYD_UPKEEP_GRACE=0 DEPLOYD_UPKEEP_PACKS=1 DEPLOYD_UPKEEP_FULL_AGE=0
H_KEPT=$(repo_head "$TMP/src")
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
git_q -C "$TMP/src" reset -q --hard HEAD~1
force_commit site/kept.html "kept" || bail "force-push failed"
n0=$(upkeeps)
for i in 10 11 12 13; do
	# One deploy at a time keeps the release of H_KEPT (keep: 2) only until the second.
	H=$(deploy_commit "site/m$i.html" "m$i") || bail "deploy $i failed"
	if [ "$i" = 10 ]; then
		check "a release of the commit force-pushed away is still on disk" \
			test -n "$(find "$TMP/www/releases" -maxdepth 1 -name "*-${H_KEPT:0:12}")"
		check "an upkeep ran after that deploy" test "$(upkeeps)" -gt "$n0"
		check "and kept that release's commit, unreachable but on disk" has_object "$H_KEPT"
	fi
done
check "upkeeps ran after the grace was lowered" test "$(upkeeps)" -gt "$n0"
check_not "past the grace period, the abandoned blob is gone" has_object "$BLOB_GONE"
check "git fsck accepts the cache" fsck_ok
check "the live release is the tip's tree" current_matches "$TMP/www" "$TMP/src" "$H"

# ---- SIGKILLs while the upkeep writes and removes ----
# Every deploy sets an upkeep off; a kill lands at a random instant after the helper
# starts, in the daemon and the helper at once, as a crash would.
pack_names() {
	find "$CACHE/objects/pack" -name 'pack-*.pack' -printf '%f\n' 2>/dev/null | sort
}
upkeep_helper() {
	pgrep -f -- "__fetch --upkeep .*$CACHE" | head -n 1
}
KILLS=${UPKEEP_KILLS:-12}
landed_write=0 landed_remove=0 landed_after=0 bad=0 in_full=0
for ((k = 1; k <= KILLS; k++)); do
	commit_file "$TMP/src" "site/k$k.html" "k$k" "k$k" >/dev/null 2>&1 || bail "commit failed"
	dctl deploy www >/dev/null 2>&1
	wait_for "the upkeep helper" 30 upkeep_helper || { diag "kill $k: no upkeep started"; continue; }
	P=$(upkeep_helper)
	[ "${DEPLOYD_UPKEEP_FULL_AGE:-0}" = 0 ] && in_full=$((in_full + 1))
	pack_names >"$TMP/packs.before"
	sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
	kill -KILL "$P" 2>/dev/null
	kill9_daemon
	pack_names >"$TMP/packs.after"
	if [ -z "$(comm -13 "$TMP/packs.before" "$TMP/packs.after")" ]; then
		landed_write=$((landed_write + 1))	# no new pack yet
	elif [ -n "$(comm -12 "$TMP/packs.before" "$TMP/packs.after")" ]; then
		landed_remove=$((landed_remove + 1))	# new pack, old ones not all gone
	else
		landed_after=$((landed_after + 1))
	fi
	if ! fsck_ok; then
		bad=$((bad + 1))
		diag "kill $k: git fsck refused the cache" "$(head -n 5 "$TMP/fsck.out")"
	fi
	# Every other kill lands in an incremental upkeep.
	DEPLOYD_UPKEEP_FULL_AGE=$((k % 2 ? 0 : 86400))
	start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart after kill $k"
done
is "git fsck accepted the cache after every one of $KILLS kills (write: $landed_write, removal: $landed_remove, after: $landed_after; $in_full in full upkeeps, the rest in incremental ones)" "$bad" 0
H=$(deploy_commit site/final.html "final") || fail "the deploy after the kills failed"
check "and the next deploy is the tip's tree" current_matches "$TMP/www" "$TMP/src" "$H"
check "git fsck accepts the cache at the end" fsck_ok
stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
