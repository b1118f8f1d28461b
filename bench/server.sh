#!/usr/bin/env bash
# End-to-end server benchmark of tobiume-gateway (see bench/README.md).
#
#   PATIENTS=2000 bench/server.sh            # quick run
#   bench/server.sh                          # the issue's size: 100,000 patients (1.9 M SS-MIX2 files)
#   bench/server.sh --no-pg                  # SQLite only (default: PostgreSQL too when its binaries exist)
#
# 1. installs wrk / sqlite3 / curl with apt-get when missing; builds the release binary (or uses $BIN);
# 2. generates the synthetic SS-MIX2 corpus with `synth ssmix2` (19 files per patient), cached under
#    $BENCH_DIR keyed by patient count and seed;
# 3. imports it into a fresh SQLite file (and a throwaway PostgreSQL cluster) timing the wall clock
#    -> files/s, resources/s, peak RSS of the importer, database size;
# 4. starts `serve` on 127.0.0.1 per store, warms up, and runs wrk per scenario with random existing ids,
#    names + birth dates and (patient, code) pairs sampled from the imported store; samples the server's
#    RSS from /proc/PID/status during every run;
# 5. prints a summary table with each scenario's req/s as a ratio to the static ceiling (GET /health,
#    measured in the same run against the same server process) and the targets, and writes it
#    (markdown + JSON) to bench/results/server-<date>.md.
#
# Environment (defaults):
#   PATIENTS=100000 SEED=2026 BENCH_DIR=/tmp/tobiume-bench
#   THREADS=2 CONNS=32 DURATION=20s WARMUP=5s      wrk settings (wrk -t$THREADS -c$CONNS -d$DURATION --latency)
#   BIN=                 prebuilt tobiume-gateway binary (skips cargo build)
#   IMPORT_BATCH=        --batch N for the importer (files per transaction; gateway default 256)
#   REUSE_DB=0           1 = keep an already imported SQLite store of the same size (import not re-measured;
#                        it still holds the Patients the create scenario of earlier runs added)
#   SCENARIOS="health metadata read search_name search_obs create"
#   LAT_CONNS=1          latency pass: after the throughput runs, read and the two searches again with wrk
#                        -t1 -c$LAT_CONNS (one client at a time: the latency one EHR user sees, without the
#                        queueing of $CONNS connections on 2 shared cores); empty = no latency pass
#   LAT_SCENARIOS="read search_name search_obs"
#   SERVER_LOG=warn      TOBIUME_LOG of the server under test (info = one access-log line per request)
#   PERF=0               1 = perf record (DWARF call graphs, PERF_FREQ=99 Hz) the server during each measured run
#                        into the run directory (perf report -i …); raise PERF_FREQ (e.g. 499) for short runs
#   RESULTS_DIR=bench/results  KEEP_PG=0 (1 = keep the PostgreSQL cluster and its data after the run)
#   AUTH=dev             TOBIUME_AUTH of the server under test: dev (every request carries a dev-token, minted
#                        with TOKEN_ARGS) or none (no authentication: the baseline for the cost of security)
#   TOKEN_ARGS="--scope system/*.cruds"   dev-token arguments of the benchmark's access token
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pg.sh
. "$REPO/bench/lib/pg.sh"

PG_MODE=auto
for a in "$@"; do
  case "$a" in
    --pg) PG_MODE=1 ;;
    --no-pg) PG_MODE=0 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 64 ;;
  esac
done

PATIENTS=${PATIENTS:-100000}
SEED=${SEED:-2026}
BENCH_DIR=${BENCH_DIR:-/tmp/tobiume-bench}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
REUSE_DB=${REUSE_DB:-0}
SCENARIOS=${SCENARIOS:-"health metadata read search_name search_obs create"}
LAT_CONNS=${LAT_CONNS-1}
LAT_SCENARIOS=${LAT_SCENARIOS:-"read search_name search_obs"}
SERVER_LOG=${SERVER_LOG:-warn}
PERF_FREQ=${PERF_FREQ:-99}
AUTH=${AUTH:-dev}
TOKEN_ARGS=${TOKEN_ARGS:-"--scope system/*.cruds"}
PERF=${PERF:-0}
KEEP_PG=${KEEP_PG:-0}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
SAMPLE=${SAMPLE:-20000}   # test-data rows per list

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
load1() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # PID: user + system clock ticks of all its threads
now() { date +%s.%N; }
load_sampler() { # OUTFILE: the 1-minute load average every 5 s until killed
  while :; do cut -d' ' -f1 /proc/loadavg >>"$1"; sleep 5; done
}
secs_of() { local d=$1; case "$d" in *m) echo $((${d%m} * 60)) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac; }

