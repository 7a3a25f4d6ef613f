"""Measures and tabulates the benchmark: quality of each side's output, and the table.

Quality is computed HERE, by the same function for both sides, from the files each side
wrote, so that a difference in quality is a difference in the outputs, never in how they
were measured:

- clustering stages: adjusted Rand index against the true labels (sklearn
  ``adjusted_rand_score``; HDBSCAN noise, label -1, counts as one more group);
- map stages: trustworthiness with k = 10 (sklearn ``manifold.trustworthiness`` where its
  n x n matrices fit in memory; above that, :func:`trustworthiness_chunked`, the same
  definition computed a block of rows at a time, checked against sklearn by ``selftest``);
- silhouette and trustworthiness stages: the value the stage itself computed.

Subcommands:

``record``   turns one stage run (its JSON line, exit status, peak RSS) into a line of
             ``results.jsonl``, adding the quality measure;
``finalize`` measures the maps ``record`` left pending (all maps of a data set in one pass);
``table``    prints the comparison table from ``results.jsonl`` and writes it as markdown;
``measure``  runs a command and writes its peak RSS in KiB (``RUSAGE_CHILDREN``), for machines
             without ``/usr/bin/time``;
``selftest`` checks :func:`trustworthiness_chunked` against sklearn.
"""

import argparse
import json
import os
import statistics
import sys

# numpy is imported in main(), except for `measure`: a process spawned from this one starts
# with this one's resident size as its peak (Linux keeps the pre-exec high-water mark), so
# the measuring parent is kept as small as an interpreter can be.
np = None

MAP_STAGES = ("pca", "umap", "umap-unseeded", "tsne")
CLUSTER_STAGES = ("kmeans", "gmm", "hdbscan")
VALUE_STAGES = ("silhouette", "trustworthiness")
TRUST_K = 10


# --------------------------------------------------------------------------- measures


def read_features(path):
    """Features as float64 with constant columns dropped (as both sides see them), and the
    true labels."""
    import csv

    with open(path, newline="") as f:
        header = next(csv.reader(f))
    feature_cols = [i for i, name in enumerate(header) if name not in ("id", "label")]
    X = np.loadtxt(path, delimiter=",", skiprows=1, usecols=feature_cols, ndmin=2)
    y = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[header.index("label")],
                   dtype=str)
    return np.ascontiguousarray(X[:, np.ptp(X, axis=0) > 0]), y


def dense_fits(n):
    """Whether sklearn's trustworthiness (three n x n arrays of 8 bytes) fits in 40% of RAM,
    leaving room for the rest of the machine."""
    try:
        with open("/proc/meminfo") as f:
            total = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        total = 8 * 2**30
    return 24 * n * n <= 0.4 * total


def _count_closer():
    """Compiled kernel: for each row r and each threshold t = dj[r, j], the number of
    entries of d[r] strictly below t (numba, parallel over rows; no n x k x block temporary)."""
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def count(d, dj, out):
        b, n = d.shape
        k = dj.shape[1]
        for r in prange(b):
            for j in range(k):
                t = dj[r, j]
                c = 0
                for col in range(n):
                    if d[r, col] < t:
                        c += 1
                out[r, j] = c

    return count


