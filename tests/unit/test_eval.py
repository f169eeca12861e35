"""kNN vs a brute-force loop reference, linear probe vs scikit-learn's optimum, per-attribute evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mcl_ray.errors import ConfigError, DataError
from mcl_ray.eval import evaluate_features, knn_accuracy, knn_predict, linear_probe_accuracy, train_linear_probe


def knn_reference(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int, t: float, classes: int) -> list[int]:
    """InstDisc voting written out with plain loops in float64: the definition, not an optimisation of it."""
    def unit(v: np.ndarray) -> np.ndarray:
        return v / math.sqrt(sum(float(a) * float(a) for a in v))

    train_n = [unit(row) for row in train.astype(np.float64)]
    predictions = []
    for query in test.astype(np.float64):
        q = unit(query)
        sims = [sum(float(a) * float(b) for a, b in zip(q, row)) for row in train_n]
        nearest = sorted(range(len(sims)), key=lambda i: -sims[i])[: min(k, len(sims))]
        votes = [0.0] * classes
        for i in nearest:
            votes[int(labels[i])] += math.exp(sims[i] / t)
        predictions.append(max(range(classes), key=lambda c: votes[c]))  # first class on a tie, like argmax
    return predictions


def clustered(rng: np.random.Generator, n: int, dim: int, classes: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around fixed class centres (seeded by the centres' rng draw order)."""
    centres = np.random.default_rng(123).normal(size=(classes, dim)) * 3
    labels = rng.integers(classes, size=n)
    return (centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("k", [1, 5, 17, 60])
@pytest.mark.parametrize("t", [0.005, 0.07, 1.0])
def test_knn_matches_bruteforce_reference(k: int, t: float) -> None:
    rng = np.random.default_rng(k * 100 + int(t * 1000))
    train, test = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(25, 8)).astype(np.float32)
    labels = rng.integers(4, size=60)
    predicted = knn_predict(train, labels, test, k=k, temperature=t)
    assert predicted.dtype == torch.int64
    # t=0.005 would overflow float32 with a plain exp(sim / t): the shifted weights must still agree.
    assert predicted.tolist() == knn_reference(train, labels, test, k, t, 4)


def test_knn_batching_and_input_type_do_not_change_predictions() -> None:
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(97, 16)).astype(np.float32)
    labels = rng.integers(7, size=300)
    full = knn_predict(train, labels, test, k=20, batch_size=1024)
    for batch_size in (1, 10, 96):
        assert torch.equal(knn_predict(train, labels, test, k=20, batch_size=batch_size), full)
    as_tensors = (torch.from_numpy(train), torch.from_numpy(labels), torch.from_numpy(test))
    assert torch.equal(knn_predict(*as_tensors, k=20), full)
    # Normalisation happens inside: rescaling rows by positive factors cannot change any neighbour or vote.
    scaled_train = train * rng.uniform(0.1, 10, size=(300, 1)).astype(np.float32)
    scaled_test = test * rng.uniform(0.1, 10, size=(97, 1)).astype(np.float32)
    assert torch.equal(knn_predict(scaled_train, labels, scaled_test, k=20), full)


def test_knn_k_larger_than_train_uses_every_train_row() -> None:
    rng = np.random.default_rng(2)
    train, test = rng.normal(size=(12, 5)).astype(np.float32), rng.normal(size=(30, 5)).astype(np.float32)
    labels = rng.integers(3, size=12)
    predicted = knn_predict(train, labels, test, k=200, temperature=0.5)
    assert predicted.tolist() == knn_reference(train, labels, test, 12, 0.5, 3)


def test_knn_separable_clusters_score_one_and_num_classes_is_checked() -> None:
    rng = np.random.default_rng(3)
    train, train_y = clustered(rng, 200, 10, 5, spread=0.1)
    test, test_y = clustered(rng, 100, 10, 5, spread=0.1)
    assert knn_accuracy(train, train_y, test, test_y, k=10) == 1.0
    assert knn_accuracy(train, train_y, test, (test_y + 1) % 5, k=10) == 0.0
    assert knn_predict(train, train_y, test, k=10, num_classes=9).max() < 5
    with pytest.raises(DataError, match="num_classes"):
        knn_predict(train, train_y, test, num_classes=3)


