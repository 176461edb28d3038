"""The report of a transfer experiment: metrics per trial against scratch, a table, curves.

Written to `<root>/report/` (the driver copies it to `--out`, e.g.
`benchmarks/results/transfer/`), logged on the parent MLflow run (`summary.md`, `summary.json`,
`transfer_curves.png`), and every child gets its summary metrics (jumpstart, auc_norm, ...).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from tuning import recording
from tuning.experiment import MODE_DOCS, REUSE_MODES, SCRATCH, ExperimentConfig
from tuning.families import resolve_family
from tuning.metrics import Curve, steps_to_scratch_final, transfer_metrics
from tuning.trial import DONE_FILE, TrialSpec, run_dir

SUMMARY_KEYS = ("jumpstart", "asymptotic_gain", "auc_norm", "transfer_ratio", "steps_to_threshold")


def references(exp: ExperimentConfig, target: str) -> dict[str, float]:
    """The random and greedy heuristics' evaluation return on the evaluation episodes: 0 and 1 of auc_norm."""
    from policies.catalog import make_policy
    from policies.evaluation import run_episodes

    config = resolve_family(target).config()
    out = {}
    for name in ("random", "greedy"):
        log = run_episodes(config, make_policy(name, config, seed=exp.eval_seed), exp.eval_episodes,
                           seed=exp.eval_seed)
        out[name] = float(np.mean([r.sum() for r in log.rewards]))
        out[f"{name}_latency_s"] = float(np.mean([d.mean() for d in log.delays]))
    return out


def _load(root: Path, exp: ExperimentConfig, spec: TrialSpec) -> dict:
    return json.loads((run_dir(root, exp, spec) / DONE_FILE).read_text())


def trial_metrics(exp: ExperimentConfig, root: Path) -> tuple[list[dict], dict[str, dict]]:
    """One row per transfer trial (metrics against its target's scratch, same seed)."""
    refs = {t: references(exp, t) for t in dict.fromkeys(p.target for p in exp.pairs)}
    rows = []
    for cell in exp.cells():
        for seed in exp.seeds:
            spec = TrialSpec(cell["mode"], cell["target"], cell["source"], seed)
            done = _load(root, exp, spec)
            scratch = _load(root, exp, TrialSpec(SCRATCH, cell["target"], None, seed))
            curve, base = Curve.of(done["curve"]), Curve.of(scratch["curve"])
            ref = refs[cell["target"]]
            row = {"source": cell["source"], "target": cell["target"], "reuse": cell["mode"], "algo": exp.algo,
                   "seed": seed, "run_id": done["run_id"],
                   **transfer_metrics(curve, base, low=ref["random"], high=ref["greedy"])}
            lat, base_lat = Curve.of(done["curve"], "eval_latency_s"), Curve.of(scratch["curve"], "eval_latency_s")
            row["steps_to_scratch_final_latency"], row["scratch_steps_to_final_latency"] = \
                steps_to_scratch_final(lat, base_lat, higher_is_better=False)
            row["final_latency_s"] = lat.final()
            row["curve"] = done["curve"]
            rows.append(row)
    return rows, refs


def _name(family: str) -> str:
    return resolve_family(family).name


