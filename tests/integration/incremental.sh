#!/bin/bash
# incremental.sh: releases reuse unchanged files of the live release (reuse: copy, hardlink,
# auto, and reflink on an XFS loop image), and each release is still exactly its commit: adds,
# edits, deletes, renames, mode changes, file<->symlink, file<->directory, a submodule. Files a
# hook changed in the previous release are written again from git.
# timeout: 300
. "$(dirname "$0")/../lib.sh"

command -v filefrag >/dev/null || bail "filefrag (e2fsprogs) is needed"

make_repo "$TMP/lib" || bail "make_repo lib failed"
commit_file "$TMP/lib" lib.txt "library one" "lib 1" || bail "commit failed"
make_repo "$TMP/src" || bail "make_repo failed"
W=$TMP/src

# expect_tree COMMIT DIR: COMMIT's tree as a checkout would have it, submodule included.
expect_tree() {
	local commit=$1 dir=$2 sub
	mkdir -p "$dir"
	git_q -C "$W" archive --format=tar "$commit" | tar -x -C "$dir" || return 1
	sub=$(git_q -C "$W" ls-tree "$commit" vendor/lib | awk '$2 == "commit" { print $3 }')
	if [ -n "$sub" ]; then
		git_q -C "$TMP/lib.git" archive --format=tar "$sub" | tar -x -C "$dir/vendor/lib" ||
			return 1
	fi
}

# release_is DIR COMMIT RO: DIR has COMMIT's paths, bytes, symlink targets and types exactly,
# every file 0644/0755 as in git, or exactly 0444/0555 when RO is 1 (hard links).
release_is() {
	local dir=$1 commit=$2 ro=$3 want out
	want=$(mktemp -d "$TMP/want.XXXXXX")
	expect_tree "$commit" "$want" || { diag "git archive $commit failed"; return 1; }
	if ! out=$(diff -r --no-dereference "$want" "$dir" 2>&1); then
		diag "$dir differs from $commit:" "$(head -n 20 <<<"$out")"
		return 1
	fi
	# Modes as git has them: 644 for files, 755 for executables (minus write bits for RO).
	if ! out=$(diff <(cd "$want" && find . -mindepth 1 \( -type f -perm -u=x -printf "%P f $((ro ? 555 : 755))\n" \) -o \
		\( -type f -printf "%P f $((ro ? 444 : 644))\n" \) -o \( -type l -printf '%P l\n' \) -o \
		\( -type d -printf '%P d 755\n' \) | sort) \
		<(cd "$dir" && find . -mindepth 1 \( -type f -printf '%P f %m\n' \) -o \
		\( -type l -printf '%P l\n' \) -o \( -type d -printf '%P d %m\n' \) | sort)); then
		diag "$dir: types or modes differ from $commit (< expected, > release):" "$(head -n 20 <<<"$out")"
		return 1
	fi
	rm -rf "$want"
}

