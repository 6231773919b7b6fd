#!/usr/bin/env bash
# The main job on a demo cluster, in one command (run as root):
#   builds pg_trace, starts a throwaway PostgreSQL 15 cluster under target/demo (as user
#   nobody, unix socket only), fills a small "sales" schema, shows what pg_trace reads
#   straight from disk (the catalog, a few paths resolved), then starts two slow jobs in
#   the background -- a pg_basebackup throttled with --max-rate and a long sequential scan
#   of sales.orders -- and opens the TUI on the scan's backend (Esc: the process picker,
#   where the basebackup's walsender is listed too; q quits). Without a terminal on stdout
#   it follows the scan in line mode for a few seconds instead. The background jobs and the
#   cluster are stopped (by PID) and removed on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (pg_trace reads other users' files and processes)" >&2; exit 1; }
PG_TRACE_NPM_MAJORS="" bash scripts/setup.sh
cargo build --release --quiet
PG_TRACE="$ROOT/target/release/pg_trace"
BIN=/usr/lib/postgresql/15/bin

DEMO="$ROOT/target/demo"
as_pg() { runuser -u nobody -- "$@"; }
cleanup() {
    for p in ${SCAN_PID:-} ${BACKUP_PID:-}; do kill "$p" 2>/dev/null || true; done
    [[ -f "$DEMO/data/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DEMO/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DEMO"
}
trap cleanup EXIT
cleanup
mkdir -p "$DEMO/ts_fast"
chown -R nobody: "$DEMO"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$BIN/initdb" -D "$DEMO/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
as_pg "$BIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/log" -w -o "-c listen_addresses='' -c unix_socket_directories='$DEMO' -p $PORT -c shared_buffers=16MB" start >/dev/null
PSQL=(psql -X -q -h "$DEMO" -p "$PORT" -U postgres -v ON_ERROR_STOP=1)

"${PSQL[@]}" -d postgres -c "CREATE TABLESPACE fast LOCATION '$DEMO/ts_fast'" -c "CREATE DATABASE shop"
"${PSQL[@]}" -d shop <<'SQL'
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer int, placed timestamptz, note text);
INSERT INTO sales.orders (customer, placed, note)
  SELECT g % 1000, now() - g * interval '1 minute', repeat(md5(g::text), 3) FROM generate_series(1, 2000000) g;
CREATE INDEX orders_customer ON sales.orders (customer) TABLESPACE fast;
CREATE TABLE sales.docs (id int PRIMARY KEY, body text);
INSERT INTO sales.docs SELECT g, repeat(md5(random()::text), 400) FROM generate_series(1, 200) g;
CREATE MATERIALIZED VIEW sales.daily AS SELECT date_trunc('day', placed) d, count(*) FROM sales.orders GROUP BY 1;
CREATE UNLOGGED TABLE sales.staging (like sales.orders);
CHECKPOINT;
SQL

echo
echo "== pg_trace catalog --pgdata $DEMO/data   (database shop, schema sales)"
"$PG_TRACE" catalog --pgdata "$DEMO/data" | awk 'NR==1 || /sales/'

echo
echo "== pg_trace resolve: any path of the cluster, named"
ORDERS=$("${PSQL[@]}" -d shop -Atc "SELECT pg_relation_filepath('sales.orders')")
IDX=$("${PSQL[@]}" -d shop -Atc "SELECT pg_relation_filepath('sales.orders_customer')")
WAL=$("${PSQL[@]}" -d shop -Atc "SELECT 'pg_wal/' || pg_walfile_name(pg_current_wal_lsn())")
"$PG_TRACE" resolve --pgdata "$DEMO/data" "$ORDERS" "${ORDERS}_fsm" "$ORDERS.3" "$DEMO/data/$IDX" "$WAL" pg_xact/0000 base/pgsql_tmp/pgsql_tmp4242.0 global/pg_control

echo
echo "== background jobs: a throttled base backup and a slow scan"
as_pg "$BIN/pg_ctl" -D "$DEMO/data" -w -m fast restart >/dev/null   # empty shared buffers
# 4 MB/s: the ~450 MB cluster takes a couple of minutes to copy.
"$BIN/pg_basebackup" -h "$DEMO" -p "$PORT" -U postgres -D "$DEMO/backup" -F tar -X none \
    --max-rate=4M -c fast -l nightly >"$DEMO/basebackup.log" 2>&1 &
BACKUP_PID=$!
# A 2 ms nap at the first tuple of every page: ~4 MB/s through sales.orders, a minute or
# two per pass, three passes.
SLOW_SCAN="SELECT count(*) FROM sales.orders WHERE CASE WHEN ctid::text LIKE '(%,1)' THEN pg_sleep(0.002) IS NOT NULL ELSE true END"
"${PSQL[@]}" -d shop -c "SET max_parallel_workers_per_gather = 0" \
    -c "$SLOW_SCAN" -c "$SLOW_SCAN" -c "$SLOW_SCAN" >/dev/null &
SCAN_PID=$!
BACKEND=
for _ in $(seq 1 100); do
    BACKEND=$("${PSQL[@]}" -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT count(*) FROM sales.orders%' AND pid <> pg_backend_pid()")
    [[ -n "$BACKEND" ]] && break
    sleep 0.1
done
[[ -n "$BACKEND" ]] || { echo "demo: the scan did not start; see $DEMO/log" >&2; exit 1; }
WALSENDER=
for _ in $(seq 1 50); do
    WALSENDER=$("${PSQL[@]}" -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'" || true)
    [[ -n "$WALSENDER" ]] && break
    kill -0 "$BACKUP_PID" 2>/dev/null || { echo "demo: pg_basebackup failed:" >&2; cat "$DEMO/basebackup.log" >&2; break; }
    sleep 0.1
done
echo "scan: backend pid $BACKEND; base backup: walsender pid ${WALSENDER:-?}"

if [[ -t 1 ]]; then
    echo "== pg_trace -p $BACKEND   (the TUI: ? help, Esc picker, q quit)"
    sleep 2
    "$PG_TRACE" -p "$BACKEND"
else
    echo "== pg_trace -p $BACKEND --interval 1000 --duration 5   (no terminal: line mode)"
    "$PG_TRACE" -p "$BACKEND" --interval 1000 --duration 5
    if [[ -n "$WALSENDER" ]]; then
        echo "== pg_trace -p $WALSENDER --interval 1000 --duration 5   (the base backup's walsender)"
        "$PG_TRACE" -p "$WALSENDER" --interval 1000 --duration 5
    fi
fi
