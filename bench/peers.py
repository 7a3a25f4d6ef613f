"""Runs ONE benchmark stage with the reference Python libraries and times it.

One stage per process, so that the peak RSS measured around this process is the stage's
own (plus the interpreter and the libraries it imports). Prints one JSON line on stdout::

    {"side": "peer", "stage": "...", "seconds": 1.23, "extra": {...}}

or, when the stage cannot run here, ``{"side": "peer", "stage": "...", "skipped": "why"}``.
Timing covers the computation only: reading the CSV, imports and writing the output are
outside the timed region, as on the segscope side (src/bin/segscope-bench.rs).

Stages and peers (parameters chosen to match segscope's, see bench/README.md):

=============== ==========================================================================
kmeans          sklearn ``KMeans(k, n_init=10, random_state=seed)``
gmm             sklearn ``GaussianMixture(k, covariance_type="full", n_init=1,
                max_iter=200, tol=1e-3, reg_covar=1e-6, random_state=seed)``
hdbscan         sklearn ``PCA(10)`` when there are more than 10 columns, then
                ``hdbscan.HDBSCAN(min_cluster_size=15, min_samples=15)``
pca             sklearn ``PCA(2)``
umap            umap-learn ``UMAP(n_neighbors=15, min_dist=0.1, random_state=seed)``
                after a JIT warm-up in the same process (not timed); a seed makes
                umap-learn run its optimisation on one thread
umap-unseeded   the same without a seed and with ``n_jobs=threads``: umap-learn's parallel,
                non-reproducible mode
tsne            openTSNE ``TSNE(perplexity=30, n_iter=750, n_jobs=threads,
                random_state=seed)``: 250 + 750 = 1,000 iterations, as segscope's
silhouette      sklearn ``silhouette_score`` over all points on the given labels
trustworthiness sklearn ``manifold.trustworthiness(X, embedding, n_neighbors=10)``
=============== ==========================================================================

Usage: ``peers.py --stage S --data X.csv --out OUT.csv [--k K] [--labels L.csv]
[--embedding E.csv] [--seed 42] [--threads 2] [--blas-threads N]``.
"""

import argparse
import json
import os
import sys
import time

STAGES = ("kmeans", "gmm", "hdbscan", "pca", "umap", "umap-unseeded", "tsne", "silhouette",
          "trustworthiness")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True, choices=STAGES)
    ap.add_argument("--data", required=True, help="feature table: id, features..., label")
    ap.add_argument("--out", help="labels (clustering) or n x 2 embedding (maps) written here")
    ap.add_argument("--k", type=int, help="number of clusters (kmeans, gmm)")
    ap.add_argument("--labels", help="labels file for the silhouette stage")
    ap.add_argument("--embedding", help="n x 2 embedding for the trustworthiness stage")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blas-threads", type=int,
                    help="BLAS pool size (default: --threads); numpy and scipy each have "
                         "their own OpenBLAS pool, which can contend (see bench/README.md)")
    return ap.parse_args()


ARGS = parse_args()
BLAS_THREADS = ARGS.blas_threads or ARGS.threads
# Thread pools read these when the libraries are imported, so set them first.
for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(BLAS_THREADS)

import numpy as np  # noqa: E402


def read_features(path):
    """Features as float64, dropping constant columns exactly as segscope's ingest does."""
    import csv

    with open(path, newline="") as f:
        header = next(csv.reader(f))
    feature_cols = [i for i, name in enumerate(header) if name not in ("id", "label")]
    X = np.loadtxt(path, delimiter=",", skiprows=1, usecols=feature_cols, dtype=np.float64,
                   ndmin=2)
    keep = np.ptp(X, axis=0) > 0
    return np.ascontiguousarray(X[:, keep])


def read_column(path, dtype):
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=dtype, ndmin=2)


def write_labels(path, labels):
    np.savetxt(path, np.asarray(labels, dtype=np.int64), fmt="%d", header="label", comments="")


def write_embedding(path, emb):
    np.savetxt(path, np.asarray(emb, dtype=np.float64), fmt="%.17g", delimiter=",",
               header="x,y", comments="")


def mem_total_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def emit(record):
    record = {"side": "peer", "stage": ARGS.stage, **record}
    print(json.dumps(record), flush=True)


def cluster_extra(labels):
    labels = np.asarray(labels)
    return {"clusters": int(len(set(labels[labels >= 0].tolist()))),
            "noise": int((labels < 0).sum())}


