#!/bin/bash
# tests/packaging/docs.sh: the man pages, the packaged default config and the bash completion agree with the binary.
#
# usage: DEPLOYD_BIN=BUILDDIR/deployd tests/packaging/docs.sh
. "$(dirname "$0")/../lib.sh"

MAN8=$SRCDIR/man/deployd.8
MAN5=$SRCDIR/man/deployd.yaml.5
# Checked as a copy in $TMP: run as root, check asks whether the deployd user can read
# the file, and a source tree may sit in a home directory it cannot enter.
DEFAULT_CFG=$TMP/deployd.yaml
cp "$SRCDIR/packaging/deployd.yaml" "$DEFAULT_CFG"
ensure_deployd_user
COMPLETION=$SRCDIR/packaging/bash-completion/deployd

for tool in man groff; do
	command -v "$tool" >/dev/null || bail "$tool is missing (apt-get install man-db groff)"
done

# ---- the pages render without warnings (lintian runs the same man command) ----
for page in "$MAN8" "$MAN5"; do
	out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
	is "$(basename "$page") renders without warnings" "$out" ""
	out=$(groff -man -ww -z "$page" 2>&1)
	is "$(basename "$page") passes groff -ww" "$out" ""
done

# Plain text of a page, for grepping.
render() {
	MANWIDTH=200 man -l "$1" 2>/dev/null | col -bx
}
TEXT8=$(render "$MAN8")
TEXT5=$(render "$MAN5")

