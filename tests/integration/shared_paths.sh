#!/bin/bash
# shared_paths.sh: `shared` entries are relative links from every release into path/shared, created
# if missing, kept across deploys; a repository that contains a shared path fails the deploy.
# timeout: 150
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/src" || bail "make_repo failed"
commit_file "$TMP/src" index.html "one" "C1" || bail "commit failed"
C1=$(repo_head "$TMP/src")

# The administrator provides .env; deployd creates the directories that are missing.
mkdir -p "$TMP/www/shared"
printf 'DB_PASSWORD=x\n' >"$TMP/www/shared/.env"
chmod 640 "$TMP/www/shared/.env"

write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=1s \
	'shared=[uploads, .env, data/cache]')"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"
check "first deploy" wait_live "$TMP/www" "$C1" 30
R1=$(current_release "$TMP/www")

is "uploads is a relative link" "$(readlink "$TMP/www/releases/$R1/uploads")" "../../shared/uploads"
is ".env is a relative link" "$(readlink "$TMP/www/releases/$R1/.env")" "../../shared/.env"
is "a nested entry climbs one more level" "$(readlink "$TMP/www/releases/$R1/data/cache")" \
	"../../../shared/data/cache"
check "a missing shared directory was created" test -d "$TMP/www/shared/uploads"
check "a nested one too" test -d "$TMP/www/shared/data/cache"
is "the admin's .env is untouched" "$(cat "$TMP/www/current/.env")" "DB_PASSWORD=x"
is "and keeps its mode" "$(stat -c %a "$TMP/www/shared/.env")" 640
is "the rest is the commit's tree" "$(cat "$TMP/www/current/index.html")" one

# The application writes through current; the next release sees the same files.
echo "photo" >"$TMP/www/current/uploads/cat.jpg"
commit_file "$TMP/src" index.html "two" "C2" || bail "commit failed"
C2=$(repo_head "$TMP/src")
check "second deploy" wait_live "$TMP/www" "$C2" 30
R2=$(current_release "$TMP/www")
isnt "a new release" "$R2" "$R1"
is "uploads persist across releases" "$(cat "$TMP/www/current/uploads/cat.jpg" 2>/dev/null)" photo
is "and the old release links to the same place" "$(cat "$TMP/www/releases/$R1/uploads/cat.jpg" 2>/dev/null)" photo

# A repository that contains a shared path itself.
commit_file "$TMP/src" uploads/readme.txt "mine" "C3" || bail "commit failed"
has_error() {
	[ "$(site_field www last_error)" = "repository contains shared path 'uploads'" ]
}
if wait_for "shared conflict" 30 has_error; then
	ok "a repository containing a shared path fails with a clear error"
else
	fail "a repository containing a shared path fails with a clear error" "$(status_json www)"
fi
check "state is failed" wait_for failed 10 site_field_is www state failed
check "current untouched" current_is "$TMP/www" "$C2"
is "no temporary release left" "$(tmp_releases "$TMP/www")" ""
is "the shared files are untouched" "$(cat "$TMP/www/shared/uploads/cat.jpg")" photo

git_q -C "$TMP/src" rm -q uploads/readme.txt && git_q -C "$TMP/src" commit -q -m C4 && push_work "$TMP/src"
C4=$(repo_head "$TMP/src")
check "without the conflicting path the site deploys again" wait_live "$TMP/www" "$C4" 40
check "the error clears" wait_for "no error" 10 site_field_is www last_error null
check "the daemon keeps serving" daemon_running
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
