"""``rewardkit eval``: reward models compared on preference files (ID vs OOD splits)."""

from __future__ import annotations

from pathlib import Path

import click

from rewardkit.cli.loaders import endpoints_of, length_penalized, load_rm
from rewardkit.cli.options import (
    allow_remote_option,
    bounded,
    check_file_output,
    model_options,
    on_error_option,
)
from rewardkit.errors import RewardkitError
from rewardkit.eval.suite_registry import SUITE_NAMES
from rewardkit.util import is_url


def _split_spec(spec: str) -> tuple[str, list[str]]:
    """``NAME=DIR[,DIR2]`` / ``DIR`` / ``NAME=URL`` -> (name or "", locations); a URL's own '=' and ','
    (query strings) are left alone."""
    name, sep, rest = spec.partition("=")
    if not sep or is_url(name) or "/" in name:
        return "", [spec]
    if is_url(rest):
        return name, [rest]
    return name, rest.split(",")


def _folders(spec: str) -> list[str]:
    return _split_spec(spec)[1]


def _named_rms(specs: tuple[str, ...], dpo: dict, **load) -> dict:
    """``--rm DIR``, ``--rm NAME=DIR[,DIR2,...]`` (several folders = several trained seeds of one model)
    or ``--rm NAME=URL`` (a rewardkit server)."""
    rms: dict = {}

    def add(name: str, models: list) -> None:
        if name in rms:
            raise click.UsageError(f"two reward models named {name!r}; use --rm NAME=DIR")
        rms[name] = models

    for spec in specs:
        name, folders = _split_spec(spec)
        add(name or Path(folders[0]).name, [load_rm(d, **load) for d in folders])
    if dpo.get("policy"):
        add(Path(dpo["policy"]).name, [load_rm(None, dpo=dpo, **load)])
    if not rms:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-ref-model PATH --beta B)")
    return {k: v[0] if len(v) == 1 else v for k, v in rms.items()}


def _add_length_penalised(rms: dict, length_penalty: dict) -> None:
    """With --length-penalty, every model is also evaluated length-penalised, as NAME+LP."""
    if length_penalty["weight"] is None:
        return
    for name in list(rms):
        models = rms[name] if isinstance(rms[name], list) else [rms[name]]
        wrapped = [length_penalized(m, length_penalty) for m in models]
        rms[f"{name}+LP"] = wrapped if len(wrapped) > 1 else wrapped[0]


def _note_remote(report, rms: dict) -> str:
    """The remote endpoints the models sent inputs to, recorded in the report; the summary line naming
    them ("" when none)."""
    urls = endpoints_of(m for v in rms.values() for m in (v if isinstance(v, list) else [v]))
    if not urls:
        return ""
    report.extra["remote_endpoints"] = urls
    return f"\nremote endpoints used: {', '.join(urls)}"


def _suite_files(specs: tuple[str, ...]) -> dict[str, str]:
    """``--suite-data SUITE=FILE`` (repeatable) -> {suite: file}."""
    files: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or name not in SUITE_NAMES or not path:
            raise click.UsageError(f"--suite-data {spec!r}: expected SUITE=FILE, SUITE one of {', '.join(SUITE_NAMES)}")
        if name in files:
            raise click.UsageError(f"--suite-data: {name} given twice")
        files[name] = path
    return files


def _dtype_used(dtype: str | None) -> str:
    """The precision ``--dtype`` resolved to on this machine (recorded in the reports)."""
    from rewardkit.dtypes import dtype_name, resolve_device, resolve_dtype

    return dtype_name(resolve_dtype(dtype, resolve_device(None)))


