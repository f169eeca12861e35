"""Build your own Tune sweep from mcl-ray's parts: here a grid over the number of stages and K, with
Tune's MedianStoppingRule instead of the default Optuna + ASHA.

    python studies/custom_sweep.py                     # small Trifeature study on this machine
    python studies/custom_sweep.py --address auto      # on a running Ray cluster

Any parameter named like a config path (`mcl.stages`, `objective.temperature`, `train.lr`, ...) is applied
to the trial's experiment; the trainable reports once per stage (`training_iteration` = stage).
"""

import argparse
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import MedianStoppingRule

from mcl_ray.engine.runtime import ensure_ray, local_cpus_needed
from mcl_ray.study import concurrency_limit, load_study, study_param_space, trainable_with_resources
from mcl_ray.study.tuner import storage_uri, trial_dirname

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--address")
parser.add_argument("--storage", default="studies/results")
args = parser.parse_args()

# Reuse a bundled study's base experiment (data, model, training) and profile; the search is ours.
study = load_study(Path(__file__).parent / "configs" / "resnet.yaml", "local",
                   ["study.name=custom-grid", f"study.storage={args.storage}", "experiment.train.epochs=4"])
base = study.base_experiment()
ensure_ray(args.address, num_cpus=local_cpus_needed(base, trial_cpus=study.study.trial_cpus))

param_space = {
    **study_param_space(study),  # the base experiment and where trials store their stages
    "mcl.stages": tune.grid_search([1, 3]),
    "mcl.clusters": tune.grid_search([5, 20]),
}
tuner = tune.Tuner(
    trainable_with_resources(study),  # mcl_trainable with a placement group for its clustering actor
    param_space=param_space,
    tune_config=tune.TuneConfig(
        metric="integrated/texture/linear", mode="max",
        scheduler=MedianStoppingRule(time_attr="training_iteration", grace_period=1),
        max_concurrent_trials=max(1, concurrency_limit(base, study.study.trial_cpus)),
        trial_dirname_creator=trial_dirname,
    ),
    run_config=tune.RunConfig(name=study.study.name, storage_path=storage_uri(study)),
)
results = tuner.fit()
best = results.get_best_result()
print("best:", {k: best.config[k] for k in ("mcl.stages", "mcl.clusters")}, best.metrics["integrated/texture/linear"])
print(f"compare: tensorboard --logdir {results.experiment_path}    report: mcl-ray report {results.experiment_path} "
      "--metric integrated/texture/linear")
ray.shutdown()
