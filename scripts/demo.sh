#!/usr/bin/env bash
# The main demo: examples/orders.sql keeps three materialized views of an
# online shop's order events; while it runs, this script reads them every few
# seconds with `headwater query`, and you can read them with psql too.
# Ctrl-C stops it. Options go to `headwater run` (e.g. --parallelism 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release --bin headwater
headwater="$CARGO_TARGET_DIR/release/headwater"
log="$(mktemp)"
"$headwater" run examples/orders.sql "$@" >"$log" &
job=$!
trap 'kill -INT $job 2>/dev/null; wait $job 2>/dev/null; rm -f "$log"' EXIT
until grep -q '^http: ' "$log"; do
  kill -0 $job 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
cat "$log"
url="$(sed -n 's/^http: //p' "$log")"
pg="$(sed -n 's/^postgres: //p' "$log")"
echo
echo "Read the views yourself, while this runs:"
echo "  psql -h ${pg%:*} -p ${pg##*:} -c 'SELECT * FROM customer_stats ORDER BY spent DESC LIMIT 5'"
echo "  $headwater query --url $url 'SELECT status, count(*) FROM order_status GROUP BY status'"
echo
sleep 3
while true; do
  date '+--- %H:%M:%S'
  "$headwater" query --url "$url" \
    "SELECT status, count(*) AS orders FROM order_status GROUP BY status ORDER BY orders DESC" || true
  "$headwater" query --url "$url" \
    "SELECT * FROM revenue_per_minute ORDER BY minute DESC LIMIT 3" || true
  "$headwater" query --url "$url" \
    "SELECT * FROM customer_stats ORDER BY spent DESC NULLS LAST LIMIT 5" || true
  sleep 5
done
