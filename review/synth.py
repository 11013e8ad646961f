"""Offline synthesis: run the real __main__.py under Pulumi's mock runtime with a stack's real config.

No Pulumi CLI, cloud account or provider plugin is needed. Every resource the program
declares is recorded with its type, name, parent, inputs and options, plus the stack's
outputs. Tests assert on the record; `make plan` (review/plan.py) prints a summary of it
(review/summary.py).

    python -m review.synth dev            # the plan's summary, grouped by component
    python -m review.synth dev --json     # the full record
"""

from __future__ import annotations

import argparse
import asyncio
import runpy
import sys
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import yaml

from infra.settings import PROJECT_DIR, StackConfigError, project_name
from review.mocks import RecordingMocks, RecordingMonitor
from review.records import Synthesis
from review.stack_files import SECRET, stack_config
from review.summary import summary


async def _resolve_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, value in outputs.items():
        output = pulumi.Output.from_input(value)
        resolved[name] = SECRET if await output.is_secret() else await output.future()
    return resolved


def synthesize(stack: str, overrides: Mapping[str, Any] | None = None,
               project_dir: Path = PROJECT_DIR) -> Synthesis:
    """Run __main__.py for `stack` under mocks and return what it declared.

    `overrides` replace stack-file values (key without namespace → value; None removes the key).
    """
    config, secret_keys = stack_config(stack, overrides, project_dir)
    project = project_name(project_dir / "Pulumi.yaml")
    synthesis = Synthesis(project=project, stack=stack)
    # Pulumi's runtime drives its work on the thread's current event loop; an earlier
    # asyncio.run() in this thread leaves none behind.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RecordingMocks(region=config.get(f"{project}:region", "us-east-1"))
    monitor = RecordingMonitor(mocks, synthesis)
    # A fresh root stack: set_mocks keeps the previous one, and with it the exports of a previous
    # synthesis in this process (found when a stack without some outputs showed them anyway).
    pulumi.runtime.reset_options(project=project, stack=stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]  # waits for every registration to finish
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        outputs: Awaitable[dict[str, Any]] = asyncio.ensure_future(_resolve_outputs(getattr(root, "outputs", {})))
        resolved: pulumi.Output[dict[str, Any]] = pulumi.Output.from_input(outputs)
        return resolved.apply(synthesis.outputs.update)

    sys.path.insert(0, str(project_dir))
    try:
        run()
    finally:
        sys.path.remove(str(project_dir))
    # Registrations arrive in whatever order the program's outputs resolve; sort for stable output.
    synthesis.resources.sort(key=lambda record: record.urn)
    return synthesis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="print the full record as JSON")
    options = parser.parse_args(argv)
    try:
        synthesis = synthesize(options.stack)
    except (StackConfigError, FileNotFoundError, yaml.YAMLError) as error:
        print(error, file=sys.stderr)
        return 2
    if options.json:
        print(synthesis.to_json())
    else:
        print(summary(synthesis))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
