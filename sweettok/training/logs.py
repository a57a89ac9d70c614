"""Process logging for runs: rank 0 to stdout and ``<output_dir>/train.log``, other ranks warnings only."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

_HANDLER_TAG = "_sweettok_handler"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    output_dir: Optional[str | os.PathLike] = None, is_main_process: bool = True, level: int = logging.INFO
) -> None:
    """Configure the root logger once per process (calling again replaces our handlers, not others')."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level if is_main_process else logging.WARNING)
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if output_dir is not None and is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "train.log"))
    for handler in handlers:
        setattr(handler, _HANDLER_TAG, True)
        handler.setFormatter(formatter)
        root.addHandler(handler)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {"a.b": value} with lists as strings (what trackers' hparams accept)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out
