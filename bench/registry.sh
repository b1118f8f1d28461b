#!/usr/bin/env bash
# Emergency-summary and patient-lookup benchmark over a registry of Tobiume-net registrations
# (issue 4: `$summary?mode=emergency` p99 ≤ 20 ms and name + birth-date lookup p99 ≤ 10 ms with
# 100,000 registered patients). See bench/README.md.
#
#   bench/registry.sh                       # the issue's size: 100,000 registered patients
#   PATIENTS=5000 bench/registry.sh         # quick run
#
# 1. installs wrk / curl with apt-get when missing; builds the release binary and the loader example
#    (`examples/bench_summary.rs`);
# 2. loads PATIENTS registrations (conformance/registration.example.json with per-patient card id, kanji
#    and kana name, sex and birth date; ~45 resources each, through the store's bulk import path) plus the
#    real SS-MIX2 fixture linked to patient 0 into an SQLite file under $BENCH_DIR (kept and reused for the
#    same size), and samples 20,000 patient ids and (kana family name, birth date) pairs;
# 3. starts `serve` on 127.0.0.1 and runs wrk per scenario and concurrency:
#      summary  GET /fhir/Patient/{id}/$summary?mode=emergency
#      lookup   GET /fhir/Patient?name={kana family name}&birthdate={date}
#    at 1 connection (latency of one emergency physician's request) and at $CONNS connections
#    (the server under load; p99 includes queueing on 2 cores);
# 4. prints req/s, p50/p90/p99 against the targets and writes bench/results/registry-<date>.md.
#
# Environment (defaults):
#   PATIENTS=100000 BENCH_DIR=/tmp/tobiume-bench CONNS=32 DURATION=20s WARMUP=5s
#   BIN= / LOADER=       prebuilt gateway binary / loader example (skip cargo build)
#   SERVER_LOG=warn      TOBIUME_LOG of the server
#   RESULTS_DIR=bench/results  KEEP_DB=1 (0 = delete the SQLite store at the end)
#   MB_PER_PATIENT=0.29  store size per registration used for the disk check (measured: 2,810 MB for
#                        10,000 registrations with migrations 0001–0005; set it lower once the store is leaner)
#   LOAD_CHUNK=10000     registrations loaded per loader run; the free space of $BENCH_DIR's file system
#                        is checked before every chunk and the load stops (resumable) when a chunk would
#                        leave less than RESERVE_MB=3000 free. An interrupted load resumes where it stopped.
#   SKIP_DISK_CHECK=1    load anyway
# The server runs with TOBIUME_AUTH=none on loopback when it supports authentication modes: this
# benchmark measures the summary and the lookup; authentication, consent and audit overhead is measured
# by bench/server.sh (AUTH=1) as a ratio of the same run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATIENTS=${PATIENTS:-100000}
BENCH_DIR=${BENCH_DIR:-/tmp/tobiume-bench}
CONNS=${CONNS:-32}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
SERVER_LOG=${SERVER_LOG:-warn}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
KEEP_DB=${KEEP_DB:-1}
MB_PER_PATIENT=${MB_PER_PATIENT:-0.29}
LOAD_CHUNK=${LOAD_CHUNK:-10000}
RESERVE_MB=${RESERVE_MB:-3000}
SKIP_DISK_CHECK=${SKIP_DISK_CHECK:-0}

log() { printf '[registry %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ "$KEEP_DB" = 0 ] && rm -f "$DB_FILE" "$DB_FILE"-wal "$DB_FILE"-shm || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
if [ -z "${BIN:-}" ] || [ -z "${LOADER:-}" ]; then
  log "cargo build --release (gateway + loader example)"
  (cd "$REPO" && cargo build --release --locked --bin tobiume-gateway --example bench_summary)
fi
BIN=${BIN:-$TARGET/release/tobiume-gateway}
LOADER=${LOADER:-$TARGET/release/examples/bench_summary}

mkdir -p "$BENCH_DIR" "$RESULTS_DIR"
DB_FILE="$BENCH_DIR/registry-p$PATIENTS.db"
DATA_DIR="$BENCH_DIR/registry-p$PATIENTS-data"
t0=$(date +%s.%N)
free_mb() { df -Pm "$BENCH_DIR" | awk 'NR == 2 { print $4 }'; }
store_mb() { { du -cm "$DB_FILE"* 2>/dev/null || true; } | awk 'END { print ($1 == "") ? 0 : $1 }'; }
need_mb() { awk -v n="$1" -v m="$MB_PER_PATIENT" 'BEGIN { printf "%.0f", n * m }'; }
log "store $DB_FILE: ${PATIENTS} registrations need ≈ $(need_mb "$PATIENTS") MB (MB_PER_PATIENT=$MB_PER_PATIENT); $(free_mb) MB free, $(store_mb) MB already there"
chunk_end=0
while :; do
  chunk_end=$((chunk_end + LOAD_CHUNK)); [ "$chunk_end" -gt "$PATIENTS" ] && chunk_end=$PATIENTS
  if [ "$SKIP_DISK_CHECK" != 1 ]; then
    # What this chunk can still add: its share of the final size minus what the store already holds
    # (a resumed or reused store needs nothing more).
    want=$(( $(need_mb "$chunk_end") - $(store_mb) ))
    if [ "$want" -gt 0 ] && [ $(( $(free_mb) - want )) -lt "$RESERVE_MB" ]; then
      echo "registry.sh: not enough disk for registrations up to $chunk_end: need ≈ $want MB more, $(free_mb) MB free, reserve $RESERVE_MB MB (the load so far is kept and resumes; SKIP_DISK_CHECK=1 to force)" >&2
      exit 3
    fi
  fi
  /usr/bin/env time -f '%e s wall, %M KB max RSS' "$LOADER" --patients "$PATIENTS" --load-to "$chunk_end" \
    --database "sqlite://$DB_FILE?mode=rwc" --load-only --sample-dir "$DATA_DIR" 2>&1 | tail -3 >&2
  [ "$chunk_end" -ge "$PATIENTS" ] && break
done
t1=$(date +%s.%N)
LOAD_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}')
DB_MB=$(du -cm "$DB_FILE"* | tail -1 | cut -f1)
log "store ready in ${LOAD_S} s, ${DB_MB} MB"

