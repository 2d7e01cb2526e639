"""Two engine speed-ups: a prompt shared by several responses computed once (prefix sharing), and bf16
where the hardware does it fast (``dtype="auto"``).

    python examples/prefix_and_dtype.py [--model PATH] [--responses 8]

Without --model a tiny model is built locally. One long prompt and several responses (a best-of-N
group) are scored with prefix sharing on and off; the rewards agree and the report says how many
prompt tokens the shared run did not recompute. Then the model is scored in the dtype ``auto`` picks on
this machine, against float32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rewardkit import BradleyTerryRM
from rewardkit.dtypes import dtype_name, resolve_device, resolve_dtype
from rewardkit.scoring import share_groups
from rewardkit.templating import Texts
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--responses", type=int, default=8)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-prefix-") as tmp:
        model = args.model or build_tiny_model(Path(tmp) / "lm")
        rm = BradleyTerryRM.from_pretrained(model, head_seed=0)
        prompt = "please tell me " + " ".join(["the good answer"] * 40)  # a long shared prompt
        responses = [" good" * (i + 1) for i in range(args.responses)]
        texts = Texts.of([prompt] * len(responses), responses)
        items = texts.encode(rm.formatter)
        groups, alone = share_groups(items)
        saved = sum((len(g) - 1) * items[g[0]].response_start for g in groups)

        rm.configure(prefix_sharing=True)
        shared = rm.score_texts(texts)
        rm.configure(prefix_sharing=False)
        unshared = rm.score_texts(texts)

        auto = dtype_name(resolve_dtype("auto", resolve_device(None)))
        rm.configure(prefix_sharing=True)
        fp32 = rm.score(["tell me"] * 4, [" good", " bad", " good good", " ok"])
        rm.to_dtype("auto")
        low = rm.score(["tell me"] * 4, [" good", " bad", " good good", " ok"])
        result = {
            "sequences": len(items),
            "shared_groups": len(groups),
            "prompt_tokens_not_recomputed": saved,
            "total_tokens": sum(len(x) for x in items),
            "max_abs_diff_shared_vs_unshared": float(np.abs(shared - unshared).max()),
            "auto_dtype": auto,
            "max_abs_diff_auto_vs_float32": float(np.abs(low - fp32).max()),
        }
    print(result)
    return result


if __name__ == "__main__":
    main()
