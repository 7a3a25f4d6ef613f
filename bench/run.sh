#!/usr/bin/env bash
# Benchmark segscope's analysis stages against scikit-learn, umap-learn, openTSNE and
# hdbscan on the same data, in the same run, each stage in its own fresh process.
# See bench/README.md for what is measured and how, and for the caveats.
#
# Usage: bash bench/run.sh [--quick] [--datasets iris,digits,blobs50k,blobs200k]
#          [--stages kmeans,gmm,hdbscan,pca,umap,umap-unseeded,tsne,silhouette,trustworthiness]
#          [--timeout 600] [--repeat N] [--threads 2] [--peer-blas-threads N] [--seed 42]
#          [--venv DIR] [--work-dir DIR] [--no-build]
# Environment: SEGSCOPE_BENCH_VENV, SEGSCOPE_BENCH_DIR (defaults of --venv / --work-dir),
#              CARGO_TARGET_DIR (default /var/tmp/segscope-target),
#              SEGSCOPE_BENCH_RSS=rusage (peak RSS by getrusage even where /usr/bin/time exists).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SEGSCOPE_BENCH_VENV:-/var/tmp/segscope-bench-venv}
WORK=${SEGSCOPE_BENCH_DIR:-/var/tmp/segscope-bench-data}
ALL_DATASETS=iris,digits,blobs50k
# Known but not in the default set (about half an hour more on 2 cores): --datasets ...,blobs200k
KNOWN_DATASETS=$ALL_DATASETS,blobs200k
ALL_STAGES=kmeans,gmm,hdbscan,pca,umap,umap-unseeded,tsne,silhouette,trustworthiness
DATASETS=$ALL_DATASETS
STAGES=$ALL_STAGES
TIMEOUT=600
REPEAT=
THREADS=2
PEER_BLAS_THREADS=
SEED=42
BUILD=1
QUICK=0

# Pinned peers (and the dependencies whose versions change their speed), all installable
# on CPython 3.11 from PyPI wheels.
PINS=(numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 umap-learn==0.5.12 pynndescent==0.7.0
      numba==0.68.1 llvmlite==0.50.0 openTSNE==1.0.4 hdbscan==0.8.44 joblib==1.6.0
      threadpoolctl==3.8.0)

die() { echo "run.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; DATASETS=iris,digits; shift ;;
    --datasets) DATASETS=${2:?}; shift 2 ;;
    --stages) STAGES=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --repeat) REPEAT=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --peer-blas-threads) PEER_BLAS_THREADS=${2:?}; shift 2 ;;
    --seed) SEED=${2:?}; shift 2 ;;
    --venv) VENV=${2:?}; shift 2 ;;
    --work-dir) WORK=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
