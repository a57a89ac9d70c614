"""``python -m sweettok``: read a video as words, encode it to indices, decode indices to a video.

    python -m sweettok words VIDEO --checkpoint DIR [--top 10] [--json]
    python -m sweettok encode VIDEO --checkpoint DIR --out tokens.json|tokens.safetensors
    python -m sweettok encode FOLDER --checkpoint DIR --out TOKEN_FOLDER [--format json|safetensors]
    python -m sweettok decode TOKENS --checkpoint DIR --out video.mp4|video.gif
    python -m sweettok reconstruct VIDEO --checkpoint DIR --out video.mp4|video.gif [--side-by-side]

DIR is a tokenizer export folder (``model.safetensors`` + ``config.yaml`` + its priors), e.g.
``outputs/demo/stage2/export``, or a Hugging Face hub id; ``decode`` and ``reconstruct`` need a
stage-2 export (with the pixel decoder). The whole video is read, from ``--start`` (seconds), in
windows of the export's ``num_frames`` frames every ``--window-stride`` frames, sampled at the
export's frame stride / fps unless ``--fps`` or ``--frame-stride`` says otherwise, centre-cropped
or squashed (``--resize``) to its resolution; what was padded, cropped or resampled is printed.
``--centre-clip`` reads only the export's evaluation clip (the centred ``num_frames`` frames).
Still images are refused. Bad input (missing, unreadable or still-image video, missing checkpoint,
token file of another layout, stage-1 checkpoint for pixels) is one line on stderr and exit code
2; ``--verbose`` shows the traceback and the library's log instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

EXIT_BAD_INPUT = 2
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".gif")
STAGE2_HINT = ("decoding to pixels needs a stage-2 export (with the pixel decoder): train one with "
               "`bash run_train_stage2.sh` or `make demo` (outputs/demo/stage2/export)")
WINDOW_ONLY = ("start", "window_stride", "max_windows")  # options that need the whole-video read

logger = logging.getLogger("sweettok.cli")


class CliError(Exception):
    """Bad input to a command: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------- helpers


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _load(checkpoint: str, device: str):
    """(model, export config) of an export folder."""
    from sweettok.api import from_pretrained

    model = from_pretrained(checkpoint, map_location=_device(device))
    return model, model.run_config


def _has_pixel_decoder(checkpoint: str) -> bool:
    """Whether an export holds the stage-2 pixel decoder, read from the weight names only (no load)."""
    from safetensors import safe_open

    from sweettok.api import check_export_folder

    with safe_open(str(check_export_folder(checkpoint) / "model.safetensors"), framework="pt") as f:
        return any(key.startswith(("pixel.", "pixel_decoder.")) for key in f.keys())


def _require_stage2(checkpoint: str) -> None:
    if not _has_pixel_decoder(checkpoint):
        raise CliError(f"{checkpoint} is a stage-1 export (no pixel decoder); {STAGE2_HINT}")


