"""``python -m sweettok``: read a clip as words, encode it to indices, decode indices to a video.

    python -m sweettok words VIDEO --checkpoint DIR [--top 10] [--json]
    python -m sweettok encode VIDEO --checkpoint DIR --out tokens.json|tokens.safetensors
    python -m sweettok decode TOKENS --checkpoint DIR --out video.mp4
    python -m sweettok reconstruct VIDEO --checkpoint DIR --out video.mp4 [--side-by-side]

DIR is a tokenizer export folder (``model.safetensors`` + ``config.yaml``), e.g.
``outputs/demo/stage2/export``; ``decode`` and ``reconstruct`` need a stage-2 export (with the
pixel decoder). The clip is the export's evaluation clip of VIDEO (centred ``num_frames`` frames,
centre crop, its resolution). Bad input (missing or unreadable video, missing checkpoint, token
file of another layout, stage-1 checkpoint for pixels) is one line on stderr and exit code 2;
``--verbose`` shows the traceback and the library's log instead.
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
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")
STAGE2_HINT = ("decoding to pixels needs a stage-2 export (with the pixel decoder): train one with "
               "`bash run_train_stage2.sh` or `make demo` (outputs/demo/stage2/export)")

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
    from sweettok.api import export_config, from_pretrained

    cfg = export_config(checkpoint)
    return from_pretrained(checkpoint, map_location=_device(device)), cfg


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
    """Open VIDEO with PyAV first: a non-video file fails here with one line, before decord prints its own."""
    import av

    from sweettok.data.video_reader import VideoReadError

    if not Path(path).is_file():
        raise VideoReadError(path, "no such file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(path, "the file has no video stream")
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"not a video file ({getattr(err, 'strerror', None) or err})") from None


def _encode_clip(args: argparse.Namespace):
    """Read VIDEO as the checkpoint's evaluation clip and encode it -> (model, cfg, clip, info, output)."""
    import torch

    from sweettok.api import export_config, read_video_clip

    cfg = export_config(args.checkpoint)  # cheap checks (folder, video) before the model loads
    _check_video_file(args.video)
    clip, info = read_video_clip(args.video, cfg)
    model, cfg = _load(args.checkpoint, args.device)
    with torch.no_grad():
        out = model.encode(clip.to(next(model.parameters()).device))
    return model, cfg, clip, info, out


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


# ----------------------------------------------------------------------------- commands


def cmd_words(args: argparse.Namespace) -> None:
    """Print the most frequent adjectives/nouns (spatial) and adverbs/verbs (temporal) of a clip."""
    model, cfg, clip, info, out = _encode_clip(args)
    words = model.indices_to_words(out.indices[0])
    pos_names = model.layout.pos_names
    if args.json:
        summary = {pos_names[s]: dict(Counter(w).most_common(args.top)) for s, w in words.items()}
        print(json.dumps({"video": info["path"], "checkpoint": args.checkpoint, "top": summary}, indent=1))
        return
    _, _, frames, height, width = clip.shape
    print(f"{info['path']}: {frames} frames (of {info['source_frames']}) at {height}x{width}, "
          f"{out.indices.shape[1]} indices; checkpoint {args.checkpoint}")
    print("\n".join(format_words(words, pos_names, args.top)))


def cmd_encode(args: argparse.Namespace) -> None:
    """Write the clip's indices, words, layout and source info to a token file."""
    from sweettok.api import TOKEN_SUFFIXES, save_tokens

    if Path(args.out).suffix not in TOKEN_SUFFIXES:
        raise CliError(f"--out {args.out}: the token file name must end in {' or '.join(TOKEN_SUFFIXES)}")
    model, cfg, clip, info, out = _encode_clip(args)
    source = {**info, "checkpoint": args.checkpoint, "clip_shape": list(clip.shape[1:])}
    save_tokens(args.out, out.indices.cpu(), model.layout, [model.indices_to_words(out.indices[0])], source)
    print(f"wrote {args.out}: {out.indices.shape[1]} indices ({model.layout.num_spatial} spatial + "
          f"{model.layout.num_temporal} temporal latents)")


def _write_clips(videos, cfg, out: Path, fps: float) -> list[Path]:
    """Write clips (B, 3, T, H, W) as ``out`` (one clip) or ``out_<i>`` (several)."""
    from sweettok.api import to_uint8_frames
    from sweettok.data.video_writer import write_video

    paths = [out] if len(videos) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(videos))]
    for video, path in zip(videos, paths):
        write_video(path, to_uint8_frames(video, cfg), fps=fps)
    return paths


