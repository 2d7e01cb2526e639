"""``rewardkit bench hacking --optimizer rl|both`` results: per-run curves with 95% CIs over prompts and
seeds, Gao et al.'s fit, gold-judged win rates, and the RL parts of ``report.md`` / ``report.png`` /
``rl_samples.jsonl``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardkit.bench.hacking_report import ci95
from rewardkit.bench.rl_eval import Measurement
from rewardkit.eval.overoptimisation import fit_gao, peak_and_drop, win_rate_per_prompt


def _units(runs: Sequence[Sequence[Measurement]], what: str, i: int, rows: slice) -> np.ndarray:
    """[seeds * P] per-(seed, prompt) means over the samples of measurement ``i`` for the prompts in
    ``rows`` (EAD is per prompt)."""
    return np.concatenate(
        [np.asarray(getattr(r[i], what)).reshape(len(r[i].ead), -1).mean(axis=1)[rows] for r in runs]
    )


def summarise_run(
    runs: Sequence[Sequence[Measurement]], n_boot: int, seed: int = 0, rows: slice = slice(None)
) -> dict[str, Any]:
    """One proxy's RL curve over its seeds (``runs[seed][i]``: the i-th measurement of that seed's run,
    the same steps in every run): means over prompts and seeds with percentile bootstrap 95% CIs over
    the (seed, prompt) units, the peak, the drop from it to the end, ``over_optimised`` and Gao et al.'s
    fit of gold - gold at step 0 against d = sqrt(KL)."""
    steps = [m.step for m in runs[0]]
    if any([m.step for m in r] != steps for r in runs):
        raise ValueError("every seed's run must be measured at the same steps")
    cols = {
        w: np.stack([_units(runs, w, i, rows) for i in range(len(steps))], axis=1)
        for w in ("gold", "proxy", "kl", "length", "ead")
    }  # [units, steps]
    if runs[0][0].embedding is not None:
        cols["embedding"] = np.stack([_units(runs, "embedding", i, rows) for i in range(len(steps))], axis=1)
    mean = {w: v.mean(axis=0) for w, v in cols.items()}
    gold_ci, kl_ci = ci95(cols["gold"], n_boot, seed), ci95(cols["kl"], n_boot, seed)
    peak, drop, over = peak_and_drop(mean["gold"], np.asarray(gold_ci))
    d = np.sqrt(np.clip(mean["kl"], 0, None))
    fit = fit_gao(d, mean["gold"] - mean["gold"][0], "rl")
    extra = {"embedding_diversity": mean["embedding"].tolist()} if "embedding" in mean else {}
    return {
        **extra,
        "step": steps,
        "kl": mean["kl"].tolist(),
        "kl_ci95": kl_ci,
        "gold": mean["gold"].tolist(),
        "gold_ci95": gold_ci,
        "proxy": mean["proxy"].tolist(),
        "length": mean["length"].tolist(),
        "ead": mean["ead"].tolist(),
        "peak_step": int(steps[peak]),
        "kl_at_peak": float(mean["kl"][peak]),
        "drop": drop,
        "over_optimised": over,
        "fit": {"form": "d (alpha - beta log d)", **fit._asdict()},
    }


def win_rates(
    final: dict[str, Sequence[np.ndarray]], initial: Sequence[np.ndarray], n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """Gold-judged win rates (ties 1/2) with 95% bootstrap CIs over prompts: WARM-M's final policy vs
    EXRM-1's, and every final policy vs the initial one. ``final[name][s]`` and ``initial[s]``: [P, S]
    gold rewards of the last (first) measurement of RL seed s; a prompt's rate is averaged over seeds."""

    def rate(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> dict[str, Any]:
        per_prompt = np.mean([win_rate_per_prompt(x, y) for x, y in zip(a, b)], axis=0)  # [P]
        lo, hi = ci95(per_prompt[:, None], n_boot, seed)[0]
        return {"win_rate": float(per_prompt.mean()), "ci95": [lo, hi]}

    out: dict[str, Any] = {}
    if "WARM-M" in final and "EXRM-1" in final:
        out["WARM-M vs EXRM-1"] = rate(final["WARM-M"], final["EXRM-1"])
    for name, runs in final.items():
        out[f"{name} vs initial"] = rate(runs, initial)
    return out


def sample_lines(setup: str, model: str, seed: int, results: Sequence[Measurement]) -> list[dict[str, Any]]:
    """``rl_samples.jsonl`` records of one run: one per evaluation sample."""
    return [{"setup": setup, "model": model, "seed": seed, **s} for m in results for s in m.samples]


def _cell(v: float, ci: Sequence[float]) -> str:
    return f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def rl_markdown(report: dict[str, Any]) -> str:
    """A table per setup: each proxy's gold at step 0, at its peak and at the end (95% CIs), KL at the
    peak and at the end, the drop, the proxy gain, Gao's fit and the win rate against the initial policy;
    then WARM's headline and the Elastic Reset frontier."""
    out = []
    for setup, models in report["rl"].items():
        wins = report["rl_win_rates"][setup]
        head = [
            "model",
            "gold step 0",
            "peak gold (step)",
            "gold end",
            "KL peak",
            "KL end",
            "drop",
            "proxy gain",
            "Gao alpha, beta (rmse)",
            "win vs initial",
        ]
        out += [f"### RL, {setup}\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, m in models.items():
            i = m["step"].index(m["peak_step"])
            f, w = m["fit"], wins[f"{name} vs initial"]
            out.append(
                "| "
                + " | ".join(
                    [
                        name,
                        _cell(m["gold"][0], m["gold_ci95"][0]),
                        f"{_cell(m['gold'][i], m['gold_ci95'][i])} ({m['peak_step']})",
                        _cell(m["gold"][-1], m["gold_ci95"][-1]),
                        f"{m['kl'][i]:.2f}",
                        _cell(m["kl"][-1], m["kl_ci95"][-1]),
                        f"{m['drop']:.2f}{' *' if m['over_optimised'] else ''}",
                        f"{m['proxy'][-1] - m['proxy'][0]:+.2f}",
                        f"{f['alpha']:.2f}, {f['beta']:.2f} ({f['residual']:.2f})",
                        _cell(w["win_rate"], w["ci95"]),
                    ]
                )
                + " |"
            )
        shifted = [
            f"{n} {_cell(m['shifted']['gold'][-1], m['shifted']['gold_ci95'][-1])}"
            for n, m in models.items()
            if "shifted" in m
        ]
        if shifted:
            first = next(iter(models.values()))["shifted"]
            out.append(
                f"\nShifted prompts (a domain no policy saw): gold {_cell(first['gold'][0], first['gold_ci95'][0])} "
                "at step 0; at the end: " + "; ".join(shifted) + "."
            )
        if "WARM-M vs EXRM-1" in wins:
            w = wins["WARM-M vs EXRM-1"]
            out.append(
                f"\nWARM-M's final policy vs EXRM-1's, judged by gold: win rate {_cell(w['win_rate'], w['ci95'])}."
            )
        if "EXRM-1+ER" in models and "EXRM-1" in models:
            out.append(_frontier_line(models["EXRM-1"], models["EXRM-1+ER"]))
        out.append("")
    out.append(
        "RL: TRL's GRPOTrainer against each proxy; every measurement samples the held-out prompts at "
        "temperature 1 from the current policy. Gold and KL(pi || pi_init) (nats, exact per-token KL "
        "summed along sampled paths): means over prompts and seeds with 95% bootstrap CIs; drop = peak "
        "gold - final gold (* larger than the final CI half-width: over-optimised); Gao fit of gold gain "
        "vs d = sqrt(KL); win rates by gold, ties 1/2, CIs over prompts."
    )
    return "\n".join(out) + "\n"


def _frontier_line(plain: dict[str, Any], reset: dict[str, Any]) -> str:
    from rewardkit.eval.overoptimisation import best_within

    budget = max(reset["kl"])
    a = best_within(np.asarray(plain["kl"]), np.asarray(plain["gold"]), budget)
    b = best_within(np.asarray(reset["kl"]), np.asarray(reset["gold"]), budget)
    return (
        f"Elastic Reset frontier: best gold within KL <= {budget:.2f} nats: EXRM-1+ER {b:.2f}, "
        f"EXRM-1 {a:.2f}; final KL {reset['kl'][-1]:.2f} vs {plain['kl'][-1]:.2f}, final gold "
        f"{reset['gold'][-1]:.2f} vs {plain['gold'][-1]:.2f}."
    )


def plot_rl(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Gold (solid) and proxy (dashed, right axis) against sqrt(KL): a column per setup; the top row
    best-of-N (at its KL bound) where it ran, the bottom row RL per proxy."""
    from rewardkit.eval.plots import _figure, _save

    plt = _figure()
    rl = report["rl"]
    rows = [("bon", report["setups"])] if report.get("setups") else []
    rows.append(("rl", rl))
    fig, axes = plt.subplots(len(rows), len(rl), figsize=(6.5 * len(rl), 4.5 * len(rows)), squeeze=False)
    fig.subplots_adjust(wspace=0.45, hspace=0.35)
    for r, (kind, per_setup) in enumerate(rows):
        for ax, setup in zip(axes[r], rl):
            twin = ax.twinx()
            s = per_setup[setup]
            curves = s["models"].items() if kind == "bon" else s.items()
            for i, (name, m) in enumerate(curves):
                x = np.sqrt(np.clip(s["kl"] if kind == "bon" else m["kl"], 0, None))
                ax.plot(x, m["gold"], "o-", color=f"C{i % 10}", label=name, markersize=3)
                lo, hi = zip(*m["gold_ci95"])
                ax.fill_between(x, lo, hi, color=f"C{i % 10}", alpha=0.05)
                twin.plot(x, m["proxy"], "--", color=f"C{i % 10}", alpha=0.5)
            what = "best-of-N (KL bound)" if kind == "bon" else "RL (GRPO)"
            ax.set_title(f"{setup}: {what}")
            ax.set_xlabel("sqrt(KL(pi || pi_init)) (sqrt nats)")
            ax.set_ylabel("gold reward")
            twin.set_ylabel("proxy reward (dashed)")
            ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def add_bon_fits(setups: dict[str, Any]) -> None:
    """Gao et al.'s best-of-N fit d (alpha - beta d) of every proxy's curve (gold gain over N = 1 vs
    d = sqrt of the KL bound), as ``fit`` in each model's entry."""
    for s in setups.values():
        d = np.sqrt(np.asarray(s["kl"], dtype=np.float64))
        for m in s["models"].values():
            gold = np.asarray(m["gold"])
            m["fit"] = {"form": "d (alpha - beta d)", **fit_gao(d, gold - gold[0], "bon")._asdict()}


def full_markdown(report: dict[str, Any]) -> str:
    """The best-of-N tables where they ran, then the RL tables where they ran."""
    from rewardkit.bench.hacking_report import to_markdown

    parts = [to_markdown(report)] if report.get("setups") else []
    if "rl" in report:
        parts.append(rl_markdown(report))
    return "\n".join(parts)


def write_rl_report(report: dict[str, Any], out, lines: Sequence[dict[str, Any]]) -> None:
    """``report.json``, ``report.md``, ``report.png`` (best-of-N and RL) and ``rl_samples.jsonl``."""
    from rewardkit.io import atomic_write_text, dumps, write_json

    write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report["title"] + "\n\n" + full_markdown(report))
    plot_rl(report, out / "report.png")
    atomic_write_text(out / "rl_samples.jsonl", "".join(dumps(rec) + "\n" for rec in lines))