# ---- deployd(8) names every command and option that --help shows ----
help=$("$DEPLOYD_BIN" --help 2>&1)
cmds=$(printf '%s\n' "$help" | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$cmds" ] || fail "deployd --help lists commands" "$help"
missing=
for c in $cmds; do
	printf '%s\n' "$TEXT8" | grep -Eq "^ +deployd $c( |$)" || missing="$missing synopsis:$c"
	printf '%s\n' "$TEXT8" | grep -Eq "^ {7}$c( |$)" || missing="$missing commands:$c"
done
is "deployd(8) has every command of --help in SYNOPSIS and COMMANDS ($(echo $cmds | wc -w))" "$missing" ""
opts=$(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z-]+' | sort -u)
missing=
for o in $opts; do
	printf '%s\n' "$TEXT8" | grep -q -- "$o" || missing="$missing $o"
done
is "deployd(8) documents every long option of --help" "$missing" ""
for section in SYNOPSIS DESCRIPTION COMMANDS OPTIONS SIGNALS FILES "EXIT STATUS" "SEE ALSO"; do
	printf '%s\n' "$TEXT8" | grep -q "^$section\$" || missing="$missing [$section]"
done
is "deployd(8) has the usual sections" "$missing" ""
like "deployd(8) gives exit statuses 0, 1 and 2" \
	"$(printf '%s\n' "$TEXT8" | sed -n '/^EXIT STATUS/,/^[A-Z]/p' | grep -cE '^ +[012]( |$)')" '^3$'
for sig in SIGHUP SIGTERM; do
	printf '%s\n' "$TEXT8" | sed -n '/^SIGNALS/,/^[A-Z]/p' | grep -q "$sig" || missing="$missing $sig"
done
is "deployd(8) documents SIGHUP and SIGTERM" "$missing" ""

# ---- deployd.yaml(5) has every key of the config table, with its default ----
# The key table in server/config_key.c is the truth: its rows (LK, HK, SK, GK... macros) and the maps.
keys=$(grep -oE '^[[:space:]]*(([A-Z]{2})\("[a-z_]+"|\{ "[a-z_]+", K_)' "$SRCDIR/server/config_key.c" |
	grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
nkeys=$(echo $keys | wc -w)
[ "$nkeys" -ge 30 ] || fail "found the key table in server/config_key.c" "only $nkeys keys: $keys"
missing=
for k in $keys; do
	printf '%s\n' "$TEXT5" | grep -Eq "^ +$k( |$)" || missing="$missing $k"
done
is "deployd.yaml(5) has an entry for each of the $nkeys config keys" "$missing" ""
# Each default in the table appears in the key's entry (one of them, for a name that two maps
# share, such as hooks' and health_check's timeout).
defaults=$(grep -oE '^[[:space:]]*[A-Z]{2}\("[a-z_]+", K_[A-Z]+, [a-z_]+, "[^"]*"' "$SRCDIR/server/config_key.c" |
	sed -E 's/.*\("([a-z_]+)".*, "([^"]*)"$/\1=\2/')
missing=
for kd in $defaults; do
	k=${kd%%=*}
	d=${kd#*=}
	entry=$(printf '%s\n' "$TEXT5" | awk -v k="$k" '
		$0 ~ "^ +" k "( |$)" { on = 1; print; next }
		on && /Example:/ { on = 0 }
		on { print }')
	printf '%s\n' "$entry" | grep -qF "(default $d)" || missing="$missing $k=$d"
done
is "deployd.yaml(5) states each key's default as the table has it" "$missing" ""
missing=
for k in $keys; do
	[ "$k" = sites ] || [ "$k" = limits ] || [ "$k" = hooks ] || [ "$k" = name ] ||
		printf '%s\n' "$TEXT5" | grep -Eq "Example: +$k:" || missing="$missing $k"
done
is "deployd.yaml(5) gives an example for each key" "$missing" ""

# The EXAMPLE section is a configuration that deployd check accepts, once its
# files exist (made here, with the modes secret files need).
mkdir -p "$TMP/etc/keys"
sed -n '/^\.SH EXAMPLE/,/^\.fi/p' "$MAN5" | sed -e '1,2d' -e '$d' -e 's/\\-/-/g' \
	-e "s|/etc/deployd/|$TMP/etc/|g" -e "s|/run/deployd/|$TMP/|; s|/var/lib/deployd|$TMP/state|" \
	>"$TMP/example.yaml"
# Its files are root's here: the engine stays whoever runs the test.
echo "user: $(id -un)" >>"$TMP/example.yaml"
for f in www.secret keys/www docs.token; do
	printf 'secret\n' >"$TMP/etc/$f"
	chmod 0640 "$TMP/etc/$f"
done
printf 'localhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n' \
	>"$TMP/etc/known_hosts"
out=$("$DEPLOYD_BIN" check -c "$TMP/example.yaml" 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^configuration OK$'; then
	ok "deployd.yaml(5)'s EXAMPLE passes deployd check"
else
	fail "deployd.yaml(5)'s EXAMPLE passes deployd check" "status $rc" "$out" "$(cat "$TMP/example.yaml")"
fi

# ---- the packaged default configuration ----
out=$("$DEPLOYD_BIN" check -c "$DEFAULT_CFG" 2>&1)
rc=$?
is "deployd check accepts packaging/deployd.yaml (status)" "$rc" 0
is "deployd check accepts packaging/deployd.yaml (output)" "$out" "configuration OK"
like "the default config has no sites" "$(grep -E '^sites:' "$DEFAULT_CFG")" '^sites: \[\]$'
# Its commented global settings are valid values: uncomment them all.
sed -E -e '/^#(tls_|sites:|  - |    )/d' -e 's/^#([a-z_]+:)/\1/' -e 's/^#(  [a-z_]+:)/\1/' \
	"$DEFAULT_CFG" >"$TMP/uncommented.yaml"
n=$(grep -cE '^ *[a-z_]+:' "$TMP/uncommented.yaml")
out=$("$DEPLOYD_BIN" check -c "$TMP/uncommented.yaml" 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && [ "$n" -ge 12 ]; then
	ok "its $n commented-out settings are valid when uncommented"
else
	fail "its commented-out settings are valid when uncommented" "status $rc, $n keys" "$out"
fi
# ... and are the defaults: each must be what deployd.yaml(5) says.
missing=
while read -r k v; do
	k=${k%:}
	printf '%s\n' "$TEXT5" | awk -v k="$k" '$0 ~ "^ +" k "( |$)" { on = 1 } on' | head -n 3 |
		grep -qF -- "$v" || missing="$missing $k=$v"
done < <(grep -E '^ *[a-z_]+: [^ ]' "$TMP/uncommented.yaml" | grep -v '^sites:')
is "the commented values are the documented defaults" "$missing" ""
# A config that is wrong must be refused, or the checks above prove nothing.
printf 'listen: 127.0.0.1:8090\nbogus_key: 1\nsites: []\n' >"$TMP/bad.yaml"
out=$("$DEPLOYD_BIN" check -c "$TMP/bad.yaml" 2>&1)
rc=$?
is "deployd check refuses an unknown key with status 2" "$rc" 2
like "and names FILE:LINE:COL" "$out" "bad\.yaml:2:1: "

# ---- bash completion ----
if [ ! -r /usr/share/bash-completion/bash_completion ]; then
	fail "bash-completion is installed" "apt-get install bash-completion"
else
	cat >"$TMP/sites.yaml" <<-'EOF'
	sites:
	  - name: www
	    repo: /srv/git/www.git
	    hooks:
	      name: not-a-site
	  - repo: /srv/git/docs.git
	    name: "docs"   # a comment
	EOF
	complete_words() {
		bash -c '
			. /usr/share/bash-completion/bash_completion
			. "$1"
			shift
			COMP_WORDS=("$@")
			COMP_CWORD=$(($# - 1))
			COMP_LINE="$*"
			COMP_POINT=${#COMP_LINE}
			_deployd
			echo "${COMPREPLY[*]}"' _ "$COMPLETION" "$@" 2>&1
	}
	is "completion offers the commands" "$(complete_words deployd "")" \
		"serve check status deploy rollback releases pause resume reload demo"
	is "completion completes a command prefix" "$(complete_words deployd re)" \
		"releases resume reload"
	is "completion offers the sites of -c FILE" \
		"$(complete_words deployd deploy -c "$TMP/sites.yaml" "")" "www docs"
	is "completion offers deploy's options" "$(complete_words deployd deploy www --)" \
		"--config --help --socket --rev --wait"
	is "completion offers no second site" \
		"$(complete_words deployd -c "$TMP/sites.yaml" rollback www "")" ""
fi

done_testing