# The commits: each step changes the work tree and lists what stayed and what changed.
step1() {
	mkdir -p "$W/dir/sub" "$W/y"
	printf 'alpha\n' >"$W/a.txt"; printf 'beta\n' >"$W/b.txt"
	printf '#!/bin/sh\necho run\n' >"$W/run.sh"; chmod 755 "$W/run.sh"
	printf 'gamma\n' >"$W/dir/c.txt"; printf 'delta\n' >"$W/dir/sub/d.txt"
	printf 'mode\n' >"$W/m.txt"; printf 'plain\n' >"$W/l2"; ln -s b.txt "$W/s3"
	ln -s a.txt "$W/link"; printf 'file x\n' >"$W/x"; printf 'zed\n' >"$W/y/z.txt"
	head -c 300000 /dev/urandom >"$W/big.bin"
}
step2() {
	printf 'alpha, edited\n' >"$W/a.txt"                    # edit
	git_q -C "$W" rm -q b.txt                               # delete
	git_q -C "$W" mv dir/c.txt dir/c2.txt                   # rename
	chmod 755 "$W/m.txt"; chmod 644 "$W/run.sh"             # mode changes
	rm "$W/l2"; ln -s a.txt "$W/l2"                         # file -> symlink
	rm "$W/s3"; printf 'now a file\n' >"$W/s3"              # symlink -> file
	rm "$W/x"; mkdir "$W/x"; printf 'inside x\n' >"$W/x/inner.txt"   # file -> directory
	rm -r "$W/y"; printf 'file y\n' >"$W/y"                 # directory -> file
	printf 'new\n' >"$W/new.txt"                            # add
}
step3() {
	printf 'epsilon\n' >"$W/dir/sub/e.txt"
	rm "$W/link"; ln -s new.txt "$W/link"
	rm -r "$W/x"; printf 'file x\n' >"$W/x"
	git_q -C "$W" -c protocol.file.allow=always submodule add -q "$TMP/lib.git" vendor/lib \
		>/dev/null 2>&1 || return 1
}
step4() {
	printf 'alpha, edited again\n' >"$W/a.txt"
}
STEPS=(step1 step2 step3 step4)
COMMITS=()
for s in "${STEPS[@]}"; do
	$s || bail "$s failed"
	git_q -C "$W" add -A && git_q -C "$W" commit -q -m "$s" || bail "commit $s failed"
	COMMITS+=("$(repo_head "$W")")
done
push_work "$W" || bail "push failed"

# files COMMIT: "mode blob path" for every file and symlink of COMMIT, the submodule's included.
files() {
	local sub
	git_q -C "$W" ls-tree -r "$1" | awk '$2 == "blob" { split($0, t, "\t"); print $1, $3, t[2] }'
	sub=$(git_q -C "$W" ls-tree "$1" vendor/lib | awk '$2 == "commit" { print $3 }')
	[ -z "$sub" ] || git_q -C "$TMP/lib.git" ls-tree -r "$sub" |
		awk '$2 == "blob" { split($0, t, "\t"); print $1, $3, "vendor/lib/" t[2] }'
}

# same_files A B: paths of regular files with the same blob and mode in commits A and B.
# changed_files A B: paths that are regular files in both, with another blob or mode.
# unchanged_count A B: files and symlinks unchanged from A to B (what can be reused).
same_files() { comm -12 <(files "$1" | sort) <(files "$2" | sort) | awk '$1 != "120000" { print $3 }'; }
changed_files() {
	join -1 3 -2 3 <(files "$1" | sort -k3) <(files "$2" | sort -k3) |
		awk '$2 != "120000" && $4 != "120000" && ($2 != $4 || $3 != $5) { print $1 }'
}
unchanged_count() { comm -12 <(files "$1" | sort) <(files "$2" | sort) | wc -l; }

# inode PATH / links PATH
inode() { stat -c %i "$1"; }
links() { stat -c %h "$1"; }

# A file whose extents are all shared with another file (a reflink), as FIEMAP reports it.
all_shared() {
	local out
	out=$(filefrag -v "$1" 2>/dev/null) || return 1
	! grep -E '^ +[0-9]+:' <<<"$out" | grep -vq shared
}