def _mean_std(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{np.mean(v):.3f} +- {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _steps(values: list, budget: float) -> str:
    """Median of steps to threshold; censored ones (never reached) count as > budget."""
    reached = [x for x in values if x is not None]
    censored = len(values) - len(reached)
    if not reached:
        return f"> {budget:.0f} (all {censored})"
    text = f"{np.median(reached):.0f}"
    return text + (f" ({censored} of {len(values)} > {budget:.0f})" if censored else "")


def summarise(rows: list[dict]) -> list[dict]:
    """Per (source, target, mode): means over the seeds, and whether it reached the threshold in
    at most half of scratch's steps (per seed, a censored scratch counts as the budget)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["target"], row["reuse"])].append(row)
    out = []
    for (source, target, mode), rs in groups.items():
        budget = rs[0]["budget_steps"]
        halves = []
        for r in rs:
            s = r["scratch_steps_to_threshold"] if r["scratch_steps_to_threshold"] is not None else budget
            halves.append(r["steps_to_threshold"] is not None and r["steps_to_threshold"] <= 0.5 * s)
        out.append({"source": source, "target": target, "reuse": mode, "seeds": len(rs),
                    **{k: float(np.mean([r[k] for r in rs if r[k] is not None])) if any(r[k] is not None for r in rs)
                       else None for k in ("jumpstart", "asymptotic_gain", "auc_norm", "scratch_auc_norm",
                                           "transfer_ratio", "final_return", "final_latency_s")},
                    "steps_to_threshold": [r["steps_to_threshold"] for r in rs],
                    "scratch_steps_to_threshold": [r["scratch_steps_to_threshold"] for r in rs],
                    "steps_to_scratch_final_latency": [r["steps_to_scratch_final_latency"] for r in rs],
                    "scratch_steps_to_final_latency": [r["scratch_steps_to_final_latency"] for r in rs],
                    "half_of_scratch_steps": f"{sum(halves)}/{len(halves)}", "budget_steps": budget,
                    "rows": rs})
    return out


def markdown(exp: ExperimentConfig, cells: list[dict], refs: dict, command: str) -> str:
    lines = [f"# Transfer experiment `{exp.name}` ({exp.algo}, seeds {exp.seeds})", "",
             f"Generated by `{command}`. Reuse modes are reconstructions of Tian et al.'s unnamed "
             "\"policy reuse mechanisms\" (docs/transfer.md): " +
             "; ".join(f"`{m}` = {MODE_DOCS[m]}" for m in exp.modes) + ".", "",
             f"Budget: {exp.target_episodes} target episodes per trial; sources trained {exp.source_episodes} "
             "episodes (not counted in target steps: amortised over every target). Curves: the learning "
             f"policy's evaluation return (sampling pi(.|s), fixed seed) on {exp.eval_episodes} fixed episodes (seed {exp.eval_seed}) every "
             f"{exp.eval_every_decisions} target decisions, from step 0. auc_norm: 0 = random, 1 = greedy "
             "heuristic on the same episodes. Threshold = scratch's start + 90% of its improvement; "
             "steps = target decisions, median over seeds, '> budget' = never reached (censored). "
             "`half`: seeds where the mode reached the threshold in at most half of scratch's steps.", "",
             "| source | target | reuse | jumpstart | asymptotic gain | auc_norm (scratch) | transfer ratio "
             "| steps to threshold | scratch steps | half | final return |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {m: i for i, m in enumerate(REUSE_MODES)}
    for c in sorted(cells, key=lambda c: (c["target"], str(c["source"]), order[c["reuse"]])):
        if c["reuse"] == SCRATCH:
            continue
        rs = c["rows"]
        lines.append(
            f"| {_name(c['source'])} | {_name(c['target'])} | {c['reuse']} | {_mean_std([r['jumpstart'] for r in rs])} "
            f"| {_mean_std([r['asymptotic_gain'] for r in rs])} | {c['auc_norm']:.3f} ({c['scratch_auc_norm']:.3f}) "
            f"| {_mean_std([r['transfer_ratio'] for r in rs])} | {_steps(c['steps_to_threshold'], c['budget_steps'])} "
            f"| {_steps(c['scratch_steps_to_threshold'], c['budget_steps'])} | {c['half_of_scratch_steps']} "
            f"| {_mean_std([r['final_return'] for r in rs])} |")
    lines += ["", "Latency (mean per-request latency on the evaluation episodes, lower is better): how soon each "
              "mode reaches the latency scratch ends with (median target steps over seeds; `half` as above).", "",
              "| source | target | reuse | final latency (s) | scratch final (s) | steps to scratch's final "
              "| scratch's steps | half |", "|---|---|---|---:|---:|---:|---:|---:|"]
    scratch_latency = {(c["target"]): c["final_latency_s"] for c in cells if c["reuse"] == SCRATCH}
    for c in sorted(cells, key=lambda c: (c["target"], str(c["source"]), order[c["reuse"]])):
        if c["reuse"] == SCRATCH:
            continue
        mine, theirs = c["steps_to_scratch_final_latency"], c["scratch_steps_to_final_latency"]
        half = sum(m is not None and t is not None and m <= 0.5 * t for m, t in zip(mine, theirs))
        lines.append(f"| {_name(c['source'])} | {_name(c['target'])} | {c['reuse']} | {c['final_latency_s']:.3f} "
                     f"| {scratch_latency.get(c['target'], float('nan')):.3f} | {_steps(mine, c['budget_steps'])} "
                     f"| {_steps(theirs, c['budget_steps'])} | {half}/{len(mine)} |")
    lines += ["", "References on the evaluation episodes (mean episode return): " +
              ", ".join(f"{_name(t)}: random {r['random']:.2f}, greedy {r['greedy']:.2f}" for t, r in refs.items()), ""]
    return "\n".join(lines)


def plot(exp: ExperimentConfig, rows: list[dict], path: Path, key: str = "eval_return",
         ylabel: str = "evaluation return (sampled policy)") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys((p.source, p.target) for p in exp.pairs))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 3.6), squeeze=False)
    colours = {"none": "k", "init": "tab:blue", "pi-reuse": "tab:orange", "both": "tab:green"}
    for ax, (source, target) in zip(axes[0], pairs):
        for mode in exp.modes:
            rs = [r for r in rows if r["target"] == target and r["reuse"] == mode
                  and (mode == SCRATCH or r["source"] == source)]
            curves = [r["curve"] for r in rs]
            _band(ax, curves, key, colours[mode], "scratch" if mode == SCRATCH else mode)
            if mode in ("pi-reuse", "both"):
                _band(ax, curves, "online_return", colours[mode], f"{mode} online", dashed=True)
        ax.set_title(f"{resolve_family(source).name} -> {resolve_family(target).name}", fontsize=9)
        ax.set_xlabel("target env steps (decisions)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _band(ax, curves: list[list[dict]], key: str, colour: str, label: str, dashed: bool = False) -> None:
    curves = [[p for p in c if key in p] for c in curves]
    curves = [c for c in curves if c]
    if not curves:
        return
    n = min(len(c) for c in curves)
    x = np.mean([[p["step"] for p in c[:n]] for c in curves], axis=0)
    y = np.array([[p[key] for p in c[:n]] for c in curves])
    ax.plot(x, y.mean(0), ls="--" if dashed else "-", c=colour, lw=1.0 if dashed else 1.6, label=label)
    if len(curves) > 1 and not dashed:
        ax.fill_between(x, y.min(0), y.max(0), color=colour, alpha=0.12)


def write_report(exp: ExperimentConfig, root: Path, parent_run_id: str, command: str | None = None) -> dict:
    rows, refs = trial_metrics(exp, root)
    transfers = [r for r in rows if r["reuse"] != SCRATCH]
    for r in transfers:
        recording.log_numbers(r["run_id"], {k: r[k] for k in SUMMARY_KEYS + ("scratch_steps_to_threshold",)
                                            if isinstance(r.get(k), (int, float))} | {"censored": float(r["censored"])},
                              step=int(r["budget_steps"]))
    cells = summarise(rows)
    folder = root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    command = command or f"aigc-edge tune <{exp.name}.yaml>"
    (folder / "summary.md").write_text(markdown(exp, cells, refs, command))
    plot(exp, rows, folder / "transfer_curves.png")
    plot(exp, rows, folder / "transfer_latency.png", key="eval_latency_s", ylabel="evaluation latency (s)")
    slim = [{k: v for k, v in c.items() if k != "rows"} for c in cells]
    per_trial = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    (folder / "summary.json").write_text(json.dumps(
        {"experiment": exp.model_dump(mode="json"), "references": refs, "cells": slim, "trials": per_trial,
         "curves": {f"{r['reuse']}|{r['source']}|{r['target']}|{r['seed']}": r["curve"] for r in rows}},
        indent=1, default=float))
    recording.client().log_artifacts(parent_run_id, str(folder), "report")
    return {"cells": slim, "trials": per_trial, "references": refs, "report": str(folder)}
