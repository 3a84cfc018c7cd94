#!/usr/bin/env bash
# Builds the Debian package of mosquitto-mesh:
#
#   scripts/package.sh            # release build, Swift runtime linked in → .build-deb/mosquitto-mesh_<version>_<arch>.deb
#
# The last line printed is the path of the .deb. Install it with `apt install ./<file>.deb`
# (needs mosquitto and libmosquitto1 from Debian; no Swift toolchain). What goes where:
# deploy/debian/README.Debian. Checks: `lintian <file>.deb` (see docs/packaging.md).
#
# Environment:
#   MESH_BINARY   package this binary instead of building one (it must not need the Swift
#                 toolchain's libraries: build it with --static-swift-stdlib)
#   VERSION       package version (default: what the binary's --version says)
#   OUT           output directory (default .build-deb)
#   SWIFT         swift binary (default: swift on PATH, else /opt/swift/usr/bin/swift)
set -euo pipefail
umask 022
command -v "${SWIFT:-swift}" >/dev/null || export PATH="$PATH:/opt/swift/usr/bin"
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/.build-deb}
DEB=$REPO/deploy/debian
say() { echo "package.sh: $*" >&2; }
fail() { echo "package.sh: $*" >&2; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg-dev binutils)"
done

# 1. The binary: release, Swift runtime static, no $ORIGIN run path (nothing lives beside it).
BIN=${MESH_BINARY:-}
if [[ -z $BIN ]]; then
    say "building (release, --static-swift-stdlib) into $OUT/build"
    start=$(date +%s)
    # -z now: relocations resolved at start, then read-only (Debian's hardening flags).
    "${SWIFT:-swift}" build -c release --static-swift-stdlib --disable-local-rpath -Xlinker -z -Xlinker now \
        --scratch-path "$OUT/build" --product mosquitto-mesh >&2
    BIN=$OUT/build/release/mosquitto-mesh
    say "built in $(($(date +%s) - start)) s"
fi
[[ -x $BIN ]] || fail "$BIN is not an executable"
if ldd "$BIN" | grep -qE 'libswift|libFoundation|libdispatch|libBlocksRuntime|not found'; then
    ldd "$BIN" >&2
    fail "$BIN needs libraries Debian does not ship (build with --static-swift-stdlib)"
fi

VERSION=${VERSION:-$("$BIN" --version)}
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || fail "unusable version '$VERSION'"
ARCH=$(dpkg --print-architecture)
NAME=mosquitto-mesh_${VERSION}_${ARCH}
STAGE=$OUT/stage/$NAME
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$OUT"

# 2. Files.
install -D -m 0755 "$BIN" "$STAGE/usr/bin/mosquitto-mesh"
# As dh_strip does for executables; symbols are not needed at run time (Swift's metadata
# lives in its own sections).
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$STAGE/usr/bin/mosquitto-mesh"
"$STAGE/usr/bin/mosquitto-mesh" --version >/dev/null || fail "the stripped binary does not run"
install -D -m 0644 "$DEB/mosquitto-mesh.service" "$STAGE/lib/systemd/system/mosquitto-mesh.service"
install -D -m 0644 "$DEB/mesh.conf" "$STAGE/etc/mosquitto-mesh/mesh.conf"
# The broker snippet and ACL of deploy/mosquitto, with the ACL in the package's own directory.
install -d -m 0755 "$STAGE/etc/mosquitto/conf.d"
sed -e 's|^acl_file /etc/mosquitto/acl$|acl_file /etc/mosquitto-mesh/acl|' \
    -e 's|^# /etc/mosquitto/conf.d/mesh.conf|# /etc/mosquitto/conf.d/mosquitto-mesh.conf (package mosquitto-mesh)|' \
    "$REPO/deploy/mosquitto/mesh.conf" >"$STAGE/etc/mosquitto/conf.d/mosquitto-mesh.conf"
grep -q '^acl_file /etc/mosquitto-mesh/acl$' "$STAGE/etc/mosquitto/conf.d/mosquitto-mesh.conf" || fail "acl_file line not found in deploy/mosquitto/mesh.conf"
sed -e 's|^# /etc/mosquitto/acl|# /etc/mosquitto-mesh/acl (package mosquitto-mesh)|' \
    "$REPO/deploy/mosquitto/acl" >"$STAGE/etc/mosquitto-mesh/acl"
chmod 0644 "$STAGE/etc/mosquitto/conf.d/mosquitto-mesh.conf" "$STAGE/etc/mosquitto-mesh/acl"
DOC=$STAGE/usr/share/doc/mosquitto-mesh
install -D -m 0644 "$DEB/copyright" "$DOC/copyright"
install -D -m 0644 "$DEB/lintian-overrides" "$STAGE/usr/share/lintian/overrides/mosquitto-mesh"
install -m 0644 "$DEB/README.Debian" "$REPO/README.md" "$DOC/"
gzip -9n -c "$DEB/changelog" >"$DOC/changelog.gz"
install -d -m 0755 "$STAGE/usr/share/man/man1"
sed "s/@VERSION@/$VERSION/" "$DEB/mosquitto-mesh.1" | gzip -9n >"$STAGE/usr/share/man/man1/mosquitto-mesh.1.gz"
head -1 "$DEB/changelog" | grep -q "^mosquitto-mesh ($VERSION)" ||
    say "note: deploy/debian/changelog's first entry is not $VERSION"

# 3. Control files.
install -m 0755 "$DEB/postinst" "$DEB/prerm" "$DEB/postrm" "$STAGE/DEBIAN/"
install -m 0644 "$DEB/conffiles" "$STAGE/DEBIAN/conffiles"
# Shared-library dependencies as Debian computes them (dpkg-shlibdeps wants a debian/control).
shl=$(mktemp -d)
mkdir "$shl/debian"
printf 'Source: mosquitto-mesh\n\nPackage: mosquitto-mesh\nArchitecture: any\n' >"$shl/debian/control"
depends=$(cd "$shl" && dpkg-shlibdeps -O -e"$STAGE/usr/bin/mosquitto-mesh" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shl"
[[ -n $depends ]] || fail "dpkg-shlibdeps found no dependencies"
# The agent relies on libmosquitto 2.0.11's behaviour (docs/mosquitto-facts.md), not only its ABI.
depends=$(echo "$depends" | sed -E 's/libmosquitto1( \([^)]*\))?/libmosquitto1 (>= 2.0.11)/')
size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    "$DEB/control.in" >"$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/md5sums"

# 4. The package (files owned by root whoever builds it).
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/$NAME.deb" >&2
say "built $OUT/$NAME.deb ($(du -h "$OUT/$NAME.deb" | cut -f1)); Depends: $depends"
echo "$OUT/$NAME.deb"
