"""k-means between MCL stages: faiss (GPU when present), seeded, on L2-normalised embeddings.

MCL clusters the whole training set after every stage, so N can be millions of rows. faiss is far faster
than scikit-learn's MiniBatchKMeans (used by the official code); training can be bounded to a sample
(`max_train_points`, then only that sample is copied and normalised), and the final assignment of ALL
points runs in chunks, so huge N never needs one giant search or a normalised copy for labelling.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Literal

import faiss
import numpy as np

from mcl_ray.data.mapped_pages import release_mapped_pages
from mcl_ray.errors import ConfigError, DataError


SEED_POINTS_PER_CENTROID = 16
SEED_MIN_POINTS = 10_000


@dataclass
class KMeansResult:
    """Centroids [K, d] float32, labels [N] int64 in 0..K-1, and the inertia of ALL points.

    inertia is the sum of squared L2 distances from every point to its assigned centroid, measured in the
    space that was clustered (the normalised one when normalize=True). Some clusters may be empty after the
    final assignment; cluster_stats reports how many.
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float


def faiss_gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def kmeans(
    embeddings: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = 20,
    normalize: bool = True,
    use_gpu: bool | None = None,
    max_train_points: int | None = None,
    nredo: int = 1,
    init: Literal["kmeans++", "random"] = "kmeans++",
    assign_batch_size: int = 65536,
    num_threads: int | None = None,
    verbose: bool = False,
) -> KMeansResult:
    """Cluster `embeddings` [N, d] into k clusters and label every row.

    max_train_points: train on a seeded random sample of at most this many rows (None: all rows); every
    row is still assigned afterwards. The sample is drawn here, before normalising, so only the sample is
    copied; faiss's max_points_per_centroid is then set from it so faiss does not subsample again.
    init: "kmeans++" (greedy D^2 seeding on a sample of 16 * k rows, at least 10k; see kmeans_plusplus) or
    "random" (faiss's default: k random rows).
    Random seeding often merges two true clusters and never recovers, which would hide a feature from the
    next MCL stage. nredo > 1 runs seeds seed..seed+nredo-1 and keeps the lowest training objective.
    num_threads: faiss OpenMP threads for this call (restored afterwards); None keeps the current setting.
    """
    _check_k(k)
    _check_positive("niter", niter)
    _check_positive("nredo", nredo)
    _check_positive("assign_batch_size", assign_batch_size)
    if max_train_points is not None:
        _check_positive("max_train_points", max_train_points)
    _check_embeddings(embeddings, "embeddings")
    n, d = embeddings.shape
    if k > n:
        raise ConfigError(f"clusters: k={k} exceeds the number of embeddings N={n}; need N >= k")
    if max_train_points is not None and max_train_points < k:
        raise ConfigError(f"max_train_points={max_train_points} is smaller than clusters k={k}")
    if init not in ("kmeans++", "random"):
        raise ConfigError(f"init must be 'kmeans++' or 'random', got {init!r}")
    gpu = _resolve_gpu(use_gpu)

    train = embeddings
    if max_train_points is not None and max_train_points < n:
        rng = np.random.default_rng(seed)
        train = embeddings[np.sort(rng.choice(n, size=max_train_points, replace=False))]
    train = _prepare(train, normalize)

    with _omp_threads(num_threads):
        best_obj, centroids = math.inf, None
        for run_seed in range(seed, seed + nredo):
            start = _seed_centroids(train, k, run_seed) if init == "kmeans++" else None
            km = faiss.Kmeans(
                d,
                k,
                niter=niter,
                seed=run_seed,
                gpu=gpu,
                max_points_per_centroid=math.ceil(len(train) / k),  # all of `train`: no resampling
                spherical=False,
                verbose=verbose,
            )
            obj = km.train(train, init_centroids=start)
            if centroids is None or obj < best_obj:
                best_obj, centroids = obj, np.ascontiguousarray(km.centroids, dtype=np.float32)
        del train
        labels, sq_dists = _assign_chunks(embeddings, centroids, assign_batch_size, gpu, normalize)
    return KMeansResult(centroids=centroids, labels=labels, inertia=float(sq_dists.sum(dtype=np.float64)))


