"""One writer per output: an exclusive ``flock`` on ``.NAME.lock`` beside each output a run writes, held
from the run's output check to its end (the kernel drops it if the process dies), so a second run writing
the same output, in this process or another, fails at once in one line.

A CLI command holds its outputs' locks in its :func:`rewardkit.io.run_inputs` scope (:func:`claim_output`);
the Python entry points that write an output hold its lock for the call (:func:`hold_output`). Both are
re-entrant within a process: an output this process holds already is left to its holder, so the CLI
calling the Python API, or one entry point calling another, never waits on itself.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path

from rewardkit.errors import RewardkitError

Held = dict[Path, tuple[int, bool, Path]]  # lock file -> (descriptor, output existed when claimed, output)
_LOCKS: list[Held] = []  # open scopes, innermost last


def lock_of(path: str | os.PathLike) -> Path:
    """The lock file of output ``path``: beside it, never inside it (``.``, ``out/`` and ``x/..`` are
    normalised first, so ``--out .`` locks ``../.NAME.lock``)."""
    p = Path(os.path.abspath(path))
    return p.parent.resolve() / f".{p.name or 'root'}.lock"


def holds(path: str | os.PathLike) -> bool:
    """Whether this process holds the lock of output ``path``."""
    lock = lock_of(path)
    return any(lock in held for held in _LOCKS)


def claimed_absent(path: str | os.PathLike) -> bool:
    """``path`` was claimed by this process when nothing was there."""
    lock = lock_of(path)
    return any(lock in held and not held[lock][1] for held in _LOCKS)


def held_outputs(scope: Held) -> list[Path]:
    return [out for _, _, out in scope.values()]


def open_scope() -> Held:
    """A new scope whose locks :func:`close_scope` releases."""
    scope: Held = {}
    _LOCKS.append(scope)
    return scope


def close_scope(scope: Held) -> None:
    """Release the locks of ``scope`` (by identity: scopes alike compare equal); the lock files are
    unlinked first, so a run that opened one meanwhile sees another file and retries."""
    del _LOCKS[next(i for i, x in enumerate(_LOCKS) if x is scope)]
    for lock, (fd, _, _) in scope.items():
        Path(lock).unlink(missing_ok=True)
        os.close(fd)


def claim_output(path: str | os.PathLike) -> None:
    """Inside a scope (a CLI command's :func:`rewardkit.io.run_inputs`): hold an exclusive lock on the output
    ``path`` until the scope ends, so two runs never write one output at once; the second fails at once
    in one line. A file output absent when claimed is then put in place only if still absent
    (:func:`rewardkit.io.atomic_file`). Outside a scope, or for an output held already: nothing."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: the no-replace final rename still holds
        return
    if not _LOCKS or os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 holds it for all
        return
    path = Path(path)
    lock = lock_of(path)
    if holds(path):
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file where a folder should be: the caller's checks say so
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RewardkitError(
                f"{path}: another rewardkit run (pid {pid}) is writing this output; "
                "wait for it to finish or choose another output"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its holder removed it between our open and our lock
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCKS[-1][lock] = (fd, path.exists() or path.is_symlink(), path)


@contextmanager
def hold_output(path: str | os.PathLike | None):
    """For a Python entry point that writes the output ``path``: hold its lock for the block (released at
    its end), so a second process writing it fails at once in one line. An output this process holds
    already (the CLI command's, an outer call's) is left to its holder; ``None``: nothing to hold."""
    if path is None or holds(path):
        yield
        return
    scope = open_scope()
    try:
        claim_output(path)
        yield
    finally:
        close_scope(scope)


def holds_output(fn):
    """Decorator for an entry point ``fn(config, out, ...)`` that writes the output ``out``: the call holds
    ``out``'s lock (:func:`hold_output`)."""

    @functools.wraps(fn)
    def call(config, out, *args, **kwargs):
        with hold_output(out):
            return fn(config, out, *args, **kwargs)

    return call