# Small data sets are cheap and noisy: repeat them unless told otherwise.
[[ -z $REPEAT ]] && { [[ $QUICK == 1 ]] && REPEAT=3 || REPEAT=1; }
for d in ${DATASETS//,/ }; do [[ ,$KNOWN_DATASETS, == *,$d,* ]] || die "unknown data set '$d'"; done
for s in ${STAGES//,/ }; do [[ ,$ALL_STAGES, == *,$s,* ]] || die "unknown stage '$s'"; done

# ---------------------------------------------------------------- Python peers
PY=$VENV/bin/python
if [[ ! -x $PY ]]; then
  echo "== creating virtualenv $VENV" >&2
  python3 -m venv "$VENV"
fi
STAMP=$VENV/.segscope-bench-pins
if [[ ! -f $STAMP || "$(cat "$STAMP")" != "${PINS[*]}" ]]; then
  echo "== installing ${PINS[*]}" >&2
  "$PY" -m pip install --quiet "${PINS[@]}"
  echo "${PINS[*]}" > "$STAMP"
fi

# ---------------------------------------------------------------- data
mkdir -p "$WORK"
missing=()
for d in ${DATASETS//,/ }; do
  [[ -f $WORK/$d.meta.json && -f $WORK/$d.csv && -f $WORK/$d.pca2.csv ]] \
    && grep -q "\"seed\": $SEED}" "$WORK/$d.meta.json" || missing+=("$d")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "== generating ${missing[*]} into $WORK" >&2
  OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$PY" "$REPO/bench/make_data.py" \
    --out "$WORK" --repo "$REPO" --seed "$SEED" --datasets "$(IFS=,; echo "${missing[*]}")"
fi

# ---------------------------------------------------------------- segscope
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/segscope-target}
BIN=$CARGO_TARGET_DIR/release/segscope-bench
if [[ $BUILD == 1 ]]; then
  echo "== cargo build --release --bin segscope-bench" >&2
  (cd "$REPO" && cargo build --release --quiet --bin segscope-bench)
fi
[[ -x $BIN ]] || die "no $BIN (build it, or drop --no-build)"

# ---------------------------------------------------------------- runs
RUN_ID=$(date +%Y%m%d-%H%M%S)$([[ $QUICK == 1 ]] && echo -quick || true)
RUN=$WORK/runs/$RUN_ID
mkdir -p "$RUN"
RESULTS=$RUN/results.jsonl
: > "$RESULTS"
# Peak RSS: GNU time where present (nothing is installed for it), else getrusage through
# score.py measure; SEGSCOPE_BENCH_RSS=rusage forces the fallback.
TIME_BIN=
if [[ ${SEGSCOPE_BENCH_RSS:-} != rusage && -x /usr/bin/time ]] && /usr/bin/time -f %M true 2>/dev/null; then
  TIME_BIN=/usr/bin/time
fi
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
       NUMBA_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS

# run_measured OUT_PREFIX CMD...: runs CMD under the timeout, stdout/stderr/peak RSS to files;
# prints the exit status.
run_measured() {
  local p=$1; shift
  local rc=0
  if [[ -n $TIME_BIN ]]; then
    "$TIME_BIN" -f %M -o "$p.rss" timeout "$TIMEOUT" "$@" > "$p.json" 2> "$p.err" || rc=$?
  else
    "$PY" "$REPO/bench/score.py" measure --rss "$p.rss" --stdout "$p.json" --stderr "$p.err" \
      -- timeout "$TIMEOUT" "$@" || rc=$?
  fi
  echo "$rc"
}

START=$(date +%s)
for d in ${DATASETS//,/ }; do
  DATA=$WORK/$d.csv
  K=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['classes'])" "$WORK/$d.meta.json")
  echo "== $d (k = $K)" >&2
  for s in ${STAGES//,/ }; do
    for side in segscope peer; do
      # umap-learn's unseeded, parallel mode has no segscope counterpart: segscope's one
      # mode is both seeded and parallel, and the table compares it with the umap row's.
      [[ $side == segscope && $s == umap-unseeded ]] && continue
      ext=csv
      for rep in $(seq 1 "$REPEAT"); do
        p=$RUN/$d.$s.$side.$rep
        out=$RUN/$d.$s.$side.$ext
        args=(--stage "$s" --data "$DATA" --seed "$SEED" --threads "$THREADS")
        case $s in
          kmeans|gmm) args+=(--k "$K" --out "$out") ;;
          silhouette) args+=(--labels "$WORK/$d.sil_labels.csv") ;;
          trustworthiness) args+=(--embedding "$WORK/$d.pca2.csv") ;;
          *) args+=(--out "$out") ;;
        esac
        if [[ $side == segscope ]]; then
          cmd=("$BIN" "${args[@]}")
        else
          cmd=("$PY" "$REPO/bench/peers.py" "${args[@]}" ${PEER_BLAS_THREADS:+--blas-threads "$PEER_BLAS_THREADS"})
        fi
        load1=$(cut -d' ' -f1 /proc/loadavg)
        rc=$(run_measured "$p" "${cmd[@]}")
        "$PY" "$REPO/bench/score.py" record --dataset "$d" --stage "$s" --side "$side" \
          --rep "$rep" --rc "$rc" --timeout "$TIMEOUT" --json "$p.json" --rss "$p.rss" \
          --stderr "$p.err" --data "$DATA" --pred "$out" --results "$RESULTS" --load1 "$load1"
        # a timed-out or failed stage is not worth repeating
        [[ $rc == 0 ]] || break
      done
    done
  done
done

echo "== measuring maps (trustworthiness k=10, one shared function for both sides)" >&2
"$PY" "$REPO/bench/score.py" finalize --results "$RESULTS"

versions=$("$PY" - <<'PY'
import importlib.metadata as m
print(", ".join(f"{p} {m.version(p)}" for p in
      ("numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent", "numba", "openTSNE", "hdbscan")))
PY
)
{
  echo "run $RUN_ID: data sets $DATASETS; stages $STAGES; $(($(date +%s) - START)) s in all"
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
  echo "segscope $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml || echo '+changes'), release build; peers: $versions; Python $("$PY" -c 'import platform; print(platform.python_version())')"
  echo "threads: $THREADS on both sides (rayon pool; OMP/OpenBLAS/numba pools; openTSNE and hdbscan n_jobs)${PEER_BLAS_THREADS:+, except the peer BLAS pools: $PEER_BLAS_THREADS}; seed $SEED; timeout $TIMEOUT s per stage; $REPEAT run(s) per stage and side, median seconds shown (min–max in brackets)"
  echo "seconds: the computation only (no data loading, no imports, no output writing), timed inside each process; peak MiB: maximum resident set of the stage's process ($([[ -n $TIME_BIN ]] && echo '/usr/bin/time %M' || echo 'wait4 rusage of a posix_spawn child, floor about 13 MiB')), interpreter and libraries included"
  echo "ratio = peer s / segscope s: above 1 segscope is faster"
  echo "umap-learn: timed after a numba JIT warm-up on 300 random points in the same process (warm-up excluded, see notes); seeded umap-learn optimises on one thread, umap-unseeded is its parallel mode (segscope's figures there are the umap row's)"
  echo "quality: ARI against the true classes (kmeans, gmm, hdbscan; noise counts as one group); trustworthiness k=10 of each side's map by ONE function in score.py (pca, umap, tsne); the computed value (silhouette on fixed sklearn k-means labels, trustworthiness of a fixed sklearn PCA map)"
} > "$RUN/meta.txt"
echo >&2
"$PY" "$REPO/bench/score.py" table --results "$RESULTS" --meta "$RUN/meta.txt" --out "$RUN/table.md"
cp "$RUN/table.md" "$WORK/table$([[ $QUICK == 1 ]] && echo -quick || true).md"
echo >&2
echo "table: $RUN/table.md (also $WORK/table$([[ $QUICK == 1 ]] && echo -quick || true).md)" >&2
