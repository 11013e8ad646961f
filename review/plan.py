"""Offline plans and diffs for reviewers: no cloud credentials needed.

    python -m review.plan show prod [--format text|markdown|json]
    python -m review.plan diff dev prod                    # two stacks
    python -m review.plan diff prod --base origin/main     # one stack at two git revisions

`show` prints what `pulumi up` would declare (resources grouped by component with the
settings a reviewer cares about) and the estimated monthly cost range. `diff` prints the
resources added, removed and changed, with the changed properties, and the change in the
cost range. Secret values were replaced by "[secret]" when the program was synthesized, so
they cannot appear here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import yaml

from infra.settings import PROJECT_DIR, StackConfigError
from review.cost import PriceError, cost_markdown, cost_text, estimate
from review.diff import diff, diff_json, diff_text
from review.records import Synthesis
from review.summary import summary
from review.synth import synthesize

# Only the command line lives here, as MLServer keeps mlserver/cli/ apart: what it prints comes from
# review.summary, review.diff and review.cost, and none of them imports this module back.


def show(synthesis: Synthesis, fmt: str) -> str:
    cost = estimate(synthesis)
    if fmt == "json":
        return json.dumps({"stack": synthesis.stack, "resources": len([r for r in synthesis.resources if r.custom]),
                           "cost": cost.to_dict()}, indent=2)
    if fmt == "markdown":
        return "\n".join([f"### Plan for `{synthesis.stack}`", "", "```", summary(synthesis), "```", "",
                          cost_markdown(cost)])
    return summary(synthesis) + "\n\n" + cost_text(cost)


def synthesize_revision(stack: str, revision: str) -> Synthesis:
    """Run that revision's own program and synthesis in a scratch copy of the tree."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=PROJECT_DIR,
                             capture_output=True)
    if archive.returncode != 0:
        raise ValueError(f"git cannot read revision {revision!r}: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="plan-base-") as directory:
        try:
            with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
                tar.extractall(directory, filter="data")
        except tarfile.TarError as error:
            raise ValueError(f"cannot unpack revision {revision}: {error}") from None
        # Each revision runs its own synthesis, wherever that revision keeps it.
        runners = (("review.synth", "review/synth.py"), ("infra.synth", "infra/synth.py"))
        runner = next((module for module, path in runners if (Path(directory) / path).exists()), None)
        if runner is None:
            raise ValueError(f"revision {revision} has no review/synth.py to synthesize it offline")
        result = subprocess.run([sys.executable, "-m", runner, stack, "--json"], cwd=directory,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ValueError(f"synthesizing {stack} at {revision} failed:\n{result.stderr.strip()}")
    return Synthesis.from_json(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="what one stack declares, and its cost")
    show_parser.add_argument("stack")
    diff_parser = commands.add_parser("diff", help="compare two stacks, or one stack at two revisions")
    diff_parser.add_argument("stacks", nargs="+", metavar="stack")
    diff_parser.add_argument("--base", help="git revision to compare the stack against (e.g. origin/main)")
    for sub in (show_parser, diff_parser):
        sub.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    options = parser.parse_args(argv)
    try:
        if options.command == "show":
            print(show(synthesize(options.stack), options.format))
            return 0
        if options.base:
            if len(options.stacks) != 1:
                parser.error("with --base, name one stack")
            stack = options.stacks[0]
            result = diff(synthesize_revision(stack, options.base), synthesize(stack),
                          f"{stack} at {options.base}", f"{stack} in the working tree")
        else:
            if len(options.stacks) != 2:
                parser.error("name two stacks, or one stack and --base REVISION")
            first, second = options.stacks
            result = diff(synthesize(first), synthesize(second), first, second)
    except (StackConfigError, PriceError, FileNotFoundError, ValueError, yaml.YAMLError) as error:
        print(error, file=sys.stderr)
        return 2
    print(diff_json(result) if options.format == "json" else diff_text(result, options.format == "markdown"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
