"""I3D features of a fixed set of real videos, kept in a file for the next evaluation.

I3D on CPU costs about a second a clip, and the real side of an evaluation (the train clips of
gFVD, the references of the class accuracy) is the same from one run to the next. A cache file is
safetensors whose metadata holds the key it was made for: the settings that shape the features and
every video's path, size and modification time. A file made for another key (other videos, a
rewritten video, another resolution or I3D) is not used: the caller recomputes and overwrites it,
and the log says which part of the key changed.

    key = cache_key(paths, resolution=128, num_frames=17)
    cached = read_cache(path, key)           # None when missing or made for another key
    if cached is None:
        cached = {"features": compute(paths)}
        write_cache(path, cached, key)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

logger = logging.getLogger(__name__)

KEY_FIELD = "sweettok_feature_key"


def cache_key(paths: Sequence[str], **settings: Any) -> dict[str, Any]:
    """The key of features of ``paths`` made with ``settings`` (JSON-able values).

    A video is identified by path, size and modification time: rewriting it invalidates the cache.
    A path that does not exist is keyed as missing (its clip is skipped or zero-filled by the caller).
    """
    videos = []
    for path in paths:
        try:
            stat = os.stat(path)
            videos.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            videos.append([str(path), None, None])
    return {"settings": dict(sorted(settings.items())), "videos": videos}


def _difference(stored: dict[str, Any], key: dict[str, Any]) -> str:
    """One line naming what differs between two keys."""
    old, new = stored.get("settings", {}), key["settings"]
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        return "settings changed (" + "; ".join(changed) + ")"
    old_videos = {v[0]: v[1:] for v in stored.get("videos", [])}
    new_videos = {v[0]: v[1:] for v in key["videos"]}
    if set(old_videos) != set(new_videos):
        return (f"other videos ({len(set(new_videos) - set(old_videos))} new, "
                f"{len(set(old_videos) - set(new_videos))} gone)")
    rewritten = [p for p in new_videos if old_videos[p] != new_videos[p]]
    if rewritten:
        return f"{len(rewritten)} videos rewritten since (e.g. {rewritten[0]})"
    return "video order changed"


def read_cache(path: str | os.PathLike, key: dict[str, Any]) -> Optional[dict[str, Tensor]]:
    """The tensors of the cache file ``path`` when it was made for ``key``; else None (and why, logged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            stored = json.loads(metadata[KEY_FIELD]) if KEY_FIELD in metadata else None
            if stored == json.loads(json.dumps(key)):  # JSON round trip: tuples read back as lists
                logger.info("I3D features from the cache %s", path)
                return {name: handle.get_tensor(name) for name in handle.keys()}
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # unreadable or truncated: recompute
        logger.warning("feature cache %s is unreadable (%s): recomputing", path, err)
        return None
    why = "it records no key (an older file)" if stored is None else _difference(stored, key)
    logger.info("feature cache %s was made for other input: %s; recomputing", path, why)
    return None


def write_cache(path: str | os.PathLike, tensors: dict[str, Tensor], key: dict[str, Any]) -> None:
    """Write ``tensors`` with ``key`` to ``path`` (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial), metadata={KEY_FIELD: json.dumps(key)})
    os.replace(partial, path)
