"""The arms of a fair MCL comparison, run through the same stage plan (shared/notes/methods.md, "Controls").

* mcl: the MCL run itself, S stages.
* ensemble: S ordinary 1-stage runs with seeds seed, seed + 1000, ..., each with MCL's per-stage budget,
  integrated exactly like MCL's stages. Member 1 has MCL's stage-1 key, so it is MCL's stage 1, reused.
  Separates what MCL's grouped negatives add from what concatenating several models gives anyway.
* long: one ordinary run with S times the epochs (the same compute as all of MCL's stages).
* ifm: the long run with implicit feature modification (Robinson et al. 2021) mixed into its loss, the cheap
  competing fix for feature suppression (the base experiment's own ifm options if it has them, else the
  paper's defaults).

Each arm yields one record per step a study reports: MCL per stage, the ensemble per member (the first s
members integrated), the long run once. `run` is how an experiment's stages are run: `iter_stages` on Ray,
or the local executor.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from mcl_ray.config.loader import build_config
from mcl_ray.mcl.integration import integrate
from mcl_ray.plan.results import StageRecord

ARMS = ("mcl", "ensemble", "long", "ifm")
MEMBER_SEED_STRIDE = 1000


def one_stage(cfg, *, name: str, seed: int | None = None, epochs: int | None = None):
    """`cfg` as an ordinary (1-stage) run, optionally with another seed or number of epochs."""
    data = cfg.model_dump(mode="json")
    data["name"] = name
    if seed is not None:
        data["seed"] = seed
    mcl = data["mcl"]
    first_k = mcl["clusters"][0] if isinstance(mcl["clusters"], list) and mcl["clusters"] else mcl["clusters"]
    mcl.update(stages=1, clusters=first_k if isinstance(first_k, int) else 2)
    if mcl.get("temperatures"):
        mcl["temperatures"] = mcl["temperatures"][:1]
    if epochs is not None:
        data["train"]["epochs"] = epochs
    return build_config(data)


def member_config(cfg, member: int):
    """Ensemble member `member` (0-based): MCL's stage 1 with seed + 1000 * member."""
    return one_stage(cfg, name=f"{cfg.name}/member{member + 1}", seed=cfg.seed + MEMBER_SEED_STRIDE * member)


def long_config(cfg):
    return one_stage(cfg, name=f"{cfg.name}/long", epochs=cfg.train.epochs * cfg.mcl.stages)


def ifm_config(cfg):
    """The long run with IFM among its regularisers (added with the paper's defaults unless already there)."""
    data = long_config(cfg).model_dump(mode="json")
    data["name"] = f"{cfg.name}/ifm"
    regularizers = data["objective"].setdefault("regularizers", [])
    if not any(r.get("name") == "ifm" for r in regularizers):
        regularizers.append({"name": "ifm"})
    return build_config(data)


def iter_arm(cfg, arm: str, run: Callable[[object], Iterable[StageRecord]], *,
             features: Callable[[StageRecord, str], tuple[np.ndarray, np.ndarray]],
             evaluate: Callable[[np.ndarray, np.ndarray], dict],
             integrated_extra: Callable[[StageRecord], dict] | None = None) -> Iterator[StageRecord]:
    """The records `arm` reports. features(record, representation) -> (probe, test) stored embeddings of a
    finished stage; evaluate(probe, test) scores a representation like the stage plan does; integrated_extra(record)
    adds an ensemble member to scores that integrate more than embeddings (image-text: the text features too)."""
    if arm == "mcl":
        yield from run(cfg)
    elif arm == "long":
        yield from run(long_config(cfg))
    elif arm == "ifm":
        yield from run(ifm_config(cfg))
    elif arm == "ensemble":
        probe_parts, test_parts = [], []
        for member in range(cfg.mcl.stages):
            (record,) = list(run(member_config(cfg, member)))
            probe, test = features(record, cfg.mcl.integrate)
            probe_parts.append(probe)
            test_parts.append(test)
            integrated_eval = evaluate(integrate(probe_parts), integrate(test_parts))
            for name, values in (integrated_extra(record) if integrated_extra else {}).items():
                integrated_eval.setdefault(name, {}).update(values)
            yield StageRecord(
                stage=member + 1, history=record.history, stage_eval=record.stage_eval,
                integrated_eval=integrated_eval, cluster=None,
                path=record.path, reused=record.reused, keys=record.keys,
            )
    else:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")


def arm_records(cfg, arm: str, run: Callable[[object], Iterable[StageRecord]], data) -> Iterator[StageRecord]:
    """iter_arm with the stored embeddings of `cfg`'s storage and the evaluation of `cfg.eval` on `data`."""
    from mcl_ray.plan.evaluation import evaluate
    from mcl_ray.plan.from_config import eval_spec
    from mcl_ray.plan.sequence import storage_root
    from mcl_ray.store.artifacts import ArtifactStore

    store, spec = ArtifactStore(storage_root(cfg)), eval_spec(cfg)

    def features(record: StageRecord, representation: str) -> tuple[np.ndarray, np.ndarray]:
        entry = store.stage(record.keys["stage"])
        return entry.get_array(f"probe_{representation}.npy"), entry.get_array(f"test_{representation}.npy")

    extra = None
    if arm == "ensemble":
        from mcl_ray.plan.from_config import stage_specs
        from mcl_ray.plan.sequence import image_text_evaluation, image_text_scores

        first = stage_specs(cfg)[0]
        image_text = image_text_evaluation(first, data)
        if image_text is not None:
            def extra(record: StageRecord) -> dict:
                entry = store.stage(record.keys["stage"])
                return image_text_scores(first, entry, image_text, entry.get_array(f"test_{cfg.mcl.integrate}.npy"))[1]

    return iter_arm(cfg, arm, run, features=features, evaluate=lambda probe, test: evaluate(spec, probe, test, data),
                    integrated_extra=extra)