def cmd_decode(args: argparse.Namespace) -> None:
    """Token file -> pixels -> video file (stage-2 export)."""
    import torch

    from sweettok.api import check_tokens_fit, load_tokens

    out = _check_video_out(args.out)
    indices, meta = load_tokens(args.tokens)
    _require_stage2(args.checkpoint)
    model, cfg = _load(args.checkpoint, args.device)
    check_tokens_fit(indices, meta, model.layout, f"token file {args.tokens}")
    with torch.no_grad():
        videos = model.decode_indices_to_pixels(indices.to(next(model.parameters()).device))
    fps = args.fps or meta.get("source", {}).get("clip_fps") or 16.0
    paths = _write_clips(videos, cfg, out, fps)
    print(f"wrote {', '.join(map(str, paths))}: {tuple(videos.shape[2:])} (T, H, W) at {fps:g} fps")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    """VIDEO -> indices -> pixels -> video file; ``--side-by-side`` puts the input clip on the left."""
    import numpy as np
    import torch

    from sweettok.api import to_uint8_frames
    from sweettok.data.video_writer import write_video

    out = _check_video_out(args.out)
    _require_stage2(args.checkpoint)
    model, cfg, clip, info, encoded = _encode_clip(args)
    with torch.no_grad():
        video = model.decode_pixels(encoded.latents)[0]  # (3, T, H, W)
    original, recon = to_uint8_frames(clip[0], cfg), to_uint8_frames(video, cfg)
    mse = float((((original.astype(np.float64) - recon) / 255.0) ** 2).mean())
    psnr = 10 * math.log10(1.0 / max(mse, 1e-12))  # of the uint8 clips, as written
    frames = np.concatenate([original, recon], axis=2) if args.side_by_side else recon  # (T, H, 2W | W, 3)
    write_video(out, frames, fps=args.fps or info["clip_fps"] or 16.0)
    print(f"wrote {out}: {recon.shape[0]} frames at {recon.shape[1]}x{recon.shape[2]}"
          f"{' (input | reconstruction)' if args.side_by_side else ''}; PSNR {psnr:.2f} dB")


# ----------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _common(parser: argparse.ArgumentParser, func: Callable) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="tokenizer export folder (model.safetensors + config.yaml), "
                             "e.g. outputs/demo/stage2/export")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--verbose", action="store_true", help="show the library's log and full tracebacks")
    parser.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sweettok`` argument parser with its four subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m sweettok", description="SweetTok video tokenizer: read clips as words, encode, decode.",
        epilog="Run `python -m sweettok <command> --help` for a command's options.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    words = commands.add_parser("words", help="most frequent adjectives/nouns (spatial) and adverbs/verbs (temporal)",
                                description=cmd_words.__doc__)
    words.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    words.add_argument("--top", type=_positive_int, default=10, help="words shown per part of speech (default 10)")
    words.add_argument("--json", action="store_true", help="print the counts as JSON")
    _common(words, cmd_words)
    encode = commands.add_parser("encode", help="video -> token file (indices, words, layout, source)",
                                 description=cmd_encode.__doc__)
    encode.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    encode.add_argument("--out", required=True, help="token file: .json (readable) or .safetensors")
    _common(encode, cmd_encode)
    decode = commands.add_parser("decode", help="token file -> video (stage-2 export)", description=cmd_decode.__doc__)
    decode.add_argument("tokens", metavar="TOKENS", help="token file written by `encode` (.json or .safetensors)")
    decode.add_argument("--out", required=True, help="video file to write (.mp4, .avi, .mkv, .webm)")
    decode.add_argument("--fps", type=float, default=0.0, help="frame rate (default: the source clip's, else 16)")
    _common(decode, cmd_decode)
    recon = commands.add_parser("reconstruct", help="video -> tokens -> video (stage-2 export)",
                                description=cmd_reconstruct.__doc__)
    recon.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    recon.add_argument("--out", required=True, help="video file to write (.mp4, .avi, .mkv, .webm)")
    recon.add_argument("--side-by-side", action="store_true", help="input clip on the left, reconstruction right")
    recon.add_argument("--fps", type=float, default=0.0, help="frame rate (default: the source clip's)")
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
