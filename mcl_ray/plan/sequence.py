"""The MCL stage sequence, written once: keys and reuse, build (by an executor), evaluate, publish.

For every stage: compute its content key (and its clustering's), let the executor claim it (another run
may be building it right now), build what is missing, then evaluate the stage alone and the integrated
representation so far from the stored embeddings, and publish the run's `stage_k/` view. Both executors
go through here, so they agree on keys, layout, evaluation and what "reused" means.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Protocol

import numpy as np
import yaml

from mcl_ray.data.experiment_data import ExperimentData
from mcl_ray.errors import ConfigError
from mcl_ray.mcl.integration import integrate
from mcl_ray.plan.evaluation import evaluate, load_init_checkpoint
from mcl_ray.plan.from_config import stage_specs
from mcl_ray.plan.hooks import RunHooks
from mcl_ray.plan.results import ExperimentResult, StageRecord
from mcl_ray.plan.spec import StageSpec
from mcl_ray.store.artifacts import ArtifactStore
from mcl_ray.store.keys import cluster_key, stage_key

log = logging.getLogger("mcl_ray")


@dataclass
class StageJob:
    """Everything building one stage needs, as plain values (it crosses process boundaries on Ray)."""

    spec: StageSpec
    store_root: str
    stage_key: str
    cluster_key: str | None  # None after the last stage
    previous_clusters: str | None
    init_stage: str | None  # key of the stage whose weights this one starts from (mcl.init: previous)
    init_state: dict | None  # mcl.init_checkpoint's state dict
    progress: bool
    hooks: RunHooks


class StageExecutor(Protocol):
    """Builds what the plan asks for; never decides what to build."""

    def claim(self, key: str, done: Callable[[], bool], label: str) -> ContextManager[bool]:
        """Enter -> True when this run must build `key`, False when someone else finished it meanwhile."""

    def build(self, job: StageJob, data: ExperimentData) -> dict[str, Any]:
        """Train the stage if its entry is incomplete, then cluster if asked; returns
        {'trained': bool, 'cluster': info or None, 'resumed_after_epoch': int or None}."""


def storage_root(cfg) -> str:
    return cfg.ray.storage or cfg.output_dir


def init_identity(cfg) -> dict[str, Any] | None:
    """The starting checkpoint file, as far as keys go: its path, size and modification time."""
    if cfg.mcl.init != "pretrained" or not cfg.mcl.init_checkpoint:
        return None
    path = os.path.abspath(os.path.expanduser(cfg.mcl.init_checkpoint))
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# Settings that say where or how a run executes, not what it computes: changing them keeps the experiment.
NOT_THE_EXPERIMENT = ("output_dir", "ray", "train.log_every", "train.device", "data.download", "data.cache_dir",
                      "data.decode", "data.decode_workers")
_MISSING = object()


def _differences(old: Any, new: Any, path: str = "", default: Any = None) -> list[str]:
    """Dotted paths where `new` differs from `old`; a field the old config lacks (written before the field
    existed) differs only when `new` sets it away from its default."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if any(where == f or where.startswith(f + ".") for f in NOT_THE_EXPERIMENT):
                continue
            sub_default = default.get(key, _MISSING) if isinstance(default, dict) else _MISSING
            if key not in old and key in new and sub_default is not _MISSING and new[key] == sub_default:
                continue
            out += _differences(old.get(key), new.get(key), where, None if sub_default is _MISSING else sub_default)
        return out
    return [] if old == new else [path]


def check_run_name(cfg) -> None:
    """A run name holds one experiment: rerunning it resumes; a different experiment under the same name (which
    mixed two experiments' config, summary and curves) is refused, naming what differs."""
    run = ArtifactStore(storage_root(cfg)).run(cfg.name)
    if not run.exists("config.yaml"):
        return
    try:
        old = yaml.safe_load(run.get_bytes("config.yaml"))
    except Exception:  # an unreadable config.yaml: the run's own file, rewritten below
        return
    changed = _differences(old, cfg.model_dump(mode="json"), default=type(cfg)().model_dump(mode="json"))
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise ConfigError(f"name: run {cfg.name!r} at {run.uri} holds a different experiment (it differs in {shown}); "
                          "choose another name (name=...): finished stages are found by content, so a new name "
                          "retrains nothing already trained. Or delete that folder.")


