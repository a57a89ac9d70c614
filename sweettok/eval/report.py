"""Reading a demo run's results and drawing its figures (the logic behind ``scripts/make_report.py``).

Everything here tolerates missing inputs: a reader returns ``None`` (or an empty mapping) when its
file is absent, so the report can say "not run" instead of crashing. Figures use matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

NOT_RUN = "not run"


# ---------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike) -> Optional[dict[str, Any]]:
    """A JSON object from ``path``, or None when the file is missing or unreadable (logged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("cannot read %s: %s", path, err)
        return None
    return data if isinstance(data, dict) else {"value": data}


def read_metrics(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``metrics.jsonl`` -> {key: [(step, value), ...] sorted by step}; a repeated step keeps its last value."""
    path = Path(path)
    series: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("%s:%d: not a metrics row, skipped", path, line_no)  # e.g. a line cut by a crash
            continue
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(key, {})[step] = float(value)  # later lines (after a resume) win
    return {key: sorted(points.items()) for key, points in series.items()}


_LOG_LINE = re.compile(r"sweettok\.training\.trainer: step (\d+)(?: eval)?: (.*)$")


def read_train_log(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """The trainer's ``train.log`` lines ("step N: key value | key value") -> series, for runs without metrics.jsonl."""
    path = Path(path)
    series: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        match = _LOG_LINE.search(line)
        if not match:
            continue
        for item in match.group(2).split(" | "):
            key, _, value = item.rpartition(" ")
            try:
                series.setdefault(key, {})[int(match.group(1))] = float(value)
            except ValueError:
                continue
    return {key: sorted(points.items()) for key, points in series.items() if key}


def read_run_metrics(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """A run folder's scalars: ``metrics.jsonl``, else what its ``train.log`` shows."""
    return read_metrics(Path(run_dir) / "metrics.jsonl") or read_train_log(Path(run_dir) / "train.log")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a/b/c": leaf}."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def lookup(data: Optional[dict[str, Any]], *names: str) -> Any:
    """First leaf of ``data`` whose flattened key equals, or ends with ``/`` + , one of ``names`` (case-insensitive)."""
    if not data:
        return None
    flat = {key.lower(): value for key, value in flatten(data).items()}
    for name in names:
        name = name.lower()
        if name in flat:
            return flat[name]
        for key, value in flat.items():
            if key.endswith("/" + name):
                return value
    return None


def last_value(series: dict[str, list[tuple[int, float]]], *keys: str) -> Optional[float]:
    """The value at the last step of the first of ``keys`` present in ``series``."""
    for key in keys:
        if series.get(key):
            return series[key][-1][1]
    return None


# ---------------------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant decimals, None -> "not run"."""
    if value is None:
        return NOT_RUN
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.0f}"
    text = str(value).split(";")[0].replace("|", "/")  # a result's note ("unavailable: ...; how to fix") in short
    return text if len(text) <= 120 else text[:117] + "..."


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells go through ``fmt``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(series: dict[str, list[tuple[int, float]]], title: str, out_png: str | os.PathLike) -> Optional[Path]:
    """Loss curves (``train/*loss*``, log scale) and one small panel per validation metric (``val/*``) -> a PNG."""
    losses = {k: [(x, y) for x, y in v if y > 0] for k, v in series.items() if k.startswith("train/") and "loss" in k}
    losses = {k: v for k, v in losses.items() if v}  # a log axis: zero (disabled) and negative terms are left out
    vals = {k: v for k, v in sorted(series.items()) if k.startswith("val/")}
    if not losses and not vals:
        return None
    plt = _pyplot()
    val_cols = math.ceil(len(vals) / 2)
    fig = plt.figure(figsize=(6.5 * bool(losses) + 2.8 * val_cols, 4.6))
    grid = fig.add_gridspec(2, 2 * bool(losses) + val_cols)
    if losses:
        ax = fig.add_subplot(grid[:, :2])
        for key, points in sorted(losses.items()):
            ax.plot(*zip(*points), label=key.split("/", 1)[1])
        ax.set_yscale("log")
        ax.set(xlabel="step", title=f"{title}: training losses (log; terms <= 0 left out)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for i, (key, points) in enumerate(vals.items()):
        ax = fig.add_subplot(grid[i % 2, 2 * bool(losses) + i // 2])
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")  # "21.09" on the axis, not "+2.1e1"
        ax.set_title(key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def to_uint8(video: Any) -> np.ndarray:
    """(C, T, H, W) tensor in [-0.5, 0.5] -> (T, H, W, C) uint8."""
    array = video.detach().float().cpu().numpy() if hasattr(video, "detach") else np.asarray(video, dtype=np.float32)
    array = np.clip((array + 0.5) * 255.0, 0, 255).round().astype(np.uint8)
    return np.transpose(array, (1, 2, 3, 0))


def frame_picks(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices of a clip with ``num_frames`` frames."""
    count = max(1, min(count, num_frames))
    return sorted({round(i * (num_frames - 1) / max(1, count - 1)) for i in range(count)})


def image_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], out_png: str | os.PathLike,
               column_titles: Optional[Sequence[str]] = None) -> Path:
    """Labelled rows of (H, W, 3) uint8 frames -> one PNG."""
    plt = _pyplot()
    ncols = max(len(frames) for _, frames in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.3 * ncols + 1.2, 1.35 * len(rows)), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c], interpolation="nearest")
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and column_titles and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=8)
    fig.tight_layout(pad=0.3)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def reconstruction_rows(inputs: np.ndarray, outputs: np.ndarray, names: Sequence[str],
                        picks: Sequence[int], extra: Optional[tuple[str, np.ndarray]] = None,
                        output_label: str = "output") -> list[tuple[str, list[np.ndarray]]]:
    """(B, T, H, W, 3) uint8 inputs/outputs -> input / [extra] / output / |difference| rows per clip.

    ``extra`` = (label, (B, T, H, W, 3) frames), e.g. the proxy tokenizer's reconstruction of the same
    clips, goes between the input and the output row; the difference row is of ``outputs``.
    """
    rows = []
    for i, (name, x, y) in enumerate(zip(names, inputs, outputs)):
        diff = np.abs(x.astype(np.int16) - y.astype(np.int16))
        diff = np.clip(diff * 3, 0, 255).astype(np.uint8)  # x3: small errors stay visible
        rows.append((f"{name}\ninput", [x[t] for t in picks]))
        if extra is not None:
            rows.append((extra[0], [extra[1][i][t] for t in picks]))
        rows += [(output_label, [y[t] for t in picks]), ("|diff| x3", [diff[t] for t in picks])]
    return rows


def token_agreement(indices: Any, slices: dict[str, slice]) -> dict[str, float]:
    """Mean fraction of index positions at which two *different* clips hold the same index, per segment.

    ``indices``: (B, N) integer indices of B >= 2 clips (``SweetTok.encode(...).indices``). A tokenizer
    whose words do not follow the content scores near 1; distinct content scores low.
    """
    flat = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices)
    if flat.ndim != 2 or flat.shape[0] < 2:
        raise ValueError(f"token_agreement needs (B >= 2, N) indices, got shape {flat.shape}")
    pairs = [(i, j) for i in range(flat.shape[0]) for j in range(i + 1, flat.shape[0])]
    return {name: float(np.mean([(flat[i, part] == flat[j, part]).mean() for i, j in pairs]))
            for name, part in slices.items()}


# ---------------------------------------------------------------------------- samples and words


def group_samples(folder: str | os.PathLike, classes: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Sampled videos under ``folder`` grouped by class: the sub-folder name, else the class name in the file name."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".webm", ".gif") or not path.is_file():
            continue
        name = path.parent.name if path.parent != folder else ""
        if not name or name.isdigit() or name not in classes and classes:
            name = next((c for c in sorted(classes, key=len, reverse=True) if c in path.stem), "") or name
        groups.setdefault(name or path.stem.rsplit("_", 1)[0], []).append(path)
    return groups


def read_video_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a small video file -> (T, H, W, 3) uint8."""
    from sweettok.data.video_reader import open_video

    with open_video(path) as reader:
        return reader.get_frames(list(range(reader.num_frames)))


def top_words(words: dict[str, list[str]], count: int = 5) -> dict[str, list[tuple[str, int]]]:
    """{segment: words} (``SweetTok.indices_to_words`` of one clip) -> {segment: most frequent (word, count)}."""
    return {segment: Counter(items).most_common(count) for segment, items in words.items()}
