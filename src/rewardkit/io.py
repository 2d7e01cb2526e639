"""Safe outputs: atomic writes, no input ever overwritten, no temporaries left behind.

- **Atomic**: a file or folder is built next to its target under a hidden temporary name and renamed
  into place, so a crash never leaves half an output at the target path.
- **Temporaries name their process** (``.NAME.tmp-PID-XXXX``, ``.NAME.old-PID``): one left by a killed
  process (``kill -9``) is removed by the next write to the same target once that process is gone.
- **Permissions follow the umask**, as for any file a program creates (temporary files and folders are
  created private, 0600 / 0700, and opened up before the rename).
- **Inputs are never outputs**: :func:`check_output` refuses an output path equal to an input, inside an
  input folder, or containing an input, before any work is done. The inputs of a run are the paths it
  was given *and every folder a model it loads depends on* (a LoRA base, a DPO reference, ensemble
  members): loaders :func:`protect` them, and inside :func:`run_inputs` (every CLI command) each atomic
  write refuses to touch one, ``--force`` or not.
- **One writer per output**: a CLI command's output pre-check first takes a lock on the output
  (:func:`rewardkit.locks.claim_output`) held until the command ends, and the Python training entry
  points hold one for the call (:func:`rewardkit.locks.hold_output`), so a second run writing the same
  output fails at once; and a write without ``force`` never replaces a target that appeared while it was
  being written (the final rename refuses).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.locks import claimed_absent, close_scope, held_outputs, open_scope

logger = logging.getLogger(__name__)

_UMASK: int | None = None
_RUN_INPUTS: list[set[Path]] = []  # open scopes (run_inputs), innermost last


@contextmanager
def run_inputs(paths: Iterable[str | os.PathLike | None] = ()):
    """A scope (a CLI command) whose inputs no write may touch: ``paths`` and whatever loaders
    :func:`protect` while it is open; the outputs it claims (:func:`rewardkit.locks.claim_output`) stay locked until it
    ends. Yields the set of resolved paths."""
    scope = {Path(p).resolve() for p in paths if p}
    locks = open_scope()
    _RUN_INPUTS.append(scope)
    try:
        yield scope
    except Exception as e:  # a full disk: name the outputs being written when the error names no file
        full = _disk_full(e, held_outputs(locks))
        if full is None:
            raise
        raise full from e
    finally:  # by identity: scopes that protect() filled alike compare equal
        del _RUN_INPUTS[next(i for i, x in enumerate(_RUN_INPUTS) if x is scope)]
        close_scope(locks)


def _disk_full(e: Exception, outputs: list[Path]) -> OSError | None:
    """``e`` as an OSError naming ``outputs`` when it is a full disk (or quota) that names no file
    (torch's and safetensors' write errors name none); None otherwise."""
    full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
    full = full or "No space left on device" in str(e) or "StorageFull" in str(e)
    if not full or not outputs or getattr(e, "filename", None):
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), ", ".join(map(str, outputs)))


def protect(paths: Iterable[str | os.PathLike | None]) -> None:
    """Add ``paths`` (resolved) to the inputs of every open :func:`run_inputs` scope (none: no-op)."""
    if _RUN_INPUTS:
        resolved = {Path(p).resolve() for p in paths if p}
        for scope in _RUN_INPUTS:
            scope.update(resolved)


def protected() -> set[Path]:
    """The inputs of the open scopes."""
    return set().union(*_RUN_INPUTS) if _RUN_INPUTS else set()


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove temporaries of ``target`` (``.NAME.tmp-PID-*``, ``.NAME.old-PID``) whose process is dead;
    returns what was removed."""
    removed = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for entry in parent.glob(f"{glob_escape(prefix)}*"):
            pid = entry.name[len(prefix) :].split("-", 1)[0].split(".", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if (entry / "checkpoints").is_dir():  # never delete training checkpoints: say where they are
                logger.warning("%s holds checkpoints of an interrupted write: recover or delete it", entry)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def remove_path(path: Path, *, ignore_errors: bool = True) -> None:
    """Remove a file, a link (never what it points to) or a folder tree; absent: nothing."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


def check_parent(target: Path) -> None:
    """Refuse a path under an existing file (``out/x`` where ``out`` is a file)."""
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise RewardkitError(f"{target}: cannot write here: {parent} is a file, not a folder")
            return


def refuse_existing(path: str | os.PathLike | None, force: bool, *, what: str = "", hint: str = "") -> None:
    """The one refusal of an existing output: ``path`` exists and ``force`` was not given."""
    if path is not None and not force and (Path(path).exists() or Path(path).is_symlink()):
        raise RewardkitError(f"{path}: already exists{what} (use --force / force=True to overwrite{hint})")


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (an existing file is replaced only with ``force``, also one
    that appeared while the text was written)."""
    path = Path(path)
    if not path.is_dir():
        refuse_existing(path, force)
    with atomic_file(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _appeared(target: Path) -> RewardkitError:
    return RewardkitError(
        f"{target}: appeared while this run was writing it (another run writing the same output?); "
        "left as it is (use --force / force=True to overwrite)"
    )


def _link_into_place(tmp: str, path: Path) -> None:
    """``tmp`` becomes ``path`` only if nothing is at ``path`` at that instant (a hard link never
    replaces), so a file another writer put there meanwhile is kept."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _appeared(path) from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists() or path.is_symlink():
            raise _appeared(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextmanager
def atomic_file(path: str | os.PathLike, *, suffix: str = "", force: bool = True):
    """Yield a temporary path next to ``path`` for a writer that needs a file name (e.g. matplotlib);
    on success it replaces ``path`` (without ``force``: only if nothing is at ``path`` then)."""
    path = Path(path)
    check_output(path, protected())
    check_parent(path)
    if path.is_dir():
        raise RewardkitError(f"{path}: is a folder, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if force and not claimed_absent(path):
            os.replace(tmp, path)
        else:
            _link_into_place(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (so a NaN among them is still refused);
    anything else as its string."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def dumps(obj: Any, **kwargs: Any) -> str:
    """JSON text of ``obj``; NaN and infinity are refused (they are not JSON)."""
    try:
        return json.dumps(obj, allow_nan=False, ensure_ascii=False, default=_plain, **kwargs)
    except ValueError as e:
        raise RewardkitError(f"refusing to write a NaN or infinite number as JSON ({e})") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def set_modes(folder: Path) -> None:
    """Folders and files under ``folder`` (itself included) opened up to what the umask allows (writers
    that go through a private temporary file leave 0600)."""
    dir_mode, file_mode = 0o777 & ~_umask(), 0o666 & ~_umask()
    os.chmod(folder, dir_mode)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), dir_mode)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, file_mode)


@contextmanager
def atomic_dir(target: str | os.PathLike, *, force: bool = False, keep: Iterable[str] = ()):
    """Yield a temporary folder next to ``target``; on success it replaces ``target``.

    An existing ``target`` (file or folder) is refused unless ``force``; on error the temporary folder is
    removed and ``target`` is left as it was. ``keep``: entries of an existing ``target`` folder carried
    over into the new one (e.g. ``checkpoints``).
    """
    target = Path(target)
    check_output(target, protected())
    check_parent(target)
    refuse_existing(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{os.getpid()}-"))
    try:
        yield tmp
        set_modes(tmp)
        if not force:
            _rename_new(tmp, target)
        elif target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            remove_path(old)
            os.replace(target, old)
            os.replace(tmp, target)
            for name in keep:  # after the swap: the new output is in place before anything moves
                if (old / name).exists():
                    os.replace(old / name, target / name)
            remove_path(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_new(tmp: Path, target: Path) -> None:
    """``tmp`` (a folder) becomes ``target``, which must not exist: one that appeared meanwhile (another
    run's output) is kept and this write fails (rename never replaces a file or a non-empty folder)."""
    if target.exists() or target.is_symlink():
        raise _appeared(target)
    try:
        os.rename(tmp, target)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise _appeared(target) from None
        raise


def check_output(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output"
) -> None:
    """Refuse, before any work, an output path that is an input, lies inside an input folder, or
    contains an input (``--force`` would delete it), naming both paths."""
    o = Path(out).resolve()
    for raw in inputs:
        if raw is None:
            continue
        i = Path(raw).resolve()
        if o == i:
            raise RewardkitError(f"{what} {out} is the input {raw}: refusing to overwrite an input")
        if i in o.parents:
            raise RewardkitError(f"{what} {out} is inside the input {raw}: refusing to write into an input")
        if o in i.parents:
            raise RewardkitError(f"{what} {out} contains the input {raw}: refusing to replace an input")


def check_distinct(paths: Iterable[str | os.PathLike], what: str = "input") -> None:
    """Refuse the same path given twice (e.g. one model merged with itself by mistake)."""
    seen: dict[Path, str] = {}
    for p in paths:
        r = Path(p).resolve()
        if r in seen:
            raise RewardkitError(f"{what} {p} is given twice (also as {seen[r]})")
        seen[r] = str(p)


def own_file(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` (inside the model folder ``root``) as the regular file to copy: itself, or the file a link
    points to when that file lies inside ``root``. A link out of ``root``, a loop, a dangling link and
    anything but a regular file are one-line errors (a copy never takes what the folder only points at)."""
    import stat

    root, path = Path(root), Path(path)
    target = path
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (RuntimeError, OSError) as e:  # a loop (RuntimeError before Python 3.13), a dangling link
            why = (
                "a symlink loop"
                if "loop" in str(e).lower() or getattr(e, "errno", 0) == 40
                else "a dangling link"
            )
            raise RewardkitError(f"{path}: {why}: refusing to copy the model") from None
        if root.resolve() not in target.parents:
            raise RewardkitError(
                f"{path}: links to {target}, outside the model folder {root}: refusing to copy it "
                "(put the file itself in the folder)"
            )
    mode = target.lstat().st_mode
    if stat.S_ISDIR(mode) and path.is_symlink():
        raise RewardkitError(
            f"{path}: a link to a folder: refusing to copy the model (links are not followed)"
        )
    if not stat.S_ISREG(mode):
        raise RewardkitError(f"{path}: not a regular file: refusing to copy the model")
    return target


def copy_model_tree(src: str | os.PathLike, dst: str | os.PathLike, skip: Iterable[str] = ()) -> list[str]:
    """Copy the model folder ``src`` to ``dst`` (created): its own regular files only, every link checked
    by :func:`own_file` (a link to a folder is refused, so a loop is never walked); names matching a
    ``skip`` pattern (fnmatch, at any depth) are left out. Returns the relative paths copied."""
    import fnmatch

    src, dst = Path(src), Path(dst)
    patterns = list(skip)
    copied = []
    for here, dirs, files in os.walk(src, followlinks=False):
        rel = Path(here).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in patterns))
        for d in dirs:
            if (Path(here) / d).is_symlink():
                raise RewardkitError(
                    f"{Path(here) / d}: a link to a folder: refusing to copy the model (links are not followed)"
                )
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            shutil.copyfile(own_file(src, Path(here) / name), dst / rel / name)
            copied.append(str(rel / name))
    return copied