def run_stages(cfg, executor: StageExecutor, data: ExperimentData, *, progress: bool = True,
               hooks: RunHooks | None = None) -> Iterator[StageRecord]:
    """Run (or reuse) every stage in order, yielding each finished stage. `cfg` must have absolute paths."""
    check_run_name(cfg)
    store = ArtifactStore(storage_root(cfg))
    run = store.run(cfg.name)
    run.put_bytes("config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).encode())
    specs = stage_specs(cfg)
    checkpoint = cfg.mcl.init_checkpoint if cfg.mcl.init == "pretrained" else None
    init_state = load_init_checkpoint(checkpoint)
    start = init_identity(cfg)
    scope = None if cfg.ray.reuse_stages else cfg.name  # reuse off: keys private to the run (it still resumes)
    previous_clusters: str | None = None
    previous_stage: str | None = None
    probe_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    image_text = image_text_evaluation(specs[0], data)
    for spec in specs:
        stage, t0 = spec.index, time.perf_counter()
        carried = previous_stage if spec.init == "previous" else None
        skey = stage_key({**spec.identity(), "init_checkpoint": start}, previous_clusters, carried, scope=scope)
        last = spec.clustering is None
        ckey = None if last else cluster_key(spec.clustering.key_fields(), skey, previous_clusters, scope=scope)
        s_entry = store.stage(skey)
        c_entry = store.clusters(ckey) if ckey else None
        done = lambda: s_entry.is_complete() and (c_entry is None or c_entry.is_complete())  # noqa: E731
        out: dict[str, Any] = {}
        with executor.claim(skey, done, cfg.name) as must_build:
            if must_build:
                if not s_entry.is_complete():
                    s_entry.clear()  # a partial entry from a crash: its files are rewritten
                if c_entry is not None and not c_entry.is_complete():
                    c_entry.clear()
                job = StageJob(
                    spec=spec, store_root=store.root_uri, stage_key=skey, cluster_key=ckey,
                    previous_clusters=previous_clusters, init_stage=carried,
                    init_state=init_state if spec.init == "pretrained" else None, progress=progress,
                    hooks=hooks or RunHooks(),
                )
                out = executor.build(job, data)
        reused = {"stage": not out.get("trained", False), "clusters": None if last else not out.get("cluster")}
        record = _evaluate_stage(spec, store, skey, ckey, data, probe_parts, test_parts, reused, image_text)
        record.path = run.path + f"/stage_{stage + 1}"
        seconds = time.perf_counter() - t0
        _publish_run_stage(store, cfg, record, seconds, out.get("resumed_after_epoch"))
        if progress:
            how = "reused " + s_entry.uri if reused["stage"] else "trained"
            log.info("stage %d %s in %.0f s: integrated %s", stage + 1, how, seconds, record.integrated_eval)
        yield record
        previous_clusters, previous_stage = ckey, skey


def image_text_evaluation(spec: StageSpec, data: ExperimentData):
    """The run's image-text evaluation when its model has a text tower (open_clip), else None."""
    from mcl_ray.plan.from_config import is_image_text_model

    if not is_image_text_model(spec.model.backbone):
        return None
    from pathlib import Path

    from mcl_ray.plan.image_text import ImageTextEvaluation

    cache = Path(spec.data.cache_dir or Path(spec.data.root) / "cache").expanduser()
    return ImageTextEvaluation(spec.eval, data, cache)


def image_text_scores(spec: StageSpec, s_entry, image_text, test_features) -> tuple[dict, dict]:
    """One stage's image-text scores (alone, integrated), from its stored weights."""
    from mcl_ray.models.encoder import build_encoder

    encoder = build_encoder(spec.model)
    encoder.load_state_dict(s_entry.get_state("encoder.pt"))
    return image_text.add_stage(encoder.backbone, test_features, spec.augment)


def _merge(scores: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {k: dict(v) for k, v in scores.items()}
    for name, values in more.items():
        out.setdefault(name, {}).update(values)
    return out


def _evaluate_stage(spec: StageSpec, store, skey, ckey, data, probe_parts, test_parts, reused,
                    image_text=None) -> StageRecord:
    s_entry = store.stage(skey)
    kind = spec.integrate
    probe, test = s_entry.get_array(f"probe_{kind}.npy"), s_entry.get_array(f"test_{kind}.npy")
    probe_parts.append(probe)
    test_parts.append(test)
    stage_eval = evaluate(spec.eval, probe, test, data)
    integrated_eval = evaluate(spec.eval, integrate(probe_parts), integrate(test_parts), data)
    if image_text is not None:
        alone, together = image_text_scores(spec, s_entry, image_text, test)
        stage_eval, integrated_eval = _merge(stage_eval, alone), _merge(integrated_eval, together)
    return StageRecord(
        stage=spec.index + 1,
        history=s_entry.get_json("history.json"),
        stage_eval=stage_eval,
        integrated_eval=integrated_eval,
        cluster=store.clusters(ckey).get_json("stats.json") if ckey else None,
        path="",
        reused=reused,
        keys={"stage": skey, "clusters": ckey, "stage_uri": s_entry.uri,
              "clusters_uri": store.clusters(ckey).uri if ckey else None},
    )


def _publish_run_stage(store: ArtifactStore, cfg, record: StageRecord, seconds: float, resumed_after: int | None) -> None:
    """The run's own view of a stage: its metrics and where the (possibly shared) artifacts are."""
    entry = store.run(cfg.name, f"stage_{record.stage}")
    entry.uncommit()  # a rerun rewrites the files below
    entry.put_json("history.json", record.history)
    entry.put_json("metrics.json", {
        "stage": record.stage, "stage_eval": record.stage_eval, "integrated_eval": record.integrated_eval,
        "cluster": record.cluster, "reused": record.reused, "keys": record.keys, "seconds": seconds,
        "resumed_after_epoch": resumed_after,
    })
    entry.commit({"stage": record.stage})


def collect(cfg, stages: Callable[[Any], Iterator[StageRecord]], *, tensorboard: bool = True) -> ExperimentResult:
    """Drain `stages(curves_dir)` into a result, adding each stage's curves to the run's TensorBoard directory
    (local storage only; `curves_dir` is where an executor may write live curves, or None), then write the
    run's summary.json."""
    store = ArtifactStore(storage_root(cfg))
    local_run = store.local_path(cfg.name)
    result = ExperimentResult(config=cfg, run_dir=local_run or store.uri(cfg.name))
    writer = None
    if tensorboard and local_run is not None:
        from mcl_ray.tracking.tensorboard import RunWriter

        writer = RunWriter(local_run / "tensorboard")
    try:
        for record in stages(local_run / "tensorboard" if writer else None):
            result.stages.append(record)
            if writer:
                writer.log_stage(record, cfg.train.epochs)
        store.run(cfg.name).put_json("summary.json", result.summary())
        return result
    finally:
        if writer:
            writer.close()