def main():
    X = read_features(ARGS.data)
    n = X.shape[0]
    stage = ARGS.stage
    seed = ARGS.seed

    if stage == "trustworthiness":
        # sklearn holds an n x n float64 distance matrix, its n x n int64 argsort and an
        # n x n int64 inverted index at once: 24 n^2 bytes.
        need = 24 * n * n
        total = mem_total_bytes()
        if total is not None and need > 0.8 * total:
            emit({"skipped": f"sklearn trustworthiness needs n x n matrices: "
                             f"~{need / 2**30:.0f} GiB > 80% of {total / 2**30:.0f} GiB RAM"})
            return

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=ARGS.threads, user_api="openmp"), \
            threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        extra = {}
        if stage == "kmeans":
            from sklearn.cluster import KMeans

            t0 = time.perf_counter()
            model = KMeans(n_clusters=ARGS.k, n_init=10, random_state=seed).fit(X)
            seconds = time.perf_counter() - t0
            write_labels(ARGS.out, model.labels_)
            extra = {"inertia": float(model.inertia_), **cluster_extra(model.labels_)}
        elif stage == "gmm":
            from sklearn.mixture import GaussianMixture

            t0 = time.perf_counter()
            gm = GaussianMixture(n_components=ARGS.k, covariance_type="full", n_init=1,
                                 max_iter=200, tol=1e-3, reg_covar=1e-6, random_state=seed)
            labels = gm.fit(X).predict(X)
            seconds = time.perf_counter() - t0
            write_labels(ARGS.out, labels)
            # total log-likelihood of the final parameters, outside the timed region
            extra = {"converged": bool(gm.converged_), "iterations": int(gm.n_iter_),
                     "log_likelihood": float(gm.score(X) * X.shape[0]),
                     **cluster_extra(labels)}
        elif stage == "hdbscan":
            import hdbscan
            from sklearn.decomposition import PCA

            t0 = time.perf_counter()
            Z = PCA(n_components=10).fit_transform(X) if X.shape[1] > 10 else X
            labels = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=15,
                                     core_dist_n_jobs=ARGS.threads).fit_predict(Z)
            seconds = time.perf_counter() - t0
            write_labels(ARGS.out, labels)
            extra = {"input_dims": int(Z.shape[1]), **cluster_extra(labels)}
        elif stage == "pca":
            from sklearn.decomposition import PCA

            t0 = time.perf_counter()
            emb = PCA(n_components=2).fit_transform(X)
            seconds = time.perf_counter() - t0
            write_embedding(ARGS.out, emb)
        elif stage in ("umap", "umap-unseeded"):
            import umap

            seeded = stage == "umap"
            kwargs = dict(n_neighbors=15, min_dist=0.1)
            kwargs.update(random_state=seed) if seeded else kwargs.update(n_jobs=ARGS.threads)
            # Warm-up: compile every numba function the real fit will use, on a tiny data
            # set of the same dtype and width; both the exact kNN path (< 4,096 points) and
            # pynndescent's path (forced), since the real fit takes one of them.
            rng = np.random.default_rng(0)
            tiny = rng.normal(size=(300, X.shape[1]))
            t0 = time.perf_counter()
            umap.UMAP(**kwargs).fit_transform(tiny)
            umap.UMAP(force_approximation_algorithm=True, **kwargs).fit_transform(tiny)
            warmup = time.perf_counter() - t0
            t0 = time.perf_counter()
            emb = umap.UMAP(**kwargs).fit_transform(X)
            seconds = time.perf_counter() - t0
            write_embedding(ARGS.out, emb)
            extra = {"jit_warmup_seconds_excluded": round(warmup, 3),
                     "knn": "exact" if n < 4096 else "pynndescent (approximate)",
                     "seeded": seeded}
        elif stage == "tsne":
            from openTSNE import TSNE

            t0 = time.perf_counter()
            emb = TSNE(perplexity=30, n_iter=750, n_jobs=ARGS.threads,
                       random_state=seed).fit(X)
            seconds = time.perf_counter() - t0
            write_embedding(ARGS.out, np.asarray(emb))
            extra = {"kl_divergence": float(emb.kl_divergence)}
        elif stage == "silhouette":
            from sklearn.metrics import silhouette_score

            labels = read_column(ARGS.labels, np.int64)[:, 0]
            t0 = time.perf_counter()
            value = silhouette_score(X, labels)
            seconds = time.perf_counter() - t0
            extra = {"value": float(value)}
        elif stage == "trustworthiness":
            from sklearn.manifold import trustworthiness

            emb = read_column(ARGS.embedding, np.float64)
            t0 = time.perf_counter()
            value = trustworthiness(X, emb, n_neighbors=10)
            seconds = time.perf_counter() - t0
            extra = {"value": float(value)}
        else:  # argparse restricts the choices
            raise SystemExit(f"unknown stage {stage}")
    emit({"seconds": seconds, "extra": extra})


if __name__ == "__main__":
    main()