def test_knn_rejects_bad_input_naming_the_argument() -> None:
    feats, labels = np.ones((4, 3), np.float32), np.zeros(4, np.int64)
    with pytest.raises(DataError, match="train_labels has 3 labels but train_feats has 4 rows"):
        knn_predict(feats, labels[:3], feats)
    with pytest.raises(DataError, match="test_labels has 2 labels but test_feats has 4 rows"):
        knn_accuracy(feats, labels, feats, labels[:2])
    with pytest.raises(DataError, match="test_feats has 2 dims but train_feats has 3"):
        knn_predict(feats, labels, feats[:, :2])
    with pytest.raises(DataError, match="test_feats contains NaN"):
        knn_predict(feats, labels, np.full((2, 3), np.nan, np.float32))
    with pytest.raises(DataError, match="train_feats must be a non-empty 2-D"):
        knn_predict(feats[0], labels, feats)
    with pytest.raises(DataError, match="train_labels must hold integer"):
        knn_predict(feats, labels.astype(np.float32), feats)
    with pytest.raises(DataError, match="train_labels must be non-negative"):
        knn_predict(feats, labels - 1, feats)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        knn_predict(feats, labels, feats, k=0)
    with pytest.raises(ConfigError, match="temperature"):
        knn_predict(feats, labels, feats, temperature=0.0)


def test_linear_probe_reaches_the_regularised_logistic_regression_optimum() -> None:
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(600, 20)) * rng.uniform(0.01, 50, size=20)).astype(np.float32)  # badly scaled dims
    y = rng.integers(4, size=600)
    weight_decay = 1e-2
    probe = train_linear_probe(x, y, epochs=100, weight_decay=weight_decay)
    # Same objective in scikit-learn: C * sum(CE) + ||W||^2 / 2, unpenalised intercept, on standardised x.
    xs = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=1 / (weight_decay * len(x)), tol=1e-10, max_iter=2000).fit(xs, y)
    ours = torch.softmax(probe.logits(x), dim=1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(xs), atol=1e-3)


def test_linear_probe_separable_data_scores_one_random_labels_score_chance() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    y = (x @ rng.normal(size=(32, 6))).argmax(1)  # linearly separable, many points near a boundary
    probe = train_linear_probe(x, y, epochs=60)
    assert float((probe.predict(x).numpy() == y).mean()) >= 0.99

    train, train_y = clustered(rng, 500, 32, 10, spread=0.5)
    test, test_y = clustered(rng, 500, 32, 10, spread=0.5)
    assert linear_probe_accuracy(train, train_y, test, test_y) == 1.0
    chance = linear_probe_accuracy(train, rng.integers(10, size=500), test, rng.integers(10, size=500))
    assert 0.03 <= chance <= 0.18  # 1/10 +- ~4 sigma for 500 test rows


def test_linear_probe_is_deterministic_and_validates() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(300, 24)).astype(np.float32), rng.integers(5, size=300)
    a, b = train_linear_probe(x, y, epochs=30, seed=3), train_linear_probe(x, y, epochs=30, seed=3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert a.weight.shape == (5, 24)
    x[:, 0] = 7.0  # a constant dimension must not divide by zero
    assert torch.isfinite(train_linear_probe(x, y, epochs=5).weight).all()
    with pytest.raises(ConfigError, match="epochs"):
        train_linear_probe(x, y, epochs=0)
    with pytest.raises(DataError, match="test_feats has 3 dims but train_feats has 24"):
        linear_probe_accuracy(x, y, x[:, :3], y)


def test_evaluate_features_scores_shared_attributes_only() -> None:
    rng = np.random.default_rng(7)
    train, shape = clustered(rng, 200, 12, 3, spread=0.2)
    test, test_shape = clustered(rng, 80, 12, 3, spread=0.2)
    colour, test_colour = rng.integers(4, size=200), rng.integers(4, size=80)
    result = evaluate_features(
        train, {"shape": shape, "colour": colour, "only_train": shape},
        test, {"shape": test_shape, "colour": test_colour, "only_test": test_shape},
        knn_k=15, knn_temperature=0.2, linear_kwargs={"epochs": 50}, device="cpu",
    )
    assert set(result) == {"shape", "colour"}
    assert result["shape"] == {"knn": 1.0, "linear": 1.0}
    assert result["colour"]["knn"] == knn_accuracy(train, colour, test, test_colour, k=15, temperature=0.2)
    assert result["colour"]["linear"] == linear_probe_accuracy(train, colour, test, test_colour, epochs=50)

    no_linear = evaluate_features(train, {"shape": shape}, test, {"shape": test_shape}, linear=False, device="cpu")
    assert list(no_linear["shape"]) == ["knn"]
    assert evaluate_features(train, {}, test, {}) == {}
    assert evaluate_features(train, {"shape": shape}, test, {}) == {}


def test_evaluate_features_names_the_mismatched_attribute() -> None:
    feats, labels = np.ones((10, 4), np.float32), np.zeros(10, np.int64)
    with pytest.raises(DataError, match=r"train_attrs\['texture'\] has 9 labels but train_feats has 10 rows"):
        evaluate_features(feats, {"texture": labels[:9]}, feats, {"texture": labels}, device="cpu")
    with pytest.raises(DataError, match=r"test_attrs\['texture'\] has 10 labels but test_feats has 6 rows"):
        evaluate_features(feats, {"texture": labels}, feats[:6], {"texture": labels}, device="cpu")
