#!/usr/bin/env bash
# Load benchmark of `segscope serve`: with one large run loaded, wrk hammers the read
# endpoints on loopback and the script prints one table (requests/s, p50/p99 latency, errors)
# and the server's peak memory. A measuring instrument, not a test.
#
# Usage: bash bench/serve_load.sh [--run DIR] [--customers 100000] [--duration 30]
#          [--connections 32] [--wrk-threads 1] [--work-dir DIR] [--no-build]
#   --run DIR        a finished run folder (segments.json, assignments.csv, ...) to serve;
#                    without it `segscope demo --customers N` makes one (once, cached).
# The server and wrk share this machine's cores, so the figures are a floor for a server
# with its own machine. Needs wrk (apt-get install wrk).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SEGSCOPE_BENCH_DIR:-/var/tmp/segscope-bench-data}
RUN=""
CUSTOMERS=100000
DURATION=30
CONNECTIONS=32
WRK_THREADS=1
BUILD=1
die() { echo "serve_load.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --run) RUN=${2:?}; shift 2 ;;
    --customers) CUSTOMERS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --connections) CONNECTIONS=${2:?}; shift 2 ;;
    --wrk-threads) WRK_THREADS=${2:?}; shift 2 ;;
    --work-dir) WORK=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/segscope-target}
BIN="$CARGO_TARGET_DIR/release/segscope"
if [[ $BUILD == 1 ]]; then
  (cd "$REPO" && cargo build --release --locked --bin segscope)
fi
[[ -x $BIN ]] || die "no release binary at $BIN (drop --no-build)"

mkdir -p "$WORK"
if [[ -z $RUN ]]; then
  RUN="$WORK/serve-load-demo-$CUSTOMERS/run"
  if [[ ! -f $RUN/segments.json ]]; then
    echo "== making a $CUSTOMERS-customer demo run (once)"
    "$BIN" demo --customers "$CUSTOMERS" --out "$RUN" --data-dir "$WORK/serve-load-demo-$CUSTOMERS/store"
  fi
fi
[[ -f $RUN/segments.json && -f $RUN/assignments.csv ]] || die "$RUN is not a finished run"

DATA=$(mktemp -d "$WORK/serve-load-XXXXXX")
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT
mkdir -p "$DATA/runs"
cp -r "$RUN" "$DATA/runs/load"
N=$(($(wc -l < "$RUN/assignments.csv") - 1))

"$BIN" serve --bind 127.0.0.1:0 --data-dir "$DATA" > "$DATA/serve.out" 2> "$DATA/serve.err" &
SERVER=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$DATA/serve.out" 2>/dev/null && break
  sleep 0.1
done
BASE=$(sed -n 's/.*listening on //p' "$DATA/serve.out")
[[ -n $BASE ]] || die "the server did not start: $(cat "$DATA/serve.err")"

METHOD=$(head -1 "$RUN/assignments.csv" | tr ',' '\n' | sed -n 's/_x$//p' | head -1)
ENDPOINTS=(
  "segments list|/api/v1/runs/load/segments"
  "one segment|/api/v1/runs/load/segments/1"
  "runs list|/api/v1/runs"
)
if [[ -n $METHOD ]]; then
  ENDPOINTS+=(
    "map points, JSON page of 10,000|/api/v1/runs/load/maps/$METHOD/points?offset=0&limit=10000"
    "map points, binary, all $N|/api/v1/runs/load/maps/$METHOD/points?format=binary"
  )
fi

rss() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SERVER/status"; }
echo "== serving $N customers at $BASE; wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s per endpoint"
printf '\n| endpoint | requests/s | p50 | p99 | errors | server peak RSS (MiB) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n'
for entry in "${ENDPOINTS[@]}"; do
  name=${entry%%|*}
  path=${entry#*|}
  status=$(curl -s -o /dev/null -w '%{http_code}' "$BASE$path")
  if [[ $status != 200 ]]; then
    printf '| %s | - | - | - | answered %s | - |\n' "$name" "$status"
    continue
  fi
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$BASE$path")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  sock=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' <<<"$out")
  errors=$(( ${non2xx:-0} + ${sock:-0} ))
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$errors" "$(rss)"
done
echo
echo "server peak RSS over the whole run: $(rss) MiB"
