"""Running the real CLI in-process from a test."""

from __future__ import annotations

from rewardkit.cli import main


def run_cli(argv, capsys) -> tuple[int, str]:
    """``rewardkit ARGV`` in this process: (exit status, what it wrote to stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err
