"""Write the demo report: ``report.md`` + PNG figures from the run folders and JSON results of a demo run.

    python scripts/make_report.py --demo-dir outputs/demo --out outputs/demo/report.md

Layout read (every part optional; a missing one shows as "not run"):
    <demo>/{proxy,stage1,stage2,generator}/metrics.jsonl   loss curves, proxy PSNR
    <demo>/stage2/export                                   reconstruction grid + words of a test clip
    <demo>/eval/report.json                                PSNR, SSIM, LPIPS, rFVD, codebook usage
    <demo>/samples/**.mp4                                  generated samples (a frame strip per class)
    <demo>/eval_gen/gfvd.json, class_accuracy.json         gFVD, per-class sample accuracy
    <demo>/probe/probe.json                                appearance/motion x spatial/temporal probe
    <demo>/ablation_{vq,joint}/{stage2,eval,probe}         the ablation variants, same layout
    <demo>/timings.json                                    step times written by run_demo.sh
Figures go to ``<out dir>/figures`` and are linked relatively, so the report renders anywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from sweettok.eval.report import (
    NOT_RUN, frame_picks, group_samples, image_grid, last_value, lookup, markdown_table, plot_curves,
    read_json, read_run_metrics, read_video_frames, reconstruction_rows, to_uint8, token_agreement, top_words,
)

logger = logging.getLogger("make_report")

STAGES = [("proxy", "proxy tokenizer (stage 0)"), ("stage1", "stage 1 (proxy codes)"),
          ("stage2", "stage 2 (pixels + GAN)"), ("generator", "generator (stage 3)")]
VARIANTS = [("main (MLC, decoupled queries)", ""), ("plain VQ", "ablation_vq"), ("joint queries", "ablation_joint")]
PROBE_LABELS, PROBE_TOKENS = ("appearance", "motion"), ("spatial", "temporal")
PROBE_HEADLINE = ("mean", "linear")  # (feature kind, read-out) of the 2x2 and ablation tables


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", default="outputs/demo", help="the demo run's output folder")
    parser.add_argument("--out", default="", help="report path (default: <demo-dir>/report.md)")
    parser.add_argument("--num-clips", type=int, default=3, help="test clips in the reconstruction grid")
    parser.add_argument("--num-frames", type=int, default=6, help="frames per clip in the figures")
    return parser.parse_args()


class Report:
    """Collects markdown sections; figures are written beside it under ``figures/``."""

    def __init__(self, demo: Path, out: Path, num_clips: int, num_frames: int):
        self.demo, self.out, self.figures = demo, out, out.parent / "figures"
        self.num_clips, self.num_frames = num_clips, num_frames
        self.parts: list[str] = []
        self.metrics = {name: read_run_metrics(demo / name) for name, _ in STAGES}

    def link(self, png: Path, alt: str) -> str:
        return f"![{alt}]({os.path.relpath(png, self.out.parent).replace(os.sep, '/')})"

    def add(self, title: str, body: str) -> None:
        self.parts.append(f"## {title}\n\n{body.strip()}\n")

    # ------------------------------------------------------------------ sections

    def metrics_table(self) -> None:
        recon = read_json(self.demo / "eval" / "report.json")
        gen = read_json(self.demo / "eval_gen" / "gfvd.json")
        acc = read_json(self.demo / "eval_gen" / "class_accuracy.json")
        rows = [("proxy PSNR (stage 0, val)", last_value(self.metrics["proxy"], "val/psnr"), "proxy/metrics.jsonl"),
                ("PSNR (dB)", lookup(recon, "psnr"), "eval/report.json"),
                ("baseline PSNR: each clip as its background colour (per-channel median)", lookup(recon, "baseline_psnr"),
                 "eval/report.json"),
                ("SSIM", lookup(recon, "ssim"), "eval/report.json"),
                ("LPIPS", lookup(recon, "lpips"), "eval/report.json"),
                ("rFVD", lookup(recon, "rfvd", "fvd"), "eval/report.json")]
        rows += [(f"codebook {key}", value, "eval/report.json") for key, value in codebook_stats(recon).items()]
        if not codebook_stats(recon):
            rows.append(("codebook usage", None, "eval/report.json"))
        rows.append(("gFVD", lookup(gen, "gfvd", "fvd"), "eval_gen/gfvd.json"))
        blocks = accuracy_blocks(acc)
        for feature, block in blocks.items():
            kind, _, real = feature.partition("_real")  # "i3d_real_loo" / "i3d_real_eval": the same classifier on real clips
            real = {"_loo": "leave-one-out on the train clips", "_eval": "the test clips"}.get(real, real.strip("_"))
            what = f"real clips (ceiling: {real})" if real else "generated samples"
            if kind.endswith("_reconstructions"):  # the eval clips through the tokenizer: the samples' ceiling with it
                kind, what = kind[: -len("_reconstructions")], "the tokenizer's reconstructions of the test clips"
            rows.append((f"class accuracy of {what}, {kind or 'k-NN'} features",
                         block.get("accuracy"), "eval_gen/class_accuracy.json"))
        if not blocks:
            rows.append(("per-class sample accuracy", None, "eval_gen/class_accuracy.json"))
        body = markdown_table(["metric", "value", "from"], rows)
        sample_blocks = {k: b for k, b in blocks.items()
                         if "_real" not in k and not k.endswith("_reconstructions") and b.get("per_class")}
        if sample_blocks:
            classes = sorted({c for b in sample_blocks.values() for c in b["per_class"]})
            body += ("\n\nPer-class sample accuracy: how often a nearest-neighbour classifier on the real train "
                     "clips gives a generated clip its class, per feature kind:\n\n")
            body += markdown_table(["class", *sample_blocks],
                                   [(c, *(b["per_class"].get(c) for b in sample_blocks.values())) for c in classes])
        self.add("Metrics", body)

    def curves(self) -> None:
        lines = []
        for name, title in STAGES:
            png = plot_curves(self.metrics[name], title, self.figures / f"curves_{name}.png")
            lines.append(f"**{title}**\n\n" + (self.link(png, f"{name} curves") if png else f"{NOT_RUN} (no {name}/metrics.jsonl or train.log)"))
        self.add("Training curves", "\n\n".join(lines))

    def tokenizer_figures(self) -> None:
        """Reconstruction grid, the words of test clips beside their captions, and token agreement."""
        export = self.demo / "stage2" / "export"
        titles = ("Reconstructions", "Words of test clips", "Token agreement between different clips")
        if not (export / "model.safetensors").is_file():
            for title in titles:
                self.add(title, f"{NOT_RUN} (no {export})")
            return
        try:
            grid, clips, agreement, count = reconstruct(export, self.figures / "reconstructions.png", self.num_clips,
                                                        self.num_frames, self.demo / "proxy" / "export")
        except Exception as err:  # noqa: BLE001  the report still lists every other result
            logger.exception("reconstruction grid failed")
            for title in titles:
                self.add(title, f"{NOT_RUN}: {type(err).__name__}: {err}")
            return
        self.add(titles[0], "The same test clips as input / proxy tokenizer (stage 0) / stage-2 tokenizer / "
                 "|stage-2 difference| (x3), evenly spaced frames.\n\n" + self.link(grid, "reconstructions"))
        rows = []
        for name, caption, words in clips:
            top = top_words(words, 3)
            rows.append((f"`{name}`", caption or "-", *("; ".join(f"{w} ({n})" for w, n in top.get(seg, []))
                                                         for seg in sorted(top))))
        segments = sorted(top_words(clips[0][2], 3)) if clips else []
        self.add(titles[1], "Each clip's caption (its JSON sidecar) beside the words its indices read as "
                 "(`indices_to_words`; most frequent per index segment, count in brackets):\n\n"
                 + markdown_table(["clip", "caption", *segments], rows))
        self.add(titles[2], f"How often two *different* test clips ({count} clips, every pair) hold the same index "
                 "at the same position, per index segment. Words that follow the content agree rarely; "
                 "a tokenizer that ignores its input agrees everywhere (1.0).\n\n"
                 + markdown_table(["segment", "agreement"], sorted(agreement.items())))

    def samples(self) -> None:
        classes = class_names(self.demo)
        groups = group_samples(self.demo / "samples", classes)
        if not groups:
            self.add("Generated samples", f"{NOT_RUN} (no videos under {self.demo / 'samples'})")
            return
        rows = []
        for name, paths in sorted(groups.items()):
            frames = read_video_frames(paths[0])
            rows.append((name, [frames[t] for t in frame_picks(len(frames), self.num_frames)]))
        png = image_grid(rows, self.figures / "samples.png")
        self.add("Generated samples", f"One generated clip per class ({sum(map(len, groups.values()))} sampled in all), "
                 "evenly spaced frames.\n\n" + self.link(png, "generated samples"))

    def probe(self) -> None:
        data = read_json(self.demo / "probe" / "probe.json")
        rows = [(label, *(probe_cell(data, label, tokens) for tokens in PROBE_TOKENS)) for label in PROBE_LABELS]
        body = (f"Recognition accuracy on the test clips from one kind of token alone ({PROBE_HEADLINE[1]} read-out "
                f"on the `{PROBE_HEADLINE[0]}` features; appearance = shape + colour, motion = direction + speed, "
                "mean over the two attributes):\n\n"
                + markdown_table(["labels", "spatial tokens", "temporal tokens", "chance"],
                                 [(*row, probe_cell(data, row[0], "chance")) for row in rows]))
        if data and "table" in data and "results" in data:
            from sweettok.eval.probe import format_probe_markdown

            body += "\n\nEvery feature kind and read-out (`scripts/eval_probe.py`):\n\n" + format_probe_markdown(data)
        self.add("Probe: does the decoupling hold?", body)

    def ablations(self) -> None:
        rows, budgets = [], set()
        for title, root in VARIANTS:
            base = self.demo / root if root else self.demo
            recon, probe = read_json(base / "eval" / "report.json"), read_json(base / "probe" / "probe.json")
            usage = codebook_stats(recon, "usage")
            steps = " / ".join(fmt_steps(base / stage / "config.yaml") for stage in ("stage1", "stage2"))
            if "-" not in steps.split(" / "):
                budgets.add(steps)
            rows.append((title, steps, lookup(recon, "psnr"), lookup(recon, "rfvd", "fvd"),
                         sum(usage.values()) / len(usage) if usage else None,
                         *(probe_cell(probe, label, tokens) for label in PROBE_LABELS for tokens in PROBE_TOKENS)))
        header = ["variant", "steps (stage 1 / 2)", "PSNR", "rFVD", "usage (mean)"] + \
                 [f"{l} ← {t}" for l in PROBE_LABELS for t in PROBE_TOKENS]
        self.add("Ablations", "Plain VQ codebooks instead of the language codebooks, and one joint query set instead "
                 "of decoupled spatial/temporal queries; same data and settings otherwise (probe: "
                 f"{PROBE_HEADLINE[1]} read-out on `{PROBE_HEADLINE[0]}` features; with joint queries the 'spatial' and "
                 "'temporal' tokens are the first Ls and last Lt outputs of the one query stack, which feed the two "
                 "quantizers)."
                 + (" **The variants train different step counts** (column 2): compare at equal steps only."
                    if len(budgets) > 1 else " Same step counts for every variant.")
                 + "\n\n" + markdown_table(header, rows))

    def timings(self) -> None:
        data = read_json(self.demo / "timings.json")
        steps = (data or {}).get("steps", [])
        if not steps:
            self.add("Timings", f"{NOT_RUN} (no timings.json: run `bash run_demo.sh`)")
            return
        order = ["data", "priors", "features", "proxy", "stage1", "stage2", "eval", "dump", "generator", "sample", "eval_gen", "probe"]
        order += [f"ablation_{v}_{s}" for v in ("vq", "joint") for s in ("stage1", "stage2", "eval", "probe")]
        steps = sorted(steps, key=lambda s: (order.index(s["name"]) if s.get("name") in order else len(order), s.get("name", "")))
        rows = [(s.get("name"), *(s.get(k, "-") if s.get(k) is not None else "-" for k in ("seconds", "cpu_seconds")),
                 s.get("status"), s.get("load") or "-") for s in steps]
        rows.append(("**sum of the steps**", data.get("total_seconds"), data.get("total_cpu_seconds"), "", data.get("load")))
        if data.get("run_wall_seconds") is not None:
            rows.append(("**wall clock of the last full `run_demo.sh`** (ablations beside the main run)",
                         data["run_wall_seconds"], "-", "", "-"))
        self.add("Timings", "Wall and CPU seconds per step (`run_demo.sh`; the ablations run beside the main steps on "
                 "the second core, and the features step beside the proxy). Every process runs one thread, so its CPU time "
                 "is about what it takes on an otherwise idle machine, while wall time grows with the load average "
                 "(1/5/15 min) shown.\n\n"
                 + markdown_table(["step", "wall s", "CPU s", "status", "load at end"], rows))

    def write(self) -> Path:
        head = (f"# SweetTok demo report\n\nGenerated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from "
                f"`{self.demo}` by `scripts/make_report.py`. Cells that say *{NOT_RUN}* had no result file.\n")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join([head, *self.parts]))
        return self.out


# ---------------------------------------------------------------------------- result readers


def codebook_stats(recon: Optional[dict[str, Any]], kind: str = "") -> dict[str, float]:
    """{"<sub-codebook> usage|perplexity": value} from whatever nesting the eval report uses."""
    from sweettok.eval.report import flatten

    out = {}
    for key, value in flatten(recon or {}).items():
        words = key.lower().replace("codebook_", "").replace("codebook/", "").split("/")
        leaf = words[-1]
        if isinstance(value, (int, float)) and any(k in leaf for k in ("usage", "perplexity")) and kind in leaf:
            out[" ".join(w for w in words if w not in ("codebook", "codebooks"))] = float(value)
    return out


def accuracy_blocks(acc: Optional[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{feature kind: {"accuracy", "per_class"}} of scripts/eval_class_accuracy.py's JSON (or one flat block)."""
    if not acc:
        return {}
    if "accuracy" in acc or "per_class" in acc:
        return {"": acc}
    return {k: v for k, v in acc.items() if isinstance(v, dict) and "accuracy" in v}


