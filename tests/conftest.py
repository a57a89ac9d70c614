"""Fixtures shared by the test modules."""

from __future__ import annotations

from typing import Iterator

import pytest
from accelerate.state import AcceleratorState, GradientState


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """Accelerate keeps process-wide singletons: an in-process run gets clean ones, and leaves none behind."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