# run_sequence NAME PATH HOW: deploy each commit with reuse HOW into PATH, checking each release
# and what it shares with the one before (the daemon deployed the tip at start-up). HOW auto
# expects AUTO_IS, its choice there.
run_sequence() {
	local name=$1 path=$2 how=$3 got=$3 ro=0 i prev pc cur f out json
	[ "$how" = auto ] && got=$AUTO_IS
	[ "$got" = hardlink ] && ro=1
	wait_live "$path" "${COMMITS[3]}" 20 || return 1
	prev=$(readlink -f "$path/current")
	pc=${COMMITS[3]}
	for ((i = 0; i < ${#COMMITS[@]}; i++)); do
		out=$(dctl deploy "$name" --rev "${COMMITS[$i]}" --wait 2>&1)
		is "$name: ${STEPS[$i]} deploys" "$?" 0 || diag "$out"
		check "$name: ${STEPS[$i]}: the release is the commit's tree, modes included" \
			release_is "$path/current/" "${COMMITS[$i]}" "$ro"
		cur=$(readlink -f "$path/current")
		json=$(dctl releases "$name" --json | jq -c '.releases[] | select(.current)')
		is "$name: ${STEPS[$i]}: releases --json names the method" "$(jq -r .reuse <<<"$json")" "$got"
		is "$name: ${STEPS[$i]}: every unchanged file and symlink was reused" \
			"$(jq -r .files_reused <<<"$json")" "$(unchanged_count "$pc" "${COMMITS[$i]}")"
		for f in $(same_files "$pc" "${COMMITS[$i]}"); do
			case $got in
			hardlink)
				is "$name: ${STEPS[$i]}: unchanged $f is the same inode" "$(inode "$cur/$f")" "$(inode "$prev/$f")"
				check "$name: ${STEPS[$i]}: unchanged $f has several links" test "$(links "$cur/$f")" -ge 2 ;;
			*)
				isnt "$name: ${STEPS[$i]}: unchanged $f is its own inode" "$(inode "$cur/$f")" "$(inode "$prev/$f")" ;;
			esac
		done
		for f in $(changed_files "$pc" "${COMMITS[$i]}"); do
			isnt "$name: ${STEPS[$i]}: changed $f is a new inode" "$(inode "$cur/$f")" "$(inode "$prev/$f")"
		done
		if [ "$got" = reflink ] && same_files "$pc" "${COMMITS[$i]}" | grep -qx big.bin; then
			check "$name: ${STEPS[$i]}: unchanged big.bin shares its blocks (reflink)" all_shared "$cur/big.bin"
		fi
		prev=$cur
		pc=${COMMITS[$i]}
	done
	like "$name: the log says what was reused" "$(grep "site=$name " "$TMP/daemon.log" | grep 'wrote release' | tail -n 1)" \
		"written, [0-9]+ reused by $got from [^ ]+, checked by its manifest(, [0-9]+ unchanged folders? linked without git)?\\)"
	check "$name: the live release's manifest is in state_dir, not in the release" \
		test -s "$TMP/state/$name/manifests/$(basename "$(readlink "$path/current")")"
}

# A hook changes a file of the release in place (same size) when the commit asks for it; the
# next release must take that file from git, not from the edited release.
cat >"$TMP/edit.sh" <<'EOF'
#!/bin/sh
[ -f edit-me ] || exit 0
printf 'EDITED' | dd of=page.txt bs=1 conv=notrunc status=none
EOF
chmod 755 "$TMP/edit.sh"
make_repo "$TMP/hk" || bail "make_repo hk failed"
commit_file "$TMP/hk" page.txt "original page" "page" || bail "commit failed"
commit_file "$TMP/hk" edit-me "" "edit" || bail "commit failed"
HK1=$(repo_head "$TMP/hk")
git_q -C "$TMP/hk" rm -q edit-me && git_q -C "$TMP/hk" commit -q -m "no edit" && push_work "$TMP/hk" ||
	bail "commit failed"
HK2=$(repo_head "$TMP/hk")

# edited_then_fixed NAME PATH: HK1's release has the hook's edit, HK2's has git's page.txt.
edited_then_fixed() {
	local name=$1 path=$2 prev
	dctl deploy "$name" --rev "$HK1" --wait >/dev/null 2>&1
	is "$name: the hook's edit is in its release" "$(cat "$path/current/page.txt")" "EDITEDal page"
	prev=$(readlink -f "$path/current")
	dctl deploy "$name" --rev "$HK2" --wait >/dev/null 2>&1
	is "$name: the next release has git's page.txt" "$(cat "$path/current/page.txt")" "original page"
	isnt "$name: page.txt was written anew" "$(inode "$path/current/page.txt")" "$(inode "$prev/page.txt")"
	is "$name: nothing was reused from the edited release" \
		"$(dctl releases "$name" --json | jq -r '.releases[] | select(.current) | .files_reused')" 0
}

HOOK='hooks={pre_activate: ['"$TMP"'/edit.sh]}'
SITES=(
	"$(site_yaml copy "$TMP/src.git" "$TMP/copy" poll=0 reuse=copy keep=10)"
	"$(site_yaml hardlink "$TMP/src.git" "$TMP/hardlink" poll=0 reuse=hardlink keep=10)"
	"$(site_yaml auto "$TMP/src.git" "$TMP/auto" poll=0 keep=10)"
	"$(site_yaml autohook "$TMP/src.git" "$TMP/autohook" poll=0 'hooks={pre_activate: [/bin/true]}')"
	"$(site_yaml reflink "$TMP/src.git" "$TMP/reflink" poll=0 reuse=reflink)"
	"$(site_yaml hkcopy "$TMP/hk.git" "$TMP/hkcopy" poll=0 reuse=copy "$HOOK")"
	"$(site_yaml hkhard "$TMP/hk.git" "$TMP/hkhard" poll=0 reuse=hardlink "$HOOK")"
)

# An XFS image with reflinks on a loop device (root, xfsprogs; quickstart installs it).
XFS=
if ! command -v mkfs.xfs >/dev/null; then
	fail "mkfs.xfs (xfsprogs) is missing: reflinks cannot be tested"
elif [ "$(id -u)" != 0 ]; then
	diag "not root: no XFS loop image, reflinks not tested"
elif truncate -s 320M "$TMP/xfs.img" && mkfs.xfs -q -m reflink=1 "$TMP/xfs.img" &&
	mkdir "$TMP/xfs" && mount -o loop "$TMP/xfs.img" "$TMP/xfs"; then
	XFS=$TMP/xfs
	at_exit umount "$XFS"
else
	fail "could not mount an XFS loop image: reflinks cannot be tested"
fi
if [ -n "$XFS" ]; then
	SITES+=("$(site_yaml xreflink "$TMP/src.git" "$XFS/reflink" poll=0 reuse=reflink keep=10)"
		"$(site_yaml xauto "$TMP/src.git" "$XFS/auto" poll=0 keep=10)")
fi
write_config "$TMP/deployd.yaml" "${SITES[@]}"
start_daemon "$TMP/deployd.yaml" || bail "daemon did not start"

run_sequence copy "$TMP/copy" copy
run_sequence hardlink "$TMP/hardlink" hardlink
AUTO_IS=hardlink run_sequence auto "$TMP/auto" auto
AUTO_IS=copy run_sequence autohook "$TMP/autohook" auto

# /tmp (ext4) has no reflinks: reuse: reflink fails the deploy and says why.
out=$(dctl deploy reflink --wait 2>&1)
is "reflink on ext4: the deploy fails" "$?" 1
like "reflink on ext4: the error says why" "$out" "reuse: reflink, but the file system of $TMP/reflink/releases cannot make reflinks"
check "reflink on ext4: no release is left" test "$(release_count "$TMP/reflink")" = 0
check "reflink on ext4: no temporary release is left" no_tmp_releases "$TMP/reflink"
like "reflink on ext4: status shows the error" "$(site_field reflink last_error)" "cannot make reflinks"

if [ -n "$XFS" ]; then
	run_sequence xreflink "$XFS/reflink" reflink
	AUTO_IS=reflink run_sequence xauto "$XFS/auto" auto
fi

edited_then_fixed hkcopy "$TMP/hkcopy"
edited_then_fixed hkhard "$TMP/hkhard"

stop_daemon
is "SIGTERM: exit 0" "$DAEMON_STATUS" 0
done_testing
