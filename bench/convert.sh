#!/usr/bin/env bash
# SS-MIX2 conversion benchmark (single thread): generates synthetic storages with the synthesizer
# (examples/synth.rs, 19 files per patient) and times, over each,
#   (a) walk + read + decode/parse (the ceiling) and
#   (b) full conversion (walk + read + version resolution + parse + map + NDJSON serialization),
# printing files/s, MB/s, the ratio (b)/(a) and the peak RSS for two corpus sizes (memory must be
# flat in corpus size). Targets: (b) >= 20,000 files/s and >= 30 % of (a).
#
# Usage: bench/convert.sh [patients=600] [big_patients=4*patients]
#   600 patients = 11,400 files. The corpus goes to /dev/shm when present (tmpfs: measures CPU, not the
#   disk), else $TMPDIR. Set BENCH_DIR to choose.
set -euo pipefail
cd "$(dirname "$0")/.."
patients="${1:-600}"
big="${2:-$((patients * 4))}"
base="${BENCH_DIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}" )}"
work="$(mktemp -d "$base/tobiume-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cargo build --release --example synth --bench convert >/dev/null 2>&1 || cargo build --release --example synth --bench convert
bench_bin="$(ls -t target/release/deps/convert-* | grep -v '\.d$' | head -1)"

for n in "$patients" "$big"; do
  root="$work/storage-$n"
  read -r p files bytes secs < <(target/release/examples/synth "$root" "$n" 2026)
  echo "== synthesized $p patients, $files files, $((bytes / 1000000)) MB in ${secs}s ($(awk "BEGIN{printf \"%.0f\", $files/$secs}") files/s incl. disk writes) under $base"
  CONVERT_CORPUS="$root" taskset -c 0 "$bench_bin" 2>/dev/null || CONVERT_CORPUS="$root" "$bench_bin"
  rm -rf "$root"
done