def probe_cell(probe: Optional[dict[str, Any]], label: str, tokens: str) -> Optional[float]:
    """Headline accuracy of ``label`` (appearance | motion) from ``tokens`` (spatial | temporal | chance)."""
    kind, readout = PROBE_HEADLINE
    try:
        return float(probe["table"][kind][readout][label][tokens])  # scripts/eval_probe.py's layout
    except (KeyError, TypeError, ValueError):
        value = lookup(probe, f"{label}/{tokens}")  # a plain {label: {tokens: accuracy}} result
        return float(value) if isinstance(value, (int, float)) else None


def fmt_steps(config: Path) -> str:
    """training.max_train_steps of a run folder's config.yaml, or "-"."""
    if not config.is_file():
        return "-"
    from omegaconf import OmegaConf

    return str(OmegaConf.select(OmegaConf.load(config), "training.max_train_steps", default="-"))


def class_names(demo: Path) -> list[str]:
    """Class names of the demo set (from the stage-2 export's config), or [] if unknown."""
    from sweettok.config import load_config

    for name in ("stage2", "stage1", "proxy"):
        path = demo / name / "config.yaml"
        if path.is_file():
            classes = Path(load_config(path).dataset.root) / "classes.txt"
            if classes.is_file():
                return [line.split()[-1] for line in classes.read_text().splitlines() if line.strip()]
    return []


