#!/bin/bash
# tests/packaging/rpm.sh: build the .rpm on Debian, rpmlint it, compare its files with the .deb, unpack it.
#
# usage: tests/packaging/rpm.sh          (DEPLOYD_DEB=FILE.deb skips building the .deb)
#
# This is not a Fedora or EL test: Debian's rpm has no Fedora macros (stand-ins
# from packaging/rpm/macros.systemd-standin are loaded) and an empty rpm
# database (--nodeps). It checks the spec's syntax, scriptlets and file list.

# lib.sh wants a binary for the integration tests; this test uses the packaged one.
export DEPLOYD_BIN=${DEPLOYD_BIN:-/bin/true}
. "$(dirname "$0")/../lib.sh"

for tool in rpmbuild rpmlint rpm dpkg-deb; do
	command -v "$tool" >/dev/null || bail "$tool is missing (apt-get install rpm rpmlint dpkg)"
done

OUT=$TMP/pkg
mkdir -p "$OUT/deb"
if [ -n "${DEPLOYD_DEB:-}" ]; then
	[ -f "$DEPLOYD_DEB" ] || bail "DEPLOYD_DEB=$DEPLOYD_DEB does not exist"
	cp "$DEPLOYD_DEB" "$OUT/deb/"
	ok "using $DEPLOYD_DEB for the comparison"
else
	start=$SECONDS
	if "$SRCDIR/packaging/build-deb" "$OUT/deb" >"$TMP/build-deb.log" 2>&1; then
		ok "packaging/build-deb builds the .deb to compare with ($((SECONDS - start)) s)"
	else
		fail "packaging/build-deb builds the .deb to compare with" "$(tail -n 30 "$TMP/build-deb.log")"
	fi
fi

start=$SECONDS
"$SRCDIR/packaging/build-rpm" "$OUT/rpm" >"$TMP/build-rpm.log" 2>&1
rc=$?
is "packaging/build-rpm succeeds ($((SECONDS - start)) s)" "$rc" 0
[ "$rc" -eq 0 ] || diag "$(tail -n 40 "$TMP/build-rpm.log")"
RPM=$(find "$OUT/rpm" -name "deployd-[0-9]*.rpm" ! -name "*debug*" | head -n 1)
[ -n "$RPM" ] || bail "no rpm was built"

# ---- rpmlint ----
errors=$(grep -E '^[^ ]+: E: ' "$OUT/rpm/rpmlint.log")
is "rpmlint reports no errors" "$errors" ""
grep -E ': [EW]: ' "$OUT/rpm/rpmlint.log" | sed 's/^/# rpmlint: /'
like "rpmlint checked the package" "$(tail -n 1 "$OUT/rpm/rpmlint.log")" '1 packages and 0 specfiles checked'

# ---- same files as the .deb ----
like "build-rpm compared the file lists" "$(cat "$TMP/build-rpm.log")" 'same [0-9]+ files as deployd_'
if [ -s "$OUT/rpm/files.rpm" ] && [ -s "$OUT/rpm/files.deb" ]; then
	is "the .rpm and the .deb install the same files" "$(diff "$OUT/rpm/files.deb" "$OUT/rpm/files.rpm")" ""
	diag "files: $(tr '\n' ' ' <"$OUT/rpm/files.rpm")"
else
	fail "the .rpm and the .deb install the same files" "no file lists in $OUT/rpm"
fi

# ---- metadata and scriptlets ----
q() {
	rpm -qp "$@" "$RPM" 2>/dev/null
}
is "the package is deployd-$(sed -n 's/^Version:[[:space:]]*//p' "$SRCDIR/packaging/rpm/deployd.spec")" \
	"$(q --qf '%{NAME}-%{VERSION}')" "deployd-$(sed -n 's/^AC_INIT(\[deployd\], *\[\([^]]*\)\].*/\1/p' "$SRCDIR/configure.ac")"
is "/etc/deployd/deployd.yaml is its only config file" "$(q --configfiles)" /etc/deployd/deployd.yaml
# RPMFILE_CONFIG is 1, RPMFILE_NOREPLACE is 16.
flags=$(q --qf '[%{FILEFLAGS} %{FILENAMES}\n]' | awk '$2 == "/etc/deployd/deployd.yaml" { print $1 }')
if [ -n "$flags" ] && [ $((flags & 17)) -eq 17 ]; then
	ok "the config is %config(noreplace)"
else
	fail "the config is %config(noreplace)" "FILEFLAGS '$flags'"
fi
like "it owns /etc/deployd" "$(q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]')" '^d[rwx-]{9} /etc/deployd$'
scripts=$(q --scripts)
like "%pre creates the deployd user" "$scripts" 'useradd -r -g deployd -d /var/lib/deployd'
like "%post enables the unit on first install" "$scripts" 'preset deployd\.service'
like "%preun stops and disables it on removal" "$scripts" 'disable --now deployd\.service'
like "%postun restarts it on upgrade" "$scripts" 'try-restart deployd\.service'
like "it requires the libraries it links" "$(q -R)" 'libgit2\.so'
like "the unit is in /usr/lib/systemd/system" "$(q -l)" '^/usr/lib/systemd/system/deployd\.service$'
like "man pages are compressed as on Fedora" "$(q -l)" '^/usr/share/man/man8/deployd\.8\.gz$'

# ---- unpack into an empty root (no scriptlets: there is no Fedora userland here) ----
RROOT=$TMP/rpmroot
mkdir -p "$RROOT"
if rpm --root "$RROOT" --initdb 2>"$TMP/rpm-i.log" &&
	rpm --root "$RROOT" -i --nodeps --noscripts "$RPM" 2>>"$TMP/rpm-i.log"; then
	ok "rpm -i unpacks it into an empty root"
else
	fail "rpm -i unpacks it into an empty root" "$(cat "$TMP/rpm-i.log")"
fi
if [ -x "$RROOT/usr/sbin/deployd" ]; then
	ok "the unpacked binary is executable"
else
	fail "the unpacked binary is executable"
fi
ensure_deployd_user
out=$("$RROOT/usr/sbin/deployd" check -c "$RROOT/etc/deployd/deployd.yaml" 2>&1)
is "the unpacked deployd check accepts the unpacked config" "$out" "configuration OK"
like "rpm -V finds its files intact" "$(rpm --root "$RROOT" -V --nodeps deployd 2>&1; echo "status $?")" '^status 0$'
if rpm --root "$RROOT" -e --nodeps --noscripts deployd 2>"$TMP/rpm-e.log"; then
	ok "rpm -e removes it"
else
	fail "rpm -e removes it" "$(cat "$TMP/rpm-e.log")"
fi
if [ ! -e "$RROOT/usr/sbin/deployd" ]; then
	ok "and its files are gone"
else
	fail "and its files are gone"
fi

done_testing
