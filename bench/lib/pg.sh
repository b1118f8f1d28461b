# Throwaway PostgreSQL server for bench/server.sh (sourced). Uses the machine's PostgreSQL server
# binaries (Debian: /usr/lib/postgresql/<ver>/bin); initdb runs as the `postgres` system user when we are
# root. The cluster is bench-only: fsync=off (and therefore no durability) is set on THIS server only.
#
#   pg_bin_dir                -> prints the bin dir or fails
#   pg_start DIR PORT         -> initdb DIR, start on 127.0.0.1:PORT, create database `tobiume`
#   pg_stop DIR               -> fast shutdown
#   pg_url PORT               -> the gateway's database URL

pg_bin_dir() {
  local d
  for d in "${PG_BIN:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

_pg_as() { # run as the postgres system user when root (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin_dir) || { echo "no PostgreSQL server binaries" >&2; return 1; }
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  _pg_as "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  _pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off \
        -c shared_buffers=${PG_SHARED_BUFFERS:-1GB} -c max_wal_size=4GB -c max_connections=200" start >/dev/null \
    || { tail -20 "$dir/server.log" >&2; return 1; }
  _pg_as "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt -c "CREATE DATABASE tobiume" postgres >/dev/null
}

pg_stop() {
  local dir=$1 bin
  bin=$(pg_bin_dir) || return 0
  [ -f "$dir/data/postmaster.pid" ] && _pg_as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

pg_psql() { # PORT SQL
  local bin; bin=$(pg_bin_dir)
  _pg_as "$bin/psql" -h 127.0.0.1 -p "$1" -U postgres -qAt -d tobiume -c "$2"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$1/tobiume"; }
