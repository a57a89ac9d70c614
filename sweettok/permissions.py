"""File modes: what this project writes gets the umask's permissions, not safetensors' ``-rw-------``.

safetensors (0.8) creates its files with mode 0600, so on a shared filesystem teammates cannot read
exported weights, checkpoints, priors or token files. ``make_shareable`` gives a written file (or
every file under a folder) ``0o666 & ~umask``, what ``open(path, "w")`` would have given.
"""

from __future__ import annotations

import os
from pathlib import Path


def umask_mode() -> int:
    """``0o666`` minus the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def make_shareable(path: str | os.PathLike) -> None:
    """Give a file (or every file under a folder) the umask's default mode."""
    path, mode = Path(path), umask_mode()
    for file in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
        os.chmod(file, mode)
