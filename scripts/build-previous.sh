#!/usr/bin/env bash
# Builds the mosquitto-mesh binary of an earlier release, for the mixed-version (rolling
# upgrade) test and `mosquitto-mesh bench upgrade`.
#
#   scripts/build-previous.sh [REF]     REF: tag or commit (default: the last tag before HEAD)
#
# Prints the path of the binary on its last line: .build/previous/<commit>/mosquitto-mesh
# (built once per commit, reused afterwards). The sources come from `git archive` into a
# temporary directory — nothing is registered in the repository (no worktree to clean up if
# the build is interrupted). Package.resolved is copied from this checkout when the
# release has none, so the dependencies resolve from SwiftPM's local cache, offline.
# Environment: SWIFT (default swift), CONFIG (debug|release, default debug).
set -euo pipefail
command -v "${SWIFT:-swift}" >/dev/null || export PATH="$PATH:/opt/swift/usr/bin"
cd "$(dirname "$0")/.."
ref=${1:-}
if [[ -z $ref ]]; then
    ref=$(git describe --tags --abbrev=0 HEAD 2>/dev/null) || {
        echo "build-previous.sh: no tag before HEAD; give a release commit or tag (e.g. v0.2.0)" >&2
        exit 64
    }
fi
commit=$(git rev-parse --verify "$ref^{commit}")
out=.build/previous/$commit
bin=$out/mosquitto-mesh
if [[ -x $bin ]]; then
    echo "build-previous.sh: $ref ($commit) already built" >&2
    echo "$PWD/$bin"
    exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/mesh-previous-XXXXXX")
trap 'rm -rf "$work"' EXIT
git archive --format=tar "$commit" | tar -x -C "$work"
[[ -e $work/Package.resolved || ! -e Package.resolved ]] || cp Package.resolved "$work/"
echo "build-previous.sh: building $ref ($commit) in $work" >&2
start=$(date +%s)
"${SWIFT:-swift}" build --package-path "$work" -c "${CONFIG:-debug}" --product mosquitto-mesh >&2
mkdir -p "$out"
cp "$("${SWIFT:-swift}" build --package-path "$work" -c "${CONFIG:-debug}" --show-bin-path)/mosquitto-mesh" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "build-previous.sh: built in $(($(date +%s) - start)) s" >&2
echo "$PWD/$bin"
