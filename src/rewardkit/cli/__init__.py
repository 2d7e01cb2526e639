"""``rewardkit`` command line: thin wrappers over the Python API.

Every bad input (files, data, arguments, models) prints one ``error: ...`` line naming the file, line,
field or tensor and exits with status 2; an interrupt (Ctrl-C) exits with 130. Outputs are written
atomically, inputs are never overwritten, and NaN or infinite numbers are refused (see docs/cli.md).
Commands import their heavy dependencies (torch, transformers) only when they run.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from rewardkit.cli.bench import bench
from rewardkit.cli.evaluate import eval_cmd
from rewardkit.cli.models import demo_model, ensemble, merge
from rewardkit.cli.score import score
from rewardkit.cli.serve import serve
from rewardkit.cli.train import train
from rewardkit.errors import RewardkitError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def quiet_libraries() -> None:
    """Keep transformers' and the hub's routine output (load reports, progress bars of weight loading
    and shard writing) out of the user's terminal and logs; ``--verbose`` keeps it."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # bars that do not choose for themselves (e.g. GGUF loading)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    for module in ("transformers", "peft", "accelerate", "torch"):  # their deprecation notices, not ours
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    if "transformers" in sys.modules:  # already imported: set it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log progress details and the libraries' own output")
@click.version_option(package_name="rewardkit")
def cli(verbose: bool) -> None:
    """Reward models for RLHF: train, score, evaluate, merge."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        quiet_libraries()


for command in (train, score, eval_cmd, ensemble, merge, bench, serve, demo_model):
    cli.add_command(command)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    from rewardkit.io import run_inputs

    try:
        with run_inputs():  # every folder a loaded model depends on is an input no write may touch
            cli.main(args=argv, prog_name="rewardkit", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:  # click turns KeyboardInterrupt / EOFError into Abort
        if isinstance(e.__context__, EOFError):
            _fail("unexpected end of input")
        _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except click.ClickException as e:
        _fail(" ".join(e.format_message().split()), e.exit_code)
    except RewardkitError as e:
        _fail(str(e))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
    except OSError as e:  # the environment (a full disk, a lost mount): one line, not a traceback
        _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e), 1)
    except Exception as e:  # pydantic validation errors: one line naming the field
        from pydantic import ValidationError

        if isinstance(e, ValidationError):
            from rewardkit.util import first_error

            loc, msg = first_error(e)
            _fail(f"config field {loc}: {msg}")
        raise
    finally:  # under torchrun: leave the process group before the interpreter tears down
        from rewardkit.distributed import leave_group

        leave_group()


__all__ = ["cli", "main"]
