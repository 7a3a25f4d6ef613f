#!/usr/bin/env bash
# Weekly-tracking benchmark: `segscope track` over eight weeks of a planted synthetic store,
# end to end, with wall time, peak memory, time per stage and whether the planted changes
# were found.
#
# Usage: bash bench/track.sh [--customers 100000] [--events-scale 0.6] [--seed 42]
#          [--fit-above 100000] [--work-dir DIR] [--no-build]
# The store has twelve weeks of browsing with the demo's three changes planted from week six
# (see `segscope demo`); like the demo, tracking covers the first eight weeks with a one-week
# browsing window and draws PCA and UMAP. Two runs, each a fresh process under GNU time:
#   1. weeks 1-7: the state of the service before the eighth week arrives;
#   2. weeks 1-8: everything.
# Run 2 is the end-to-end figure; run 2 minus run 1 is what one more week costs when a watch
# reruns the track on the grown files (`segscope serve` with a watch folder does that).
# --fit-above sets sampling.fit_above: the fit weeks hold customers x fit_weeks rows (200,000
# at 100,000 customers), and choosing k scores an exact silhouette per candidate k, which
# is quadratic in the rows; above this many rows the segments are fitted on a seeded sample
# of sampling.fit_sample (50,000) and every row is placed by the fitted model.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SEGSCOPE_BENCH_DIR:-/var/tmp/segscope-bench-data}
CUSTOMERS=100000
EVENTS_SCALE=0.6
SEED=42
FIT_ABOVE=100000
BUILD=1
die() { echo "track.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --customers) CUSTOMERS=${2:?}; shift 2 ;;
    --events-scale) EVENTS_SCALE=${2:?}; shift 2 ;;
    --seed) SEED=${2:?}; shift 2 ;;
    --fit-above) FIT_ABOVE=${2:?}; shift 2 ;;
    --work-dir) WORK=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is needed for peak memory"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/segscope-target}
if [[ $BUILD == 1 ]]; then
  (cd "$REPO" && cargo build --release --locked --bin segscope --example make_store)
fi
BIN=$CARGO_TARGET_DIR/release/segscope
GEN=$CARGO_TARGET_DIR/release/examples/make_store

DATA=$WORK/track-$CUSTOMERS-$EVENTS_SCALE-$SEED
if [[ ! -f $DATA/planted.json ]]; then
  echo "== generating $CUSTOMERS customers (12 weeks, changes from week 6) into $DATA"
  "$GEN" "$DATA" "$CUSTOMERS" "$EVENTS_SCALE" 1 "$SEED" 12 6 > "$DATA.json.tmp"
  mv "$DATA.json.tmp" "$DATA.json"
fi
cat "$DATA.json"
RUNS=$WORK/track-runs-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUNS"

unset $(env | grep -o '^SEGSCOPE__[A-Za-z0-9_]*' || true)
export SEGSCOPE__TRACK__BROWSING_WINDOW_WEEKS=1
export SEGSCOPE__SAMPLING__FIT_ABOVE=$FIT_ABOVE
# The store ends in ISO week 2026-W47; its twelve weeks start at 2026-W36.
for weeks in 7 8; do
  last=$(printf '2026-W%02d' $((35 + weeks)))
  /usr/bin/time -f "%e %M" -o "$RUNS/weeks$weeks.time" \
    "$BIN" track --transactions "$DATA/transactions.csv.gz" --events "$DATA/events.csv" \
      --weeks "2026-W36..$last" --maps pca,umap --seed "$SEED" --out "$RUNS/weeks$weeks" \
      > "$RUNS/weeks$weeks.out" 2> "$RUNS/weeks$weeks.err" \
    || { echo "track.sh: weeks $weeks failed, see $RUNS/weeks$weeks.err" >&2; tail -5 "$RUNS/weeks$weeks.err" >&2; exit 1; }
done

python3 - "$RUNS" "$DATA/planted.json" <<'EOF'
import json, sys
runs, planted_path = sys.argv[1], sys.argv[2]
planted = json.load(open(planted_path))
def measured(weeks):
    wall, rss = open(f"{runs}/weeks{weeks}.time").read().split()
    run = json.load(open(f"{runs}/weeks{weeks}/run.json"))
    return float(wall), int(rss) / 1024, run["timings"]
w7, r7, t7 = measured(7)
w8, r8, t8 = measured(8)
print(f"\n| run | wall s | peak MiB |\n| --- | ---: | ---: |")
print(f"| weeks 1-7 | {w7:.1f} | {r7:.0f} |")
print(f"| weeks 1-8 | {w8:.1f} | {r8:.0f} |")
print(f"| one more week (difference) | {w8 - w7:.1f} | |")
print(f"\n| stage (weeks 1-8) | seconds |\n| --- | ---: |")
for stage, seconds in sorted(t8.items(), key=lambda kv: -kv[1]):
    print(f"| {stage} | {seconds:.2f} |")
doc = json.load(open(f"{runs}/weeks8/movement.json"))
print(f"\n| planted change | customers | recall | alert weeks |\n| --- | ---: | ---: | --- |")
for what, kind in [("emerging", "emerging_segment"), ("migrants", "migration"), ("bots", "anomaly")]:
    alerts = [a for a in doc["alerts"] if a["kind"] == kind]
    named = {c for a in alerts for c in a["customers"]}
    ids = planted[what]
    recall = sum(1 for i in ids if i in named) / max(len(ids), 1)
    weeks = sorted({a["week"] for a in alerts})
    print(f"| {what} | {len(ids)} | {recall:.3f} | {', '.join(weeks)} |")
others = sorted({a["week"] + " " + a["kind"] for a in doc["alerts"] if a["kind"] == "drift"})
print(f"\ndrift alerts: {others or 'none'}")
print(f"files: {runs}")
EOF
