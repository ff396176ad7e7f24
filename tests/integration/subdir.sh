#!/bin/bash
# subdir.sh: `subdir: public/` deploys that directory of each commit as the release's root: reuse, a
# submodule inside it, shared paths, links that may not leave it, a commit that changes nothing under it (no
# new release, the site's commit moves on), and a commit without it (a clear error, current kept).
# timeout: 200
. "$(dirname "$0")/../lib.sh"

make_repo "$TMP/lib" || bail "make_repo lib failed"
commit_file "$TMP/lib" lib.js "library one" "lib 1" || bail "commit failed"
make_repo "$TMP/src" || bail "make_repo failed"
W=$TMP/src
mkdir -p "$W/public/css" "$W/src" "$W/.github"
printf '<h1>one</h1>\n' >"$W/public/index.html"
printf 'body{}\n' >"$W/public/css/site.css"
ln -s css/site.css "$W/public/style.css"
printf 'int main;\n' >"$W/src/app.c"
printf 'secret build notes\n' >"$W/README.md"
printf 'on: push\n' >"$W/.github/ci.yml"
git_q -C "$W" add -A && git_q -C "$W" commit -q -m C1 || bail "commit C1 failed"
git_q -C "$W" -c protocol.file.allow=always submodule add -q "$TMP/lib.git" public/vendor/lib \
	>/dev/null 2>&1 || bail "submodule add failed"
git_q -C "$W" commit -q -m "C1 with a submodule under public" && push_work "$W" || bail "push failed"
C1=$(repo_head "$W")

# expect DIR COMMIT: what the release of COMMIT must hold: public/ of it, the submodule's tree in.
expect() {
	local sub
	mkdir -p "$1"
	git_q -C "$W" archive --format=tar "$2:public" | tar -x -C "$1" || return 1
	sub=$(git_q -C "$W" ls-tree "$2" public/vendor/lib | awk '$2 == "commit" { print $3 }')
	[ -z "$sub" ] || git_q -C "$TMP/lib.git" archive --format=tar "$sub" |
		tar -x -C "$1/vendor/lib"
}

# release_is COMMIT: current holds exactly COMMIT's public/, and nothing else.
release_is() {
	local want out
	want=$(mktemp -d "$TMP/want.XXXXXX")
	expect "$want" "$1" || return 1
	# uploads is the shared link, checked on its own
	if ! out=$(diff -r --no-dereference -x uploads "$want" "$TMP/www/current/" 2>&1); then
		diag "current differs from $1:public" "$(printf '%s\n' "$out" | head -n 20)"
		return 1
	fi
}

write_config "$TMP/deployd.yaml" "$(site_yaml www "$TMP/src.git" "$TMP/www" poll=0 \
	subdir=public/ 'shared=[uploads]')"
check "deployd check accepts subdir: public/" "$DEPLOYD_BIN" check -c "$TMP/deployd.yaml"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

out=$(dctl deploy www --wait 2>&1)
is "first deploy: exit 0" "$?" 0
check "C1 is live" current_is "$TMP/www" "$C1"
check "the release is public/ of C1, with the submodule in it" release_is "$C1"
check "nothing outside public/ is served" test ! -e "$TMP/www/current/README.md" -a \
	! -e "$TMP/www/current/src" -a ! -e "$TMP/www/current/.github" -a \
	! -e "$TMP/www/current/public"
is "a link inside the subtree is kept" "$(readlink "$TMP/www/current/style.css")" css/site.css
is "shared: uploads is linked at the release's root" "$(readlink "$TMP/www/current/uploads")" \
	../../shared/uploads
R1=$(current_release "$TMP/www")

# A commit that changes nothing under public/: no release, but the site's commit moves on.
commit_file "$W" src/app.c "int main(void);" "C2 outside public" || bail "commit failed"
C2=$(repo_head "$W")
out=$(dctl deploy www --wait 2>&1)
is "a deploy of C2: exit 0" "$?" 0
like "deploy --wait says C2 changes nothing under public/" "$out" \
	"commit ${C2:0:12} changes nothing under public/; $R1 stays live"
