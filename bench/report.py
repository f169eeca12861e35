"""Print the README's benchmark section from bench/results/*.json, so README figures are never typed by hand.

    python -m bench.report > /tmp/bench.md
"""

from __future__ import annotations

import json

from bench.common import RESULTS_DIR


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine_line(result: dict) -> str:
    m = result["machine"]
    return f"_{m.get('cpu', '?')}, {m['cpu_count']} cores, torch {m['torch']}, {m['date']}_"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def section(intro: str, header: list[str], rows: list[list[str]], result: dict, *notes: str) -> str:
    """One benchmark's README block: what was run, its table, any verdict lines, and the machine."""
    return "\n\n".join([intro, md_table(header, rows), *notes, machine_line(result)])


def suppression(result: dict) -> str:
    s = result["settings"]
    summary = result["summary_mean_std"]
    cols = [k for k in next(iter(summary.values()))]
    rows = [[name] + [f"{v[0]:.3f} ± {v[1]:.3f}" for v in (summary[name][c] for c in cols)] for name in summary]
    lines = [
        f"**Feature suppression on Trifeature** (`python -m bench.suppression`; {s['backbone']}, "
        f"{s['image_size']} px, {s['train_size']} train / {s['test_size']} test images, {s['stages']} stages x "
        f"{s['epochs']} epochs, K={s['clusters']}, seeds {s['seeds']}, "
        f"{result['total_seconds'] / 60:.1f} min in all). Held-out accuracy, mean ± std over seeds:",
        "",
        md_table(["representation"] + cols, rows),
        "",
    ]
    for metric, t in result["targets"].items():
        gains = ", ".join(f"{a} {g:+.1f}" for a, g in t["gain_points_vs_same_epochs"].items())
        equal = ", ".join(f"{a} {g:+.1f}" for a, g in t["gain_points_vs_equal_compute"].items())
        control = ", ".join(f"{a} {g:+.1f}" for a, g in t.get("gain_points_vs_ensemble_control", {}).items())
        ifm = ", ".join(f"{a} {g:+.1f}" for a, g in t.get("gain_points_vs_ifm_control", {}).items())
        lines.append(
            f"- {metric}: the suppressed attribute is **{t['suppressed_attribute']}**. Integrated MCL vs the "
            f"same-epochs baseline, points: {gains}. Vs the equal-compute baseline: {equal}."
            + (f" Vs the ensemble control: {control}." if control else "")
            + (f" Vs the IFM control: {ifm}." if ifm else "")
        )
    lines += ["", f"![suppression plot](bench/results/{result['plot']})", "", machine_line(result)]
    return "\n".join(lines)


def clustering(result: dict) -> str:
    rows = [
        [str(r["K"]), f"{r['faiss_s']:.2f}", f"{r['sklearn_s']:.2f}", f"{r['speedup']:.1f}x",
         f"{r['inertia_gap_pct']:+.2f}%"]
        for r in result["rows"]
    ]
    return section(
        f"**Between-stage clustering** (`python -m bench.clustering`; N={result['data']['n']:,}, "
        f"d={result['data']['d']}, {result['threads']['both']} threads each): faiss k-means vs scikit-learn MiniBatchKMeans (the official MCL code's "
        "choice), inertia on all points (negative = faiss better).",
        ["K", "faiss s", "sklearn s", "speed-up", "faiss inertia vs sklearn"], rows, result,
        f"Target (>= {result['target']['speedup_min']:.0f}x faster, inertia <= "
        f"{result['target']['inertia_gap_pct_max']:.0f}% worse) met on every K: {result['all_meet_target']}.",
    )


def augment(result: dict) -> str:
    rows = [
        [str(r["size"]), r["pipeline"], r["setting"], f"{r['images_per_s']:,.0f}",
         f"{r['batched_1t_over_this']:.2f}x", f"{r['batched_2t_over_this']:.2f}x"]
        for r in result["throughput"]
    ]
    columns = ["px", "pipeline", "setting", "images/s", "batched 1 thread / this", "batched 2 threads / this"]
    return section(
        "**Augmentation** (`python -m bench.augment`): batched per-sample augmentation on the training device "
        "vs a per-sample torchvision PIL pipeline in a DataLoader, two views per image, images/s.",
        columns, rows, result,
    )