def _check_video_out(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise CliError(f"--out {out}: the video name must end in one of {', '.join(VIDEO_SUFFIXES)}")
    return out


def _check_video_file(path: str) -> None:
    """Open VIDEO with PyAV first: a non-video or a still image fails here with one line, before decord."""
    import av

    from sweettok.data.video_reader import VideoReadError

    if not Path(path).is_file():
        raise VideoReadError(path, "no such file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(path, "the file has no video stream")
            fmt, frames = container.format.name, container.streams.video[0].frames
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"not a video file ({getattr(err, 'strerror', None) or err})") from None
    if fmt == "image2" or fmt.endswith("_pipe") or (fmt == "gif" and frames <= 1):
        raise VideoReadError(path, f"it is a still image ({fmt}), not a video; SweetTok tokenizes clips: make one "
                                   f"first, e.g. `ffmpeg -loop 1 -i {path} -frames:v 17 still.mp4`")


def _open_video(args: argparse.Namespace, path: str, cfg):
    """The video as windows (or the centre clip) with the command's sampling options."""
    from sweettok.data.windows import WindowedVideo

    _check_video_file(path)
    return WindowedVideo(path, cfg.dataset, start=args.start, fps=args.fps, frame_stride=args.frame_stride,
                         stride=args.window_stride, resize=args.resize, max_windows=args.max_windows,
                         centre=args.centre_clip)


def _progress(total: int, what: str):
    """A tqdm bar on stderr (shown on a terminal only, so logs and pipes stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="window", disable=None, leave=False, file=sys.stderr)


def _encode_video(args: argparse.Namespace, model, cfg, path: str):
    """(WindowedVideo info, indices (W, N)) of one video."""
    from sweettok.api import encode_windows

    with _open_video(args, path, cfg) as video, _progress(video.plan.num_windows, Path(path).name) as bar:
        return video.info(), encode_windows(model, video, args.batch_size, bar.update)


def _describe(info: dict, shape: Sequence[int]) -> str:
    """One line: windows, frames and size read from a video."""
    plan = info["windows"]
    return (f"{info['path']}: {len(plan['starts'])} window(s) of {plan['num_frames']} frames, "
            f"{len(plan['frame_indices'])} of {info['source_frames']} source frames at {shape[-2]}x{shape[-1]}")


def _print_notes(info: dict) -> None:
    for note in info["notes"]:
        print(f"note: {note}")


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def format_words(words: dict[str, list[str]], pos_names: dict[str, str], top: int) -> list[str]:
    """Readable lines: per branch, the ``top`` most frequent words of each part of speech with counts."""
    lines = []
    for branch, role in (("spatial", "appearance"), ("temporal", "motion")):
        lines.append(f"{branch} tokens ({role}):")
        for segment in (f"{branch}_first", f"{branch}_second"):
            counts = Counter(words[segment]).most_common(top)
            cells = ", ".join(f"{word} x{count}" for word, count in counts)
            label = f"{_plural(pos_names[segment])} ({len(words[segment])})"
            lines.append(f"  {label:<18} {cells}")
    return lines


def _check_window_options(args: argparse.Namespace) -> None:
    if args.centre_clip and any(getattr(args, name) for name in WINDOW_ONLY):
        raise CliError("--start, --window-stride and --max-windows place windows over the whole video; "
                       "leave out --centre-clip")


# ----------------------------------------------------------------------------- commands


def cmd_words(args: argparse.Namespace) -> None:
    """Print the most frequent adjectives/nouns (spatial) and adverbs/verbs (temporal) of a video."""
    from sweettok.api import export_config

    cfg = export_config(args.checkpoint)  # cheap checks (folder, video) before the model loads
    _check_video_file(args.video)
    model, cfg = _load(args.checkpoint, args.device)
    info, indices = _encode_video(args, model, cfg, args.video)
    per_window = model.indices_to_words(indices)
    words = {segment: [w for window in per_window for w in window[segment]] for segment in per_window[0]}
    pos_names = model.layout.pos_names
    if args.json:
        summary = {pos_names[s]: dict(Counter(w).most_common(args.top)) for s, w in words.items()}
        print(json.dumps({"video": info["path"], "checkpoint": args.checkpoint, "windows": indices.shape[0],
                          "notes": info["notes"], "top": summary}, indent=1))
        return
    resolution = cfg.dataset.resolution
    print(f"{_describe(info, (resolution, resolution))}, {indices.numel()} indices; checkpoint {args.checkpoint}")
    print("\n".join(format_words(words, pos_names, args.top)))
    _print_notes(info)


def _source(info: dict, args: argparse.Namespace, cfg) -> dict:
    data = cfg.dataset
    return {**info, "checkpoint": str(args.checkpoint), "clip_shape": [3, data.num_frames] + [data.resolution] * 2}


def cmd_encode(args: argparse.Namespace) -> None:
    """Write a video's (or every video's in a folder) indices, words, layout and source info to token files."""
    from sweettok.api import TOKEN_SUFFIXES, export_config, save_tokens

    if Path(args.video).is_dir():
        return _encode_folder(args)
    if Path(args.out).suffix not in TOKEN_SUFFIXES:
        raise CliError(f"--out {args.out}: the token file name must end in {' or '.join(TOKEN_SUFFIXES)}")
    export_config(args.checkpoint)
    _check_video_file(args.video)
    model, cfg = _load(args.checkpoint, args.device)
    info, indices = _encode_video(args, model, cfg, args.video)
    save_tokens(args.out, indices, model.layout, model.indices_to_words(indices), _source(info, args, cfg))
    print(f"wrote {args.out}: {indices.shape[0]} window(s) x {indices.shape[1]} indices "
          f"({model.layout.num_spatial} spatial + {model.layout.num_temporal} temporal latents each)")
    _print_notes(info)


def _encode_folder(args: argparse.Namespace) -> None:
    """Every video under a folder -> one token file each under ``--out``, same relative paths."""
    from tqdm import tqdm

    from sweettok.api import TOKEN_SUFFIXES, save_tokens
    from sweettok.data.video_reader import VIDEO_EXTENSIONS, VideoReadError

    root, out = Path(args.video), Path(args.out)
    if out.suffix in TOKEN_SUFFIXES:
        raise CliError(f"--out {out}: VIDEO is a folder, so --out is the folder the token files go to")
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise CliError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in the folder or below")
    model, cfg = _load(args.checkpoint, args.device)
    skipped = []
    for path in tqdm(videos, desc="videos", unit="video", disable=None, file=sys.stderr):
        target = (out / path.relative_to(root)).with_suffix(f".{args.format}")
        try:
            info, indices = _encode_video(args, model, cfg, str(path))
        except (VideoReadError, ValueError) as err:
            skipped.append(path)
            tqdm.write(f"skipped {path}: {_one_line(err)}", file=sys.stderr)
            continue
        save_tokens(target, indices, model.layout, model.indices_to_words(indices), _source(info, args, cfg))
        notes = f" ({'; '.join(info['notes'])})" if info["notes"] else ""
        tqdm.write(f"wrote {target}: {indices.shape[0]} window(s){notes}", file=sys.stdout)
    done = len(videos) - len(skipped)
    if skipped:
        raise CliError(f"{len(skipped)} of {len(videos)} videos under {root} could not be read (listed above); "
                       f"the other {done} token files are in {out}")
    print(f"encoded {done} videos from {root} into {out}")


def _write_clips(videos, cfg, out: Path, fps: float) -> list[Path]:
    """Write clips (B, 3, T, H, W) as ``out`` (one clip) or ``out_<i>`` (several)."""
    from sweettok.api import to_uint8_frames
    from sweettok.data.video_writer import write_video

    paths = [out] if len(videos) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(videos))]
    for video, path in zip(videos, paths):
        write_video(path, to_uint8_frames(video, cfg), fps=fps)
    return paths


def cmd_decode(args: argparse.Namespace) -> None:
    """Token file -> pixels -> one video file, windows stitched back in order (stage-2 export)."""
    import torch

    from sweettok.api import check_tokens_fit, decode_windows, load_tokens, to_uint8_frames
    from sweettok.data.video_writer import write_video
    from sweettok.data.windows import WindowPlan

    out = _check_video_out(args.out)
    indices, meta = load_tokens(args.tokens)
    _require_stage2(args.checkpoint)
    model, cfg = _load(args.checkpoint, args.device)
    check_tokens_fit(indices, meta, model.layout, f"token file {args.tokens}")
    source = meta.get("source", {})
    fps = args.fps or source.get("clip_fps") or 16.0
    if "windows" not in source:  # written before whole-video encoding: one clip per row
        with torch.no_grad():
            videos = model.decode_indices_to_pixels(indices.to(next(model.parameters()).device))
        paths = _write_clips(videos, cfg, out, fps)
        print(f"wrote {', '.join(map(str, paths))}: {tuple(videos.shape[2:])} (T, H, W) at {fps:g} fps")
        return
    try:
        plan = WindowPlan(**source["windows"])
    except TypeError as err:
        raise CliError(f"token file {args.tokens}: its source.windows record is damaged ({err})") from None
    video = decode_windows(model, indices, plan, args.batch_size)
    write_video(out, to_uint8_frames(video, cfg), fps=fps)
    print(f"wrote {out}: {video.shape[1]} frames from {plan.num_windows} window(s) at "
          f"{video.shape[2]}x{video.shape[3]}, {fps:g} fps")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    """VIDEO -> indices -> pixels -> video file; ``--side-by-side`` puts the input on the left."""
    import numpy as np

    from sweettok.api import export_config, reconstruct_windows, to_uint8_frames
    from sweettok.data.video_writer import write_video

    out = _check_video_out(args.out)
    export_config(args.checkpoint)
    _require_stage2(args.checkpoint)
    _check_video_file(args.video)
    model, cfg = _load(args.checkpoint, args.device)
    with _open_video(args, args.video, cfg) as video, _progress(video.plan.num_windows, "windows") as bar:
        info = video.info()
        inputs, outputs = reconstruct_windows(model, video, args.batch_size, bar.update)
    original, recon = to_uint8_frames(inputs, cfg), to_uint8_frames(outputs, cfg)
    mse = float((((original.astype(np.float64) - recon) / 255.0) ** 2).mean())
    psnr = 10 * math.log10(1.0 / max(mse, 1e-12))  # of the uint8 videos, as written
    frames = np.concatenate([original, recon], axis=2) if args.side_by_side else recon  # (T, H, 2W | W, 3)
    write_video(out, frames, fps=info["clip_fps"] or 16.0)
    print(f"wrote {out}: {recon.shape[0]} frames from {len(info['windows']['starts'])} window(s) at "
          f"{recon.shape[1]}x{recon.shape[2]}{' (input | reconstruction)' if args.side_by_side else ''}; "
          f"PSNR {psnr:.2f} dB")
    _print_notes(info)


# ----------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _common(parser: argparse.ArgumentParser, func: Callable) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="tokenizer export folder (model.safetensors + config.yaml + priors/), "
                             "e.g. outputs/demo/stage2/export, or a Hugging Face hub id")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=_positive_int, default=4, help="windows per forward pass (default 4)")
    parser.add_argument("--verbose", action="store_true", help="show the library's log and full tracebacks")
    parser.set_defaults(func=func)


def _reading(parser: argparse.ArgumentParser) -> None:
    """How a video is read: start, sampling rate, windows, resize."""
    group = parser.add_argument_group("reading the video (defaults: the export's dataset settings)")
    group.add_argument("--start", type=_non_negative, default=0.0, metavar="SECONDS",
                       help="start this many seconds into the video (default 0)")
    rate = group.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=_non_negative, default=0.0, help="resample to this frame rate")
    rate.add_argument("--frame-stride", type=_positive_int, default=0, metavar="N", help="take every N-th frame")
    group.add_argument("--window-stride", type=_positive_int, default=0, metavar="N",
                       help="sampled frames between window starts (default: the window length, back to back)")
    group.add_argument("--max-windows", type=_positive_int, default=0, metavar="N", help="stop after N windows")
    group.add_argument("--resize", choices=("crop", "squash"), default="",
                       help="crop: shorter side, centre square; squash: whole frame, aspect ratio changed")
    group.add_argument("--centre-clip", action="store_true",
                       help="only the export's evaluation clip (centred num_frames frames), not the whole video")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sweettok`` argument parser with its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m sweettok", description="SweetTok video tokenizer: read videos as words, encode, decode.",
        epilog="Run `python -m sweettok <command> --help` for a command's options.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    words = commands.add_parser("words", help="most frequent adjectives/nouns (spatial) and adverbs/verbs (temporal)",
                                description=cmd_words.__doc__)
    words.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    words.add_argument("--top", type=_positive_int, default=10, help="words shown per part of speech (default 10)")
    words.add_argument("--json", action="store_true", help="print the counts as JSON")
    _reading(words)
    _common(words, cmd_words)
    encode = commands.add_parser("encode", help="video (or folder of videos) -> token file(s)",
                                 description=cmd_encode.__doc__)
    encode.add_argument("video", metavar="VIDEO", help="video file, or a folder: every video in it and below")
    encode.add_argument("--out", required=True,
                        help="token file: .json (readable) or .safetensors; for a folder VIDEO, the output folder")
    encode.add_argument("--format", choices=("json", "safetensors"), default="json",
                        help="token file type when VIDEO is a folder (default json)")
    _reading(encode)
    _common(encode, cmd_encode)
    decode = commands.add_parser("decode", help="token file -> video (stage-2 export)", description=cmd_decode.__doc__)
    decode.add_argument("tokens", metavar="TOKENS", help="token file written by `encode` (.json or .safetensors)")
    decode.add_argument("--out", required=True, help=f"video file to write ({', '.join(VIDEO_SUFFIXES)})")
    decode.add_argument("--fps", type=float, default=0.0, help="frame rate (default: the source clip's, else 16)")
    _common(decode, cmd_decode)
    recon = commands.add_parser("reconstruct", help="video -> tokens -> video (stage-2 export)",
                                description=cmd_reconstruct.__doc__)
    recon.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    recon.add_argument("--out", required=True, help=f"video file to write ({', '.join(VIDEO_SUFFIXES)})")
    recon.add_argument("--side-by-side", action="store_true", help="input on the left, reconstruction right")
    _reading(recon)
    _common(recon, cmd_reconstruct)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if not isinstance(err, KeyError) else f"missing key {text}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; bad input -> one line on stderr and exit code 2 (tracebacks with --verbose)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if hasattr(args, "centre_clip"):
            _check_window_options(args)
        args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - every failure is reported as one line unless --verbose
        if args.verbose:
            raise
        from sweettok.config import ConfigError
        from sweettok.data.video_reader import VideoReadError

        expected = (CliError, FileNotFoundError, VideoReadError, ValueError, ConfigError)
        hint = "" if isinstance(err, expected) else f" ({type(err).__name__}; run with --verbose for the traceback)"
        print(f"error: {_one_line(err)}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
