"""Evaluation of frozen features: weighted kNN, linear probe, and both per known attribute."""

from mcl_ray.eval.attributes import evaluate_features
from mcl_ray.eval.knn import knn_accuracy, knn_predict
from mcl_ray.eval.linear_probe import LinearProbe, linear_probe_accuracy, train_linear_probe

__all__ = [
    "LinearProbe",
    "evaluate_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "train_linear_probe",
]