def overhead(result: dict) -> str:
    s = result["settings"]
    rows = [
        [r.get("case", ""), r["setup"], f"{r['img_s']:,.0f}", f"{r['vs_plain']:.3f}x", f"{r['wall_s']:.1f}",
         f"{r['startup_overhead_s']:.1f}"]
        for r in result["training"]
    ]
    c = result["clustering"]
    target = result["target_1_worker_vs_plain"]
    spare = result.get("target_met_one_core_spare")
    dashboard = s.get("ray_dashboard", False)
    dash_title, dash_flag = (", Ray's dashboard on", " --dashboard") if dashboard else ("", "")
    verdict = f"Target (1 worker >= {target}x the plain loop with the same threads) met with all cores busy: {result['target_met']}"
    verdict += f"; with one core spare: {spare}." if spare is not None else "."
    return section(
        f"**What Ray costs{dash_title}** (`python -m bench.overhead{dash_flag}`; one stage, {s['backbone']}, Trifeature {s['image_size']} px, "
        f"{s['images']} images, {s['epochs']} epochs, global batch {s['batch_size']}; steady state = median images/s "
        "of the epochs after the first; each row is compared with the plain loop using the same torch threads; "
        "start-up = wall time minus epoch time, beyond the plain loop's):",
        ["case", "setup", "steady images/s", "vs plain", "stage wall s", "extra start-up s"], rows, result,
        verdict,
        f"Clustering at N={c['n']:,}, d={c['d']}, K={c['k']} (k-means trained on {c['train_points']:,} points): "
        f"in-process {c['in_process_s']:.1f} s vs ClusteringActor round trip {c['actor_round_trip_s']:.1f} s "
        f"({c['actor_vs_in_process']:.2f}x; includes shipping the samples and the labels). The actor's resident memory "
        f"went from {c['actor_idle_rss_mb']:,.0f} MB idle (torch, faiss, Ray) to {c['actor_peak_rss_mb']:,.0f} MB at peak: it holds the "
        f"bounded sample and N labels, never the {c['embeddings_mb']:,.0f} MB of embeddings, so its memory does not grow with N.",
    )


STUDY_CHOICES = ("sampling", "cluster_on", "min_group_size")  # MCL dimensions shown when a study searched them


def study(result: dict) -> str:
    choices = [k for k in STUDY_CHOICES if any(k in t for t in result["trials"])]
    rows = [
        [t["trial"], str(t.get("stages", "")), str(t.get("clusters", "")), *(str(t.get(k, "")) for k in choices),
         f"{t.get('temperature', float('nan')):.3f}", f"{t.get('lr', float('nan')):.2g}", str(t["stages_done"]),
         f"{t['stage1']:.3f}", f"{t['final']:.3f}", f"{t['gain_points']:+.1f}"]
        for t in result["trials"]
    ]
    searched = sorted({t["backbone"] for t in result["trials"] if t.get("backbone")})  # what the trials ran
    backbone = ", ".join(searched) or result["settings"]["experiment"]["model"]["backbone"]
    verdict = result.get("verdict")
    notes = []
    if verdict:
        arms = ", ".join(result["settings"].get("arms", []))
        seeds = result["settings"].get("confirm_seeds", 0)
        how = (f"one trial per arm, rerun so each arm has {seeds} seeds" if result["settings"].get("samples") == 1
               else f"each arm's winner rerun with {seeds} fresh seeds")
        budgets = result["settings"].get("arm_samples") or {}
        if len(set(budgets.values())) > 1:  # study.arm_samples searched the arms unequally: say so with the verdict
            how += "; trials per arm: " + ", ".join(f"{arm} {n}" for arm, n in budgets.items())
        notes.append(f"Verdict against the controls (arms {arms}; {how}):\n\n"
                     + "\n".join(f"* {s}" for s in verdict["sentences"]))
    return section(
        f"**Local study `{result['command']}`** ({result['wall_s'] / 60:.1f} min, {len(rows)} MCL trials, "
        f"{result['settings']['scheduler']} scheduler, {backbone}; metric {result['metric']}; stage 1 of each trial "
        "is the 1-stage contrastive baseline with the same settings):",
        ["trial", "stages planned", "K", *choices, "temperature", "lr", "stages run", "stage 1", "final",
         "gain (points)"], rows, result,
        *notes,
    )