mkdir -p "$BENCH_DIR"
RUN_DIR="$BENCH_DIR/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"

# ---------------------------------------------------------------- cleanup of what we started
SERVER_PID=""
SAMPLER_PID=""
PG_DIR="$BENCH_DIR/pg-p$PATIENTS"
PG_STARTED=0
cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  if [ "$PG_STARTED" = 1 ]; then
    pg_stop "$PG_DIR"
    [ "$KEEP_PG" = 1 ] || rm -rf "$PG_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. tools and binary
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v sqlite3 >/dev/null || need_pkgs+=(sqlite3)
command -v curl >/dev/null || need_pkgs+=(curl)
[ -x /usr/bin/time ] || need_pkgs+=(time)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ "$PG_MODE" != 0 ] && ! pg_bin_dir >/dev/null; then
  if [ "$PG_MODE" = 1 ]; then
    log "installing postgresql (apt-get) for --pg"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  else
    log "no PostgreSQL server binaries: SQLite only (use --pg to install them)"
    PG_MODE=0
  fi
fi
[ "$PG_MODE" = auto ] && PG_MODE=1

BIN_GIVEN=${BIN:-}
if [ -z "${BIN:-}" ]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release --locked --bin tobiume-gateway)
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/tobiume-gateway"
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$REPO" && git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock migrations 2>/dev/null | wc -l)

# ---------------------------------------------------------------- 2. corpus
# Up to CHUNK patients: one corpus, cached under $BENCH_DIR. Above (the issue's 100,000 patients, which do not
# fit on the disk next to their stores): chunked mode — patients first..first+CHUNK-1 of the same seed are
# generated (`synth ssmix2 --first`), imported, and deleted, chunk after chunk (see bench/README.md).
CHUNK=${CHUNK:-20000}
CHUNKED=0; [ "$PATIENTS" -gt "$CHUNK" ] && CHUNKED=1
PG_PATIENTS=${PG_PATIENTS:-$CHUNK}   # chunked mode: PostgreSQL imports the first chunk only
synth_into() { # DIR FIRST N -> writes DIR/storage, DIR/files, DIR/bytes, DIR/synth_secs, DIR/.complete
  local dir=$1 first=$2 n=$3 t0 t1
  rm -rf "$dir"
  t0=$(now)
  "$BIN" synth ssmix2 "$dir/storage" --patients "$n" --seed "$SEED" --first "$first" 2>/dev/null \
    || "$BIN" synth ssmix2 "$dir/storage" --patients "$n" --seed "$SEED"   # binaries without --first (first = 0)
  t1=$(now)
  find "$dir/storage" -type f | wc -l >"$dir/files"
  du -sb "$dir/storage" | cut -f1 >"$dir/bytes"
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", b-a}' >"$dir/synth_secs"
  touch "$dir/.complete"
}
if [ "$CHUNKED" = 0 ]; then
  CORPUS="$BENCH_DIR/corpus-p$PATIENTS-s$SEED"
  if [ ! -f "$CORPUS/.complete" ]; then
    log "synth ssmix2: $PATIENTS patients (seed $SEED) -> $CORPUS"
    synth_into "$CORPUS" 0 "$PATIENTS"
  fi
  FILES=$(cat "$CORPUS/files")
  CORPUS_MB=$(( $(cat "$CORPUS/bytes") / 1000000 ))
  log "corpus: $PATIENTS patients, $FILES files, $CORPUS_MB MB (synth $(cat "$CORPUS/synth_secs") s)"
else
  CORPUS="$BENCH_DIR/chunk-s$SEED"
  FILES=0; CORPUS_MB=0
  log "chunked mode: $PATIENTS patients in chunks of $CHUNK (each generated, imported, deleted; free disk $(df -h --output=avail "$BENCH_DIR" | tail -1 | tr -d ' '))"
fi

