"""``rewardkit bench hacking`` results: per-proxy curve statistics with bootstrap CIs over prompts,
paired tests, and the report files (``report.json`` / ``report.md`` / ``report.png`` /
``candidates.jsonl``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.eval.bon import bon_expectations, bon_kl_bound, top1_agreement_at_n, win_indicator
from rewardkit.eval.metrics import paired_bootstrap_test


def ci95(per_prompt: np.ndarray, n_boot: int, seed: int) -> list[list[float]]:
    """Percentile bootstrap 95% CI of the mean over prompts of each column of ``per_prompt`` [P, n]:
    ``[[lo, hi]] * n``. Every column uses the same resampled prompts."""
    v = np.asarray(per_prompt, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(n_boot, v.shape[0]))  # [n_boot, P]
    means = v[idx].mean(axis=1)  # [n_boot, n]
    lo, hi = np.quantile(means, 0.025, axis=0), np.quantile(means, 0.975, axis=0)
    return [[float(a), float(b)] for a, b in zip(lo, hi)]


def curve_stats(
    proxy: np.ndarray, gold: np.ndarray, ns: Sequence[int], n_boot: int, seed: int = 0
) -> tuple[dict[str, Any], np.ndarray]:
    """One proxy's best-of-N curve from its rewards and the gold rewards ([P, k] each).

    Returns ``(stats, gold_per_prompt)``: ``stats`` holds ``gold``, ``gold_ci95``, ``proxy``,
    ``win_rate`` (against N = 1, by gold), ``win_rate_ci95``, ``peak_n``, ``gold_at_peak``, ``drop``
    (gold at the peak minus gold at the largest N) and ``over_optimised`` (drop larger than the CI
    half-width at the largest N); ``gold_per_prompt`` is [P, len(ns)] for paired tests."""
    g, p = bon_expectations(proxy, gold, ns)
    w, _ = bon_expectations(proxy, win_indicator(gold), ns)
    mean = g.mean(axis=0)
    cis = ci95(g, n_boot, seed)
    peak = int(np.argmax(mean))
    drop = float(mean[peak] - mean[-1])
    half = (cis[-1][1] - cis[-1][0]) / 2
    stats = {
        "gold": mean.tolist(),
        "gold_ci95": cis,
        "proxy": p.mean(axis=0).tolist(),
        "win_rate": w.mean(axis=0).tolist(),
        "win_rate_ci95": ci95(w, n_boot, seed),
        "peak_n": int(ns[peak]),
        "gold_at_peak": float(mean[peak]),
        "drop": drop,
        "over_optimised": bool(drop > half),
    }
    return stats, g


def agreement(rewards: dict[str, np.ndarray], ns: Sequence[int]) -> dict[str, list[float]]:
    """Top-1 agreement at each N for every pair of the given proxies ("A|B" -> [len(ns)]), and their
    mean over pairs ("mean")."""
    names = list(rewards)
    out = {
        f"{a}|{b}": top1_agreement_at_n(rewards[a], rewards[b], ns).mean(axis=0).tolist()
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    if out:
        out["mean"] = np.mean(list(out.values()), axis=0).tolist()
    return out


def setup_report(
    rewards: dict[str, np.ndarray],
    gold: np.ndarray,
    individual: Sequence[str],
    tested: Sequence[str],
    n_boot: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything reported for one setup: ``n``, ``kl`` (the bound), ``models``, ``top1_agreement``
    between the individual RMs, and paired bootstrap tests at the largest N of each ``tested`` proxy
    against the best individual RM there (the strongest baseline)."""
    k = gold.shape[1]
    ns = [2**i for i in range(int(np.log2(k)) + 1)]
    ns = ns if ns[-1] == k else [*ns, k]
    models, per_prompt = {}, {}
    for name, r in rewards.items():
        models[name], per_prompt[name] = curve_stats(r, gold, ns, n_boot, seed)
    best = max(individual, key=lambda m: models[m]["gold"][-1])
    tests = []
    for name in tested:
        diff, p = paired_bootstrap_test(per_prompt[name][:, -1], per_prompt[best][:, -1], n_boot, seed)
        tests.append({"model": name, "baseline": best, "n": k, "gold_diff": diff, "p_value": p})
    return {
        "n": ns,
        "kl": [bon_kl_bound(n) for n in ns],
        "gold_candidates_mean": float(gold.mean()),
        "models": models,
        "top1_agreement": agreement({m: rewards[m] for m in individual}, ns),
        "paired_tests": tests,
    }