def trustworthiness_chunked(X, embeddings, k=TRUST_K, block=256):
    """sklearn's trustworthiness of several embeddings of the same X, computed a block of
    rows at a time in O(block * n) memory, sharing the original-space distances.

    Same definition as ``sklearn.manifold.trustworthiness`` (Euclidean, distances by the same
    ``|x|^2 - 2 x.y + |y|^2`` expansion): each of a point's k nearest neighbours in the
    embedding (sklearn ``NearestNeighbors``, the point excluded) with rank r > k in the
    original space costs r - k, where r - 1 is the number of other points strictly closer in
    the original space. Exact distance ties are thus resolved in the point's favour, where
    sklearn's unstable argsort resolves them arbitrarily; with continuous data there are none
    (``selftest`` checks the agreement). Returns one value per embedding.
    """
    from sklearn.neighbors import NearestNeighbors

    count = _count_closer()
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    neighbours = [NearestNeighbors(n_neighbors=k).fit(E).kneighbors(return_distance=False)
                  for E in embeddings]
    sq = np.einsum("ij,ij->i", X, X)
    penalties = [0] * len(embeddings)
    closer = np.empty((block, k), dtype=np.int64)
    buffer = np.empty((block, n))  # reused: allocating 100 MB per block costs page faults
    XT = np.ascontiguousarray(X.T)
    for s in range(0, n, block):
        e = min(n, s + block)
        rows = np.arange(e - s)
        d = buffer[: e - s]
        np.matmul(X[s:e], XT, out=d)
        d *= -2.0
        d += sq[s:e, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        d[rows, np.arange(s, e)] = np.inf  # a point is not its own neighbour
        for m, ind in enumerate(neighbours):
            dj = np.ascontiguousarray(d[rows[:, None], ind[s:e]])  # (rows, k)
            out = closer[: e - s]
            count(d, dj, out)
            ranks = out + 1 - k
            penalties[m] += int(ranks[ranks > 0].sum())
    scale = 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
    return [1.0 - p * scale for p in penalties]


def trustworthiness_shared(X, embeddings, k=TRUST_K):
    """The one trustworthiness every map of X is measured with, whichever side made it;
    returns ([values], method)."""
    if dense_fits(X.shape[0]):
        from sklearn.manifold import trustworthiness

        return [float(trustworthiness(X, E, n_neighbors=k)) for E in embeddings], "sklearn"
    return [float(v) for v in trustworthiness_chunked(X, embeddings, k)], "chunked"


def quality(stage, data, pred, parsed):
    """(value, how) for one stage's output."""
    if stage in VALUE_STAGES:
        return parsed.get("extra", {}).get("value"), stage
    if stage in CLUSTER_STAGES:
        from sklearn.metrics import adjusted_rand_score

        _, y = read_features(data)
        labels = np.loadtxt(pred, skiprows=1, dtype=np.int64, ndmin=1)
        return float(adjusted_rand_score(y, labels)), "ARI"
    return None, None


# --------------------------------------------------------------------------- record


def last_json_line(path):
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, json.JSONDecodeError):
        return None


def read_rss_kib(path):
    try:
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip()]
        return int(lines[-1]) if lines and lines[-1].isdigit() else None
    except OSError:
        return None


