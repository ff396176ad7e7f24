#!/bin/bash
# unchanged_folder.sh: a folder unchanged since the live release is linked from that release's manifest without reading git (its objects can be gone from the cache); a file edited there, or a folder removed, is still written again.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

W=$TMP/src
make_repo "$W" || bail "make_repo failed"
mkdir -p "$W/a/deep" "$W/b"
for i in 1 2 3 4 5; do
	printf 'file %s of the folder that never changes\n' "$i" >"$W/a/$i.html"
done
printf 'deep inside\n' >"$W/a/deep/x.html"
printf '#!/bin/sh\necho tool\n' >"$W/a/deep/tool.sh"
chmod 755 "$W/a/deep/tool.sh"
printf 'b one\n' >"$W/b/x.html"
printf '<h1>home</h1>\n' >"$W/index.html"
git_q -C "$W" add -A && git_q -C "$W" commit -q -m one && push_work "$W" || bail "commit failed"
H1=$(repo_head "$W")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=0 reuse=hardlink)"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
wait_live "$WWW" "$H1" 30 || bail "the first commit did not go live"
check "the first release is the first commit" tree_matches "$WWW/current" "$W" "$H1"
ino() { stat -c %i "$WWW/current/$1"; }
a1=$(ino a/1.html) a3=$(ino a/3.html) deep=$(ino a/deep/tool.sh)

# Someone edits a file of the live release in place (made writable, then read-only again).
chmod u+w "$WWW/current/a/3.html"
echo "edited on the server" >>"$WWW/current/a/3.html"
chmod a-w "$WWW/current/a/3.html"

# And removes a folder of it.
rm -rf "$WWW/current/a/deep"

# deploy COMMIT_MESSAGE: change b/x.html only, push and deploy; sets H to the new commit.
deploy_b() {
	printf '%s\n' "$1" >"$W/b/x.html"
	git_q -C "$W" commit -qam "$1" && push_work "$W" || return 1
	H=$(repo_head "$W")
	dctl deploy www >/dev/null 2>&1
	wait_live "$WWW" "$H" 30
}

deploy_b "b two" || fail "the second commit went live" "$(site_field www last_error)"
check "the second release is exactly the second commit" tree_matches "$WWW/current" "$W" "$H"
is "an unchanged file of the unchanged folder is linked" "$(ino a/1.html)" "$a1"
isnt "the folder removed from the live release is written again" "$(ino a/deep/tool.sh)" "$deep"
deep=$(ino a/deep/tool.sh)
isnt "the file edited in place is written again, not linked" "$(ino a/3.html)" "$a3"
is "the edited file is git's again" "$(cat "$WWW/current/a/3.html")" \
	"file 3 of the folder that never changes"

# Take every object under a/ out of the cache: a deploy that reads them fails.
CACHE=$TMP/state/www/cache.git
mkdir -p "$TMP/packs"
for p in "$CACHE"/objects/pack/*.pack; do
	[ -e "$p" ] || continue
	mv "$p" "${p%.pack}.idx" "$TMP/packs/"
	git_q -C "$CACHE" unpack-objects -q <"$TMP/packs/$(basename "$p")" || bail "unpack-objects failed"
done
rm -f "$CACHE"/objects/pack/*
gone=0
for oid in $(git_q -C "$W" rev-parse "$H:a") $(git_q -C "$W" ls-tree -r -t "$H:a" | awk '{ print $3 }'); do
	rm -f "$CACHE/objects/${oid:0:2}/${oid:2}" && gone=$((gone + 1))
done
is "the cache has lost a/ and the 8 objects under it" "$gone" 9
check_not "git itself cannot read a/ from the cache" git_q -C "$CACHE" cat-file -e "$H:a/1.html"

deploy_b "b three" || fail "the third commit went live without a/ in the cache" \
	"$(site_field www last_error)"
check "the third release is exactly the third commit" tree_matches "$WWW/current" "$W" "$H"
like "the log counts a/ as linked without git" "$(grep 'wrote release' "$TMP/daemon.log" | tail -n 1)" \
	'checked by its manifest, 1 unchanged folder linked without git\)'
is "a/ is still linked from the first release" "$(ino a/1.html)" "$a1"
is "a/deep is linked from the second release, which wrote it" "$(ino a/deep/tool.sh)" "$deep"
stop_daemon
is "the daemon exits 0 on SIGTERM" "$DAEMON_STATUS" 0
done_testing
