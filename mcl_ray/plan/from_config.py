"""The one reader of ExperimentConfig: checks every name against its registry and turns the config into specs.

`load_config` / `build_config` here are the config package's loaders plus the name checks (data set and
split, backbone, head, optimizer, objective and its options, regularisers), all reported at once with
suggestions, before any data is loaded. `stage_specs` gives each stage's plain specs, which is all the
trainer, the clustering, the evaluation and the stage keys ever see.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from mcl_ray.config import loader
from mcl_ray.config.schema import ExperimentConfig, ObjectiveConfig
from mcl_ray.data.augment_spec import AugmentSpec
from mcl_ray.data.spec import DataSpec
from mcl_ray.data.registry import DATA_SOURCES, DataSource, captioned_sources
from mcl_ray.errors import ConfigError
from mcl_ray.eval.spec import EvalSpec
from mcl_ray.mcl.spec import ClusteringSpec
from mcl_ray.models.spec import ModelSpec
from mcl_ray.models.registry import HEADS, check_backbone_name
from mcl_ray.models.timm_names import timm_names
from mcl_ray.objectives.declarations import METHODS, REGULARIZERS, ObjectiveSpec
from mcl_ray.plan.spec import StageSpec
from mcl_ray.train.spec import TrainSpec

SHARED_OBJECTIVE_FIELDS = tuple(ObjectiveConfig.model_fields)


# ------------------------------------------------------------------------------------------------ checks


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), *, check_names: bool = True) -> ExperimentConfig:
    """A YAML file plus dotted overrides, validated; with check_names, every name checked too."""
    cfg = loader.load_config(path, overrides)
    if check_names:
        check_experiment(cfg)
    return cfg


def build_config(data: Mapping[str, Any], *, check_names: bool = True) -> ExperimentConfig:
    cfg = loader.build_config(data)
    if check_names:
        check_experiment(cfg)
    return cfg


def check_experiment(cfg: ExperimentConfig) -> None:
    """Raise one ConfigError listing every unknown name or bad plug-in option (with suggestions)."""
    problems: list[str] = []
    for check in (_check_data, _check_generated_size, _check_model, _check_optimizer, _check_objective, _check_clusters):
        try:
            check(cfg)
        except ConfigError as exc:
            problems.extend(str(exc).removeprefix("invalid configuration:\n  ").split("\n  "))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_data(cfg: ExperimentConfig) -> None:
    source = DATA_SOURCES.get(cfg.data.name)
    if bool(cfg.data.labels) != source.labels_file:
        raise ConfigError("data.labels: " + (f"{cfg.data.name} needs the table listing its images and labels"
                                             if source.labels_file else f"only used by data.name: labeled or imagetext, not {cfg.data.name}"))
    if cfg.data.bits is not None and "bits" not in source.options:
        raise ConfigError(f"data.bits: only used by data.name: randbit, not {cfg.data.name}")
    if (cfg.data.shards is not None) != ("shards" in source.options):
        raise ConfigError("data.shards: " + ("webdataset needs the shard pattern, e.g. /data/cc/{00000..00099}.tar"
                                             if cfg.data.shards is None else f"only used by data.name: webdataset, not {cfg.data.name}"))
    if cfg.data.decode != "cache" and "decode" not in source.options:
        with_decode = ", ".join(n for n in DATA_SOURCES.names() if "decode" in DATA_SOURCES.get(n).options)
        raise ConfigError(f"data.decode: {cfg.data.name} is decoded once into the cache; on_the_fly is for image files "
                          f"({with_decode})")
    if cfg.data.pretrain_split not in source.splits:
        raise ConfigError(
            f"data.pretrain_split: {cfg.data.name} has splits {', '.join(source.splits)}, not {cfg.data.pretrain_split!r}"
        )


def _check_generated_size(cfg: ExperimentConfig) -> None:
    """A generated set is allocated whole: refuse a size this machine's memory cannot hold, before allocating."""
    import os

    source = DATA_SOURCES.get(cfg.data.name)()
    if not source.generated:
        return
    root = Path(cfg.data.root).expanduser()
    sizes = {f: getattr(cfg.data, f) or source.count(split, root=root, seed=cfg.data.seed)
             for f, split in (("train_size", "train"), ("test_size", "test"))}
    need = sum(sizes.values()) * cfg.data.image_size ** 2 * 3
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        field = max(sizes, key=sizes.get)
        raise ConfigError(f"data.{field}: {sizes[field]} generated images of {cfg.data.image_size}x{cfg.data.image_size} "
                          f"need {need / 2**30:.0f} GiB of memory, more than this machine's {have / 2**30:.0f} GiB")