def clip_step(result: dict) -> str:
    rows = [[r["setting"], f"{r['median_ms']:.0f}", f"{r['p90_ms']:.0f}", f"{r['images_per_s']:.0f}",
             f"{r['ratio_vs_simclr']:.2f}x"] for r in result["rows"]]
    return section(
        f"**Per-step cost of a CLIP stage** (`python -m bench.clip_step`; batch {result['batch']}, "
        f"{result['image_size']}-px captioned Trifeature, forward + backward + AdamW step, median of {result['steps']} "
        "steps; captions are tokenised once per stage, "
        f"{result['tokenize_2000_captions_s']:.2f} s per 2000):",
        ["setting", "median ms/step", "p90 ms", "images/s", "vs SimCLR step"], rows, result,
    )


def methods(result: dict) -> str:
    st = result["settings"]
    costs = [[r["base"], f"{r['step_ms']:.0f}", f"{r['ratio_vs_simclr']:.2f}x",
              f"{r['per_epoch_pass_s']:.2f} s" if r["per_epoch_pass_s"] else "-"] for r in result["step_costs"]]
    rows = []
    for base, s in result["summary_mean_std"].items():
        for metric in ("knn", "linear"):
            rows.append([base, metric] + [
                f"{s['one_stage'][f'{a}/{metric}'][0]:.3f} -> {s['mcl'][f'{a}/{metric}'][0]:.3f} "
                f"({s['mcl_gain_points'][f'{a}/{metric}'][0]:+.1f} ± {s['mcl_gain_points'][f'{a}/{metric}'][1]:.1f})"
                + (f"; vs ensemble {s['mcl_vs_ensemble_points'][f'{a}/{metric}'][0]:+.1f} ± "
                   f"{s['mcl_vs_ensemble_points'][f'{a}/{metric}'][1]:.1f}" if "mcl_vs_ensemble_points" in s else "")
                for a in ("shape", "texture", "color")])
    return "\n\n".join([
        f"**Base methods with and without MCL** (`python -m bench.methods`, {result['total_seconds'] / 60:.1f} min): "
        f"Trifeature {st['train_size']}/{st['test_size']} images at {st['image_size']} px, {st['backbone']}, "
        f"{st['stages']} stages x {st['epochs']} epochs, K={st['clusters']}, seeds {st['seeds']}. Each base's 1-stage "
        "run is its MCL run's stage 1; cells are 1 stage -> integrated MCL (MCL's gain in points), then MCL minus the "
        "control, an ensemble of as many 1-stage runs of the same base integrated the same way (points; mean ± std "
        "over seeds, paired):",
        md_table(["base", "probe", "shape", "texture", "colour"], rows),
        f"Step cost on the same batches ({st['batch_size']} images) and model, median of "
        f"{st['steps'] * st.get('rounds', 1)} steps ({st.get('rounds', 1)} interleaved rounds), relative to SimCLR in "
        "the same run (SPCL's prototype pass runs once per epoch):",
        md_table(["base", "ms/step", "vs SimCLR", "per-epoch pass"], costs),
        machine_line(result)])


def data_scale(result: dict) -> str:
    rows = [[f"{r['images']:,}", str(r["rank"]), f"{r['peak_anon_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
             f"{r['train_img_s']:.0f}", f"{r['embed_img_s']:.0f}"] for r in result["workers"]]
    speed = result["speed"]["images_per_s"]
    growth = result.get("worker_anon_growth_largest_vs_smallest")
    return section(
        f"**Data at scale** (`python -m bench.data_scale`, {result['total_seconds'] / 60:.1f} min): memory-mapped "
        f"32-px sets, {result['settings']['workers']} Ray Train workers, each training {result['settings']['steps']} "
        "steps through the per-batch read, then embedding its half of the set for clustering (above 100,000 images into "
        "a memory-mapped file), sampling and assigning it. Peak anonymous memory is what a worker owns; peak RSS also "
        "counts the file pages it holds mapped (rows are read with pread, so the set's pages are not among them):",
        ["images", "worker", "peak anon MB", "peak RSS MB", "train img/s", "embed img/s"], rows, result,
        f"Driver: peak anon {result['driver']['peak_anon_mb']:.0f} MB. "
        + (f"Worker memory, largest vs smallest set: anon {growth:.3f}x" if growth else "")
        + (f", RSS {result['worker_rss_growth_largest_vs_smallest']:.3f}x (largest {result['worker_peak_rss_mb_max']:.0f} MB)"
           if growth and result.get("worker_rss_growth_largest_vs_smallest") else "")
        + (". " if growth else "")
        + f"Training throughput on the same batches: memory-mapped {speed['memory-mapped']:.0f} images/s vs in memory "
        f"{speed['in memory']:.0f} ({result['speed']['ratio_mapped_vs_in_memory']:.3f}x).",
    )


