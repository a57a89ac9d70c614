"""Which videos a split holds, and their labels, from list files or a folder walk.

Three layouts, all with paths relative to ``dataset.root``:

* ``tsv`` (the original SweetTok ``data_files/*.txt``): ``<relative path>\\t<id>``. As in the
  original, the label comes from the parent folder name mapped through the *sorted* class names;
  the 1-based id column is only cross-checked for consistency (UCF-101's ids follow
  ``classInd.txt``, which orders four classes differently from a case-sensitive sort, e.g.
  ``Hammering`` / ``HammerThrow``; the sorted order wins, as in the original).
* ``ucf`` (official ``trainlist01.txt`` ``Class/v_x.avi 1`` / ``testlist01.txt`` ``Class/v_x.avi``):
  labels from ``classInd.txt`` beside the list file when present, else sorted folder names.
* ``folder``: ``root/<split>/<Class>/*.<video ext>`` (Kinetics-style trees work the same way).

``list_format: auto`` picks ``folder`` when no list is given, ``tsv`` for tab-separated lines and
``ucf`` otherwise. Train and eval share one class list (the union of both splits' classes), so a
label means the same class in both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .video_reader import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

LIST_FORMATS = ("auto", "tsv", "ucf", "folder")


class DatasetError(RuntimeError):
    """A list file, folder or whole dataset is missing, malformed or unreadable."""


@dataclass(frozen=True)
class VideoEntry:
    """One video of a split: path relative to the dataset root and its class folder name."""

    path: str
    class_name: str
    list_id: Optional[int] = None  # the numeric column of a list line, when there is one

    @property
    def key(self) -> str:
        """File name without extension (the original's ``__key__``)."""
        return Path(self.path).stem


def resolve_list_path(list_path: str, root: str) -> Path:
    """A list path as given (absolute or relative to the working directory), else under ``root``."""
    candidate = Path(list_path)
    if candidate.is_file():
        return candidate
    under_root = Path(root) / list_path
    if under_root.is_file():
        return under_root
    raise DatasetError(f"list file not found: {list_path} (also looked for {under_root}); fix dataset.train_list / "
                       "dataset.eval_list, or set it empty to walk dataset.root/<split>/<class>/")


def read_list_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a list file."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip() and not line.startswith("#")]


def detect_list_format(lines: list[str]) -> str:
    """``tsv`` when lines are tab separated, else ``ucf`` (space-separated label or bare path)."""
    if not lines:
        raise DatasetError("cannot detect the list format of an empty list")
    return "tsv" if "\t" in lines[0] else "ucf"


def _class_of(path: str, source: str) -> str:
    parts = Path(path).parts
    if len(parts) < 2:
        raise DatasetError(f"{source}: '{path}' has no class folder (expected .../<Class>/<video>)")
    return parts[-2]


def parse_tsv_lines(lines: list[str], source: str = "list") -> list[VideoEntry]:
    """Original format: ``<relative path>\\t<1-based id>`` (id optional)."""
    entries = []
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        path = fields[0].strip()
        list_id = None
        if len(fields) > 1 and fields[1].strip():
            try:
                list_id = int(fields[1])
            except ValueError:
                raise DatasetError(f"{source}:{number}: id '{fields[1]}' is not an integer") from None
        entries.append(VideoEntry(path, _class_of(path, f"{source}:{number}"), list_id))
    _check_ids(entries, source)
    return entries


def parse_ucf_lines(lines: list[str], source: str = "list") -> list[VideoEntry]:
    """Official UCF-101 split format: ``Class/v_x.avi 1`` (train) or ``Class/v_x.avi`` (test)."""
    entries = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        list_id = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        path = fields[0]
        entries.append(VideoEntry(path, _class_of(path, f"{source}:{number}"), list_id))
    _check_ids(entries, source)
    return entries


def _check_ids(entries: list[VideoEntry], source: str) -> None:
    """Each class must carry a single id (a mismatch means a corrupted list)."""
    ids: dict[str, int] = {}
    for entry in entries:
        if entry.list_id is None:
            continue
        seen = ids.setdefault(entry.class_name, entry.list_id)
        if seen != entry.list_id:
            raise DatasetError(
                f"{source}: class '{entry.class_name}' has ids {seen} and {entry.list_id}; list is inconsistent"
            )


def read_class_index(path: Path) -> list[str]:
    """UCF-101 ``classInd.txt`` (``1 ApplyEyeMakeup``) -> class names in id order."""
    pairs = []
    for line in read_list_lines(path):
        number, name = line.split()
        pairs.append((int(number), name))
    return [name for _, name in sorted(pairs)]


def walk_folder(root: str, split: str) -> list[VideoEntry]:
    """``root/<split>/<Class>/<video>`` -> entries with paths relative to ``root`` (sorted)."""
    base = Path(root) / split
    if not base.is_dir():
        raise DatasetError(f"no list file given and folder {base} does not exist")
    entries = []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for video in sorted(class_dir.iterdir()):
            if video.suffix.lower() in VIDEO_EXTENSIONS and not video.name.startswith("."):
                entries.append(VideoEntry(os.path.join(split, class_dir.name, video.name), class_dir.name))
    return entries


def load_entries(list_path: str, root: str, list_format: str, split_folder: str) -> tuple[list[VideoEntry], str]:
    """Entries of one split and the format actually used."""
    if list_format not in LIST_FORMATS:
        raise DatasetError(f"dataset.list_format must be one of {LIST_FORMATS}, got '{list_format}'")
    if list_format == "folder" or (list_format == "auto" and not list_path):
        return walk_folder(root, split_folder), "folder"
    if not list_path:
        raise DatasetError(f"dataset.list_format is '{list_format}' but no list file is given")
    path = resolve_list_path(list_path, root)
    lines = read_list_lines(path)
    if not lines:
        raise DatasetError(f"list file {path} is empty: it needs one line per video (path relative to dataset.root, "
                           "then the label); or set dataset.list_format=folder to walk dataset.root/<split>/<class>/")
    fmt = detect_list_format(lines) if list_format == "auto" else list_format
    parse = parse_tsv_lines if fmt == "tsv" else parse_ucf_lines
    return parse(lines, str(path)), fmt


def class_names_for(names: set[str], class_index: Optional[Path] = None) -> list[str]:
    """``classInd.txt`` order when given, else the sorted class folder names."""
    if class_index is not None and class_index.is_file():
        return read_class_index(class_index)
    return sorted(names)


def find_class_index(list_path: str, root: str) -> Optional[Path]:
    """``classInd.txt`` beside the list file (official UCF-101 layout), if there is one."""
    if not list_path:
        return None
    try:
        candidate = resolve_list_path(list_path, root).parent / "classInd.txt"
    except DatasetError:
        return None
    return candidate if candidate.is_file() else None