def _largest_k(cfg: ExperimentConfig) -> int:
    """The most clusters any clustering step of the run makes (0 without clustering)."""
    return max((cfg.mcl.clusters_after(s) for s in range(cfg.mcl.stages - 1)), default=0)


def _check_clusters(cfg: ExperimentConfig) -> None:
    """K-means cannot make more clusters than there are training images: say so before stage 1 trains."""
    if cfg.mcl.stages < 2:
        return
    source = DATA_SOURCES.get(cfg.data.name)()
    if cfg.data.train_size is not None:
        images = cfg.data.train_size
    elif type(source).files is not DataSource.files:
        return  # the user's own files: counting them is validate's job, not every config load's
    else:
        images = source.count(cfg.data.pretrain_split, root=Path(cfg.data.root).expanduser(), seed=cfg.data.seed)
    biggest = _largest_k(cfg)
    if images is not None and biggest > images:
        raise ConfigError(f"mcl.clusters: {biggest} clusters but only {images} training images "
                          "(data.train_size); k-means needs at least one image per cluster")


def data_sizes(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """What each image set of the run will hold, known before loading: {set: {split, available, used, note}}.

    `available` is None when only loading can tell (a data set not yet downloaded). A cap that cuts the data
    set is spelled out, so a user sees it before training rather than in a log line during it.
    """
    d = cfg.data
    source = DATA_SOURCES.get(d.name)()
    root = Path(d.root).expanduser()
    sets = {"pretrain": (d.pretrain_split, d.train_size), "probe": ("train", d.train_size), "test": ("test", d.test_size)}
    counts: dict[str, int | None] = {}  # per split: pretrain and probe usually share one (a folder walked once)
    out = {}
    for name, (split, cap) in sets.items():
        if split not in counts:
            counts[split] = source.count(split, root=root, seed=d.seed, labels=d.labels)
        if source.generated:
            used = counts[split] if cap is None else cap
            out[name] = {"split": split, "available": used, "used": used, "note": "generated"}
            continue
        available = counts[split]
        used = available if cap is None else (cap if available is None else min(cap, available))
        if available is None:
            note = "size known once loaded" + ("" if cap is None else f"; at most {cap}")
        elif cap is not None and cap > available:
            note = f"data.{'test' if name == 'test' else 'train'}_size={cap} asks for more than the {available} available"
        elif cap is not None and cap < available:
            note = f"a seeded subsample of {cap} of {available} (data.{'test' if name == 'test' else 'train'}_size; null uses all)"
        else:
            note = "all"
        out[name] = {"split": split, "available": available, "used": used, "note": note, "cap": cap}
    return out


def check_data_sizes(cfg: ExperimentConfig, sizes: dict[str, dict[str, Any]]) -> None:
    """ConfigError listing every size problem `data_sizes` found (a cap above the data, fewer images than clusters)."""
    problems = []
    for name, s in sizes.items():
        if s["available"] is not None and s.get("cap") is not None and s["cap"] > s["available"]:
            field = "data.test_size" if name == "test" else "data.train_size"
            problems.append(f"{field}: {s['cap']} asks for more than the {s['available']} images of "
                            f"{cfg.data.name}'s {s['split']} split (null uses all)")
    biggest = _largest_k(cfg)
    used = sizes["pretrain"]["used"]
    if used is not None and biggest > used:
        problems.append(f"mcl.clusters: {biggest} clusters but only {used} training images")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_model(cfg: ExperimentConfig) -> None:
    HEADS.check(cfg.model.head)
    check_backbone_name(cfg.model.backbone)
    m = cfg.model
    if not is_image_text_model(m.backbone):
        if isinstance(m.pretrained, str):
            raise ConfigError(f"model.pretrained: a tag ({m.pretrained!r}) is for open_clip models; timm backbones take "
                              "true/false (name a timm tag in model.backbone, e.g. vit_small_patch16_224.augreg_in21k)")
        for field, value in (("lock_text", m.lock_text), ("lock_image", m.lock_image)):
            if value not in (False, None):
                raise ConfigError(f"model.{field}: only open_clip models (model.backbone: open_clip:...) have towers to lock")


def is_image_text_model(backbone: str) -> bool:
    return backbone.strip().lower().startswith("open_clip:")


def _check_optimizer(cfg: ExperimentConfig) -> None:
    known = timm_names()["optimizers"]
    if cfg.train.optimizer not in known:
        close = difflib.get_close_matches(cfg.train.optimizer, sorted(known), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"train.optimizer: timm has no optimizer {cfg.train.optimizer!r}{hint}")


def _check_objective(cfg: ExperimentConfig) -> None:
    spec = objective_spec(cfg, 0)
    representations = spec.options.representations
    for field in ("cluster_on", "integrate"):
        value = getattr(cfg.mcl, field)
        if field == "cluster_on" and value in ("text", "joint"):
            if not spec.options.needs_captions:
                raise ConfigError(f"mcl.cluster_on: {value!r} clusters caption embeddings; objective {spec.name!r} "
                                  "trains no text tower (use an image-text objective: clip)")
            continue
        if value not in representations:
            raise ConfigError(f"mcl.{field}: objective {spec.name!r} exposes {', '.join(representations)}, not {value!r}")
    if spec.options.needs_captions:
        if not is_image_text_model(cfg.model.backbone):
            raise ConfigError(f"objective.name: {spec.name!r} trains an image-text model; set model.backbone to an "
                              "open_clip model (open_clip:mcl-tiny, open_clip:ViT-B-32, ...)")
        if cfg.model.head != "none":
            raise ConfigError(f"model.head: objective {spec.name!r} uses the model's own image-text embedding; set "
                              "model.head: none")
        if not DATA_SOURCES.get(cfg.data.name).captions:
            raise ConfigError(f"data.name: objective {spec.name!r} needs a caption per image, and {cfg.data.name!r} has "
                              f"none; captioned sources: {', '.join(captioned_sources())}")
    if cfg.mcl.stages > 1 and not spec.options.uses_negatives:
        raise ConfigError(f"mcl.stages: objective {spec.name!r} uses no negatives, so MCL's groups would change nothing; "
                          "set mcl.stages: 1")


# ------------------------------------------------------------------------------------------------ specs


def _errors(exc: ValidationError, prefix: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        lines.append(f"{prefix}.{field}: {err['msg'].removeprefix('Value error, ')}")
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def method_options(objective: ObjectiveConfig):
    """The method's options from the objective section: its own validated, other methods' ignored."""
    declared = METHODS.get(objective.name)
    given = objective.method_options()
    own = set(declared.model_fields)
    anyone = set().union(*(METHODS.get(n).model_fields for n in METHODS.names()))
    unknown = sorted(set(given) - anyone)
    if unknown:
        allowed = sorted(set(SHARED_OBJECTIVE_FIELDS) | own)
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f"; did you mean 'objective.{close[0]}'?" if close else ""
        raise ConfigError(
            f"objective.{unknown[0]}: unknown option for objective '{objective.name}' "
            f"(allowed: {', '.join(allowed)}){hint}"
        )
    try:
        return declared(**{k: v for k, v in given.items() if k in own})
    except ValidationError as exc:
        raise _errors(exc, "objective") from None


def regularizers(objective: ObjectiveConfig) -> tuple:
    out = []
    for i, reg in enumerate(objective.regularizers):
        field = f"objective.regularizers.{i}"
        try:
            declared = REGULARIZERS.get(reg.name)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("objective.regularizers.name", f"{field}.name")) from None
        try:
            out.append(declared(name=REGULARIZERS.check(reg.name), **(reg.model_extra or {})))
        except ValidationError as exc:
            raise _errors(exc, field) from None
    total = sum(r.weight for r in out)
    if total >= 1.0:
        raise ConfigError(f"objective.regularizers: weights sum to {total:g}; they must leave the method a share (< 1)")
    return tuple(out)


def objective_spec(cfg: ExperimentConfig, stage: int) -> ObjectiveSpec:
    options, mixed = method_options(cfg.objective), regularizers(cfg.objective)
    for i, reg in enumerate(mixed):
        if reg.reads not in options.outputs():
            raise ConfigError(f"objective.regularizers.{i}: {reg.name} reads the method's {reg.reads}, which "
                              f"objective '{cfg.objective.name}' with these options does not expose")
    return ObjectiveSpec(
        name=METHODS.check(cfg.objective.name), temperature=cfg.temperature(stage), gather=cfg.objective.gather,
        options=options, regularizers=mixed,
    )


def data_spec(cfg: ExperimentConfig) -> DataSpec:
    d = cfg.data
    return DataSpec(name=d.name, root=d.root, image_size=d.image_size, train_size=d.train_size, test_size=d.test_size,
                    pretrain_split=d.pretrain_split, seed=d.seed, download=d.download, cache_dir=d.cache_dir,
                    labels=d.labels, bits=d.bits, shards=d.shards, decode=d.decode, decode_workers=d.decode_workers,
                    eval_samples=cfg.eval.max_samples)


# open_clip's OPENAI_DATASET_MEAN / _STD: pretrained CLIP towers expect their inputs normalised this way
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def pretrained_normalisation(backbone: str, pretrained) -> dict[str, tuple[float, ...]]:
    """The mean/std the pretrained weights were trained with, from the library's own pretrained config (timm's
    ImageNet statistics for a ResNet, OpenAI's for CLIP, 0.5 for SigLIP or most ViTs); {} for random init,
    which keeps the default 0.5 / 0.5. Nothing is downloaded."""
    if not pretrained:
        return {}
    name = backbone.strip()
    provider, _, model = name.partition(":") if ":" in name else ("timm", "", name)
    provider = provider.lower()
    if provider == "open_clip" and model.startswith("timm/") and pretrained is True:
        provider, model = "timm", model[len("timm/"):]  # a pretrained timm image tower
    try:
        if provider == "open_clip" and isinstance(pretrained, str):
            import open_clip

            cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
            mean, std = cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD)
        elif provider == "timm":
            import timm

            cfg = timm.models.get_pretrained_cfg(model)
            if cfg is None:
                return {}
            mean, std = cfg.mean, cfg.std
        else:
            return {}
    except Exception:  # an unknown name fails where the model is built, with the library's own message
        return {}
    return {"mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std)}


def augment_spec(cfg: ExperimentConfig) -> AugmentSpec:
    a = cfg.augment
    stats = pretrained_normalisation(cfg.model.backbone, cfg.model.pretrained)
    return AugmentSpec(crop_size=cfg.data.image_size, crop_scale=tuple(a.crop_scale), hflip=a.hflip,
                       jitter_strength=a.jitter, jitter_prob=a.jitter_prob, grayscale=a.grayscale, blur=a.blur, **stats)


def model_spec(cfg: ExperimentConfig) -> ModelSpec:
    m = cfg.model
    return ModelSpec(backbone=m.backbone, image_size=cfg.data.image_size, pretrained=m.pretrained,
                     cifar_stem=m.cifar_stem, patch_size=m.patch_size, head=m.head,
                     proj_hidden_dim=m.proj_hidden_dim, proj_dim=m.proj_dim, lock_text=m.lock_text,
                     lock_image=m.lock_image, norm=m.norm)


def train_spec(cfg: ExperimentConfig) -> TrainSpec:
    t = cfg.train
    return TrainSpec(epochs=t.epochs, batch_size=t.batch_size, optimizer=t.optimizer, lr=t.lr,
                     weight_decay=t.weight_decay, warmup_epochs=t.warmup_epochs, grad_clip=t.grad_clip, amp=t.amp,
                     workers=t.workers, device=t.device, log_every=t.log_every,
                     online_knn_every=cfg.eval.online_knn_every, knn_k=cfg.eval.knn_k,
                     knn_temperature=cfg.eval.knn_temperature)


def eval_spec(cfg: ExperimentConfig) -> EvalSpec:
    e = cfg.eval
    return EvalSpec(knn_k=e.knn_k, knn_temperature=e.knn_temperature, linear=e.linear, linear_epochs=e.linear_epochs,
                    seed=cfg.seed, mmvp=e.mmvp, mmvp_pairs=e.mmvp_pairs, retrieval_samples=e.retrieval_samples)


def stage_seed(cfg: ExperimentConfig, stage: int) -> int:
    return cfg.seed * 1009 + stage


def stage_specs(cfg: ExperimentConfig) -> list[StageSpec]:
    """Every stage's specs, in order (the last one has no clustering)."""
    data, augment, model, train, ev = data_spec(cfg), augment_spec(cfg), model_spec(cfg), train_spec(cfg), eval_spec(cfg)
    gpu = None if cfg.mcl.kmeans_gpu == "auto" else bool(cfg.mcl.kmeans_gpu)
    specs = []
    for stage in range(cfg.mcl.stages):
        seed = stage_seed(cfg, stage)
        clustering = None if stage == cfg.mcl.stages - 1 else ClusteringSpec(
            k=cfg.mcl.clusters_after(stage), on=cfg.mcl.cluster_on, iters=cfg.mcl.kmeans_iters,
            max_points=cfg.mcl.kmeans_max_points, gpu=gpu, seed=seed, min_group_size=cfg.mcl.min_group_size,
        )
        specs.append(StageSpec(
            index=stage, seed=seed, data=data, augment=augment, model=model, objective=objective_spec(cfg, stage),
            train=train, clustering=clustering, eval=ev, init=cfg.mcl.init, integrate=cfg.mcl.integrate,
            online_knn_samples=cfg.eval.online_knn_samples, sampling=cfg.mcl.sampling,
        ))
    return specs


def resolved_dump(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain data with the method's and regularisers' options filled in with their defaults."""
    out = cfg.model_dump(mode="json")
    objective = objective_spec(cfg, 0)
    out["objective"].update(objective.options.model_dump(mode="json"))
    out["objective"]["regularizers"] = [r.model_dump(mode="json") for r in objective.regularizers]
    return out