AGREEMENT_CLIPS = 12  # test clips whose pairwise token agreement the report shows


def caption_of(path: str) -> str:
    """The demo clip's caption from its JSON sidecar ("a red circle rises slowly"), or ""."""
    sidecar = read_json(Path(path).with_suffix(".json"))
    return str(sidecar.get("caption", "")) if sidecar else ""


def reconstruct(export: Path, out_png: Path, num_clips: int, num_frames: int, proxy_export: Optional[Path] = None):
    """Test clips through the export (and the proxy) -> grid PNG, words/captions/names, token agreement.

    Returns (grid, [(name, caption, words)] of the first ``num_clips`` clips, agreement): the grid
    shows input / proxy reconstruction (when ``proxy_export`` exists) / stage-2 reconstruction /
    |difference|; ``agreement`` is ``token_agreement`` over ``AGREEMENT_CLIPS`` evenly spaced test clips.
    """
    import torch

    from sweettok.config import load_config, to_dataclass
    from sweettok.data.video_dataset import VideoDataset
    from sweettok.models.proxy_convert import load_proxy_checkpoint
    from sweettok.models.tokenizer import SweetTok

    model = SweetTok.from_pretrained(export)
    config = load_config(export / "config.yaml")
    dataset = VideoDataset(to_dataclass(config.dataset), split="eval", max_clips=max(num_clips, AGREEMENT_CLIPS))
    items = [dataset[i] for i in range(len(dataset))]
    video = torch.stack([item["video"] for item in items])  # (B, C, T, H, W) in [-0.5, 0.5]
    with torch.no_grad():
        out = model.encode(video)
        shown = video[:num_clips]
        recon = model.decode_pixels(tuple(part[:num_clips] for part in out.latents)).clamp(-0.5, 0.5)
        extra = None
        if proxy_export is not None and (proxy_export / "model.safetensors").is_file():
            proxy = load_proxy_checkpoint(proxy_export, to_dataclass(config.model.proxy), freeze=True)
            extra = ("proxy (stage 0)", [to_uint8(v) for v in proxy(shown)["reconstruction"].clamp(-0.5, 0.5)])
    inputs = [to_uint8(v) for v in shown]
    outputs = [to_uint8(v) for v in recon]
    names = [Path(str(item["key"])).stem for item in items[:num_clips]]
    picks = frame_picks(inputs[0].shape[0], num_frames)
    rows = reconstruction_rows(inputs, outputs, names, picks, extra=extra, output_label="stage 2")
    grid = image_grid(rows, out_png, [f"frame {t}" for t in picks])
    clips = [(names[i], caption_of(dataset.path_of(dataset.entries[i])), model.indices_to_words(out.indices[i]))
             for i in range(len(names))]
    agreement = token_agreement(out.indices, model.layout.slices) if len(items) > 1 else {}
    return grid, clips, agreement, len(items)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demo = Path(args.demo_dir)
    report = Report(demo, Path(args.out or demo / "report.md"), args.num_clips, args.num_frames)
    for section in (report.metrics_table, report.curves, report.tokenizer_figures, report.samples,
                    report.probe, report.ablations, report.timings):
        try:
            section()
        except Exception as err:  # noqa: BLE001  one broken result file must not cost the whole report
            logger.exception("section %s failed", section.__name__)
            report.add(section.__name__.replace("_", " "), f"{NOT_RUN}: {type(err).__name__}: {err}")
    print(f"report -> {report.write()}")


if __name__ == "__main__":
    main()