def _suite_eval(
    suite: str,
    *,
    rm_specs: tuple[str, ...],
    dpo: dict,
    data: str | None,
    suite_files: dict[str, str],
    outs: dict[str, str | None],
    unused: dict[str, bool],
    n_boot: int,
    on_error: str,
    force: bool,
    length_penalty: dict,
    load: dict,
) -> None:
    """``eval --suite``: a suite of ``rewardkit.eval.suite_registry`` (or the card, ``rewardkit.eval.card``)
    for every --rm; the seeds of ``NAME=DIR1,DIR2`` are reported one by one (NAME#1, NAME#2)."""
    from rewardkit.eval.card import runner_for
    from rewardkit.io import atomic_write_text

    given = [opt for opt, used in unused.items() if used]
    if given:
        why = " (RewardBench counts a tie wrong)" if "--ties" in given else ""
        raise click.UsageError(f"--suite does not take {', '.join(given)}{why}")
    inputs = [data, dpo["policy"], dpo["ref_model"], load["base_model"], *suite_files.values()]
    inputs += [d for spec in rm_specs for d in _folders(spec) if not is_url(d)]
    paths = [o for o in outs.values() if o]
    if len({Path(o).resolve() for o in paths}) < len(paths):
        raise RewardkitError("--json, --markdown, --per-example and --plot must be different files")
    for out in paths:
        check_file_output(out, inputs, force, load["base_model"])
    runner = runner_for(suite)
    given_data = suite_files if suite == "card" else suite_files.get(suite, data)
    suite_data = runner.load(given_data, on_error)  # before loading any model
    rms = {}
    for name, rm in _named_rms(rm_specs, dpo, **load).items():
        seeds = rm if isinstance(rm, list) else [rm]
        rms.update({name: rm} if len(seeds) == 1 else {f"{name}#{i}": m for i, m in enumerate(seeds, 1)})
    _add_length_penalised(rms, length_penalty)
    report = runner.run(rms, suite_data, n_boot=n_boot)
    report.extra["dtype"] = _dtype_used(load.get("dtype"))
    note = _note_remote(report, rms)
    if outs["json"]:
        report.to_json(outs["json"])
    if outs["markdown"]:
        atomic_write_text(outs["markdown"], report.to_markdown())
    if outs["per_example"]:
        report.to_jsonl(outs["per_example"])
    if outs["plot"]:
        report.to_png(outs["plot"])
    click.echo(report.to_markdown() + note)


@click.command("eval")
@click.option(
    "--rm", "rm_specs", multiple=True, help="reward model folder, or NAME=DIR[,DIR2..] (seeds); repeatable"
)
@click.option(
    "--suite",
    type=click.Choice([*SUITE_NAMES, "card"]),
    default=None,
    help="score a benchmark suite as its official code does, or every available one (card; docs/evaluation.md)",
)
@click.option(
    "--data",
    default=None,
    help="preference file or hub dataset name (with --suite: a local copy in the suite's layout; "
    "default: the suite's hub dataset)",
)
@click.option(
    "--suite-data",
    "suite_data",
    multiple=True,
    help="with --suite: SUITE=FILE, a local copy of a suite's data in its official layout (repeatable; "
    "--suite card reads each, and the official source for the others)",
)
@click.option("--split-by", default=None, help="metadata field that defines the splits (e.g. subset)")
@click.option("--ood", default=None, help="comma-separated values of --split-by that are out of distribution")
@click.option("--ties", type=click.Choice(["half", "correct", "wrong"]), default="half", help="tie policy")
@click.option("--json", "json_out", default=None, help="write the report as JSON here")
@click.option("--markdown", "md_out", default=None, help="write the table as Markdown here")
@click.option("--plot", "plot_out", default=None, help="write ID vs OOD bars with CIs as PNG here")
@click.option(
    "--per-example",
    "per_example",
    default=None,
    help="with --suite: write every example's rewards as JSONL here",
)
@model_options
@allow_remote_option
@click.option(
    "--n-boot", type=bounded("n_boot"), default=2000, help="bootstrap resamples for CIs and paired tests"
)
@on_error_option
@click.option("--force", is_flag=True, help="overwrite existing output files")
def eval_cmd(
    rm_specs,
    dpo,
    base_model,
    suite,
    data,
    suite_data,
    split_by,
    ood,
    ties,
    json_out,
    md_out,
    plot_out,
    per_example,
    n_boot,
    max_batch_size,
    max_tokens,
    dtype,
    chat_template,
    length_penalty,
    on_error,
    force,
) -> None:
    """Pairwise accuracy per model and split (ID vs OOD), 95% CIs, paired tests between models, and each
    model's length bias. With --length-penalty every model is also reported length-penalised (NAME+LP).
    With --suite, RewardBench or RewardBench 2 scores, sections and 95% CIs instead (docs/evaluation.md)."""
    load = dict(
        base_model=base_model,
        dtype=dtype,
        chat_template=chat_template,
        max_batch_size=max_batch_size,
        max_tokens=max_tokens,
    )
    if suite:
        ctx = click.get_current_context()
        return _suite_eval(
            suite,
            rm_specs=rm_specs,
            dpo=dpo,
            data=data,
            suite_files=_suite_files(suite_data),
            outs={"json": json_out, "markdown": md_out, "per_example": per_example, "plot": plot_out},
            unused={
                "--data (give --suite-data SUITE=FILE)": suite == "card" and data is not None,
                "--split-by": split_by is not None,
                "--ood": ood is not None,
                "--plot (only with --suite card)": suite != "card" and plot_out is not None,
                "--ties": ctx.get_parameter_source("ties") is not click.core.ParameterSource.DEFAULT,
            },
            n_boot=n_boot,
            on_error=on_error,
            force=force,
            length_penalty=length_penalty,
            load=load,
        )
    if data is None:
        raise click.UsageError("give --data FILE (or --suite rewardbench|rewardbench2)")
    if per_example or suite_data:
        raise click.UsageError(f"{'--per-example' if per_example else '--suite-data'} needs --suite")
    from rewardkit.data import load_preferences
    from rewardkit.eval import evaluate

    if ood and not split_by:
        raise click.UsageError("--ood needs --split-by")
    inputs = [data, dpo["policy"], dpo["ref_model"], base_model]
    inputs += [d for spec in rm_specs for d in _folders(spec) if not is_url(d)]
    _check_outputs([json_out, md_out, plot_out], inputs, force, base_model)
    pairs = load_preferences(data, on_error=on_error)
    rms = _named_rms(rm_specs, dpo, **load)
    _add_length_penalised(rms, length_penalty)
    unit = length_penalty["unit"] or "words"
    tokenizer = _first_model(rms).tokenizer
    splits, id_split = _splits(pairs, split_by, ood)
    report = evaluate(
        rms, splits, id_split=id_split, ties=ties, n_boot=n_boot, length_unit=unit, tokenizer=tokenizer
    )
    report.extra.update(data=str(data), split_by=split_by, dtype=_dtype_used(dtype))
    note = _note_remote(report, rms)
    _write_report(report, json_out, md_out, plot_out)
    click.echo(report.to_markdown() + note)


