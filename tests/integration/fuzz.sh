#!/bin/bash
# fuzz.sh: builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan, replays every known input, and explores each for a bounded time.
# timeout: 480
#
# Every target must build, replay all of fuzz/regress/<t> and fuzz/corpus/<t> (so an old bug
# that comes back fails every run, not by chance), explore (a non-zero number of executions)
# and end without a crash, leak, undefined behaviour or broken invariant. An exploration
# finding fails too, and fuzz/run prints its seed and the input as base64. FUZZ_SECONDS
# (default 20) sets the time per target; FUZZ_BUILD the build directory (default build-fuzz
# in the source tree). Without clang this fails: the fuzz targets are part of the suite.
. "$(dirname "$0")/../lib.sh"

SECS=${FUZZ_SECONDS:-20}
export FUZZ_BUILD=${FUZZ_BUILD:-$SRCDIR/build-fuzz}

if ! command -v clang >/dev/null 2>&1; then
	fail "clang is installed" "the fuzz targets need clang's libFuzzer:" \
		"apt-get install clang libclang-rt-14-dev"
	done_testing
fi

# libFuzzer's runtime comes with libclang-rt-14-dev; say so plainly when it is missing.
cat >"$TMP/probe.c" <<'EOF'
int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);
int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d != 0 && n > 9; }
EOF
if ! check "clang links a libFuzzer program with ASan and UBSan" \
	clang -fsanitize=fuzzer,address,undefined -o "$TMP/probe" "$TMP/probe.c"; then
	diag "install libclang-rt-14-dev"
	done_testing
fi

targets=()
for f in "$SRCDIR"/fuzz/fuzz_*.c; do
	t=$(basename "$f" .c)
	[ "$t" = fuzz_util ] && continue
	targets+=("$t")
done
[ ${#targets[@]} -ge 5 ] || fail "at least five fuzz targets exist" "found: ${targets[*]}"

out=$("$SRCDIR/fuzz/run" "$SECS" 2>&1)
rc=$?
printf '%s\n' "$out" >"$TMP/fuzz-run.log"
if grep -q '^fuzz/run: ' <<<"$out" || ! grep -q '^fuzz: building' <<<"$out"; then
	fail "fuzz/run builds every target" "$(tail -n 30 "$TMP/fuzz-run.log")"
else
	ok "fuzz/run builds every target"
fi

for t in "${targets[@]}"; do
	line=$(grep -E "^$t: replayed=" <<<"$out")
	if [ -z "$line" ]; then
		fail "$t ran" "no summary line from fuzz/run"
		continue
	fi
	diag "$line"
	known=$(find "$SRCDIR/fuzz/corpus/${t#fuzz_}" "$SRCDIR/fuzz/regress/${t#fuzz_}" -type f \
		2>/dev/null | wc -l)
	replayed=$(sed -E 's/.*replayed=([0-9]+).*/\1/' <<<"$line")
	if [ "${replayed:-0}" -ge "$known" ] && [ "$known" -gt 0 ]; then
		ok "$t: replayed its $known known inputs (seeds and regressions) first"
	else
		fail "$t: replayed its $known known inputs first" "$line"
	fi
	execs=$(sed -E 's/.*execs=([0-9]+).*/\1/' <<<"$line")
	crashes=$(sed -E 's/.*crashes=([0-9]+).*/\1/' <<<"$line")
	if [ "${execs:-0}" -eq 0 ]; then
		fail "$t ran for ${SECS}s" "$line"
	elif [ "${crashes:-1}" -ne 0 ]; then
		# fuzz/run prints the report between "---- fuzz_x failed" and "----"
		fail "$t: no crash, leak or undefined behaviour in ${SECS}s" "$line" \
			"$(sed -n "/^---- $t failed/,/^----\$/p" "$TMP/fuzz-run.log" | head -n 40)"
	else
		ok "$t: no crash, leak or undefined behaviour in ${SECS}s ($execs executions)"
	fi
done
is "fuzz/run exit status" "$rc" 0
done_testing