# ---------------------------------------------------------------- 3. import
# import_run STORAGE URL LOG [ENV…] -> R_SECS R_FILES R_CREATED R_RSS_MB R_USER R_SYS of one importer run
import_run() {
  local storage=$1 url=$2 out=$3 t0 t1 summary; shift 3
  local batch=(); [ -n "${IMPORT_BATCH:-}" ] && batch=(--batch "$IMPORT_BATCH")
  t0=$(now)
  env "$@" /usr/bin/time -f 'maxrss_kb=%M user=%U sys=%S' \
    "$BIN" import ssmix2 "$storage" --database "$url" --quiet "${batch[@]}" \
    --quarantine "$RUN_DIR/quarantine" >"$out" 2>&1 || { tail "$out" >&2; return 1; }
  t1=$(now)
  summary=$(grep '^summary:' "$out")
  R_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  R_FILES=$(sed -E 's/.* files=([0-9]+).*/\1/' <<<"$summary")
  R_CREATED=$(sed -E 's/.* created=([0-9]+).*/\1/' <<<"$summary")
  R_RSS_MB=$(( $(sed -nE 's/.*maxrss_kb=([0-9]+).*/\1/p' "$out") / 1024 ))
  R_USER=$(sed -nE 's/.*user=([0-9.]+) sys=.*/\1/p' "$out")
  R_SYS=$(sed -nE 's/.*sys=([0-9.]+).*/\1/p' "$out")
  # the rebuild of the bulk load's deferred search indexes (only the run that finishes the bulk load)
  R_BUILD=$(sed -nE 's/^index build: ([0-9.]+) s$/\1/p' "$out"); R_BUILD=${R_BUILD:-0}
}
declare -A IMP
imp_begin() { # NAME
  IMP[$1.load]=$(load1); IMP[$1.secs]=0; IMP[$1.files]=0; IMP[$1.created]=0; IMP[$1.rss]=0; IMP[$1.user]=0; IMP[$1.sys]=0; IMP[$1.build]=0
  load_sampler "$RUN_DIR/load-import-$1" &
  LOAD_PID=$!
}
imp_add() { # NAME: adds the R_* of the last import_run
  local n=$1
  IMP[$n.secs]=$(awk -v a="${IMP[$n.secs]}" -v b="$R_SECS" 'BEGIN{printf "%.1f", a+b}')
  IMP[$n.files]=$(( IMP[$n.files] + R_FILES )); IMP[$n.created]=$(( IMP[$n.created] + R_CREATED ))
  [ "$R_RSS_MB" -gt "${IMP[$n.rss]}" ] && IMP[$n.rss]=$R_RSS_MB
  IMP[$n.user]=$(awk -v a="${IMP[$n.user]}" -v b="$R_USER" 'BEGIN{printf "%.1f", a+b}')
  IMP[$n.sys]=$(awk -v a="${IMP[$n.sys]}" -v b="$R_SYS" 'BEGIN{printf "%.1f", a+b}')
  IMP[$n.build]=$(awk -v a="${IMP[$n.build]}" -v b="$R_BUILD" 'BEGIN{printf "%.1f", a+b}')
}
imp_end() { # NAME
  local name=$1
  kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true
  IMP[$name.loadrun]=$(awk '{s += $1; if ($1 > m) m = $1; n++} END {if (n) printf "mean %.1f, max %.1f", s / n, m; else print "-"}' "$RUN_DIR/load-import-$name")
  IMP[$name.fps]=$(awk -v f="${IMP[$name.files]}" -v s="${IMP[$name.secs]}" 'BEGIN{printf "%.0f", f/s}')
  IMP[$name.rps]=$(awk -v f="${IMP[$name.created]}" -v s="${IMP[$name.secs]}" 'BEGIN{printf "%.0f", f/s}')
  IMP[$name.cpu]="user ${IMP[$name.user]} s, sys ${IMP[$name.sys]} s"
  IMP[$name.cpums]=$(awk -v u="${IMP[$name.user]}" -v s="${IMP[$name.sys]}" -v f="${IMP[$name.files]}" 'BEGIN{printf "%.2f", 1000*(u+s)/f}')
  log "$name: ${IMP[$name.files]} files in ${IMP[$name.secs]} s = ${IMP[$name.fps]} files/s, ${IMP[$name.rps]} resources/s (${IMP[$name.created]} resources, ${IMP[$name.cpu]} = ${IMP[$name.cpums]} ms CPU/file, peak RSS ${IMP[$name.rss]} MB; of the seconds: index build ${IMP[$name.build]} s)"
}
import_into() { # NAME URL (one corpus)
  log "import ssmix2 -> $1 (load $(load1))"
  imp_begin "$1"
  import_run "$CORPUS/storage" "$2" "$RUN_DIR/import-$1.log" || { kill "$LOAD_PID"; return 1; }
  imp_add "$1"
  imp_end "$1"
}