def cmd_record(a):
    parsed = last_json_line(a.json)
    rec = {"dataset": a.dataset, "stage": a.stage, "side": a.side, "rep": a.rep,
           "load1": a.load1, "rss_kib": read_rss_kib(a.rss)}
    if a.skip:
        rec.update(status="skipped", why=a.skip, rss_kib=None)
    elif a.rc in (124, 137) and a.timeout:
        rec.update(status="timeout", why=f"killed after {a.timeout} s", rss_kib=None)
    elif a.rc != 0 or parsed is None:
        err = ""
        try:
            with open(a.stderr) as f:
                err = f.read().strip().splitlines()[-1][:200]
        except (OSError, IndexError):
            pass
        rec.update(status="failed", why=f"exit {a.rc}: {err}")
    elif "skipped" in parsed:
        rec.update(status="skipped", why=parsed["skipped"], rss_kib=None)
    else:
        rec.update(status="ok", seconds=parsed["seconds"], extra=parsed.get("extra", {}))
        if a.rep == 1 and a.stage in MAP_STAGES:
            # Measured by `finalize`, all maps of one data set together: at 50k points the
            # original-space distances are the expensive part, and they are shared.
            rec.update(quality_pending=True, pred=a.pred, data=a.data)
        elif a.rep == 1:  # outputs are deterministic per seed; measure the first run's
            try:
                rec["quality"], rec["quality_kind"] = quality(a.stage, a.data, a.pred, parsed)
            except Exception as e:  # noqa: BLE001 - a broken output is reported, not fatal
                rec["quality"], rec["quality_kind"] = None, f"quality failed: {e}"
    with open(a.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    shown = rec.get("seconds", rec.get("why"))
    print(f"  {a.dataset:9s} {a.stage:15s} {a.side:8s} rep {a.rep}: {rec['status']} {shown}"
          + (f"  quality {rec['quality']:.4f}" if rec.get("quality") is not None else ""),
          file=sys.stderr)


def cmd_finalize(a):
    """Measures every map awaiting its trustworthiness, one data set at a time."""
    with open(a.results) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    pending = [r for r in recs if r.get("quality_pending")]
    for data in dict.fromkeys(r["data"] for r in pending):
        group = [r for r in pending if r["data"] == data]
        X, _ = read_features(data)
        usable, embeddings = [], []
        for r in group:
            try:
                E = np.loadtxt(r["pred"], delimiter=",", skiprows=1, ndmin=2)
                if E.shape != (X.shape[0], 2) or not np.isfinite(E).all():
                    raise ValueError(f"embedding of shape {E.shape} with finite values: "
                                     f"{bool(np.isfinite(E).all())}")
                usable.append(r)
                embeddings.append(E)
            except Exception as e:  # noqa: BLE001 - reported in the table
                r.update(quality=None, quality_kind=f"quality failed: {e}")
        if embeddings:
            values, method = trustworthiness_shared(X, embeddings)
            for r, v in zip(usable, values):
                r.update(quality=v, quality_kind=f"trust@10 ({method})")
                print(f"  {r['dataset']:9s} {r['stage']:15s} {r['side']:8s} trust@10 {v:.4f}"
                      f" ({method})", file=sys.stderr)
        for r in group:
            r.pop("quality_pending", None)
    with open(a.results, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)


# --------------------------------------------------------------------------- table


def fmt_s(runs):
    ok = [r for r in runs if r["status"] == "ok"]
    if not runs:
        return "—", None
    if not ok:
        r = runs[0]
        return (r["status"] if r["status"] == "timeout" else f"{r['status']}: {r['why']}"), None
    secs = sorted(r["seconds"] for r in ok)
    med = statistics.median(secs)
    text = f"{med:.3g}" if med >= 0.01 else f"{med:.2g}"
    if len(secs) > 1:
        text += f" ({secs[0]:.3g}–{secs[-1]:.3g})"
    return text, med


def fmt_rss(runs):
    vals = [r["rss_kib"] for r in runs if r["status"] == "ok" and r.get("rss_kib")]
    return f"{max(vals) / 1024:.0f}" if vals else "—"


def fmt_q(runs):
    for r in runs:
        if r["status"] == "ok" and r.get("quality") is not None:
            return f"{r['quality']:.4f}"
        if r["status"] == "ok" and r.get("quality_kind"):
            return str(r["quality_kind"])
    return "—"


def quality_label(stage):
    if stage in CLUSTER_STAGES:
        return "ARI"
    if stage in MAP_STAGES:
        return "trust@10"
    return "value"


def cmd_table(a):
    recs = []
    with open(a.results) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    order_d, order_s = [], []
    for r in recs:
        if r["dataset"] not in order_d:
            order_d.append(r["dataset"])
        if r["stage"] not in order_s:
            order_s.append(r["stage"])
    header = ["dataset", "stage", "segscope s", "peer s", "ratio peer/segscope",
              "segscope MiB", "peer MiB", "quality", "segscope q", "peer q"]
    rows, notes = [], []
    for d in order_d:
        for s in order_s:
            ours = [r for r in recs if r["dataset"] == d and r["stage"] == s
                    and r["side"] == "segscope"]
            peer = [r for r in recs if r["dataset"] == d and r["stage"] == s
                    and r["side"] == "peer"]
            if not ours and not peer:
                continue
            ours_label = ""
            if s == "umap-unseeded" and not ours:
                ours = [r for r in recs if r["dataset"] == d and r["stage"] == "umap"
                        and r["side"] == "segscope"]
                ours_label = " (umap row)"
            o_txt, o_med = fmt_s(ours)
            p_txt, p_med = fmt_s(peer)
            ratio = f"{p_med / o_med:.2f}" if o_med and p_med else "—"
            rows.append([d, s, o_txt + ours_label, p_txt, ratio, fmt_rss(ours), fmt_rss(peer),
                         quality_label(s), fmt_q(ours), fmt_q(peer)])
            for r in (peer if ours_label else ours + peer):
                ex = r.get("extra") or {}
                if r.get("rep") != 1 or r["status"] != "ok":
                    continue
                if "knn_seconds" in ex:
                    notes.append(f"{d}/{s}: segscope's kNN ({ex.get('knn', 'exact')}) took "
                                 f"{ex['knn_seconds']:.3g} s of the stage")
                if "jit_warmup_seconds_excluded" in ex:
                    notes.append(f"{d}/{s}: umap-learn's numba JIT warm-up "
                                 f"({ex['jit_warmup_seconds_excluded']:.3g} s, tiny data, same "
                                 f"process) is excluded; its kNN: {ex.get('knn')}")
                if s == "hdbscan":
                    notes.append(f"{d}/hdbscan {r['side']}: {ex.get('clusters')} clusters, "
                                 f"{ex.get('noise')} noise points")
                if s == "tsne" and "kl_divergence" in ex:
                    notes.append(f"{d}/tsne {r['side']}: KL divergence "
                                 f"{ex['kl_divergence']:.4f}")
                if s in MAP_STAGES and str(r.get("quality_kind", "")).endswith("(chunked)"):
                    notes.append(f"{d}/{s} {r['side']}: trust@10 by the chunked exact "
                                 f"implementation (n x n would not fit in memory)")
    loads = [r["load1"] for r in recs if r.get("load1") is not None]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    text = "\n".join(out)
    meta = []
    if a.meta and os.path.exists(a.meta):
        with open(a.meta) as f:
            meta = [l.rstrip("\n") for l in f]
    if loads:
        meta.append(f"1-minute load average before each stage: min {min(loads):.2f}, "
                    f"max {max(loads):.2f} (2 cores; above ~2 other work shared the CPUs)")
    md = ["# segscope benchmark", "", *[f"- {m}" for m in meta], "", text, "",
          "## Notes", "", *[f"- {n}" for n in dict.fromkeys(notes)], ""]
    print(text)
    for m in meta:
        print("  " + m)
    for n in dict.fromkeys(notes):
        print("  - " + n)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(md))


