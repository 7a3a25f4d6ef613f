"""The Python peer of segscope's store pipeline, for bench/store.sh.

The pipeline a data scientist would write with pandas + scikit-learn + umap-learn, doing the
same work as `segscope segment --transactions T --events E --k K --maps umap` with stability
off: read both exports (skipping malformed lines), drop duplicates and rows without a
customer, RFM per customer (recency from the end of the data, distinct invoices, net revenue
with cancellations subtracted), browsing behaviour (views, sessions, conversion), a browsing
document per customer (category path prefixes, brand, event type) embedded by TF-IDF +
TruncatedSVD to 32 dimensions, the three blocks standardised and weighted as segscope weighs
them, KMeans with 10 inits, and a 2D UMAP. Prints one JSON line: seconds per stage and in
total, customers, k, and the ARI against the planted personas when --truth is given.
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler, normalize


def block(x, weight):
    """Scale a block so that its total variance equals `weight` (segscope's weighting)."""
    total = x.var(axis=0).sum()
    return x * np.sqrt(weight / total) if total > 0 else x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--transactions", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--k", type=int, default=6)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--truth")
    a = p.parse_args()
    t = {}
    start = time.perf_counter()

    s = time.perf_counter()
    tx = pd.read_csv(a.transactions, dtype=str, on_bad_lines="skip")
    tx["Quantity"] = pd.to_numeric(tx["Quantity"], errors="coerce")
    tx["Price"] = pd.to_numeric(tx["Price"], errors="coerce")
    tx["InvoiceDate"] = pd.to_datetime(tx["InvoiceDate"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    tx = tx.dropna(subset=["Customer ID", "Quantity", "Price", "InvoiceDate"]).drop_duplicates()
    tx["customer"] = tx["Customer ID"].str.replace(r"\.0$", "", regex=True)
    ev = pd.read_csv(a.events, dtype=str, on_bad_lines="skip")
    ev["event_time"] = pd.to_datetime(ev["event_time"], format="%Y-%m-%d %H:%M:%S UTC", errors="coerce")
    ev = ev.dropna(subset=["user_id", "event_time"]).drop_duplicates()
    t["ingest"] = time.perf_counter() - s

    s = time.perf_counter()
    end = max(tx["InvoiceDate"].max(), ev["event_time"].max())
    tx["revenue"] = tx["Quantity"] * tx["Price"]
    cancel = tx["Invoice"].str.upper().str.startswith("C")
    bought = tx[~cancel]
    rfm = pd.DataFrame({
        "last": bought.groupby("customer")["InvoiceDate"].max(),
        "frequency": bought.groupby("customer")["Invoice"].nunique(),
    })
    rfm["monetary"] = tx.groupby("customer")["revenue"].sum()
    rfm["recency"] = (end - rfm["last"]).dt.total_seconds() / 86400
    kinds = ev["event_type"]
    beh = pd.DataFrame({
        "views": (kinds == "view").groupby(ev["user_id"]).sum(),
        "purchases": (kinds == "purchase").groupby(ev["user_id"]).sum(),
        "sessions": ev.groupby("user_id")["user_session"].nunique(),
    })
    beh["conversion"] = np.where(beh["views"] > 0, beh["purchases"] / beh["views"].clip(lower=1), 0.0)
    cat = ev["category_code"].fillna("")
    top = cat.str.split(".").str[0]
    tokens = ("event:" + kinds + " brand:" + ev["brand"].fillna("none")
              + np.where(cat != "", " category:" + top + " category:" + cat, ""))
    docs = tokens.groupby(ev["user_id"]).agg(" ".join)
    t["features"] = time.perf_counter() - s

    s = time.perf_counter()
    tfidf = TfidfVectorizer(token_pattern=r"\S+", sublinear_tf=True, min_df=2, lowercase=True)
    svd = TruncatedSVD(n_components=32, random_state=a.seed)
    emb = normalize(svd.fit_transform(tfidf.fit_transform(docs.values)))
    t["embed"] = time.perf_counter() - s

    s = time.perf_counter()
    ids = sorted(set(rfm.index) | set(beh.index) | set(tx["customer"]))
    window = (end - tx["InvoiceDate"].min()).total_seconds() / 86400
    r = rfm.reindex(ids)
    rfm_x = np.column_stack([
        r["recency"].fillna(window), np.log1p(r["frequency"].fillna(0)),
        np.sign(r["monetary"].fillna(0)) * np.log1p(r["monetary"].fillna(0).abs()),
    ])
    b = beh.reindex(ids).fillna(0)
    beh_x = np.column_stack([np.log1p(b["views"]), np.log1p(b["sessions"]), b["conversion"]])
    tab = StandardScaler().fit_transform(np.column_stack([rfm_x, beh_x]))
    e = pd.DataFrame(emb, index=docs.index).reindex(ids).fillna(0).values
    x = np.column_stack([block(tab[:, :3], 1.0), block(tab[:, 3:], 0.5), block(e, 1.0)])
    t["matrix"] = time.perf_counter() - s

    s = time.perf_counter()
    labels = KMeans(n_clusters=a.k, n_init=10, random_state=a.seed).fit_predict(x)
    t["cluster"] = time.perf_counter() - s

    import umap  # imported here so its import (not its JIT) is outside the other stages

    s = time.perf_counter()
    umap.UMAP(n_components=2, random_state=a.seed).fit_transform(x)
    t["map_umap"] = time.perf_counter() - s
    total = time.perf_counter() - start

    out = {"side": "python", "seconds": t, "total": total, "customers": len(ids), "k": a.k}
    if a.truth:
        truth = pd.read_csv(a.truth, dtype=str).set_index("customer_id")["persona"]
        known = [i for i, c in enumerate(ids) if c in truth.index]
        out["ari"] = adjusted_rand_score([truth[ids[i]] for i in known], labels[known])
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
