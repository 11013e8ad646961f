"""Charts rendered with the program's values, for tests: a chart that cannot be found is a
skip on a developer's machine without network, and a failure in CI (REQUIRE_SHARED=1)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import NoReturn

from review.rendering import ChartUnavailable, RenderedChart, render_all
from tests.support.shared import missing
from tests.support.stacks import synthesized_variant


def unavailable(error: ChartUnavailable) -> NoReturn:
    missing(f"a chart is missing: {error}")


@functools.cache
def _rendered(variant: str) -> list[RenderedChart] | ChartUnavailable:
    try:
        return render_all(synthesized_variant(variant))
    except ChartUnavailable as error:
        return error


def rendered_charts(variant: str) -> list[RenderedChart]:
    """Every chart of a variant, rendered once per session; each caller gets its own copy of the
    objects (the CRDs, megabytes and identical for every caller, are shared: read only)."""
    result = _rendered(variant)
    if isinstance(result, ChartUnavailable):
        unavailable(result)
    return [dataclasses.replace(chart, objects=copy.deepcopy(chart.objects), record=copy.deepcopy(chart.record))
            for chart in result]


def rendered_chart(variant: str, name: str) -> RenderedChart:
    (chart,) = [chart for chart in rendered_charts(variant) if chart.record.name == name]
    return chart
