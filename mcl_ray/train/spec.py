"""How a stage trains: the plain settings the trainer reads (no torch, so the config layer builds it for free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    batch_size: int  # global: all workers together
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float | None = None
    amp: bool = False
    workers: int = 1
    device: str = "auto"
    log_every: int = 50
    online_knn_every: int = 1  # epochs between online kNN checks (0 = off)
    knn_k: int = 20
    knn_temperature: float = 0.1

    def identity(self) -> dict:
        """What changes the trained weights (device and logging do not)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("device", "log_every", "online_knn_every", "knn_k", "knn_temperature")}