def _check_outputs(outs: list[str | None], inputs: list, force: bool, base_model: str | None) -> None:
    """The report files asked for are distinct and writable (none overwrites an input; an existing one
    only with --force)."""
    outs = [o for o in outs if o]
    if len({Path(o).resolve() for o in outs}) < len(outs):
        raise RewardkitError("--json, --markdown and --plot must be different files")
    for out in outs:
        check_file_output(out, inputs, force, base_model)


def _first_model(rms: dict):
    """The first named model (its first seed): the tokenizer that measures length bias is its."""
    first = next(iter(rms.values()))
    return first[0] if isinstance(first, list) else first


def _splits(pairs, split_by: str | None, ood: str | None) -> tuple[dict, str | None]:
    """``(split name -> pairs, the ID split's name or None)``: every pair in ``all``; or one split per
    value of ``split_by``; or, with ``ood`` (comma-separated values), the other values' pairs as ``id``
    and one split per OOD value."""
    if not split_by:
        return {"all": pairs}, None
    if not ood:
        return {str(k): v for k, v in pairs.group_by(split_by).items()}, None
    ood_values = ood.split(",")
    keys = {str(k) for k in pairs.values(split_by)}
    unknown = set(ood_values) - keys
    if unknown:
        raise RewardkitError(f"--ood values not found in field {split_by!r}: {sorted(unknown)}")
    groups = {str(k): v for k, v in pairs.group_by(split_by).items()}
    splits = {"id": pairs.filter(lambda p: str(p.metadata[split_by]) not in ood_values)}
    if not len(splits["id"]):
        raise RewardkitError(f"--ood lists every value of {split_by!r}: no in-distribution pairs are left")
    splits.update({v: groups[v] for v in ood_values})
    return splits, "id"


def _write_report(report, json_out: str | None, md_out: str | None, plot_out: str | None) -> None:
    """The report as JSON, Markdown and a PNG plot, where asked (atomic writes)."""
    if json_out:
        report.to_json(json_out)
    if md_out:
        from rewardkit.io import atomic_write_text

        atomic_write_text(md_out, report.to_markdown())
    if plot_out:
        report.plot(plot_out)
