#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the broker-log parser with the
# session table, and of the interest advert codec. Harnesses and seed corpora: Fuzz/.
#
#   scripts/fuzz.sh [seconds|-runs=N] [log|advert|all]      default: 20 seconds, all
#
# Builds into .build-fuzz/ (MeshCore's sources as an instrumented static library, then one
# executable per harness), runs each harness on a scratch copy of its corpus (the repo's
# corpus is never modified), and exits non-zero on any crash, leak, timeout or out-of-memory.
# Findings: .build-fuzz/run/<harness>/ (crash-*, leak-*, timeout-*, oom-* and fuzz.log).
set -euo pipefail
command -v swiftc >/dev/null || export PATH="$PATH:/opt/swift/usr/bin"
cd "$(dirname "$0")/.."

budget="${1:-20}"
which="${2:-all}"
case "$budget" in
  -runs=[0-9]*) limit="$budget" ;;
  [0-9]*) limit="-max_total_time=$budget" ;;
  *) echo "usage: $0 [seconds|-runs=N] [log|advert|all]" >&2; exit 64 ;;
esac
case "$which" in
  log) harnesses=(log) ;;
  advert) harnesses=(advert) ;;
  all) harnesses=(log advert) ;;
  *) echo "usage: $0 [seconds|-runs=N] [log|advert|all]" >&2; exit 64 ;;
esac
# libFuzzer ships with Swift's Linux toolchain only (Xcode's swiftc has no -sanitize=fuzzer).
if [ "$(uname -s)" != Linux ]; then
  echo "fuzz: skipped, -sanitize=fuzzer needs the Swift toolchain for Linux"
  exit 0
fi

# A trap must end the process at once: Swift's own backtracer (on by default on Linux) can
# hang on an ASan-instrumented process; libFuzzer and ASan print the stack instead.
export SWIFT_BACKTRACE=enable=no
export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer || true)}"

out=.build-fuzz
mkdir -p "$out"
flags=(-sanitize=fuzzer,address -parse-as-library -O -g -swift-version 6)

# True if $1 is missing or older than any of the other arguments.
stale() {
  local target="$1"; shift
  [ -e "$target" ] || return 0
  local f
  for f in "$@"; do [ "$f" -nt "$target" ] && return 0; done
  return 1
}

core_sources=(Sources/MeshCore/*.swift)
# MeshCore has no dependencies: one whole-module compile, instrumented like the harness.
if stale "$out/libMeshCore.a" "${core_sources[@]}" "$0"; then
  echo "fuzz: compiling MeshCore (instrumented)"
  swiftc "${flags[@]}" -whole-module-optimization -module-name MeshCore \
    -emit-module -emit-module-path "$out/MeshCore.swiftmodule" \
    -emit-library -static -o "$out/libMeshCore.a" "${core_sources[@]}"
fi

status=0
for name in "${harnesses[@]}"; do
  case "$name" in
    log) source=Fuzz/LogParserFuzz.swift ;;
    advert) source=Fuzz/AdvertCodecFuzz.swift ;;
  esac
  binary="$out/$name-fuzz"
  if stale "$binary" "$source" "$out/libMeshCore.a"; then
    echo "fuzz: linking $binary"
    # lld: gold warns about every ASan helper symbol it cannot export.
    swiftc "${flags[@]}" -use-ld=lld -module-name "$(basename "$source" .swift)" \
      -I "$out" -L "$out" -lMeshCore -o "$binary" "$source"
  fi

  run="$out/run/$name"
  rm -rf "$run"
  mkdir -p "$run/corpus"
  cp Fuzz/corpus/"$name"/* "$run/corpus/"
  echo "fuzz: $name $limit on $(ls "$run/corpus" | wc -l) seed inputs"
  # -max_len: several log lines of up to 1000 bytes, or a sizeable advert.
  # -timeout: one input taking 10 s is a hang, reported like a crash.
  if "$binary" "$limit" -max_len="${FUZZ_MAX_LEN:-8192}" -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
     -dict="Fuzz/$name.dict" -artifact_prefix="$run/" "$run/corpus" >"$run/fuzz.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/fuzz.log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/fuzz.log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$run/fuzz.log")
    cov=$(grep -o 'cov: [0-9]*' "$run/fuzz.log" | tail -1)
    echo "fuzz: $name ok: $runs runs, $speed exec/s, $cov, peak rss ${rss} MB"
  else
    status=1
    echo "fuzz: $name FAILED, log: $run/fuzz.log; findings:" >&2
    ls "$run" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | sed "s|^|  $run/|" >&2 || true
    grep -E -A30 'Fatal error|^==[0-9]+== ?ERROR' "$run/fuzz.log" | head -60 >&2 || tail -40 "$run/fuzz.log" >&2
  fi
done
exit "$status"