SQLITE_DB="$BENCH_DIR/sqlite-p$PATIENTS-s$SEED.db"
SQLITE_URL="sqlite://$SQLITE_DB?mode=rwc"
pg_up() {
  port=55432; while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  PG_PORT=$port
  log "PostgreSQL $(basename "$(dirname "$(pg_bin_dir)")") on 127.0.0.1:$PG_PORT (throwaway cluster, fsync=off) in $PG_DIR"
  pg_start "$PG_DIR" "$PG_PORT"
  PG_STARTED=1
}
if [ "$CHUNKED" = 1 ]; then
  [ "$REUSE_DB" = 1 ] && { echo "REUSE_DB is not supported in chunked mode" >&2; exit 64; }
  nchunks=$(( (PATIENTS + CHUNK - 1) / CHUNK ))
  if [ "$PG_MODE" = 1 ]; then
    # PostgreSQL: import of the first PG_PATIENTS patients only (both 100k stores do not fit on the disk at
    # once); its HTTP scenarios are not run at this size.
    synth_into "$CORPUS-pg" 0 "$PG_PATIENTS"
    pg_up
    log "import ssmix2 -> postgres: first $PG_PATIENTS patients (load $(load1))"
    imp_begin postgres
    import_run "$CORPUS-pg/storage" "$(pg_url "$PG_PORT")" "$RUN_DIR/import-postgres.log" || { kill "$LOAD_PID"; exit 1; }
    imp_add postgres; imp_end postgres
    pg_psql "$PG_PORT" "VACUUM ANALYZE" >/dev/null 2>&1 || true
    IMP[postgres.size]=$(( $(pg_psql "$PG_PORT" "SELECT pg_database_size('tobiume')") / 1000000 ))
    IMP[postgres.patients]=$PG_PATIENTS
    pg_stop "$PG_DIR"; [ "$KEEP_PG" = 1 ] || rm -rf "$PG_DIR"; PG_STARTED=0
    rm -rf "$CORPUS-pg"
    PG_MODE=0
  fi
  rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm" "$SQLITE_DB.complete"
  log "import ssmix2 -> sqlite: $nchunks chunks (load $(load1))"
  imp_begin sqlite
  for ((c = 0; c < nchunks; c++)); do
    first=$(( c * CHUNK )); n=$(( PATIENTS - first < CHUNK ? PATIENTS - first : CHUNK ))
    synth_into "$CORPUS" "$first" "$n"
    FILES=$(( FILES + $(cat "$CORPUS/files") )); CORPUS_MB=$(( CORPUS_MB + $(cat "$CORPUS/bytes") / 1000000 ))
    keep=(TOBIUME_IMPORT_CONTINUE_BULK_LOAD=1); [ $((c + 1)) = "$nchunks" ] && keep=(TOBIUME_IMPORT_CONTINUE_BULK_LOAD=0)
    import_run "$CORPUS/storage" "$SQLITE_URL" "$RUN_DIR/import-sqlite-$c.log" "${keep[@]}" || { kill "$LOAD_PID"; exit 1; }
    imp_add sqlite
    log "  chunk $((c + 1))/$nchunks: patients $first..$((first + n - 1)), $R_FILES files in $R_SECS s; store $(( $(stat -c %s "$SQLITE_DB") / 1000000 )) MB; free disk $(df -h --output=avail "$BENCH_DIR" | tail -1 | tr -d ' ')"
    rm -rf "$CORPUS"
  done
  imp_end sqlite
  touch "$SQLITE_DB.complete"
elif [ "$REUSE_DB" = 1 ] && [ -f "$SQLITE_DB.complete" ]; then
  log "reusing $SQLITE_DB (REUSE_DB=1: import not measured)"
else
  rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm" "$SQLITE_DB.complete"
  import_into sqlite "$SQLITE_URL"
  touch "$SQLITE_DB.complete"
fi
# fold the WAL into the main file so the size below is the store's
sqlite3 "$SQLITE_DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
# The importer refreshes the planner statistics itself (bounded ANALYZE at the end of `import ssmix2`);
# the store is served as the importer left it.
SQLITE_STATS=$(sqlite3 "$SQLITE_DB" "SELECT count(*) FROM sqlite_master WHERE name='sqlite_stat1'")
IMP[sqlite.size]=$(( $(stat -c %s "$SQLITE_DB") / 1000000 ))
IMP[sqlite.patients]=$PATIENTS

if [ "$PG_MODE" = 1 ]; then
  pg_up
  import_into postgres "$(pg_url "$PG_PORT")"
  pg_psql "$PG_PORT" "VACUUM ANALYZE" >/dev/null 2>&1 || true
  IMP[postgres.size]=$(( $(pg_psql "$PG_PORT" "SELECT pg_database_size('tobiume')") / 1000000 ))
  IMP[postgres.patients]=$PATIENTS
fi

# ---------------------------------------------------------------- test data from the store
DATA_DIR="$RUN_DIR/data"
mkdir -p "$DATA_DIR"
log "sampling test data ($SAMPLE rows per list) from $SQLITE_DB"
sqlite3 -separator $'\t' "$SQLITE_DB" \
  "SELECT id FROM resources WHERE rtype='Patient' AND deleted=0 AND json NOT LIKE '%BENCH-%' ORDER BY random() LIMIT $SAMPLE" >"$DATA_DIR/ids.txt"
