"""EXRM vs DPORM (and WARM, ensembles) under prompt and response shift: the same code as
``rewardkit bench shift``, with the real AlpacaEval annotations when they are present.

    python3 benchmarks/exrm_vs_dporm.py [--preset cpu] [--data FILE --recipe NAME] [--out DIR]

Default: the ``cpu`` preset (demo model, LoRA) on ../shared/data/alpaca_eval_gpt4.jsonl.gz with the
``alpaca_eval`` recipe (prompt shift: helpful_base/oasst/selfinstruct -> koala/vicuna; response shift:
pairs against open-weight models -> pairs against API models). Writes the report to
benchmarks/results/exrm_vs_dporm_<preset>/ and a summary JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA  # noqa: E402

from rewardkit.bench import resolve_config, run_shift_benchmark  # noqa: E402
from rewardkit.io import write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--data", default=str(DATA) if DATA.exists() else None)
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    recipe = args.recipe or ("alpaca_eval" if args.data == str(DATA) else None)
    config = resolve_config(args.preset, overrides={"data": args.data, "recipe": recipe, "model": args.model})
    results = Path(__file__).parent / "results"
    out = Path(args.out) if args.out else results / f"exrm_vs_dporm_{args.preset}"
    report = run_shift_benchmark(config, out, force=True)
    summary = {
        "preset": args.preset,
        "data": report.extra["data"]["pool"]["source"],
        "minutes": report.extra["timings"]["total_s"] / 60,
        "models": {
            k: {"id": v["id"], "ood_mean": v["ood_mean"], "drop": v["drop"]} for k, v in report.models.items()
        },
        "exrm_minus_dporm": [t for t in report.paired_tests if (t["a"], t["b"]) == ("EXRM", "DPORM")],
    }
    write_json(results / f"exrm_vs_dporm_{args.preset}.json", summary)
    print(report.to_markdown())


if __name__ == "__main__":
    main()