# --------------------------------------------------------------------------- helpers


def cmd_measure(a):
    """Runs the command after ``--``; writes its peak RSS (KiB) to ``--rss``; exits with its
    status.

    The child is started with ``posix_spawn`` (vfork: no copy of this interpreter's pages)
    and its own ``rusage`` read with ``wait4``, i.e. ``getrusage(RUSAGE_CHILDREN)`` for that
    one child (descendants it waited for included). Linux carries the pre-exec high-water
    mark into ``ru_maxrss``, so the child reads at least this interpreter's resident size
    (≈ 10 MiB, which is why numpy is not imported here): a few MiB above what
    ``/usr/bin/time`` reports for a small process.
    """
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 1, a.stdout, flags, 0o644),
               (os.POSIX_SPAWN_OPEN, 2, a.stderr, flags, 0o644)]
    pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    with open(a.rss, "w") as f:
        f.write(f"{usage.ru_maxrss}\n")  # KiB on Linux
    sys.exit(os.waitstatus_to_exitcode(status))


def cmd_selftest(a):
    from sklearn.datasets import load_digits, make_blobs
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    X, _ = make_blobs(n_samples=3000, n_features=64, centers=10, random_state=0)
    E = PCA(2).fit_transform(X)
    ref, (ours,) = trustworthiness(X, E, n_neighbors=TRUST_K), trustworthiness_chunked(X, [E])
    print(f"blobs 3000x64 PCA map: sklearn {ref:.15f} chunked {ours:.15f} "
          f"diff {abs(ref - ours):.1e}")
    ok = abs(ref - ours) < 1e-12
    D = load_digits().data
    E = PCA(2).fit_transform(D)
    ref, (ours,) = trustworthiness(D, E, n_neighbors=TRUST_K), trustworthiness_chunked(D, [E])
    print(f"digits PCA map (integer pixels: many exact ties): sklearn {ref:.6f} chunked "
          f"{ours:.6f} diff {abs(ref - ours):.1e}")
    ok &= abs(ref - ours) < 1e-3
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    for opt in ("dataset", "stage", "side", "json", "rss", "stderr", "data", "results"):
        r.add_argument(f"--{opt}", required=True)
    r.add_argument("--pred")
    r.add_argument("--rc", type=int, default=0)
    r.add_argument("--rep", type=int, default=1)
    r.add_argument("--timeout", type=int)
    r.add_argument("--skip")
    r.add_argument("--load1", type=float)
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--out")
    t.add_argument("--meta", help="lines of context printed above the table")
    m = sub.add_parser("measure")
    m.add_argument("--rss", required=True)
    m.add_argument("--stdout", required=True)
    m.add_argument("--stderr", required=True)
    m.add_argument("command", nargs=argparse.REMAINDER)
    fin = sub.add_parser("finalize")
    fin.add_argument("--results", required=True)
    sub.add_parser("selftest")
    a = ap.parse_args()
    if a.cmd != "measure":
        global np
        import numpy

        np = numpy
    {"record": cmd_record, "finalize": cmd_finalize, "table": cmd_table, "measure": cmd_measure,
     "selftest": cmd_selftest}[a.cmd](a)


if __name__ == "__main__":
    main()