is "the same release stays live" "$(current_release "$TMP/www")" "$R1"
is "no new release was written" "$(release_count "$TMP/www")" 1
is "status: the site's commit is C2" "$(site_field www commit)" "$C2"
is "status: its release is still R1" "$(site_field www release)" "$R1"
like "status: the note says why" "$(site_field www note)" "changes nothing under public/"
is "status: no error" "$(site_field www last_error)" null
like "status (text) shows the note" "$(dctl status www 2>&1)" "note: commit ${C2:0:12} changes"
like "the log says it" "$(cat "$TMP/daemon.log")" \
	"commit ${C2:0:12} changes nothing under public/"
out=$(dctl deploy www --wait 2>&1)
like "a second deploy of C2 finds it up to date" "$out" "already up to date at ${C2:0:12}"

# A change under public/: a new release, the unchanged files reused from R1.
commit_file "$W" public/index.html "<h1>three</h1>" "C3 inside public" || bail "commit failed"
C3=$(repo_head "$W")
out=$(dctl deploy www --wait 2>&1)
is "a deploy of C3: exit 0" "$?" 0
check "C3 is live" current_is "$TMP/www" "$C3"
check "the release is public/ of C3" release_is "$C3"
reused=$(jq -r '.releases[-1].files_reused' "$TMP/state/www/state.json")
check "the unchanged files were reused from R1 ($reused)" test "$reused" -ge 3
is "status: the note is gone" "$(site_field www note)" null

# A link that leaves the subtree is refused, though it stays inside the repository.
ln -s ../src/app.c "$W/public/app.c"
git_q -C "$W" add -A && git_q -C "$W" commit -q -m C4 && push_work "$W" || bail "push failed"
out=$(dctl deploy www --wait 2>&1)
isnt "a link out of public/: the deploy fails" "$?" 0
like "it says the link points outside the release" "$(site_field www last_error)" \
	"app.c: symlink to '../src/app.c' points outside the release"
check "C3 stays live" current_is "$TMP/www" "$C3"
git_q -C "$W" rm -q public/app.c && git_q -C "$W" commit -q -m C5 && push_work "$W" ||
	bail "push failed"
C5=$(repo_head "$W")

# public/ a file, then no public/ at all: the deploy fails and says why; current stays.
git_q -C "$W" rm -rq public && rm -rf "$W/public" && printf 'not a directory\n' >"$W/public" &&
	git_q -C "$W" add public && git_q -C "$W" commit -q -m C6 && push_work "$W" ||
	bail "push failed"
C6=$(repo_head "$W")
out=$(dctl deploy www --wait 2>&1)
isnt "public/ a file: the deploy fails" "$?" 0
is "it says public is not a directory" "$(site_field www last_error)" \
	"public in commit ${C6:0:12} is not a directory (the site's subdir)"
check "C3 stays live" current_is "$TMP/www" "$C3"
git_q -C "$W" rm -q public && git_q -C "$W" commit -q -m C7 && push_work "$W" ||
	bail "push failed"
C7=$(repo_head "$W")
out=$(dctl deploy www --wait 2>&1)
isnt "no public/: the deploy fails" "$?" 0
is "it says the commit has no public/" "$(site_field www last_error)" \
	"commit ${C7:0:12} has no public/ (the site's subdir)"
check "C3 stays live" current_is "$TMP/www" "$C3"
check "the release of C3 is whole" release_is "$C3"
is "no temporary release left" "$(tmp_releases "$TMP/www")" ""

# deploy --rev back to C5 (public/ as in C3 but for the removed link): no release needed.
out=$(dctl deploy www --rev "$C5" --wait 2>&1)
is "deploy --rev C5: exit 0" "$?" 0
like "C5 changes nothing under public/ either" "$out" "commit ${C5:0:12} changes nothing"
check "C3's release serves it" current_is "$TMP/www" "$C3"
is "status: the site's commit is C5" "$(site_field www commit)" "$C5"
is "status: the error is over" "$(site_field www last_error)" null

# A restart keeps all of it: recovery does not take C3's release for a foreign one.
stop_daemon
start_daemon "$TMP/deployd.yaml" || bail "daemon did not restart"
is "after a restart the site's commit is still C5" "$(site_field www commit)" "$C5"
out=$(dctl deploy www --rev "$C5" --wait 2>&1)
like "and C5 is up to date" "$out" "already up to date at ${C5:0:12}"
check "daemon exits 0 on SIGTERM" stop_daemon
done_testing
