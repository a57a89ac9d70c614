"""Decoupling probe on the demo set: appearance / motion labels from spatial or temporal tokens alone.

    python scripts/eval_probe.py --checkpoint outputs/demo/stage2/export --out outputs/demo/probe.json
    python scripts/eval_probe.py --checkpoint DIR --config configs/demo/dataset.yaml --shots 1,5,10

The clips and their settings come from the export's ``config.yaml`` (``dataset`` section), or from
``--config`` (any config whose ``dataset`` section names a labelled demo set); ``--data`` points at
another demo folder (``<dir>/train.txt``, ``<dir>/test.txt``). Writes the full result as JSON and
prints the markdown tables (see ``sweettok.eval.probe`` for the features and read-outs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from sweettok.api import export_config, from_pretrained
from sweettok.config import load_config
from sweettok.eval.probe import format_probe_markdown, run_probe


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="tokenizer export folder (model.safetensors + config.yaml)")
    parser.add_argument("--config", default="", help="take the dataset section from this config, not the export's")
    parser.add_argument("--data", default="", help="demo folder (lists <dir>/train.txt, <dir>/test.txt)")
    parser.add_argument("--split-train", default="train", help="split the read-outs are fitted on (default train)")
    parser.add_argument("--split-test", default="eval", help="split they are scored on (default eval)")
    parser.add_argument("--shots", default="1,5", help="few-shot k values, comma-separated (default 1,5)")
    parser.add_argument("--draws", type=int, default=20, help="seeded few-shot draws averaged (default 20)")
    parser.add_argument("--linear-steps", type=int, default=300, help="full-batch Adam steps of the linear probe")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the demo tokenizer gains nothing from more; 0 = torch's)")
    parser.add_argument("--out", default="", help="JSON file for the full result (default: <checkpoint>/../probe.json)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config) if args.config else export_config(args.checkpoint)
    if args.data:
        cfg.dataset.root = args.data
        cfg.dataset.train_list = os.path.join(args.data, "train.txt")
        cfg.dataset.eval_list = os.path.join(args.data, "test.txt")
    model = from_pretrained(args.checkpoint, map_location=args.device)
    shots = [int(k) for k in args.shots.split(",") if k.strip()]
    result = run_probe(model, cfg, args.split_train, args.split_test, shots=shots, draws=args.draws,
                       batch_size=args.batch_size, seed=args.seed, linear_steps=args.linear_steps)
    result["checkpoint"] = args.checkpoint
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(format_probe_markdown(result))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
