"""``rewardkit score``: a reward model's rewards and margin for every pair of a preference file."""

from __future__ import annotations

import click

from rewardkit.cli.loaders import length_penalized, load_rm, remote_note
from rewardkit.cli.options import (
    allow_remote_option,
    check_file_output,
    model_options,
    on_error_option,
    prefix_sharing_option,
)
from rewardkit.util import is_url


@click.command()
@click.option("--rm", "rm_dir", default=None, help="reward model folder (or the URL of a rewardkit server)")
@click.option("--server", default=None, help="URL of a `rewardkit serve` server to score with")
@click.option("--data", required=True, help="preference file or hub dataset name")
@click.option("--out", required=True, help="output JSONL: one line per pair, in input order")
@model_options
@allow_remote_option
@prefix_sharing_option
@click.option("--no-progress", is_flag=True, help="no progress bar (it is off anyway when not on a terminal)")
@on_error_option
@click.option("--force", is_flag=True, help="overwrite an existing --out")
def score(
    rm_dir,
    server,
    dpo,
    base_model,
    data,
    out,
    max_batch_size,
    max_tokens,
    dtype,
    no_prefix_sharing,
    no_progress,
    chat_template,
    length_penalty,
    on_error,
    force,
) -> None:
    """Score the chosen and rejected response of every pair.

    Each output line holds ``index`` (the record's position in --data, skipped records counted), the
    two rewards and the margin; an ensemble adds each member's rewards and their std; with
    --length-penalty, each reward's raw value and penalty are written apart."""
    import numpy as np

    from rewardkit.accuracy import pairwise_accuracy
    from rewardkit.data import load_preferences
    from rewardkit.distributed import gather_rows, init_distributed, shard
    from rewardkit.io import atomic_write_text, dumps

    if server is not None:
        if rm_dir is not None:
            raise click.UsageError("give either --rm or --server, not both")
        rm_dir = server
    local = None if is_url(rm_dir) else rm_dir
    check_file_output(out, [data, local, dpo["policy"], dpo["ref_model"], base_model], force, base_model)
    pairs = load_preferences(data, on_error=on_error)
    rank, size, device = init_distributed()  # under torchrun: each rank scores pairs rank, rank+size, ...
    rm = load_rm(
        rm_dir,
        dpo=dpo,
        device=device,
        base_model=base_model,
        chat_template=chat_template,
        dtype=dtype,
        max_batch_size=max_batch_size,
        max_tokens=max_tokens,
        prefix_sharing=False if no_prefix_sharing else None,
        progress=False if no_progress else None,
    )
    rm = length_penalized(rm, length_penalty)
    rows = gather_rows(pair_rows(rm, pairs, shard(len(pairs), rank, size)), rank, size)
    if rows is None:  # not rank 0
        return
    atomic_write_text(out, "".join(dumps(row) + "\n" for row in rows))
    margins = np.array([r["margin"] for r in rows])
    precision = f", {rm.dtype}" if rm.dtype else ""  # as loaded (a served model's is not known here)
    msg = (
        f"scored {len(rows)} pairs on {size} process(es){precision} -> {out} "
        f"(accuracy {pairwise_accuracy(margins):.4f}){remote_note([rm])}"
    )
    if pairs.skipped:
        shown = ", ".join(s.location for s in pairs.skipped[:5])
        more = f", +{len(pairs.skipped) - 5} more" if len(pairs.skipped) > 5 else ""
        msg += f"; skipped {len(pairs.skipped)} malformed record(s): {shown}{more}"
    click.echo(msg)


def pair_rows(rm, pairs, positions: list[int]) -> list[dict]:
    """One output row per pair at ``positions`` (this process's shard): ``index``, the two rewards, the
    margin, and each extra column of the model (e.g. an ensemble's members and std, a length penalty's
    raw reward) for both responses."""
    import numpy as np

    from rewardkit.templating import Texts

    texts = Texts.from_pairs([pairs[i] for i in positions])
    rewards, extra = (np.zeros(0), {}) if not positions else rm.score_columns(texts)
    chosen, rejected = texts.split_pairs(rewards)
    columns = {name: texts.split_pairs(col) for name, col in extra.items()}
    rows = [
        {"index": pairs.indices[i], "chosen": float(chosen[j]), "rejected": float(rejected[j])}
        for j, i in enumerate(positions)
    ]
    for j, row in enumerate(rows):
        row["margin"] = row["chosen"] - row["rejected"]
        for name, (chosen_col, rejected_col) in columns.items():
            c, r = chosen_col[j], rejected_col[j]
            row[f"chosen_{name}"] = c.tolist() if np.ndim(c) else float(c)
            row[f"rejected_{name}"] = r.tolist() if np.ndim(r) else float(r)
    return rows
