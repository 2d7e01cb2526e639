"""Elastic Reset in a training loop with no TRL: rewardkit's DPO trainer with the callback.

    python examples/elastic_reset.py [--reset-every 4] [--ema-decay 0.9]

A tiny policy is DPO-trained on the synthetic task twice, plainly and with Elastic Reset (every
``reset_every`` steps the online model restarts from its EMA, the EMA from the initial model). The reset
run drifts less from the initial model (smaller mean |implicit reward|, which is beta times the log-ratio
to the reference) while still learning the preference. With TRL: ``GRPOTrainer(..., callbacks=[cb])``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rewardkit import ElasticResetCallback, train_dpo
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reset-every", type=int, default=4)
    ap.add_argument("--ema-decay", type=float, default=0.9)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-elastic-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "sft")
        train, test = make_synthetic_preferences(256, seed=0), make_synthetic_preferences(128, seed=1)
        kw = dict(beta=0.1, lr=3e-3, epochs=2, batch_size=16, progress=False)
        plain = train_dpo(model, train, **kw).model
        cb = ElasticResetCallback(reset_every=args.reset_every, ema_decay=args.ema_decay)
        reset = train_dpo(model, train, callbacks=[cb], **kw).model
        result = {}
        for name, rm in (("plain", plain), ("elastic_reset", reset)):
            s = rm.score_pairs(test)
            drift = float(np.abs(np.concatenate([s.chosen, s.rejected])).mean())
            result[name] = {"accuracy": s.accuracy(), "mean_abs_implicit_reward": drift}
        result["resets"] = cb.resets
        print(result)
        return result


if __name__ == "__main__":
    main()
