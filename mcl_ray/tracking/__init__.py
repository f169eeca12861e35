"""Experiment tracking (TensorBoard) shared by single runs and sweep trials."""
