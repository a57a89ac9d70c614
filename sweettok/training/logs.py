"""Process logging for runs: rank 0 to stdout and ``<output_dir>/train.log``, other ranks warnings only.

Also the wandb side of a run: which mode it runs in and the run id a resumed run continues.
``WANDB_MODE`` set by the user is always honoured; unset, a user logged in to wandb (an API key in
``WANDB_API_KEY`` or in ~/.netrc, where ``wandb login`` writes it) logs online and anyone else
offline (runs land in ``<output_dir>/wandb``; ``wandb sync`` uploads them later), so a run never
stops to ask for a key.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

_HANDLER_TAG = "_sweettok_handler"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# INFO chatter of libraries, about a dozen lines per checkpoint save; their warnings still show
QUIET_LOGGERS = ("accelerate.checkpointing", "accelerate.accelerator")
WANDB_DEFAULT_HOST = "https://api.wandb.ai"
RUN_ID_ALPHABET = string.ascii_lowercase + string.digits  # what wandb's own generated ids use


class ProgressAwareHandler(logging.StreamHandler):
    """A stream handler that writes through ``tqdm.write``: a line logged while a progress bar is drawn
    (a Ctrl-C notice, an eval result) starts on its own line and the bar is redrawn below it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


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
    handlers: list[logging.Handler] = [ProgressAwareHandler(sys.stdout)]
    if output_dir is not None and is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "train.log"))
    for handler in handlers:
        setattr(handler, _HANDLER_TAG, True)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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


def wandb_logged_in() -> bool:
    """True when wandb has credentials: WANDB_API_KEY / WANDB_IDENTITY_TOKEN_FILE, or a .netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_HOST).netloc
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_wandb_mode() -> str:
    """The user's WANDB_MODE; unset: "online" when logged in, else "offline" (written to the environment)."""
    mode = os.environ.get("WANDB_MODE")
    if not mode:
        mode = os.environ["WANDB_MODE"] = "online" if wandb_logged_in() else "offline"
    return mode


def new_run_id() -> str:
    """A fresh tracker run id (8 lowercase letters and digits, as wandb's own)."""
    return "".join(secrets.choice(RUN_ID_ALPHABET) for _ in range(8))


def tracker_init_kwargs(tracker: str, name: str, output_dir: str | os.PathLike, run_id: str) -> dict[str, dict]:
    """``accelerator.init_trackers`` kwargs: the wandb run ``run_id`` (resumed when it exists) in ``output_dir``."""
    mode = os.environ.get("WANDB_MODE", "online")
    if tracker == "wandb":
        logger.info("wandb run %s, mode %s%s", run_id, mode,
                    f" (upload it later: wandb sync {Path(output_dir) / 'wandb'}/offline-run-*)" if mode == "offline" else "")
    return {"wandb": {"name": name, "dir": str(output_dir), "id": run_id, "resume": "allow"}}