# name: the kanji family name or the kana given name (both indexed by `name`), with the birth date
sqlite3 -separator $'\t' "$SQLITE_DB" "
  SELECT CASE WHEN abs(random()) % 2 = 0 THEN json_extract(json, '\$.name[0].family')
              ELSE coalesce(json_extract(json, '\$.name[1].given[0]'), json_extract(json, '\$.name[0].family')) END,
         json_extract(json, '\$.birthDate')
  FROM resources WHERE rid IN (SELECT rid FROM resources WHERE rtype='Patient' AND deleted=0 ORDER BY random() LIMIT $SAMPLE)
  AND json_extract(json, '\$.birthDate') IS NOT NULL" >"$DATA_DIR/names.txt"
sqlite3 -separator $'\t' "$SQLITE_DB" "
  SELECT substr(json_extract(json, '\$.subject.reference'), 9), json_extract(json, '\$.code.coding[0].code')
  FROM resources WHERE rid IN (SELECT rid FROM resources WHERE rtype='Observation' AND deleted=0 ORDER BY random() LIMIT $SAMPLE)
  AND json_extract(json, '\$.subject.reference') LIKE 'Patient/%'" >"$DATA_DIR/obs.txt"
wc -l "$DATA_DIR"/*.txt | sed 's/^/   /' >&2
STORE_PATIENTS=$(sqlite3 "$SQLITE_DB" "SELECT count(*) FROM resources WHERE rtype='Patient' AND deleted=0")
STORE_RESOURCES=$(sqlite3 "$SQLITE_DB" "SELECT count(*) FROM resources WHERE deleted=0")

# ---------------------------------------------------------------- 4. serve + wrk
RESULTS="$RUN_DIR/results.tsv"   # backend scenario rps p50_ms p90_ms p99_ms errors rss_max_mb load1
: >"$RESULTS"

rss_sampler() { # PID OUTFILE: "max VmRSS kB, max RssAnon kB" every 100 ms until killed
  local pid=$1 out=$2 max=0 anon=0 r a
  echo "0 0" >"$out"
  while kill -0 "$pid" 2>/dev/null; do
    read -r r a < <(awk '/^VmRSS:/{r=$2} /^RssAnon:/{a=$2} END{print r+0, a+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
    if [ "$r" -gt "$max" ] || [ "$a" -gt "$anon" ]; then
      [ "$r" -gt "$max" ] && max=$r
      [ "$a" -gt "$anon" ] && anon=$a
      echo "$max $anon" >"$out.tmp" && mv -f "$out.tmp" "$out"
    fi
    sleep 0.1
  done
}

# PID: wait (at most 120 s) until the process has finished its start-up work — the profile validator's
# load and warm-up run on a background thread after the listener is up — so that no scenario, the ceiling
# included, shares the cores with it. Idle = under 5 clock ticks of CPU in one second.
wait_idle() {
  local pid=$1 prev now i
  prev=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
  for i in $(seq 1 120); do
    sleep 1
    now=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    [ $((now - prev)) -lt 5 ] && return 0
    prev=$now
  done
  log "server still busy after 120 s of start-up; measuring anyway"
}

start_server() { # BACKEND URL
  local backend=$1 url=$2 port=18080 i
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  SERVER_URL="http://127.0.0.1:$port"
  AUTH_HEADER=()
  export BEARER_TOKEN=""   # read by bench/lib/scenarios.lua
  if [ "$AUTH" != none ]; then
    # shellcheck disable=SC2086
    BEARER_TOKEN=$("$BIN" dev-token --key "$RUN_DIR/dev-key.pem" $TOKEN_ARGS)
    AUTH_HEADER=(-H "Authorization: Bearer $BEARER_TOKEN")
  fi
  TOBIUME_AUTH="$AUTH" TOBIUME_DEV_KEY="$RUN_DIR/dev-key.pem" TOBIUME_DEMO_PATIENTS=0 TOBIUME_LOG="$SERVER_LOG" \
    "$BIN" serve --listen "127.0.0.1:$port" --database "$url" >"$RUN_DIR/serve-$backend.log" 2>&1 &
  SERVER_PID=$!
  for i in $(seq 1 300); do
    curl -fsS -o /dev/null "$SERVER_URL/health" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$RUN_DIR/serve-$backend.log" >&2; return 1; }
    sleep 0.2
  done
  wait_idle "$SERVER_PID"
  log "serve ($backend) pid $SERVER_PID at $SERVER_URL, RSS at start $(awk '/^VmRSS:/{print $2/1024 " MB"}' /proc/$SERVER_PID/status)"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

check_once() { # SCENARIO: one request through curl, must be 2xx (guards against benchmarking 404s)
  local s=$1 path code
  case $s in
    health) path=/health ;;
    metadata) path=/fhir/metadata ;;
    read) path="/fhir/Patient/$(head -1 "$DATA_DIR/ids.txt")" ;;
    *) return 0 ;;  # the searches and create are checked by the non-2xx count
  esac
  code=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH_HEADER[@]}" "$SERVER_URL$path")
  [ "${code:0:1}" = 2 ] || { echo "check $s: HTTP $code for $path" >&2; return 1; }
}

run_scenario() { # BACKEND SCENARIO [CONNECTIONS]
  local backend=$1 s=$2 c=${3:-$CONNS} t j perf_pid="" l
  local out="$RUN_DIR/wrk-$1-$2-c$c.txt" rssf="$RUN_DIR/rss-$1-$2-c$c"
  t=$(( THREADS < c ? THREADS : c ))
  check_once "$s"
  SCENARIO=$s DATA_DIR=$DATA_DIR wrk -t"$t" -c"$c" -d"$WARMUP" -s "$REPO/bench/lib/scenarios.lua" "$SERVER_URL" >/dev/null
  l=$(load1)
  rss_sampler "$SERVER_PID" "$rssf" &
  SAMPLER_PID=$!
  if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
    perf record -F "$PERF_FREQ" --call-graph dwarf,16384 -p "$SERVER_PID" -o "$RUN_DIR/perf-$backend-$s-c$c.data" -- sleep "$(secs_of "$DURATION")" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  cpu0=$(cpu_ticks "$SERVER_PID")
  SCENARIO=$s DATA_DIR=$DATA_DIR wrk -t"$t" -c"$c" -d"$DURATION" --latency -s "$REPO/bench/lib/scenarios.lua" "$SERVER_URL" >"$out"
  cpu1=$(cpu_ticks "$SERVER_PID")
  [ -n "$perf_pid" ] && wait "$perf_pid" 2>/dev/null
  kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  j=$(sed -n 's/^BENCHJSON //p' "$out")
  [ -n "$j" ] || { cat "$out" >&2; return 1; }
  # JSON -> TSV with awk (no jq needed)
  # server CPU per request (user + system, all threads) over the measured run: unlike req/s it hardly
  # moves when other jobs share the cores, so it is the figure to compare binaries by on a busy machine
  awk -v b="$backend" -v c="$c" -v cpu="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v secs="$(secs_of "$DURATION")" -v rss="$(cut -d' ' -f1 "$rssf")" -v anon="$(cut -d' ' -f2 "$rssf")" -v load="$l" '
    function num(k,   m) { if (match($0, "\"" k "\":[0-9.]+")) { m = substr($0, RSTART, RLENGTH); sub(/.*:/, "", m); return m + 0 } return 0 }
    { errs = num("err_connect") + num("err_read") + num("err_write") + num("err_timeout")
      reqs = num("rps") * secs
      printf "%s\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.0f\t%s\t%.0f\t%d\t%.1f\n", b, "'"$s"'", num("rps"), num("p50_us")/1000, num("p90_us")/1000,
             num("p99_us")/1000, num("err_status"), errs, rss/1024, load, anon/1024, c, (reqs > 0 ? cpu / hz * 1e6 / reqs : 0) }' <<<"$j" >>"$RESULTS"
  tail -1 "$RESULTS" | awk -F'\t' '{printf "   %-8s %-12s c=%-3s %9s req/s  p50 %7s ms  p99 %7s ms  non-2xx %s  socket errors %s  RSS max %s MB (anon %s)  server CPU %s us/req  (load %s)\n", $1, $2, $12, $3, $4, $6, $7, $8, $9, $11, $13, $10}' >&2
}

bench_backend() { # BACKEND URL
  local backend=$1 url=$2 s
  start_server "$backend" "$url"
  for s in $SCENARIOS; do run_scenario "$backend" "$s"; done
  if [ -n "$LAT_CONNS" ]; then
    for s in $LAT_SCENARIOS; do
      case " $SCENARIOS " in *" $s "*) run_scenario "$backend" "$s" "$LAT_CONNS" ;; esac
    done
  fi
  HWM[$backend]=$(awk '/^VmHWM:/{printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status")
  stop_server
}
declare -A HWM

log "wrk -t$THREADS -c$CONNS -d$DURATION --latency (warm-up $WARMUP per scenario), server TOBIUME_LOG=$SERVER_LOG"
bench_backend sqlite "$SQLITE_URL"
[ "$PG_MODE" = 1 ] && bench_backend postgres "$(pg_url "$PG_PORT")"

# ---------------------------------------------------------------- 5. summary
DATE=$(date +%F)
mkdir -p "$RESULTS_DIR"
MD="$RESULTS_DIR/server-$DATE.md"
[ -e "$MD" ] && MD="$RESULTS_DIR/server-$DATE-$(date +%H%M).md"
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MEM_GB=$(awk '/^MemTotal:/{printf "%.0f", $2/1048576}' /proc/meminfo)

ceiling() { awk -F'\t' -v b="$1" -v c="$CONNS" '$1==b && $2=="health" && $12==c{print $3}' "$RESULTS"; }
# p99 of BACKEND SCENARIO CONNECTIONS
p99_of() { awk -F'\t' -v b="$1" -v s="$2" -v c="$3" '$1==b && $2==s && $12==c{print $6}' "$RESULTS"; }
table() {
  echo "| store | scenario | connections | req/s | × ceiling | p50 ms | p90 ms | p99 ms | non-2xx | socket err | server RSS max MB | of it anon MB | load1,5,15 at start |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  awk -F'\t' -v cs="$(ceiling sqlite)" -v cp="$(ceiling postgres)" -v conns="$CONNS" '{
    c = ($1 == "sqlite") ? cs : cp; r = (c > 0 && $12 == conns) ? sprintf("%.2f", $3 / c) : "-"
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $12, $3, r, $4, $5, $6, $7, $8, $9, $11, $10 }' "$RESULTS"
}
imp_table() {
  echo "| store | patients | files | seconds | files/s | resources | resources/s | importer peak RSS MB | importer CPU | CPU ms / file | DB size MB | MB / patient | load at start | load1 during (5 s samples) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|"
  local n
  for n in sqlite postgres; do
    [ -n "${IMP[$n.size]:-}" ] || continue
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "${IMP[$n.patients]:--}" "${IMP[$n.files]:--}" "${IMP[$n.secs]:--}" \
      "${IMP[$n.fps]:--}" "${IMP[$n.created]:--}" "${IMP[$n.rps]:--}" "${IMP[$n.rss]:--}" "${IMP[$n.cpu]:--}" "${IMP[$n.cpums]:--}" "${IMP[$n.size]}" \
      "$(awk -v s="${IMP[$n.size]}" -v p="${IMP[$n.patients]:-0}" 'BEGIN{if (p > 0) printf "%.3f", s/p; else print "-"}')" "${IMP[$n.load]:--}" "${IMP[$n.loadrun]:--}"
  done
}
verdict() { if awk "BEGIN{exit !($1)}"; then echo "met"; else echo "**missed**"; fi; }
targets() {
  local cs rd sn so fps rssmax anonmax
  cs=$(ceiling sqlite)
  rd=$(awk -F'\t' -v c="$CONNS" '$1=="sqlite" && $2=="read" && $12==c{print $3}' "$RESULTS")
  sn=$(p99_of sqlite search_name "$CONNS"); so=$(p99_of sqlite search_obs "$CONNS")
  fps=${IMP[sqlite.fps]:-}
  rssmax=$(awk -F'\t' 'BEGIN{m=0} $9>m{m=$9} END{print m}' "$RESULTS")
  echo "| target (SQLite, this machine) | measured | verdict |"
  echo "|---|---|---|"
  [ -n "$rd" ] && [ -n "$cs" ] && echo "| read ≥ 50 % of the ceiling (GET /health) | $(awk -v a="$rd" -v b="$cs" 'BEGIN{printf "%.0f %%", 100*a/b}') | $(verdict "$rd >= 0.5 * $cs") |"
  [ -n "$rd" ] && echo "| read ≥ 10,000 req/s | $rd req/s | $(verdict "$rd >= 10000") |"
  local q c v
  for q in "search_name:Patient?name=&birthdate=" "search_obs:Observation?patient=&code=&_sort=-date"; do
    for c in "$CONNS" $LAT_CONNS; do
      v=$(p99_of sqlite "${q%%:*}" "$c")
      [ -n "$v" ] && echo "| search p99 ≤ 10 ms: ${q#*:} at $c connection$([ "$c" = 1 ] || echo s) | $v ms | $(verdict "$v <= 10") |"
    done
  done
  [ -n "$fps" ] && echo "| import ≥ 5,000 files/s into SQLite | $fps files/s | $(verdict "$fps >= 5000") |"
  anonmax=$(awk -F'\t' 'BEGIN{m=0} $11>m{m=$11} END{print m}' "$RESULTS")
  echo "| server RSS ≤ 200 MB under load (max VmRSS sampled every 100 ms, all scenarios and stores; includes SQLite's mmap of the DB file) | $rssmax MB, of it anonymous $anonmax MB (VmHWM sqlite ${HWM[sqlite]:--} MB, postgres ${HWM[postgres]:--} MB) | $(verdict "$rssmax <= 200") |"
}
json() {
  printf '{"date":"%s","rev":"%s","dirty_src_files":%s,"patients":%s,"files":%s,"store_resources":%s,"wrk":{"threads":%s,"connections":%s,"latency_connections":"%s","duration":"%s","warmup":"%s"},"ceiling":"GET /health",\n "import":[' \
    "$(date -Iseconds)" "$REV" "$DIRTY" "$PATIENTS" "$FILES" "$STORE_RESOURCES" "$THREADS" "$CONNS" "$LAT_CONNS" "$DURATION" "$WARMUP"
  local n sep=""
  for n in sqlite postgres; do
    [ -n "${IMP[$n.size]:-}" ] || continue
    printf '%s{"store":"%s","files":%s,"secs":%s,"files_per_s":%s,"resources":%s,"resources_per_s":%s,"peak_rss_mb":%s,"db_mb":%s}' "$sep" "$n" \
      "${IMP[$n.files]:-null}" "${IMP[$n.secs]:-null}" "${IMP[$n.fps]:-null}" "${IMP[$n.created]:-null}" "${IMP[$n.rps]:-null}" "${IMP[$n.rss]:-null}" "${IMP[$n.size]}"
    sep=","
  done
  printf '],\n "scenarios":[\n'
  awk -F'\t' -v cs="$(ceiling sqlite)" -v cp="$(ceiling postgres)" -v conns="$CONNS" '{
    c = ($1 == "sqlite" && $12 == conns) ? cs : ($12 == conns ? cp : 0)
    printf "%s  {\"store\":\"%s\",\"scenario\":\"%s\",\"connections\":%s,\"rps\":%s,\"ratio_to_ceiling\":%.3f,\"p50_ms\":%s,\"p90_ms\":%s,\"p99_ms\":%s,\"non_2xx\":%s,\"socket_errors\":%s,\"rss_max_mb\":%s,\"rss_anon_max_mb\":%s,\"load\":\"%s\"}", (NR>1?",\n":""), $1, $2, $12, $3, (c>0?$3/c:0), $4, $5, $6, $7, $8, $9, $11, $10 }' "$RESULTS"
  printf '\n ]}\n'
}

{
  echo "# Server benchmark $(date '+%F %H:%M %Z')"
  echo
  if [ -n "${BIN_GIVEN:-}" ]; then
    echo "\`bench/server.sh\` in a checkout at $REV; binary \`$BIN\` supplied via BIN= (its revision is not checked)."
  else
    echo "\`bench/server.sh\` at $REV$( [ "$DIRTY" -gt 0 ] && echo " (+$DIRTY uncommitted src changes)"), binary \`$BIN\` built by the script."
  fi
  echo "Machine: $(nproc) cores ($CPU), $MEM_GB GiB RAM, $(uname -sr). Load average (1, 5, 15 min) at the end: $(load1)."
  echo
  echo "Store: $PATIENTS synthetic patients (seed $SEED), $FILES SS-MIX2 files ($CORPUS_MB MB), $STORE_RESOURCES resources ($STORE_PATIENTS Patient)."
  echo "Load generator: \`wrk -t$THREADS -c$CONNS -d$DURATION --latency\` on loopback after a $WARMUP warm-up, same 2 cores as the"
  echo "server; requests pick random rows of $SAMPLE sampled ids / (name, birth date) / (patient, code) per scenario."
  [ -n "$LAT_CONNS" ] && echo "Latency pass: $LAT_SCENARIOS again at $LAT_CONNS connection(s) (\`wrk -t$(( THREADS < LAT_CONNS ? THREADS : LAT_CONNS )) -c$LAT_CONNS\`, same duration and warm-up): the latency one client sees without $CONNS connections queueing on 2 shared cores; no × ceiling."
  echo "Ceiling = \`GET /health\` of the same server process (full middleware stack, constant 15-byte body)."
  echo "Server log level: TOBIUME_LOG=$SERVER_LOG. SQLite planner statistics (sqlite_stat1, written by the importer's ANALYZE): $( [ "$SQLITE_STATS" = 1 ] && echo present || echo absent)."
  echo "PostgreSQL: VACUUM ANALYZE after the import (what autovacuum does shortly after a bulk load)."
  echo
  echo "## Import"
  echo
  imp_table
  echo
  for b in sqlite postgres; do
    if [ -n "${IMP[$b.files]:-}" ]; then
      echo "$b: of the seconds above, ${IMP[$b.build]} s rebuilt the bulk load's deferred search indexes (\`index build:\` line of the importer)."
    fi
  done
  echo
  echo "## HTTP"
  echo
  table
  echo
  echo "## Targets"
  echo
  targets
  echo
  echo "## JSON"
  echo
  echo '```json'
  json
  echo '```'
} >"$MD"

echo
sed -n '/^## Import/,/^## JSON/p' "$MD" | sed '$d'
echo "written: $MD (raw wrk output and logs in $RUN_DIR)"