def randbit(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"**Suppression under a competing shortcut (RandBit) and the sampling policy** (`python -m bench.randbit`; "
        f"{s['backbone']}, {s['image_size']} px, {s['train_size']} train / {s['test_size']} test images, "
        f"{s['stages']} stages x {s['epochs']} epochs, K={s['clusters']}, seeds {s['seeds']}, "
        f"{result['total_seconds'] / 60:.1f} min in all). Every arm starts from the same stage 1; held-out "
        "linear-probe accuracy, mean ± std over seeds:",
    ]
    for bits, summary in result["summary_mean_std"].items():
        cols = [c for c in next(iter(summary.values())) if c.endswith("/linear")]
        rows = [[name] + [f"{summary[name][c][0]:.3f} ± {summary[name][c][1]:.3f}" for c in cols] for name in summary]
        title = "plain Trifeature" if bits == "0" else f"{bits} random bits (RandBit)"
        lines += ["", f"*{title}*", "", md_table(["representation"] + [c.split("/")[0] for c in cols], rows), ""]
        for metric, v in result["verdict"][bits].items():
            parts = []
            for policy, pv in v["policies"].items():
                diffs = ", ".join(f"{a} {d[0]:+.1f} ± {d[1]:.1f}" for a, d in pv["points_vs_best_control"].items())
                parts.append(f"{policy}: {diffs} ({'meets' if pv['target_met'] else 'misses'} the target)")
            lines.append(f"- {metric}: suppressed attribute **{v['suppressed_attribute']}**; integrated MCL minus the "
                         f"better control, points: " + "; ".join(parts))
    lines += ["", f"![randbit plot](bench/results/{result['plot']})", "", machine_line(result)]
    return "\n".join(lines)


def faithful(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"**Faithful MCL: candidate fixes, one at a time** (`python -m bench.faithful`; {s['backbone']}, "
        f"{s['image_size']} px, {s['train_size']} train / {s['test_size']} test images, {s['stages']} stages x "
        f"{s['epochs']} epochs, K={s['clusters']}, seeds {s['seeds']}, {result['total_seconds'] / 60:.1f} min in all). "
        "Every variant starts from the same stage 1 per seed; the last stage's integrated linear-probe accuracy minus "
        "the default's (points, paired by seed, mean ± std), and the last stage's fraction of anchors with fewer than "
        "10 in-batch negatives:",
    ]
    for bench, summary in result["summary_mean_std"].items():
        attrs = [c.split("/")[0] for c in summary["default"]["integrated"][-1] if c.endswith("/linear")]
        rows = []
        for variant, t in summary.items():
            last = t["integrated"][-1]
            cells = [f"{last[f'{a}/linear'][0]:.3f} ± {last[f'{a}/linear'][1]:.3f}" for a in attrs]
            diffs = [f"{t['vs_default_points'][f'{a}/linear'][0]:+.1f} ± {t['vs_default_points'][f'{a}/linear'][1]:.1f}"
                     if variant != "default" else "" for a in attrs]
            rows.append([variant, *cells, *diffs, f"{t['few_negatives_fraction'][-1][0]:.2f}"])
        header = ["variant", *[f"{a}" for a in attrs], *[f"{a} vs default" for a in attrs], "few negatives"]
        lines += ["", f"*{bench}*", "", md_table(header, rows)]
    lines += ["", machine_line(result)]
    return "\n".join(lines)


