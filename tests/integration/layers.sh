#!/bin/bash
# layers.sh: the parts of deployd use each other in one direction only, and the check that says so fails when one does not.
# timeout: 120
#
# tests/layers.sh is run on this tree and its build (by include and by symbol), then on a copy
# of the tree into which a forbidden include is put, once per rule: each must be caught.
. "$(dirname "$0")/../lib.sh"

BUILD=${BUILDDIR:-$(dirname "$DEPLOYD_BIN")}
out=$("$SRCDIR/tests/layers.sh" "$SRCDIR" "$BUILD" 2>&1)
rc=$?
while IFS= read -r line; do
	case $line in
	"ok "*) ok "this tree: ${line#ok * - }" ;;
	"not ok "*) fail "this tree: ${line#not ok * - }" "$out" ;;
	esac
done <<<"$out"
is "tests/layers.sh passes on this tree" "$rc" 0

# A copy of the five parts' sources, to break one file at a time.
mkdir -p "$TMP/tree/tests"
cp -r "$SRCDIR/lib" "$SRCDIR/hooks" "$SRCDIR/deploy" "$SRCDIR/fleet" "$SRCDIR/server" "$TMP/tree/"
cp "$SRCDIR/tests/layers.sh" "$TMP/tree/tests/"

# forbid FILE LINE WHAT: put LINE into FILE of the copy; the check must fail and name FILE.
forbid() {
	local file=$1 line=$2 what=$3 got rc
	sed -i "0,/^#include/s||$line\n#include|" "$TMP/tree/$file"
	got=$("$TMP/tree/tests/layers.sh" "$TMP/tree" 2>&1)
	rc=$?
	cp "$SRCDIR/$file" "$TMP/tree/$file"
	if [ "$rc" -ne 0 ] && grep -q "^# $file:" <<<"$got"; then
		ok "caught: $what ($file)"
	else
		fail "caught: $what ($file)" "exit $rc" "$got"
	fi
}

forbid lib/util.c '#include "deploy/deploy.h"' "the floor includes the engine"
forbid lib/log.c '#include "server/deployd.h"' "the floor includes the daemon"
forbid lib/base64.c '#include <git2.h>' "the floor includes libgit2"
forbid hooks/github.c '#include "server/deployd.h"' "a provider includes the daemon"
forbid hooks/gitlab.c '#include "deploy/deploy.h"' "a provider includes the engine"
forbid deploy/engine.c '#include "server/deployd.h"' "the engine includes the daemon"
forbid deploy/swap.c '#include "hooks/hooks.h"' "the engine includes the providers"
forbid deploy/fetch.c '#include <microhttpd.h>' "the engine includes the HTTP server"
forbid deploy/state.c '#include <yaml.h>' "the engine includes the YAML parser"
forbid deploy/deploy.h '#include "server/deployd.h"' "the engine's header includes the daemon's"
forbid hooks/hooks.h '#include "deploy/deploy.h"' "the providers' header includes the engine's"
forbid fleet/etcd.c '#include "deploy/deploy.h"' "the etcd client includes the engine"
forbid fleet/fleet.h '#include "server/deployd.h"' "the etcd client's header includes the daemon's"
forbid deploy/run.c '#include "fleet/fleet.h"' "the engine includes the etcd client"

# And a call in the wrong direction, caught by symbol: an engine object that calls the daemon.
if command -v nm >/dev/null 2>&1 && [ -f "$BUILD/libengine.a" ] && [ -f "$BUILD/libdaemon.a" ]; then
	mkdir -p "$TMP/sym"
	cp "$BUILD"/libfloor.a "$BUILD"/libhooks.a "$BUILD"/libengine.a "$BUILD"/libdaemon.a "$TMP/sym/"
	printf 'int sched_is_paused(const char *);\nint layers_probe(void);\nint layers_probe(void) { return sched_is_paused("www"); }\n' \
		>"$TMP/probe.c"
	if cc -c -o "$TMP/probe.o" "$TMP/probe.c" && ar rc "$TMP/sym/libengine.a" "$TMP/probe.o"; then
		got=$("$TMP/tree/tests/layers.sh" "$TMP/tree" "$TMP/sym" 2>&1)
		rc=$?
		if [ "$rc" -ne 0 ] && grep -q "it needs: sched_is_paused" <<<"$got"; then
			ok "caught: the engine's library calls sched_is_paused of the daemon"
		else
			fail "caught: the engine's library calls sched_is_paused of the daemon" "$got"
		fi
	else
		fail "a probe object can be built and added to a copy of libengine.a"
	fi
	# Two files of one part that call each other: the loop the scheduler and the daemon,
	# and the listener and its HTTP glue, once had.
	cp "$BUILD"/libengine.a "$TMP/sym/"
	printf 'int loopb_call(void);\nint loopa_call(void);\nint loopa_call(void) { return loopb_call(); }\n' \
		>"$TMP/loopa.c"
	printf 'int loopa_call(void);\nint loopb_call(void);\nint loopb_call(void) { return loopa_call() + 1; }\n' \
		>"$TMP/loopb.c"
	if cc -c -o "$TMP/loopa.o" "$TMP/loopa.c" && cc -c -o "$TMP/loopb.o" "$TMP/loopb.c" &&
		ar rc "$TMP/sym/libfloor.a" "$TMP/loopa.o" "$TMP/loopb.o"; then
		got=$("$TMP/tree/tests/layers.sh" "$TMP/tree" "$TMP/sym" 2>&1)
		rc=$?
		if [ "$rc" -ne 0 ] && grep -q "loopa.c -> loopb.c" <<<"$got" &&
			grep -q "^not ok .* lib/: no loop of calls" <<<"$got"; then
			ok "caught: two files of the floor that call each other"
		else
			fail "caught: two files of the floor that call each other" "$got"
		fi
	else
		fail "probe objects can be built and added to a copy of libfloor.a"
	fi
else
	fail "nm and the part libraries are there" "BUILD=$BUILD"
fi
done_testing