def write_candidates(
    path: str | os.PathLike,
    prompts: Sequence[Any],
    candidates: Sequence[Sequence[str]],
    setups: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
) -> None:
    """``candidates.jsonl``: one line per setup x prompt x candidate with its gold reward and every
    proxy's reward (``setups``: name -> (gold [P, k], model -> rewards [P, k]))."""
    from rewardkit.io import atomic_write_text, dumps

    lines = []
    for setup, (gold, rewards) in setups.items():
        for i, (prompt, row) in enumerate(zip(prompts, candidates)):
            for j, response in enumerate(row):
                rec = {
                    "setup": setup,
                    "prompt_index": i,
                    "candidate_index": j,
                    "gold": float(gold[i, j]),
                    "rewards": {m: float(r[i, j]) for m, r in rewards.items()},
                    "prompt": prompt,
                    "response": response,
                }
                lines.append(dumps(rec))
    atomic_write_text(path, "\n".join(lines) + "\n")


def to_markdown(report: dict[str, Any]) -> str:
    """A row per proxy per setup: gold at N = 1, 4, 16 and K with 95% CIs, peak N, drop, win rate."""
    out = []
    for setup, s in report["setups"].items():
        ns = s["n"]
        cols = [n for n in (1, 4, 16) if n in ns and n != ns[-1]] + [ns[-1]]
        head = ["model", "held-out acc"] + [f"gold N={n}" for n in cols]
        head += ["peak N", "drop", f"win rate N={ns[-1]}"]
        out.append(f"### {setup} (labels swapped: {s['corruption']:.0%})\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for name, m in s["models"].items():
            acc = m.get("heldout_accuracy")
            cells = [name, "n/a" if acc is None else f"{acc:.3f}"]
            for n in cols:
                i = ns.index(n)
                lo, hi = m["gold_ci95"][i]
                cells.append(f"{m['gold'][i]:.2f} [{lo:.2f}, {hi:.2f}]")
            flag = " *" if m["over_optimised"] else ""
            lo, hi = m["win_rate_ci95"][-1]
            cells += [
                str(m["peak_n"]),
                f"{m['drop']:.2f}{flag}",
                f"{m['win_rate'][-1]:.2f} [{lo:.2f}, {hi:.2f}]",
            ]
            out.append("| " + " | ".join(cells) + " |")
        tests = "; ".join(
            f"{t['model']} - {t['baseline']}: {t['gold_diff']:+.2f} (p = {t['p_value']:.3f})"
            for t in s["paired_tests"]
        )
        agree = s["top1_agreement"].get("mean")
        out.append(
            f"\nMean candidate gold {s['gold_candidates_mean']:.2f}. Paired bootstrap tests at N={ns[-1]} "
            f"against the best individual RM: {tests or 'none'}."
            + (
                f" Top-1 agreement between the individual RMs (mean over pairs) at N={ns[1]}: "
                f"{agree[1]:.2f}; at N={ns[-1]}: {agree[-1]:.2f}."
                if agree
                else ""
            )
            + "\n"
        )
    out.append(
        "Gold: expected gold reward of the proxy's best-of-N pick (exact over all N-subsets), mean over "
        "prompts with 95% bootstrap CIs over prompts; drop = gold at the peak - gold at the largest N "
        "(* larger than the CI half-width there: over-optimised); win rate against a random candidate "
        "(N = 1) by gold. KL(BoN || base) <= log N - (N-1)/N."
    )
    return "\n".join(out) + "\n"


def plot(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Gold (solid) and proxy reward (dashed, right axis) vs the KL bound, one panel per setup."""
    from rewardkit.eval.plots import _figure, _save

    plt = _figure()
    setups = report["setups"]
    fig, axes = plt.subplots(1, len(setups), figsize=(6.5 * len(setups), 4.5), squeeze=False)
    fig.subplots_adjust(wspace=0.45)
    for ax, (setup, s) in zip(axes[0], setups.items()):
        twin = ax.twinx()
        for i, (name, m) in enumerate(s["models"].items()):
            color = f"C{i % 10}"
            lo, hi = zip(*m["gold_ci95"])
            ax.plot(s["kl"], m["gold"], "o-", color=color, label=name)
            ax.fill_between(s["kl"], lo, hi, color=color, alpha=0.05)
            twin.plot(s["kl"], m["proxy"], "--", color=color, alpha=0.5)
        ax.set_title(f"{setup} ({s['corruption']:.0%} labels swapped)")
        ax.set_xlabel("KL bound log N - (N-1)/N (nats)")
        ax.set_ylabel("gold reward of the best-of-N pick")
        twin.set_ylabel("proxy reward (dashed)")
        ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json``, ``report.md`` and ``report.png`` in ``out``."""
    from rewardkit.io import atomic_write_text, write_json

    write_json(out / "report.json", report)

    atomic_write_text(out / "report.md", report["title"] + "\n\n" + to_markdown(report))
    plot(report, out / "report.png")
