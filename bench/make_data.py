"""Writes the benchmark data sets, and the fixed inputs of the measure-only stages.

For each data set NAME it writes, into the work directory:

- ``NAME.csv``: ``id``, the feature columns, ``label`` (the true class), one row per point.
  Values are written with 17 significant digits, so Rust and Python parse the same doubles.
- ``NAME.meta.json``: rows, columns, number of true classes (the ``k`` of k-means and GMM).
- ``NAME.sil_labels.csv``: scikit-learn k-means labels (k = classes, n_init=10, the fixed
  seed), the input of both sides' silhouette stage, so that both measure the same partition.
- ``NAME.pca2.csv``: scikit-learn's 2-component PCA map, the input of both sides'
  trustworthiness stage, so that both measure the same map.

These inputs are computed here, untimed, so that the silhouette and trustworthiness stages
time the measure alone and their two values must agree (a correctness check for free).

Usage: ``make_data.py --out DIR --repo REPO_ROOT [--datasets iris,digits,blobs50k,blobs200k] [--seed 42]``.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

DATASETS = ("iris", "digits", "blobs50k", "blobs200k")


def load(name, repo, seed):
    """Returns (X, y) for a data set name; y as small integers."""
    if name == "iris":
        with open(os.path.join(repo, "examples", "iris.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        X = np.array([[float(r[c]) for c in features] for r in rows])
        classes = sorted({r["species"] for r in rows})
        y = np.array([classes.index(r["species"]) for r in rows])
        return X, y
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data.astype(float), d.target
    if name in ("blobs50k", "blobs200k"):
        from sklearn.datasets import make_blobs

        n = 50_000 if name == "blobs50k" else 200_000
        X, y = make_blobs(n_samples=n, n_features=64, centers=10, random_state=seed)
        return X, y
    raise SystemExit(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")


def write_table(path, X, y):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id"] + [f"f{j}" for j in range(X.shape[1])] + ["label"])
        for i, (row, label) in enumerate(zip(X, y)):
            w.writerow([f"p{i:06d}"] + [repr(float(v)) for v in row] + [int(label)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    for name in [d for d in args.datasets.split(",") if d]:
        X, y = load(name, args.repo, args.seed)
        k = int(len(np.unique(y)))
        base = os.path.join(args.out, name)
        write_table(base + ".csv", X, y)
        # Constant columns carry no information; segscope's ingest drops them (with a
        # warning) and peers.py does the same, so both sides fit the same matrix.
        constant = [int(j) for j in range(X.shape[1]) if np.ptp(X[:, j]) == 0]
        meta = {
            "name": name,
            "rows": int(X.shape[0]),
            "columns": int(X.shape[1]),
            "constant_columns": constant,
            "classes": k,
            "seed": args.seed,
        }
        with open(base + ".meta.json", "w") as f:
            json.dump(meta, f)
        Xk = np.delete(X, constant, axis=1)
        labels = KMeans(n_clusters=k, n_init=10, random_state=args.seed).fit_predict(Xk)
        np.savetxt(base + ".sil_labels.csv", labels, fmt="%d", header="label", comments="")
        emb = PCA(n_components=2).fit_transform(Xk)
        np.savetxt(base + ".pca2.csv", emb, fmt="%.17g", delimiter=",", header="x,y", comments="")
        print(f"{name}: {X.shape[0]} x {X.shape[1]}, {k} classes, constant columns {constant}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
