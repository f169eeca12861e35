"""The verdict of a study with control arms, from Tune result files written here (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

from mcl_ray.study.report import report
from mcl_ray.study.verdict import arm_results, verdict


def trial(directory: Path, name: str, seed: int | None, texture: float, shape: float, stages: int = 3,
          experiment_seed: int = 0) -> None:
    d = directory / name
    d.mkdir(parents=True)
    # a confirmation rerun has its seed as a parameter; a tuned trial has the experiment's (a hidden parameter)
    params = {"mcl.stages": stages, "experiment": {"seed": experiment_seed}, **({"seed": seed} if seed is not None else {})}
    (d / "params.json").write_text(json.dumps(params))
    row = {"stage": 1, "trial_id": name, "arm_stages": stages,
           "integrated/texture/linear": texture, "integrated/shape/linear": shape}
    (d / "result.json").write_text(json.dumps(row) + "\n")


def test_paired_seeds_give_mean_and_spread_and_small_differences_are_not_called(tmp_path):
    study = tmp_path / "study"
    trial(study, "trial_a", None, 0.50, 0.60)
    trial(study, "trial_b", None, 0.40, 0.60)  # worse: not the best MCL trial
    trial(study / "arms" / "ensemble", "trial_c", None, 0.45, 0.61)
    trial(study / "arms" / "ensemble", "trial_c2", None, 0.40, 0.61)
    trial(study / "arms" / "long", "trial_d", None, 0.30, 0.70, stages=3)
    trial(study / "arms" / "long", "trial_d2", None, 0.20, 0.70, stages=3)
    for seed, (mcl_t, ens_t, long_t) in {1: (0.55, 0.50, 0.30), 2: (0.57, 0.50, 0.31)}.items():
        trial(study / "confirm" / "mcl", f"trial_m{seed}", seed, mcl_t, 0.600)
        trial(study / "confirm" / "ensemble", f"trial_e{seed}", seed, ens_t, 0.601 + 0.002 * seed)
        trial(study / "confirm" / "long", f"trial_l{seed}", seed, long_t, 0.58)
    results = arm_results(study, "integrated/texture/linear", "max")
    assert [r.label for r in results] == ["MCL (3 stages)", "the ensemble of 3", "the long run (3x epochs)"]
    assert all(r.confirmed and len(r.runs) == 2 for r in results)
    table, sentences = verdict(results, "linear")
    # texture: best control is the ensemble (0.50 vs long 0.305); paired differences 5 and 7 points
    assert sentences[1] == "texture: MCL +6.0 ± 1.4 points over the ensemble of 3 (2 seeds)"
    # shape: MCL 0.600 vs ensemble 0.603 / 0.605: -0.4 points on average, inside CLEAR_POINTS
    assert sentences[0].startswith("shape: no clear difference (MCL -0.4 ± 0.1 points vs the ensemble of 3")
    assert "0.560±0.014" in table


def test_an_arm_tuned_with_one_trial_counts_that_trial_as_one_of_its_seeds(tmp_path):
    study = tmp_path / "study"
    trial(study, "trial_a", None, 0.50, 0.60)  # seed 0, the only trial: nothing was selected
    trial(study / "arms" / "ensemble", "trial_c", None, 0.44, 0.60)
    trial(study / "confirm" / "mcl", "trial_m1", 1, 0.56, 0.60)
    trial(study / "confirm" / "ensemble", "trial_e1", 1, 0.52, 0.60)
    results = arm_results(study, "integrated/texture/linear", "max")
    assert [r.values("integrated/texture/linear") for r in results] == [{0: 0.50, 1: 0.56}, {0: 0.44, 1: 0.52}]
    _, sentences = verdict(results, "linear")
    assert sentences[1] == "texture: MCL +5.0 ± 1.4 points over the ensemble of 3 (2 seeds)"  # paired: 6 and 4


def test_without_confirmation_the_verdict_says_it_is_one_run(tmp_path):
    study = tmp_path / "study"
    trial(study, "trial_a", None, 0.50, 0.60)
    trial(study / "arms" / "ensemble", "trial_c", None, 0.45, 0.61)
    text, plots = report([str(study)], "integrated/texture/linear", "max")
    assert "texture: MCL +5.0 points over the ensemble of 3 (1 run each, unconfirmed: set study.confirm_seeds >= 2)" in text
    assert any(p.name == "verdict.png" for p in plots)


def test_report_plots_readable_axes_and_no_importances_from_a_handful_of_trials(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from unittest import mock

    from mcl_ray.study import report as report_module

    study = tmp_path / "study"
    for i, (temperature, texture) in enumerate([(0.1, 0.4), (0.3, 0.5), (0.5, 0.45)]):
        trial(study, f"trial_{i}", None, texture, 0.6)
        params = {"mcl.stages": 3, "mcl.clusters": 5 + 5 * i, "objective.temperature": temperature}
        (study / f"trial_{i}" / "params.json").write_text(json.dumps(params))
    axes_seen = []
    real_save = report_module._save

    def spy(fig, path):
        axes_seen.extend((path.name, ax) for ax in fig.axes)
        return real_save(fig, path)

    with mock.patch.object(report_module, "_save", spy):
        text, plots = report([str(study)], "integrated/texture/linear", "max")
    assert "parameter importances: not shown (3 finished trials; fANOVA needs at least 10" in text
    assert not any(p.name == "param_importances.png" for p in plots)
    by_label = {ax.get_xlabel(): ax for name, ax in axes_seen if name == "metric_vs_params.png"}
    assert by_label["temp"].get_xscale() == "log"
    assert list(by_label["K"].get_xticks()) == [5, 10, 15]
    stage_axes = [ax for name, ax in axes_seen if name == "metric_vs_stage.png"]
    assert list(stage_axes[0].get_xticks()) == [1]
    legend = [t.get_text() for t in stage_axes[0].get_legend().get_texts()]
    assert any("K=10" in entry and "temp=0.3" in entry for entry in legend)


def test_a_loss_reads_below_and_a_shortcut_attribute_is_named_as_one(tmp_path):
    study = tmp_path / "study"
    for name, directory, texture, code in (("trial_a", study, 0.40, 0.30), ("trial_c", study / "arms" / "ensemble", 0.50, 0.90)):
        d = directory / name
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"mcl.stages": 2}))
        (d / "result.json").write_text(json.dumps({"stage": 1, "trial_id": name, "arm_stages": 2,
                                                   "integrated/texture/linear": texture,
                                                   "integrated/code/linear": code}) + "\n")
    _, sentences = verdict(arm_results(study, "integrated/texture/linear", "max"), "linear")
    assert sentences == [
        "code (a shortcut: less is better): MCL -60.0 points below the ensemble of 2 (1 run each, unconfirmed: set study.confirm_seeds >= 2)",
        "texture: MCL -10.0 points below the ensemble of 2 (1 run each, unconfirmed: set study.confirm_seeds >= 2)",
    ]


def test_unequal_tuning_budgets_are_shown_in_the_table_and_the_verdict(tmp_path):
    study = tmp_path / "study"
    for i in range(3):  # MCL searched with three trials, the ensemble with one
        trial(study, f"trial_a{i}", None, 0.40 + 0.05 * i, 0.60)
    trial(study / "arms" / "ensemble", "trial_c", None, 0.45, 0.60)
    results = arm_results(study, "integrated/texture/linear", "max")
    assert [r.tuned for r in results] == [3, 1]
    table, sentences = verdict(results, "linear")
    assert table.splitlines()[0].split()[:3] == ["arm", "trials", "runs"]
    assert sentences[1] == ("texture: MCL +5.0 points over the ensemble of 3 (1 run each, unconfirmed: set "
                            "study.confirm_seeds >= 2; MCL tuned with 3 trials, the ensemble of 3 with 1)")

