"""Typed experiment configuration: the edge of the house, importing nothing of the layers below.

Every field is validated before any data is loaded or any model is built, and errors name the dotted field
(`objective.temperature`), so a typo in a sweep fails in a second instead of after an hour of training.
Names of plug-ins (data set, backbone, head, optimizer, objective, regularisers) and a method's own options
are checked against their registries by `mcl_ray.plan.from_config`, which turns this config into specs.
"""

from __future__ import annotations

import re
import typing
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator



RESERVED_NAMES = ("stages", "clusters", "claims", "checkpoints", "ray_train")  # shared folders under the storage root
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,=+@-]*")


def safe_name(value: str, *, nested: bool = True) -> str:
    """A name that becomes a folder under the storage root: path components of letters, digits and `_.,=+@-`
    (nested: separated by '/'), never empty, absolute, '.' or '..', so no name can write outside its root."""
    parts = value.split("/") if nested else [value]
    if not value or not all(_NAME_PART.fullmatch(p) for p in parts):
        allowed = "letters, digits and _ . , = + @ -" + (", parts separated by /" if nested else "")
        raise ValueError(f"{value!r} is not a safe folder name ({allowed}; not empty, no '..', not absolute)")
    if parts[0] in RESERVED_NAMES:
        raise ValueError(f"{value!r} starts with {parts[0]!r}, a folder the storage keeps for itself "
                         f"({', '.join(RESERVED_NAMES)}); choose another name")
    return value


def _scalar_types(annotation) -> set:
    """The plain types a field accepts directly (through Union / Optional, not inside lists)."""
    if typing.get_origin(annotation) is Union:
        return set().union(*(_scalar_types(a) for a in typing.get_args(annotation)))
    return {annotation} if isinstance(annotation, type) else set()


class Numbers(BaseModel):
    """Numbers are not booleans (pydantic would read `epochs: true` as 1) and integer fields take no floats
    (`train_size: 1000000000.0` is refused rather than truncated)."""

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data):
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or not isinstance(value, (bool, float)):
                continue
            types = _scalar_types(field.annotation)
            if isinstance(value, bool) and bool not in types and types & {int, float}:
                raise ValueError(f"{name}: expected a number, got {str(value).lower()}")
            if isinstance(value, float) and int in types and float not in types:
                raise ValueError(f"{name}: expected an integer, got {value!r}")
        return data


class Strict(Numbers):
    """Unknown keys are errors; assignments are re-validated; numbers are numbers (see Numbers)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    name: str = "trifeature"
    root: str = "~/.cache/mcl-ray/data"
    image_size: int = Field(32, ge=8, le=1024)
    train_size: Union[int, None] = Field(5000, ge=2, description="trifeature: images generated; others: subsample")
    test_size: Union[int, None] = Field(2000, ge=1)
    pretrain_split: str = Field("train", description="split used for contrastive training (stl10: 'unlabeled')")
    seed: int = Field(0, description="data generation / subsampling seed (independent of the training seed)")
    download: bool = True
    cache_dir: Union[str, None] = None
    labels: Union[str, None] = Field(
        None, description="labeled: the table (CSV or Parquet) listing path, optional split, and one column per attribute"
    )
    shards: Union[str, None] = Field(
        None, description="webdataset: the tar shards, brace-expanded (/data/cc/{00000..00099}.tar, or a URL webdataset opens)"
    )
    decode: Literal["cache", "on_the_fly"] = Field(
        "cache", description="imagefolder / labeled: decode every file once into the memory-mapped cache (cache), or "
        "decode each batch's files when it is read, in DataLoader worker processes (on_the_fly: sets too large to cache)")
    decode_workers: int = Field(2, ge=0, description="DataLoader processes that decode batches ahead (decode: on_the_fly)")
    bits: Union[int, None] = Field(
        None, ge=1, le=16, description="randbit: random bits drawn into every image's bottom rows (default 8)"
    )


class AugmentConfig(Strict):
    crop_scale: tuple[float, float] = (0.2, 1.0)
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    jitter: float = Field(0.5, ge=0.0, description="SimCLR colour-jitter strength s; 0 turns it off")
    jitter_prob: float = Field(0.8, ge=0.0, le=1.0)
    grayscale: float = Field(0.2, ge=0.0, le=1.0)
    blur: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"needs 0 < low <= high <= 1, got {list(v)}")
        return v


class ModelConfig(Strict):
    backbone: str = "resnet18"
    pretrained: Union[bool, str] = Field(False, description="timm: true for timm's weights; open_clip: a pretrained tag (openai, ...)")
    cifar_stem: Union[bool, Literal["auto"]] = "auto"
    patch_size: Union[int, None] = Field(None, ge=1)
    head: str = Field("simclr", description="projection head: simclr, mocov2, linear, none (mcl_ray/models/heads/)")
    proj_hidden_dim: int = Field(512, ge=1)
    proj_dim: int = Field(128, ge=1)
    lock_text: bool = Field(False, description="open_clip: freeze the text tower (as the official MCL code does)")
    lock_image: Union[int, None] = Field(None, ge=0, description="open_clip: freeze the image tower except its last N layer groups (null: train it all)")
    norm: Literal["batch", "group"] = Field(
        "batch", description="group: every BatchNorm (backbone and head) becomes a GroupNorm, normalisation that does not see the batch")


class RegularizerConfig(BaseModel):
    """One regulariser: its name and its own options (weight, ...), checked by the regulariser's declaration."""

    model_config = ConfigDict(extra="allow")
    name: str


