"""``rewardkit train`` with out-of-domain hyper-parameters or a diverging run (rewardkit.train): one ``error:``
line, nothing saved; and the Python training API's lock on its output (a second process fails in one line)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.train import train_dpo, train_reward_model, train_warm
from tests.hostile import check_case, leftovers, out_of, run

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "beta inf": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--beta", "inf"],
        lambda e: [e.data, e.lm],
        out_of,
        r"--beta.*'inf' is not a finite number",
    ),
    "lr inf": (
        lambda e: ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--lr", "inf"],
        lambda e: [e.data, e.lm],
        out_of,
        r"--lr.*'inf' is not a finite number",
    ),
    "training diverges": (
        lambda e: [
            "train",
            "explicit",
            "--model",
            e.lm,
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--lr",
            "1e30",
            "--batch-size",
            "2",
        ],
        lambda e: [e.data, e.lm],
        out_of,
        r"training loss is (nan|inf) at step \d+ .*nothing saved",
    ),
    "DPO beta 0": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--beta", "0"],
        lambda e: [e.data],
        out_of,
        r"--beta.*'0' must be > 0",
    ),
    "ema decay 1": (
        lambda e: [
            "train",
            "explicit",
            "--model",
            e.lm,
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--elastic-reset-every",
            "2",
            "--ema-decay",
            "1",
        ],
        lambda e: [e.data],
        out_of,
        r"--ema-decay.*'1' must be < 1",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "train seed -5": (
        lambda n: [
            "train",
            "explicit",
            "--model",
            n.base,
            "--data",
            n.data,
            "--out",
            n.d / "t",
            "--seed",
            "-5",
        ],
        lambda n: [n.data],
        lambda n: n.d / "t",
        r"--seed.*-5 is not in the range 0<=x<=4294967295",
    ),
    "train seed 2**70": (
        lambda n: [
            "train",
            "explicit",
            "--model",
            n.base,
            "--data",
            n.data,
            "--out",
            n.d / "t",
            "--seed",
            str(2**70),
        ],
        lambda n: [n.data],
        lambda n: n.d / "t",
        r"--seed.*1180591620717411303424 is not in the range",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)


# Another process training into OUT through the Python API: it holds OUT's lock (rewardkit.locks.hold_output)
# from its start, and waits once its training has begun.
HOLD_TRAINING = textwrap.dedent(
    """
    import sys, time
    from transformers import TrainerCallback
    from rewardkit.train import train_reward_model

    class Hold(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            print("held", flush=True)
            time.sleep(300)

    train_reward_model(sys.argv[1], sys.argv[2], out=sys.argv[3], batch_size=4, callbacks=[Hold()])
    """
)

# name -> a Python training entry point writing OUT (env, out)
PYTHON_WRITERS = {
    "train_reward_model": lambda e, out: train_reward_model(e.lm, e.data, out=out, batch_size=4),
    "train_dpo": lambda e, out: train_dpo(e.lm, e.data, out=out, batch_size=4),
    "train_warm": lambda e, out: train_warm(e.lm, e.data, out, grid=[{}, {"head_seed": 1}], batch_size=4),
    "train_reward_model force": lambda e, out: train_reward_model(e.lm, e.data, out=out, force=True),
}


def test_the_python_training_api_locks_its_output(hostile_env, tmp_path, capsys):
    e, out = hostile_env, tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_TRAINING, str(e.lm), str(e.data), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for name, write in PYTHON_WRITERS.items():
            with pytest.raises(RewardkitError) as err:
                write(e, out)
            message = str(err.value)
            assert "\n" not in message, name
            assert re.fullmatch(
                rf"{re.escape(str(out))}: another rewardkit run \(pid {holder.pid}\) is writing this output; "
                "wait for it to finish or choose another output",
                message,
            ), (name, message)
            assert not out.exists() and leftovers(out) == [".out.lock"], name  # the holder's lock only
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: the kernel released its lock): the API trains, then removes its lock
    trained = train_reward_model(e.lm, e.data, out=out, batch_size=4)
    assert trained.record.optimizer_steps == 3  # 12 pairs, 4 per step, one epoch
    assert (out / "rewardkit.json").is_file() and leftovers(out) == []
    # the CLI holds its output and calls the same API: the lock is taken once, not twice (no self-refusal)
    cli_out = tmp_path / "cli"
    code, stdout, err = run(
        ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", cli_out, "--batch-size", 4], capsys
    )
    assert code == 0, err
    assert "in 3 steps" in stdout and leftovers(cli_out) == []
