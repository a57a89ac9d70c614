"""Train one stage of the pipeline: python scripts/train.py config=configs/<dataset>/<stage>.yaml [key=value ...]

The stage is ``experiment.train_stage`` (0 proxy tokenizer, 1 proxy codes, 2 pixel decoder,
3 generator); multi-GPU: ``accelerate launch --multi_gpu --num_processes N scripts/train.py ...``.
"""

from __future__ import annotations

import sys
from typing import Optional

from sweettok.config import ConfigError, load_config_from_cli
from sweettok.training.registry import get_task_factory
from sweettok.training.task import NonFiniteLossError
from sweettok.training.trainer import Trainer


def main(argv: Optional[list[str]] = None) -> int:
    """Load the config, pick the stage's task, train; exit 2 on a config problem, 1 on a NaN loss."""
    try:
        cfg = load_config_from_cli(argv)
        task_factory = get_task_factory(cfg.experiment.train_stage)
    except (ConfigError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        export_dir = Trainer(cfg, task_factory).fit()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: weights exported to {export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