class ObjectiveConfig(Numbers):
    """The shared objective fields; a method's own options (MoCo's momentum, ...) sit beside them and are
    checked against the method's declaration (mcl_ray/objectives/methods/<name>.py)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = "simclr"
    temperature: float = Field(0.2, gt=0.0, le=100.0)
    gather: bool = Field(True, description="gather embeddings across workers so negatives span the global batch")
    regularizers: list[RegularizerConfig] = Field(
        default_factory=list, description="terms mixed into the loss: [{name: <a file in objectives/regularizers/>, weight: ..., its options}]"
    )

    def method_options(self) -> dict:
        """The options beyond the shared fields, as given."""
        return dict(self.model_extra or {})


class MCLConfig(Strict):
    stages: int = Field(3, ge=1, le=32)
    clusters: Union[int, list[int]] = Field(10, description="K, shared or one per clustering step (stages - 1)")
    temperatures: Union[list[float], None] = Field(None, description="per-stage temperature; default shared")
    init: Literal["fresh", "pretrained", "previous"] = Field(
        "fresh", description="each stage starts fresh, from pretrained weights (timm or init_checkpoint), or from the previous stage"
    )
    init_checkpoint: Union[str, None] = Field(None, description="encoder state dict every stage starts from (init: pretrained)")
    sampling: Literal["group_batches", "random_batches"] = Field(
        "random_batches",
        description="how later stages batch: random_batches (ordinary shuffled batches; the loss masks negatives to "
        "the anchor's group, so fewer negatives but batches that mix groups; the default, chosen from "
        "bench/results/randbit.json) or group_batches (each global batch from one group, as in the official code; "
        "leftovers packed into mixed batches)",
    )
    min_group_size: int = Field(
        0, ge=0, description="tiny-group policy: a group (intersection of the stages' clusters) with fewer samples "
        "joins the sibling group (same earlier groups) whose cluster centroid is nearest; 0 = off")
    cluster_on: Literal["backbone", "projector", "text", "joint"] = Field(
        "projector", description="embedding clustered between stages; image-text models also text, or joint (image and text k-means, K x K groups)")
    integrate: Literal["backbone", "projector"] = "backbone"
    kmeans_iters: int = Field(20, ge=1)
    kmeans_max_points: Union[int, None] = Field(1_000_000, ge=2)
    kmeans_gpu: Union[bool, Literal["auto"]] = "auto"

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, v: int | list[int]) -> int | list[int]:
        values = v if isinstance(v, list) else [v]
        bad = [k for k in values if k < 2]
        if bad:
            raise ValueError(f"every cluster count must be >= 2, got {v}")
        return v

    @field_validator("temperatures")
    @classmethod
    def _temps(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(t <= 0 for t in v):
            raise ValueError(f"temperatures must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> "MCLConfig":
        if isinstance(self.clusters, list) and len(self.clusters) != max(self.stages - 1, 0):
            raise ValueError(
                f"clusters: a list needs one K per clustering step (stages - 1 = {self.stages - 1}), "
                f"got {len(self.clusters)}"
            )
        if self.temperatures is not None and len(self.temperatures) != self.stages:
            raise ValueError(f"temperatures: needs one value per stage ({self.stages}), got {len(self.temperatures)}")
        return self

    def clusters_after(self, stage: int) -> int:
        """K used to cluster the embeddings of `stage` (0-based)."""
        return self.clusters[stage] if isinstance(self.clusters, list) else self.clusters


class TrainConfig(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=2, description="global batch size (all workers together)")
    optimizer: str = Field("adamw", description="any timm optimizer name: adamw, sgd, lars, lamb, ...")
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    grad_clip: Union[float, None] = Field(None, gt=0.0)
    amp: bool = Field(False, description="bf16 autocast on CUDA")
    workers: int = Field(1, ge=1, description="Ray Train workers per stage")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = Field(50, ge=1, description="steps between progress lines")

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        return v.lower()  # the name itself is checked against timm by mcl_ray.plan.from_config


class EvalConfig(Strict):
    knn_k: int = Field(20, ge=1)
    knn_temperature: float = Field(0.1, gt=0.0)
    linear: bool = True
    linear_epochs: int = Field(100, ge=1)
    online_knn_every: int = Field(1, ge=0, description="epochs between online kNN checks (0 = off)")
    online_knn_samples: int = Field(2000, ge=10, description="train/test subsample for the online kNN")
    max_samples: Union[int, None] = Field(
        None, ge=10, description="probe and test sets larger than this are evaluated on a seeded subsample of this many "
        "images (kNN, linear probe, stored embeddings); null = every image")
    mmvp: Union[str, None] = Field(None, description="image-text models: an MMVP_VLM folder to score, or 'trifeature' for the generated one-attribute pairs")
    mmvp_pairs: int = Field(50, ge=1, description="pairs per attribute of the generated (trifeature) MMVP benchmark")
    retrieval_samples: int = Field(1000, ge=1, description="image-text models: held-out pairs for retrieval R@1 (a seeded subsample)")


class RayConfig(Strict):
    """How stages run on Ray (ignored by `run_local`). 'auto' GPU settings follow the cluster's resources."""

    use_gpu: Union[bool, Literal["auto"]] = Field("auto", description="Train workers on GPUs (auto: if the cluster has any and train.device is not cpu)")
    cpus_per_worker: Union[float, Literal["auto"]] = Field(
        "auto", description="logical CPUs per Train worker, also its torch threads (auto: 1 logical CPU, threads = node cores / workers on the node)"
    )

    @field_validator("cpus_per_worker")
    @classmethod
    def _cpus(cls, v: float | str) -> float | str:
        if v != "auto" and v <= 0:
            raise ValueError(f"must be > 0 or 'auto', got {v}")
        return v
    gpus_per_worker: float = Field(1.0, gt=0.0, le=8.0)
    clustering_cpus: float = Field(1.0, ge=0.0, description="CPUs held by the clustering actor (its faiss threads)")
    clustering_gpus: Union[float, Literal["auto"]] = Field("auto", description="GPUs for the clustering actor (auto: 1 if any)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts per stage (resumes from the last epoch)")
    storage: Union[str, None] = Field(None, description="local path or pyarrow URI (s3://...); default: output_dir")
    reuse_stages: bool = Field(True, description="reuse finished stages whose key matches (across runs and trials)")
    checkpoints_to_keep: int = Field(2, ge=1)
    checkpoint_every: int = Field(1, ge=1, description="epochs between epoch checkpoints (Ray Train's, and --local's)")


class ExperimentConfig(Strict):
    name: str = "mcl"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    mcl: MCLConfig = MCLConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    ray: RayConfig = RayConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v)

    @model_validator(mode="after")
    def _cross_field(self) -> "ExperimentConfig":
        if self.train.batch_size < 2 * self.train.workers:
            raise ValueError(
                f"train.batch_size: {self.train.batch_size} is too small for {self.train.workers} workers "
                f"(each worker needs at least 2 samples per step; use >= {2 * self.train.workers})"
            )
        if self.mcl.init == "pretrained" and not (self.model.pretrained or self.mcl.init_checkpoint):
            raise ValueError("mcl.init: 'pretrained' needs model.pretrained: true or mcl.init_checkpoint")
        if self.mcl.init_checkpoint:
            from pathlib import Path

            if self.mcl.init != "pretrained":
                raise ValueError("mcl.init_checkpoint: only used with mcl.init: pretrained")
            if not Path(self.mcl.init_checkpoint).expanduser().is_file():
                raise ValueError(f"mcl.init_checkpoint: file {self.mcl.init_checkpoint} does not exist")
        return self

    def temperature(self, stage: int) -> float:
        temps = self.mcl.temperatures
        return temps[stage] if temps is not None else self.objective.temperature
