"""Evaluation of frozen features: weighted kNN, linear probe, and both per known attribute (loaded on use)."""

from mcl_ray._lazy import lazy_exports

_EXPORTS = {
    "LinearProbe": "mcl_ray.eval.linear_probe",
    "linear_probe_accuracy": "mcl_ray.eval.linear_probe",
    "train_linear_probe": "mcl_ray.eval.linear_probe",
    "evaluate_features": "mcl_ray.eval.attributes",
    "knn_accuracy": "mcl_ray.eval.knn",
    "knn_predict": "mcl_ray.eval.knn",
    "EvalSpec": "mcl_ray.eval.spec",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
