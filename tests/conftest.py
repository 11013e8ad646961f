from __future__ import annotations

import pytest

from infra.synth import Synthesis
from tests.support.stacks import STACKS, synthesized_variant

__all__ = ["STACKS", "synthesized"]


def synthesized(stack: str) -> Synthesis:
    """Each committed stack, synthesized once per test session (the program is deterministic)."""
    return synthesized_variant(stack)


@pytest.fixture(params=STACKS)
def stack_synthesis(request: pytest.FixtureRequest) -> Synthesis:
    return synthesized(request.param)