port=18480
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
URL="http://127.0.0.1:$port"
TOBIUME_AUTH=none TOBIUME_DEMO_PATIENTS=0 TOBIUME_LOG="$SERVER_LOG" \
  "$BIN" serve --listen "127.0.0.1:$port" --database "sqlite://$DB_FILE?mode=rwc" >"$BENCH_DIR/registry-serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "$URL/health" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$BENCH_DIR/registry-serve.log" >&2; exit 1; }
  sleep 0.2
done

# Guard against measuring errors: one summary and one lookup must answer 200 with content.
id=$(head -1 "$DATA_DIR/summary.txt")
curl -fsS "$URL/fhir/Patient/$id/\$summary?mode=emergency" | grep -q '"Composition"' \
  || { echo "summary check failed for $id" >&2; exit 1; }

RESULTS=$(mktemp)
run() { # SCENARIO CONNECTIONS
  local s=$1 c=$2 t=2 out j
  [ "$c" -lt 2 ] && t=1
  SCENARIO=$s DATA_DIR=$DATA_DIR wrk -t$t -c"$c" -d"$WARMUP" -s "$REPO/bench/lib/scenarios.lua" "$URL" >/dev/null
  # Server CPU time (user + system clock ticks) around the measured run: CPU per request.
  local cpu0 cpu1
  cpu0=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
  out=$(SCENARIO=$s DATA_DIR=$DATA_DIR wrk -t$t -c"$c" -d"$DURATION" --latency -s "$REPO/bench/lib/scenarios.lua" "$URL")
  cpu1=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
  j=$(sed -n 's/^BENCHJSON //p' <<<"$out")
  [ -n "$j" ] || { echo "$out" >&2; exit 1; }
  awk -v c="$c" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v rss="$(awk '/^VmRSS:/{printf "%.0f", $2/1024}' /proc/$SERVER_PID/status)" \
      -v cpu_ms="$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) * 1000 / hz }')" '
    function num(k,   m) { if (match($0, "\"" k "\":[0-9.]+")) { m = substr($0, RSTART, RLENGTH); sub(/.*:/, "", m); return m + 0 } return 0 }
    { n = num("requests"); printf "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t%.2f\n", "'"$s"'", c, num("rps"), num("p50_us")/1000, num("p90_us")/1000,
      num("p99_us")/1000, num("err_status") + num("err_connect") + num("err_read") + num("err_timeout"), rss, load, (n > 0) ? cpu_ms / n : 0 }' <<<"$j" >>"$RESULTS"
  tail -1 "$RESULTS" | awk -F'\t' '{printf "   %-8s c=%-3s %7s req/s  p50 %6s ms  p99 %6s ms  errors %s  RSS %s MB  server CPU %s ms/req  (load %s)\n", $1, $2, $3, $4, $6, $7, $8, $10, $9}' >&2
}
for s in summary lookup; do
  run "$s" 1
  run "$s" "$CONNS"
done
kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
MD="$RESULTS_DIR/registry-$(date +%Y-%m-%d).md"
{
  echo "# Registry benchmark — $(date -u +%Y-%m-%dT%H:%MZ), commit $REV"
  echo
  echo "$PATIENTS registered patients (SQLite, ${DB_MB} MB, loaded in ${LOAD_S} s — 0 s when reused); $(nproc) cores;"
  echo "\`wrk --latency -d$DURATION\` after a $WARMUP warm-up; the server ran with TOBIUME_AUTH=none."
  echo
  echo "| scenario | connections | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU ms/req | RSS MB | load | target p99 | met |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{ tgt = ($1 == "summary") ? 20 : 10
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | ≤ %d ms | %s |\n", $1, $2, $3, $4, $5, $6, $7, $10, $8, $9, tgt, ($6 <= tgt) ? "yes" : "no" }' "$RESULTS"
} >"$MD"
rm -f "$RESULTS"
cat "$MD"
log "written: $MD"
