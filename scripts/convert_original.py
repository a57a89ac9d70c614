"""Convert a released SweetTok_Compact weights file into an export folder that every tool here loads.

    python scripts/convert_original.py --weights checkpoints/ucf_stage2.bin \
        --config configs/ucf101/stage2.yaml --out checkpoints/sweettok_ucf
    python -m sweettok words clip.avi --checkpoint checkpoints/sweettok_ucf
    python scripts/eval_tokenizer.py --checkpoint checkpoints/sweettok_ucf --config configs/ucf101/stage2.yaml

The weights (stage 1: encoder, quantizers, decoder; stage 2: also ``pixel_*``) are renamed and
loaded strictly into the model ``--config`` describes (key=value overrides after the flags), with
the original MLC prior pickles it names (``model.tokenizer.{spatial,temporal}_quantizer.prior``:
the published ``.pkl`` files, not priors built here). The quirks the weights were trained with are
set (``peg_layout: original``; for stage 2 the pixel decoder's proxy settings) and written into the
export's ``config.yaml``. The folder holds ``model.safetensors`` + ``config.yaml`` (written by
``sweettok.training.checkpoint.export_model``, as a training run's export) and loads with
``sweettok.from_pretrained(folder)`` in eval mode.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from sweettok.config import ConfigError, load_config, to_dataclass
from sweettok.errors import first_line
from sweettok.models.proxy_convert import CheckpointMismatchError
from sweettok.models.tokenizer_convert import build_from_original, read_original_state_dict
from sweettok.training.checkpoint import export_model

logger = logging.getLogger("convert_original")

USER_ERRORS = (FileNotFoundError, ConfigError, CheckpointMismatchError, ValueError)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="original SweetTok_Compact state dict (.bin, .pt, .safetensors)")
    parser.add_argument("--config", required=True, help="the model's config, e.g. configs/ucf101/stage2.yaml")
    parser.add_argument("--out", required=True, help="export folder to write (model.safetensors + config.yaml)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. prior paths)")
    return parser.parse_args(argv)


def convert(weights: str, config: str, out: str, overrides: Optional[list[str]] = None) -> Path:
    """Load ``weights`` strictly into the model of ``config`` and export it to ``out``; returns the folder."""
    cfg = load_config(config, overrides or [])
    state = read_original_state_dict(weights)
    model = build_from_original(state, to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy))
    cfg.model.tokenizer = OmegaConf.structured(model.cfg)  # with the quirks the weights were trained with
    cfg.model.proxy = OmegaConf.structured(model.proxy_cfg)
    cfg.experiment.train_stage = 2 if model.has_pixel_decoder else 1
    folder = export_model(model.state_dict(), cfg, out)
    stage = "stage-2 (with pixel decoder)" if model.has_pixel_decoder else "stage-1 (proxy-code logits)"
    logger.info("%s: %s tokenizer, %.1f M parameters -> %s", weights, stage,
                sum(p.numel() for p in model.parameters()) / 1e6, folder)
    return folder


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder = convert(args.weights, args.config, args.out, args.overrides)
    except USER_ERRORS as err:
        sys.exit(f"error: {first_line(err)}")
    print(f"wrote {folder}: load it with sweettok.from_pretrained({str(folder)!r}) or "
          f"python -m sweettok words VIDEO --checkpoint {folder}")


if __name__ == "__main__":
    main()
