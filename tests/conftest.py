"""Fixtures shared by every test folder; helpers are in tests/support/."""

from __future__ import annotations

import pytest

from review.records import Synthesis
from tests.support.stacks import STACKS, synthesized


@pytest.fixture(params=STACKS)
def stack_synthesis(request: pytest.FixtureRequest) -> Synthesis:
    return synthesized(request.param)
