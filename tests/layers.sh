#!/bin/bash
# layers.sh: fails when a part of deployd reaches into a part above it or beside it, by include or by symbol.
#
# usage: tests/layers.sh SRCDIR [BUILDDIR]
#
# The parts, bottom up, and what each may use:
#   lib/     the floor: itself only
#   hooks/   the webhook providers: the floor
#   deploy/  the engine: the floor
#   fleet/   the fleet's etcd client: the floor
#   server/  the daemon and the command line: everything
# Checked: every #include "..." in each part's .c and .h files; the system headers that
# belong to one part only (<microhttpd.h> and <yaml.h> to the daemon, <git2.h> to the engine
# and the daemon); and, given BUILDDIR, the symbols each part's library leaves undefined,
# none of which may be defined by a library the part may not use, and no loop of calls
# between the files of one part. Prints TAP; exits 1 on any violation. `make` runs it
# (Makefile.am), so a wrong include or a call back up fails the build.
set -u
export LC_ALL=C
SRC=${1:?usage: tests/layers.sh SRCDIR [BUILDDIR]}
BUILD=${2:-}
n=0
bad=0

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() {
	n=$((n + 1))
	bad=$((bad + 1))
	echo "not ok $n - $1"
	shift
	for l in "$@"; do echo "# $l"; done
}

# allowed PART: the parts whose headers PART may include.
allowed() {
	case $1 in
	lib) echo "lib" ;;
	hooks) echo "lib hooks" ;;
	deploy) echo "lib deploy" ;;
	fleet) echo "lib fleet" ;;
	server) echo "lib hooks deploy fleet server" ;;
	esac
}

# System headers that only some parts may include: "HEADER:PART PART..."
SYSTEM="microhttpd.h:server yaml.h:server git2.h:deploy,server"

# in_list WORD LIST: WORD is one of the space-separated LIST (no subprocess: this runs often).
in_list() {
	case " $2 " in *" $1 "*) return 0 ;; esac
	return 1
}

for part in lib hooks deploy fleet server; do
	found=()
	may=$(allowed "$part")
	files=("$SRC/$part"/*.[ch])
	# One grep per part: "FILE:LINE:#include ..." for every include of every file.
	while IFS= read -r line; do
		file=${line%%:*}
		rest=${line#*:}
		num=${rest%%:*}
		text=${rest#*:}
		where="${file#"$SRC"/}:$num"
		case $text in
		*\"*)
			inc=${text#*\"}
			inc=${inc%%\"*}
			dir=${inc%%/*}
			if [ "$dir" = "$inc" ] || ! in_list "$dir" "$may"; then
				found+=("$where: #include \"$inc\"")
			fi ;;
		*"<"*)
			hdr=${text#*<}
			hdr=${hdr%%>*}
			for rule in $SYSTEM; do
				[ "${rule%%:*}" = "$hdr" ] || continue
				parts=${rule#*:}
				in_list "$part" "${parts//,/ }" ||
					found+=("$where: #include <$hdr>, which belongs to ${parts//,/ and }")
			done ;;
		esac
	done < <(grep -Hn '^[[:space:]]*#[[:space:]]*include' "${files[@]}")
	if [ ${#found[@]} -eq 0 ]; then
		ok "$part/ includes only ${may// /, }"
	else
		not_ok "$part/ includes only ${may// /, }" "${found[@]}"
	fi
done

# Symbols: what a part's library needs must not come from a part it may not use.
if [ -n "$BUILD" ]; then
	declare -A lib_of=([lib]=libfloor.a [hooks]=libhooks.a [deploy]=libengine.a
		[fleet]=libfleet.a [server]=libdaemon.a)
	for part in lib hooks deploy fleet; do
		a=$BUILD/${lib_of[$part]}
		if [ ! -f "$a" ]; then
			not_ok "$part/: library $a exists" "build it first"
			continue
		fi
		forbidden=()
		for other in lib hooks deploy fleet server; do
			in_list "$other" "$(allowed "$part")" && continue
			forbidden+=("$BUILD/${lib_of[$other]}")
		done
		defs=$(nm -g --defined-only "${forbidden[@]}" 2>/dev/null |
			awk 'NF == 3 { print $3 }' | sort -u)
		undef=$(nm -g --undefined-only "$a" 2>/dev/null | awk '{ print $NF }' | sort -u)
		hits=$(comm -12 <(printf '%s\n' "$defs") <(printf '%s\n' "$undef"))
		if [ -z "$hits" ]; then
			ok "$part/ (${lib_of[$part]}) calls nothing of the parts above or beside it"
		else
			not_ok "$part/ (${lib_of[$part]}) calls nothing of the parts above or beside it" \
				"it needs: $(tr '\n' ' ' <<<"$hits")"
		fi
	done
fi

# Loops of calls between the files of one part: file A calls B and B (perhaps through
# others) calls A. Each file of a part stands on those below it, as the parts do.
if [ -n "$BUILD" ]; then
	for part in lib hooks deploy fleet server; do
		a=$BUILD/${lib_of[$part]}
		[ -f "$a" ] || continue
		loops=$(nm -A "$a" 2>/dev/null | awk '
			{ split($1, f, ":"); m = f[2] }
			NF == 3 && $2 ~ /^[TDBRC]$/ { def[$3] = m; files[m] = 1 }
			NF == 3 && $2 == "U" { need[m, $3] = 1; files[m] = 1 }
			END {
				for (k in need) {
					split(k, p, SUBSEP)
					if ((p[2] in def) && def[p[2]] != p[1])
						reach[p[1], def[p[2]]] = edge[p[1], def[p[2]]] = 1
				}
				for (k in files) for (i in files) for (j in files)
					if (((i, k) in reach) && ((k, j) in reach))
						reach[i, j] = 1
				for (i in files) {
					if (!((i, i) in reach))
						continue
					line = i " ->"
					for (j in files)
						if (((i, j) in edge) && ((j, i) in reach))
							line = line " " j
					print line
				}
			}' | sort)
		if [ -z "$loops" ]; then
			ok "$part/: no loop of calls between its files"
		else
			not_ok "$part/: no loop of calls between its files" \
				"files in a loop, and the calls that close it:" \
				"$(sed 's/\.o\b/.c/g' <<<"$loops")"
		fi
	done
fi

echo "1..$n"
[ "$bad" -eq 0 ]
