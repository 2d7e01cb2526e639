"""Load preference data in any supported format and split it for a shift experiment.

    python examples/load_data.py [FILE] [--split-by subset --id helpful_base,oasst,selfinstruct]

Without FILE it writes a small HH-RLHF-style file and a conversational file first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rewardkit import load_preferences


def _sample_files(folder: Path) -> list[Path]:
    hh = folder / "hh.jsonl"
    hh.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {
                    "chosen": "\n\nHuman: Hi!\n\nAssistant: Hello, how can I help?",
                    "rejected": "\n\nHuman: Hi!\n\nAssistant: What.",
                    "subset": "harmless",
                },
                {
                    "chosen": "\n\nHuman: 2+2?\n\nAssistant: 4",
                    "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5",
                    "subset": "helpful",
                },
            ]
        )
    )
    conv = folder / "conversational.json"
    conv.write_text(
        json.dumps(
            [
                {
                    "prompt": [{"role": "user", "content": "Name a prime."}],
                    "chosen": [{"role": "assistant", "content": "7"}],
                    "rejected": [{"role": "assistant", "content": "8"}],
                    "subset": "helpful",
                }
            ]
        )
    )
    return [hh, conv]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--split-by", default="subset")
    ap.add_argument("--id", default="helpful", help="comma-separated in-distribution values")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-data-") as tmp:
        files = [Path(f) for f in args.files] or _sample_files(Path(tmp))
        summary = {}
        for f in files:
            ds = load_preferences(f, on_error="skip")
            id_part, ood_part = ds.split(args.split_by, args.id.split(","))
            summary[f.name] = {
                "pairs": len(ds),
                "skipped": len(ds.skipped),
                "id": len(id_part),
                "ood": len(ood_part),
            }
            print(
                f"{f.name}: {len(ds)} pairs ({len(ds.skipped)} skipped); ID {len(id_part)}, OOD {len(ood_part)}"
            )
            print(f"  first prompt: {ds[0].prompt!r}\n  chosen: {ds[0].chosen!r}")
        return summary


if __name__ == "__main__":
    main()
