from __future__ import annotations

import functools

import pytest

from infra.synth import Synthesis, synthesize

STACKS = ("dev", "staging", "prod")


@functools.cache
def synthesized(stack: str) -> Synthesis:
    """Each committed stack, synthesized once per test session (the program is deterministic)."""
    return synthesize(stack)


@pytest.fixture(params=STACKS)
def stack_synthesis(request: pytest.FixtureRequest) -> Synthesis:
    return synthesized(request.param)
