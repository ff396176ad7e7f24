#!/bin/bash
# first_deploy.sh: a new site's first deploy by polling: the tree, the layout, the state and status.
# timeout: 120
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
mkdir -p "$TMP/src/css" "$TMP/src/deep/er/still"
printf '<h1>hello</h1>\n' >"$TMP/src/index.html"
printf 'body{}\n' >"$TMP/src/css/site.css"
printf 'deep\n' >"$TMP/src/deep/er/still/page.html"
printf '#!/bin/sh\nexit 0\n' >"$TMP/src/deep/tool.sh"
chmod 755 "$TMP/src/deep/tool.sh"
ln -s css/site.css "$TMP/src/style.css"
ln -s ../index.html "$TMP/src/deep/up.html"
: >"$TMP/src/empty.txt"
git_q -C "$TMP/src" add -A && git_q -C "$TMP/src" commit -q -m "First page" &&
	push_work "$TMP/src" || bail "first commit failed"
H=$(repo_head "$TMP/src")

WWW=$TMP/www
write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$WWW" poll=1s)"
check "configuration is valid" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"

before=$(date -u +%s)
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
ok "daemon started and answers status"

if wait_for "current to appear" 30 test -L "$WWW/current"; then
	ok "current appears"
else
	fail "current appears"
	done_testing
fi
wait_for "the site to be idle" 10 site_field_is www state idle
after=$(date -u +%s)

target=$(readlink "$WWW/current")
like "current is a relative symlink to releases/<name>" "$target" '^releases/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$'
is "current names the branch tip" "$(current_commit "$WWW")" "${H:0:12}"
check "release matches the commit's tree exactly" tree_matches "$WWW/current" "$TMP/src" "$H"
check "the release is a real directory" test -d "$WWW/$target" -a ! -L "$WWW/$target"

# Exactly one entry in releases/: the release, no temporary one.
entries=$(ls -A "$WWW/releases")
is "releases/ holds exactly one entry" "$(printf '%s\n' "$entries" | grep -c .)" 1
like "the release is named UTC yyyymmddTHHMMSSZ-<12 hex>" "$entries" "$RELEASE_RE"
is "no temporary release is left" "$(tmp_releases "$WWW")" ""
stamp=${entries%%-*}
rel_epoch=$(date -u -d "${stamp:0:4}-${stamp:4:2}-${stamp:6:2}T${stamp:9:2}:${stamp:11:2}:${stamp:13:2}Z" +%s 2>/dev/null || echo 0)
if [ "$rel_epoch" -ge $((before - 2)) ] && [ "$rel_epoch" -le $((after + 2)) ]; then
	ok "the release's timestamp is the deploy time in UTC"
else
	fail "the release's timestamp is the deploy time in UTC" \
		"release $entries; deploy happened between $(date -u -d @"$before" +%Y%m%dT%H%M%SZ) and $(date -u -d @"$after" +%Y%m%dT%H%M%SZ)"
fi

unreadable=$(find "$WWW/releases/" ! -type l ! -perm -o=r | head -n 5)
is "every released file and directory is readable by others" "$unreadable" ""
check "the state file exists and is JSON" jq -e . "$TMP/state/www/state.json"
check "the repository cache is a bare repository" git --git-dir="$TMP/state/www/cache.git" rev-parse --is-bare-repository

# The site polls every second, so catch a snapshot between polls (while polling it is "fetching").
idle_snapshot() {
	js=$(status_json www) && [ "$(jq -r .state <<<"$js")" = idle ]
}
wait_for "an idle status snapshot" 10 idle_snapshot
check "status --json www is valid JSON" jq -e . <<<"$js"
is "status: name" "$(jq -r .name <<<"$js")" www
is "status: state is idle" "$(jq -r .state <<<"$js")" idle
is "status: paused is false" "$(jq -r .paused <<<"$js")" false
c=$(jq -r .commit <<<"$js")
if [[ $c =~ ^[0-9a-f]{7,40}$ ]] && [ "${H#"$c"}" != "$H" ]; then
	ok "status: commit is the tip ($c)"
else
	fail "status: commit is the tip" "got '$c', tip $H"
fi
is "status: release is current's target" "$(jq -r .release <<<"$js")" "${target#releases/}"
is "status: subject is the commit's subject line" "$(jq -r .subject <<<"$js")" "First page"
like "status: author names the committer" "$(jq -r .author <<<"$js")" "Deployd Test"
like "status: deployed_at is ISO-8601 UTC" "$(jq -r .deployed_at <<<"$js")" "$ISO_RE"
like "status: trigger of a first deploy is startup or poll" "$(jq -r .trigger <<<"$js")" '^(startup|poll)$'
is "status: last_error is null" "$(jq -r .last_error <<<"$js")" null
is "status: last_webhook_at is null" "$(jq -r .last_webhook_at <<<"$js")" null

idle_row() {
	row=$(dctl status | awk '$1 == "www"') && [[ $row =~ ^www\ +idle\  ]]
}
wait_for "an idle row" 10 idle_row
like "plain status: the row shows the site idle" "$row" '^www +idle '
like "plain status: the row shows the commit" "$row" " ${H:0:7}"

if stop_daemon; then
	is "SIGTERM: the daemon exits with status 0" "$DAEMON_STATUS" 0
else
	fail "SIGTERM: the daemon exits within ${DAEMON_STOP_TIMEOUT}s"
fi
is "current is unchanged after the daemon stopped" "$(readlink "$WWW/current")" "$target"
check_not "the control socket is gone after stop" test -S "$TMP/deployd.sock"

# The first cache of a local repository starts from a copy of its object files (seed.c):
# copies, not links, complete, and with no seed refs left behind.
CACHE=$TMP/state/www/cache.git
check "the cache is a sound repository" git -C "$CACHE" fsck --no-dangling
is "the cache has the branch at the tip" "$(git -C "$CACHE" rev-parse refs/heads/main)" "$H"
is "no seed refs are left in the cache" "$(git -C "$CACHE" for-each-ref refs/deployd-seed/)" ""
shared=0
copied=0
missing=0
for f in $(cd "$TMP/src.git/objects" && find . -type f \( -path './??/*' -o -path './pack/*' \)); do
	if [ ! -f "$CACHE/objects/$f" ]; then
		missing=$((missing + 1))
		continue
	fi
	copied=$((copied + 1))
	[ "$(stat -c %i "$TMP/src.git/objects/$f")" = "$(stat -c %i "$CACHE/objects/$f")" ] &&
		shared=$((shared + 1))
done
check "the source's object files were copied as they are, not re-packed ($copied)" \
	test "$missing" -eq 0 -a "$copied" -gt 0
is "no object file is shared with the source (copies, not hard links)" "$shared" 0

done_testing
