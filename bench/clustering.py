"""faiss k-means (mcl-ray) vs scikit-learn MiniBatchKMeans (the official MCL code) on MCL-like embeddings.

Data: a seeded Gaussian mixture on the unit sphere (a fixed number of true centres with uneven weights,
noise comparable to the centre norm so clusters overlap), L2-normalised like MCL's embeddings. Each
library runs with the settings MCL uses: mcl-ray's `kmeans` (faiss, niter=20, greedy k-means++ seeding,
trained on all points) and the official `cluster.py` call `MiniBatchKMeans(n_clusters=K,
batch_size=1_000_000, max_iter=100, tol=1e-5)` then `predict` on all points. Both get the same CPU
threads, and both inertias are recomputed here by one float64 function (squared L2 to the nearest
centroid, all points).

Target: faiss >= 10x faster with inertia no more than 1% worse.
    python -m bench.clustering                # N=100k, d=512, K in {10, 100, 1000} (minutes)
    python -m bench.clustering --quick        # smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from threadpoolctl import threadpool_limits

from bench.common import format_table, write_result
from mcl_ray.mcl.clustering import kmeans

TARGET_SPEEDUP = 10.0
TARGET_INERTIA_GAP_PCT = 1.0
# The official MCL cluster.py (MajorDavidZhang/MCL, cluster.py argparse defaults).
OFFICIAL_SKLEARN = {"batch_size": 1_000_000, "max_iter": 100, "tol": 1e-5}
COLUMNS = ["K", "faiss_s", "sklearn_s", "speedup", "faiss_inertia", "sklearn_inertia", "inertia_gap_pct",
           "faiss_empty", "sklearn_steps", "meets_target"]


def sphere_mixture(n: int, d: int, centres: int, *, spread: float = 1.0, seed: int = 0) -> np.ndarray:
    """n unit vectors around `centres` random unit centres (Dirichlet weights, noise of norm ~spread)."""
    rng = np.random.default_rng(seed)
    mus = rng.standard_normal((centres, d), dtype=np.float32)
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    which = rng.choice(centres, size=n, p=rng.dirichlet(np.full(centres, 2.0)))
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= np.float32(spread / np.sqrt(d))
    x += mus[which]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def inertia(x: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> float:
    """Sum over ALL rows of the squared L2 distance to the nearest centroid, in float64."""
    c = centroids.astype(np.float64)
    c_sq = np.einsum("ij,ij->i", c, c)
    total = 0.0
    for start in range(0, len(x), chunk):
        xb = x[start : start + chunk].astype(np.float64)
        d2 = np.einsum("ij,ij->i", xb, xb)[:, None] - 2.0 * xb @ c.T + c_sq[None, :]
        total += float(np.maximum(d2.min(axis=1), 0.0).sum())
    return total


def run_faiss(x: np.ndarray, k: int, seed: int, threads: int) -> dict[str, Any]:
    with threadpool_limits(limits=threads):  # numpy BLAS in the k-means++ seeding
        start = time.perf_counter()
        result = kmeans(x, k, seed=seed, niter=20, num_threads=threads)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "centroids": result.centroids, "labels": result.labels}


def run_sklearn(x: np.ndarray, k: int, seed: int, threads: int) -> dict[str, Any]:
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, **OFFICIAL_SKLEARN)
        model.fit(x)
        labels = model.predict(x)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "centroids": model.cluster_centers_.astype(np.float32),
        "labels": labels,
        "steps": int(model.n_steps_),
    }


def warm_up(x: np.ndarray, threads: int) -> None:
    """One small untimed run of each library, so thread pools and BLAS start-up are not timed."""
    sample = x[: min(len(x), 2000)]
    run_faiss(sample, 8, 0, threads)
    run_sklearn(sample, 8, 0, threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="number of embeddings")
    parser.add_argument("--d", type=int, default=512, help="embedding dimension")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000], help="cluster counts K")
    parser.add_argument("--true-centres", type=int, default=100, help="centres of the synthetic mixture")
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the unit centres")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for both")
    parser.add_argument("--seed", type=int, default=0, help="data seed and first k-means seed")
    parser.add_argument("--repeats", type=int, default=1, help="k-means seeds per K (means are reported)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.ks, args.true_centres, args.repeats = 5000, 64, [10, 50], 20, 3

    x = sphere_mixture(args.n, args.d, args.true_centres, spread=args.spread, seed=args.seed)
    load_before = os.getloadavg()
    warm_up(x, args.threads)
    rows: list[dict[str, Any]] = []
    per_seed: list[dict[str, Any]] = []
    for k in args.ks:
        runs = []
        for seed in range(args.seed, args.seed + args.repeats):
            fa = run_faiss(x, k, seed, args.threads)
            sk = run_sklearn(x, k, seed, args.threads)
            with threadpool_limits(limits=args.threads):
                fa["inertia"], sk["inertia"] = inertia(x, fa["centroids"]), inertia(x, sk["centroids"])
            runs.append((fa, sk))
        faiss_s = float(np.mean([fa["seconds"] for fa, _ in runs]))
        sklearn_s = float(np.mean([sk["seconds"] for _, sk in runs]))
        fa_inertia = float(np.mean([fa["inertia"] for fa, _ in runs]))
        sk_inertia = float(np.mean([sk["inertia"] for _, sk in runs]))
        speedup = sklearn_s / faiss_s
        gap_pct = 100.0 * (fa_inertia / sk_inertia - 1.0)
        rows.append(
            {
                "K": k,
                "faiss_s": faiss_s,
                "sklearn_s": sklearn_s,
                "speedup": speedup,
                "faiss_inertia": fa_inertia,
                "sklearn_inertia": sk_inertia,
                "inertia_gap_pct": gap_pct,
                "faiss_empty": max(k - np.unique(fa["labels"]).size for fa, _ in runs),
                "sklearn_empty": max(k - np.unique(sk["labels"]).size for _, sk in runs),
                "sklearn_steps": max(sk["steps"] for _, sk in runs),
                "meets_speed": bool(speedup >= TARGET_SPEEDUP),
                "meets_inertia": bool(gap_pct <= TARGET_INERTIA_GAP_PCT),
                "meets_target": bool(speedup >= TARGET_SPEEDUP and gap_pct <= TARGET_INERTIA_GAP_PCT),
            }
        )
        per_seed.append(
            {
                "K": k,
                "faiss_s": [fa["seconds"] for fa, _ in runs],
                "sklearn_s": [sk["seconds"] for _, sk in runs],
                "faiss_inertia": [fa["inertia"] for fa, _ in runs],
                "sklearn_inertia": [sk["inertia"] for _, sk in runs],
            }
        )
        print(format_table(rows[-1:], COLUMNS), flush=True)

    print()
    print(format_table(rows, COLUMNS))
    payload = {
        "quick": args.quick,
        "data": {
            "kind": "Gaussian mixture on the unit sphere, L2-normalised, Dirichlet(2) centre weights",
            "n": args.n,
            "d": args.d,
            "true_centres": args.true_centres,
            "spread": args.spread,
            "seed": args.seed,
        },
        "timing_note": (
            "wall time on a possibly shared machine (see load_average); one untimed warm-up run of each "
            "library first; runs alternate faiss/sklearn per K and seed so background load hits both"
        ),
        "load_average_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())},
        "threads": {
            "both": args.threads,
            "how": "faiss.omp_set_num_threads for faiss; threadpoolctl.threadpool_limits for sklearn",
        },
        "faiss": {
            "call": "mcl_ray.mcl.clustering.kmeans",
            "niter": 20,
            "init": "greedy k-means++ (numpy float32)",
            "train_points": "all",
            "timed": "seeding + train + assign all points",
        },
        "sklearn": {
            "call": "MiniBatchKMeans",
            **OFFICIAL_SKLEARN,
            "n_init": "auto (=1 for k-means++)",
            "timed": "fit + predict all points",
            "note": "the official code ran sklearn 1.3.2, whose default n_init was 3; n_init=1 here makes "
            "sklearn faster, so the speed-up is conservative",
        },
        "inertia": "float64 sum over all points of the squared L2 distance to the nearest centroid "
        "(one function for both)",
        "target": {"speedup_min": TARGET_SPEEDUP, "inertia_gap_pct_max": TARGET_INERTIA_GAP_PCT},
        "repeats": args.repeats,
        "rows": rows,
        "per_seed": per_seed,
        "all_meet_target": all(r["meets_target"] for r in rows),
    }
    path = write_result("clustering_quick" if args.quick else "clustering", payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
