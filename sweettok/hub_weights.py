"""Pretrained files in the torch hub cache (``torch.hub.get_dir()/checkpoints/<file>``), fetched when missing.

The ecosystem's habit (torchvision's ``weights=``): a missing file is downloaded once into the cache
(hash-checked against the suffix of its name, as torchvision does) and read from there afterwards.
Where the network is not reachable the caller reports what is missing and how to get it; a silent
firewall gives up after ``DOWNLOAD_TIMEOUT_S`` instead of hanging.
"""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0  # per connect / read
HASH_SUFFIX = re.compile(r"-([a-f0-9]+)\.")  # torchvision names: <name>-<sha256 prefix>.pth


def hub_checkpoint_path(url: str) -> Path:
    """Where the torch hub cache keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def fetch_hub_checkpoint(url: str) -> Optional[Path]:
    """The cached file of ``url``, downloaded first when missing; None when the download fails (logged)."""
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    match = HASH_SUFFIX.search(path.name)
    logger.info("downloading %s to %s", url, path)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub's urlopen takes no timeout of its own
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match else None)
    except (OSError, RuntimeError) as err:  # URLError / timeouts are OSError; a bad hash is RuntimeError
        logger.warning("could not download %s: %s", url, err)
        return None
    finally:
        socket.setdefaulttimeout(previous)
    return path