def _seed_centroids(train: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ on a random sample of SEED_POINTS_PER_CENTROID * k rows (at least SEED_MIN_POINTS).

    Every seeding step re-reads its whole input, so seeding all of a large training set would cost more
    than the 20 Lloyd iterations; on the bench data a 10-per-centroid sample seeded as well as all rows
    (the Lloyd iterations run on everything). scikit-learn's MiniBatchKMeans seeds on 3 * batch_size rows.
    """
    size = max(SEED_POINTS_PER_CENTROID * k, SEED_MIN_POINTS)
    if len(train) > size:
        train = train[np.random.default_rng(seed).choice(len(train), size=size, replace=False)]
    return kmeans_plusplus(train, k, seed=seed)


def kmeans_plusplus(x: np.ndarray, k: int, *, seed: int = 0, n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding: k rows of x [N, d] float32, returned as float32 initial centroids.

    The greedy variant (Arthur & Vassilvitskii 2007, the one scikit-learn uses): each step draws
    2 + ln(k) candidates with probability proportional to D^2 and keeps the one that lowers the potential
    most. faiss's own k-means++ draws one candidate, which at K close to the true number of clusters often
    puts two seeds in one cluster (on the bench/clustering.py data at K=100 it ended ~5% worse after 20
    iterations, and slower). float32 BLAS; each step re-reads all of x, so kmeans() seeds on a sample.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    n = len(x)
    if not 1 <= k <= n:
        raise ConfigError(f"clusters: k={k} must lie in [1, N={n}] for k-means++ seeding")
    trials = n_local_trials or 2 + int(np.log(k))
    sq_norms = np.einsum("ij,ij->i", x, x)

    def sq_dists_to(rows: np.ndarray) -> np.ndarray:  # [len(rows), n]
        d2 = x[rows] @ x.T
        d2 *= -2.0
        d2 += sq_norms[None, :]
        d2 += sq_norms[rows][:, None]
        return np.maximum(d2, 0.0, out=d2)

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    closest = sq_dists_to(chosen[:1])[0]
    for i in range(1, k):
        cumulative = np.cumsum(closest, dtype=np.float64)
        if cumulative[-1] > 0:
            candidates = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
            candidates = np.minimum(candidates, n - 1)
        else:  # every row coincides with a chosen seed: duplicates are unavoidable
            candidates = rng.integers(n, size=trials)
        potentials = np.minimum(sq_dists_to(candidates), closest[None, :])
        best = int(potentials.sum(axis=1, dtype=np.float64).argmin())
        chosen[i], closest = candidates[best], potentials[best]
    return x[chosen].copy()


def assign(
    embeddings: np.ndarray,
    centroids: np.ndarray,
    *,
    batch_size: int = 65536,
    use_gpu: bool | None = None,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row, searched `batch_size` rows at a time.

    Returns (labels int64 [N], squared L2 distances float32 [N]); rows are normalised chunk by chunk when
    normalize=True (centroids are used as given). Distances are clipped at 0 (faiss computes them as
    |x|^2 + |c|^2 - 2 x.c, which can round slightly below zero).
    """
    _check_positive("batch_size", batch_size)
    _check_embeddings(embeddings, "embeddings")
    _check_embeddings(centroids, "centroids")
    if centroids.shape[1] != embeddings.shape[1]:
        raise DataError(
            f"centroids have dimension {centroids.shape[1]} but embeddings have {embeddings.shape[1]}"
        )
    return _assign_chunks(embeddings, centroids, batch_size, _resolve_gpu(use_gpu), normalize)


def _assign_chunks(
    embeddings: np.ndarray, centroids: np.ndarray, batch_size: int, gpu: bool, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """assign() without the input checks (kmeans has already made them)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))

    n = len(embeddings)
    labels = np.empty(n, dtype=np.int64)
    sq_dists = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        dist, idx = index.search(_prepare(embeddings[start:stop], normalize), 1)
        labels[start:stop] = idx[:, 0]
        sq_dists[start:stop] = np.maximum(dist[:, 0], 0.0)
        release_mapped_pages(embeddings)  # a spilled shard (memory-mapped): keep what was read out of RSS
    return labels, sq_dists


def _prepare(x: np.ndarray, normalize: bool) -> np.ndarray:
    """float32, C-contiguous, and (optionally) unit-norm rows; zero rows stay zero instead of NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, np.float32(1e-12))
    return x


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"clusters: k must be an integer, got {k!r}")
    if k < 2:
        raise ConfigError(f"clusters: k must be >= 2 (one cluster gives no negatives to sample), got {k}")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_embeddings(x: np.ndarray, name: str, chunk: int = 65536) -> None:
    """2-D, non-empty, floating point and finite; counts bad rows chunk by chunk to bound memory."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise DataError(f"{name} must be 2-D (N, d), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name} is empty: shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name} must be floating point, got dtype {x.dtype}")
    bad = sum(
        int((~np.isfinite(x[i : i + chunk]).all(axis=1)).sum()) for i in range(0, len(x), chunk)
    )
    if bad:
        raise DataError(f"{name}: {bad} of {len(x)} rows contain NaN or inf values")


def _resolve_gpu(use_gpu: bool | None) -> bool:
    available = faiss_gpu_available()
    if use_gpu is None:
        return available
    if use_gpu and not available:
        raise ConfigError("use_gpu=True but faiss has no GPU support here (install faiss-gpu, check CUDA)")
    return bool(use_gpu)


@contextlib.contextmanager
def _omp_threads(num_threads: int | None) -> Iterator[None]:
    """Set faiss's OpenMP thread count for the duration of a call and restore it afterwards."""
    if num_threads is None:
        yield
        return
    _check_positive("num_threads", num_threads)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(num_threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
