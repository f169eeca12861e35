"""faiss k-means wrapper and cluster statistics, checked against plain numpy / pair-counting references."""

from __future__ import annotations

import json
from math import comb

import faiss
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.mcl.cluster_stats import cluster_stats
from mcl_ray.mcl.clustering import KMeansResult, assign, faiss_gpu_available, kmeans, kmeans_plusplus


def blobs(n: int, d: int, centres: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mus = rng.standard_normal((centres, d))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    truth = rng.integers(0, centres, n)
    x = mus[truth] + noise * rng.standard_normal((n, d))
    return x.astype(np.float32), truth


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = ((x[:, None, :].astype(np.float64) - centroids[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return d2.argmin(1), d2.min(1)


# --- kmeans -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_recovers_well_separated_clusters(seed: int) -> None:
    x, truth = blobs(600, 32, 6, noise=0.005, seed=seed)
    result = kmeans(x, 6, seed=seed)
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (6, 32) and result.centroids.dtype == np.float32
    assert result.labels.shape == (600,) and result.labels.dtype == np.int64
    assert adjusted_rand_score(truth, result.labels) > 0.999


def test_kmeans_is_deterministic_for_a_seed() -> None:
    x, _ = blobs(800, 16, 12, noise=0.5, seed=1)
    a, b = kmeans(x, 7, seed=3), kmeans(x, 7, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia


def test_kmeans_inertia_and_labels_match_numpy_on_the_normalised_data() -> None:
    x, _ = blobs(500, 8, 5, noise=0.4, seed=2)
    x *= np.random.default_rng(0).uniform(0.1, 10.0, size=(500, 1)).astype(np.float32)  # not unit norm
    result = kmeans(x, 5, seed=0)
    labels, d2 = brute_force(unit(x), result.centroids)
    np.testing.assert_array_equal(result.labels, labels)
    assert result.inertia == pytest.approx(d2.sum(), rel=1e-4)


def test_kmeans_without_normalisation_clusters_the_raw_vectors() -> None:
    x, _ = blobs(300, 4, 3, noise=0.3, seed=3)
    x *= 5.0
    result = kmeans(x, 3, seed=0, normalize=False)
    labels, d2 = brute_force(x, result.centroids)
    np.testing.assert_array_equal(result.labels, labels)
    assert result.inertia == pytest.approx(d2.sum(), rel=1e-4)
    assert np.linalg.norm(result.centroids, axis=1).mean() > 2.0  # centroids live in the raw scale


def test_kmeans_ignores_row_scale_when_normalising() -> None:
    x, _ = blobs(400, 8, 4, noise=0.2, seed=4)
    scaled = x * np.random.default_rng(1).uniform(0.5, 20.0, size=(400, 1)).astype(np.float32)
    assert adjusted_rand_score(kmeans(x, 4, seed=0).labels, kmeans(scaled, 4, seed=0).labels) > 0.99


def test_max_train_points_bounds_the_sample_and_still_labels_every_point(monkeypatch) -> None:
    seen: list[int] = []
    original = faiss.Kmeans.train

    def recording_train(self, x, *args, **kwargs):
        seen.append(len(x))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(faiss.Kmeans, "train", recording_train)
    x, _ = blobs(3000, 8, 5, noise=0.3, seed=5)
    result = kmeans(x, 5, seed=0, max_train_points=200, assign_batch_size=512)
    assert seen == [200]
    assert result.labels.shape == (3000,)
    labels, d2 = brute_force(unit(x), result.centroids)
    np.testing.assert_array_equal(result.labels, labels)
    assert result.inertia == pytest.approx(d2.sum(), rel=1e-4)


def test_kmeans_trains_on_all_points_by_default(monkeypatch) -> None:
    seen: list[int] = []
    original = faiss.Kmeans.train
    monkeypatch.setattr(
        faiss.Kmeans, "train", lambda self, x, *a, **kw: (seen.append(len(x)), original(self, x, *a, **kw))[1]
    )
    x, _ = blobs(5000, 4, 3, noise=0.3, seed=6)
    kmeans(x, 3, seed=0, niter=2)
    assert seen == [5000]  # faiss's default would subsample to 256 points per centroid


def test_kmeans_plusplus_seeds_on_a_bounded_sample(monkeypatch) -> None:
    from mcl_ray.mcl import clustering

    seen: list[int] = []
    original = clustering.kmeans_plusplus
    monkeypatch.setattr(
        clustering, "kmeans_plusplus", lambda x, k, **kw: (seen.append(len(x)), original(x, k, **kw))[1]
    )
    x, _ = blobs(clustering.SEED_MIN_POINTS + 3000, 4, 3, noise=0.3, seed=12)
    kmeans(x, 3, seed=0, niter=2, nredo=2)
    assert seen == [clustering.SEED_MIN_POINTS] * 2  # one seeding per redo


def test_nredo_and_random_init_are_accepted() -> None:
    x, _ = blobs(400, 8, 4, noise=0.3, seed=7)
    one = kmeans(x, 4, seed=0, init="random")
    best_of_three = kmeans(x, 4, seed=0, init="random", nredo=3)
    assert best_of_three.inertia <= one.inertia * (1 + 1e-4)


def test_labels_stay_in_range_when_clusters_end_up_empty() -> None:
    x = np.repeat(np.eye(3, 8, dtype=np.float32), 4, axis=0)  # 12 points, only 3 distinct
    result = kmeans(x, 6, seed=0)
    assert result.labels.min() >= 0 and result.labels.max() < 6
    assert result.inertia == pytest.approx(0.0, abs=1e-4)
    stats = cluster_stats(result.labels, k=6)
    assert stats["empty_clusters"] == 6 - np.unique(result.labels).size >= 3


def test_num_threads_is_restored_after_the_call() -> None:
    before = faiss.omp_get_max_threads()
    x, _ = blobs(200, 4, 3, noise=0.3, seed=8)
    kmeans(x, 3, num_threads=1)
    assert faiss.omp_get_max_threads() == before


# --- k-means++ seeding ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_plusplus_puts_one_seed_in_every_separated_cluster(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 200, size=8)  # very uneven clusters
    mus = rng.standard_normal((8, 16)).astype(np.float32)
    truth = np.repeat(np.arange(8), sizes)
    x = mus[truth] + 0.02 * rng.standard_normal((len(truth), 16)).astype(np.float32)
    seeds = kmeans_plusplus(x, 8, seed=seed)
    rows = [int(np.flatnonzero((x == s).all(axis=1))[0]) for s in seeds]  # every seed is a data row
    assert sorted(truth[rows]) == list(range(8))


def test_kmeans_plusplus_is_seeded_and_greedy_beats_single_trial() -> None:
    x, _ = blobs(3000, 32, 40, noise=0.4, seed=11)
    np.testing.assert_array_equal(kmeans_plusplus(x, 40, seed=1), kmeans_plusplus(x, 40, seed=1))
    potential = lambda c: brute_force(x, c)[1].sum()  # noqa: E731
    greedy = np.mean([potential(kmeans_plusplus(x, 40, seed=s)) for s in range(4)])
    single = np.mean([potential(kmeans_plusplus(x, 40, seed=s, n_local_trials=1)) for s in range(4)])
    assert greedy < single


def test_kmeans_plusplus_copes_with_duplicate_rows() -> None:
    x = np.repeat(np.eye(2, 4, dtype=np.float32), 5, axis=0)  # 10 rows, 2 distinct
    seeds = kmeans_plusplus(x, 4, seed=0)
    assert seeds.shape == (4, 4) and np.unique(seeds, axis=0).shape[0] == 2


# --- assign -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_chunked_assign_equals_brute_force_argmin(normalize: bool) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1003, 12)).astype(np.float32) * 3.0
    centroids = rng.standard_normal((17, 12)).astype(np.float32)
    labels, d2 = assign(x, centroids, batch_size=128, normalize=normalize)
    ref_labels, ref_d2 = brute_force(unit(x) if normalize else x, centroids)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(d2, ref_d2, rtol=1e-4, atol=1e-4)
    assert labels.dtype == np.int64 and (d2 >= 0).all()


def test_assign_rejects_a_dimension_mismatch() -> None:
    with pytest.raises(DataError, match="dimension"):
        assign(np.ones((4, 3), np.float32), np.ones((2, 5), np.float32))


# --- validation -------------------------------------------------------------------------------------


def test_k_below_two_is_a_config_error_naming_clusters() -> None:
    with pytest.raises(ConfigError, match="clusters"):
        kmeans(np.ones((10, 3), np.float32), 1)


def test_k_above_n_is_rejected_with_both_numbers() -> None:
    with pytest.raises(ConfigError, match=r"k=11.*N=10"):
        kmeans(np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32), 11)


def test_non_finite_rows_are_counted_in_the_error() -> None:
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    x[7, 2] = np.nan  # same row: still one bad row
    x[20, 3] = -np.inf
    with pytest.raises(DataError, match=r"embeddings: 3 of 50 rows contain NaN or inf"):
        kmeans(x, 2)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.ones(10, np.float32), "2-D"),
        (np.ones((10, 3), np.int64), "floating point"),
        (np.ones((0, 3), np.float32), "empty"),
    ],
)
def test_bad_embedding_arrays_are_rejected(x: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        kmeans(x, 2)


def test_bad_options_name_the_option() -> None:
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(ConfigError, match="max_train_points"):
        kmeans(x, 4, max_train_points=3)
    with pytest.raises(ConfigError, match="init"):
        kmeans(x, 4, init="forgy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="niter"):
        kmeans(x, 4, niter=0)


@pytest.mark.skipif(faiss_gpu_available(), reason="a GPU is present")
def test_requesting_a_gpu_without_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="use_gpu"):
        kmeans(np.ones((10, 3), np.float32), 2, use_gpu=True)


# --- cluster_stats ----------------------------------------------------------------------------------


def reference_nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information over the arithmetic mean of the entropies (sklearn's default)."""
    n = len(a)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    p = joint / n
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    h = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()  # noqa: E731
    return float(mi / ((h(pa) + h(pb)) / 2))


def reference_ari(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert-Arabie adjusted Rand index by pair counting."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    both = sum(a[i] == a[j] and b[i] == b[j] for i, j in pairs)
    in_a = sum(a[i] == a[j] for i, j in pairs)
    in_b = sum(b[i] == b[j] for i, j in pairs)
    expected = in_a * in_b / comb(len(a), 2)
    return float((both - expected) / ((in_a + in_b) / 2 - expected))


def test_cluster_stats_sizes_and_counts() -> None:
    labels = np.array([0, 0, 0, 2, 2, 4, 5, 5, 5, 5])
    stats = cluster_stats(labels, k=7)
    assert stats["num_samples"] == 10
    assert stats["num_groups"] == 4
    assert stats["sizes"]["histogram"] == [3, 0, 2, 0, 1, 4, 0]
    assert stats["sizes"]["min"] == 1 and stats["sizes"]["max"] == 4
    assert stats["sizes"]["median"] == 2.5 and stats["sizes"]["mean"] == 2.5
    assert stats["empty_clusters"] == 3
    assert stats["singletons"] == 1
    assert stats["imbalance_factor"] == pytest.approx(4 * (9 + 4 + 1 + 16) / 100)
    assert "empty_clusters" not in cluster_stats(labels)
    assert cluster_stats(labels)["sizes"]["histogram"] == [3, 0, 2, 0, 1, 4]


def test_cluster_stats_nmi_ari_match_reference_formulas() -> None:
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 4, 60)
    colour = np.where(rng.random(60) < 0.7, labels, rng.integers(0, 3, 60))
    stats = cluster_stats(labels, attributes={"colour": colour, "relabelled": (labels + 1) % 4})
    assert stats["attributes"]["colour"]["nmi"] == pytest.approx(reference_nmi(colour, labels), abs=1e-9)
    assert stats["attributes"]["colour"]["ari"] == pytest.approx(reference_ari(colour, labels), abs=1e-9)
    assert stats["attributes"]["relabelled"] == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


def test_cluster_stats_is_json_serialisable_with_plain_types() -> None:
    labels = np.array([1, 1, 0, 2], dtype=np.int32)
    stats = cluster_stats(labels, k=3, attributes={"shape": np.array([0, 0, 1, 1])})
    assert json.loads(json.dumps(stats)) == stats


def test_cluster_stats_validation_names_the_problem() -> None:
    with pytest.raises(DataError, match="attribute 'shape'"):
        cluster_stats(np.array([0, 1, 1]), attributes={"shape": np.array([0, 1])})
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        cluster_stats(np.array([0, 1, 2]), k=2)
    with pytest.raises(DataError, match="non-empty"):
        cluster_stats(np.array([], dtype=np.int64))
