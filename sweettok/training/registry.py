"""``experiment.train_stage`` -> the Task class that trains it (imported lazily, one line per stage)."""

from __future__ import annotations

import importlib
from typing import Callable

STAGE_NAMES = {0: "proxy tokenizer", 1: "stage 1 (proxy codes)", 2: "stage 2 (pixel decoder)", 3: "generator"}

# stage -> "module:ClassName"; a stage is added with one line here.
TASKS: dict[int, str] = {
    0: "sweettok.training.stage0:ProxyTask",
    1: "sweettok.training.stage1:Stage1Task",
    2: "sweettok.training.stage2:Stage2Task",
    3: "sweettok.training.generator_task:GeneratorTask",
}


def get_task_factory(stage: int) -> Callable:
    """The Task class for ``stage``; a clear error when that stage has no task yet."""
    if stage not in TASKS:
        name = STAGE_NAMES.get(stage, "unknown stage")
        known = ", ".join(f"{s} ({STAGE_NAMES.get(s, '?')})" for s in sorted(TASKS)) or "none yet"
        raise NotImplementedError(f"experiment.train_stage={stage} ({name}): stage {stage} is not implemented yet; implemented: {known}")
    module_name, _, attr = TASKS[stage].partition(":")
    return getattr(importlib.import_module(module_name), attr)