def faithful_norm(result: dict) -> str:
    """The batch-free normalisation variants: they train their own stage 1, so MCL's gain over it is the measure."""
    s = result["settings"]
    lines = [
        f"**Normalisation that does not see the batch** (`python -m bench.faithful --variants \"group norm\" "
        f"\"group norm, group_batches\" --name faithful_norm`; same settings as above, seeds {s['seeds']}, "
        f"{result['total_seconds'] / 60:.1f} min). `model.norm=group` turns every BatchNorm into a GroupNorm, so it "
        "trains its own stage 1: the columns are MCL's gain (last stage integrated minus its own stage 1, linear "
        "probe, points) and that gain minus the default's, paired by seed, mean ± std:",
    ]
    for bench, summary in result["summary_mean_std"].items():
        attrs = [c.split("/")[0] for c in summary["default"]["integrated"][-1] if c.endswith("/linear")]
        rows = []
        for variant, t in summary.items():
            gain = [f"{t['mcl_gain_points'][f'{a}/linear'][0]:+.1f} ± {t['mcl_gain_points'][f'{a}/linear'][1]:.1f}"
                    for a in attrs]
            diff = [f"{t['gain_vs_default_points'][f'{a}/linear'][0]:+.1f} ± "
                    f"{t['gain_vs_default_points'][f'{a}/linear'][1]:.1f}" if variant != "default" else ""
                    for a in attrs]
            rows.append([variant, *gain, *diff])
        header = ["variant", *[f"{a} gain" for a in attrs], *[f"{a} gain vs default" for a in attrs]]
        lines += ["", f"*{bench}*", "", md_table(header, rows)]
    lines += ["", machine_line(result)]
    return "\n".join(lines)


def decode(result: dict) -> str:
    s = result["settings"]
    rows = [[r["pass"], r["source"], f"{r['images_per_s']:.0f}"] for r in result["rows"]]
    return section(
        f"**On-the-fly decoding** (`python -m bench.decode`): an ImageFolder of {s['images']:,} {s['size']}-px JPEGs, "
        f"shuffled batches of {s['batch_size']}; reading only, then training test_resnet (2 epochs, images/s of the "
        "second) from the files decoded by DataLoader workers and from the same images in memory:",
        ["pass", "source", "images/s"], rows, result,
        f"Training from files decoded on the fly / in memory: {result['train_ratio_on_the_fly_vs_memory']:.2f}x.",
    )


def _leaves(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def refactor_check() -> str | None:
    """Seed 0 of the suppression benchmark with the code before and after the stage-plan refactor (issue 10)."""
    before, after = (load(f"refactor_check/suppression_seed0_{w}_issue10") for w in ("before", "after"))
    if before is None or after is None:
        return None
    keys = ("baseline_same_epochs", "baseline_equal_compute", "mcl_stage", "mcl_integrated", "ensemble_integrated",
            "cluster_nmi")
    a = dict(_leaves({k: before["per_seed"][0][k] for k in keys}))
    b = dict(_leaves({k: after["per_seed"][0][k] for k in keys}))
    same = sum(a[k] == b.get(k) for k in a)
    curve = [h["loss"] for h in before["per_seed"][0]["baseline_equal_compute_curve"]]
    same_curve = curve == [h["loss"] for h in after["per_seed"][0]["baseline_equal_compute_curve"]]
    return (f"**Refactor check** (issue 10; `python -m bench.suppression --seeds 0` with the code before and after the "
            f"stage-plan refactor, same machine): {same} of {len(a)} accuracies and NMIs identical, the long run's "
            f"{len(curve)} epoch losses {'identical' if same_curve else 'different'}; "
            f"{before['total_seconds']:.0f} s before, {after['total_seconds']:.0f} s after "
            f"(`bench/results/refactor_check/`). {machine_line(after)}")


def main() -> None:
    parts = [p for p in (refactor_check(),) if p]
    for name, render in (("suppression", suppression), ("randbit", randbit), ("clustering", clustering), ("augment", augment),
                         ("overhead", overhead), ("overhead_dashboard", overhead), ("study_sweep_resnet", study), ("study_sweep_vit", study), ("study_target_randbit8", study),
                         ("study_target_trifeature", study),
                         ("clip_step", clip_step), ("study_sweep_clip", study), ("methods", methods),
                         ("data_scale", data_scale), ("faithful", faithful), ("faithful_norm", faithful_norm),
                         ("decode", decode)):
        result = load(name)
        if result is not None:
            try:
                parts.append(render(result))
            except KeyError as exc:  # result written by an older benchmark version
                parts.append(f"({name}: result file lacks {exc}; re-run the benchmark)")
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
