"""`make mutation`: mutation scores of the modules where a silent bug hurts most.

mutmut (pinned in requirements-mutation.txt) names a function by its file's path and strips only
a leading `src/`, while the tests import the server as `model_server` (app/ is on their path). So
each module runs in a staging tree of its own, .mutation/<module>/, where every package sits under
src/: src/model_server, src/infra, src/review, src/policy, with the project files beside them.

Each module is measured by its own in-process tests only. A test that starts a server process or
synthesizes another git revision runs code outside the mutated copy. mutmut forks every mutant
from a server process that ran the tests once: stacks synthesized then come from the per-session
caches of tests/support/stacks.py, but a synthesis started in a forked process hangs (Pulumi's
runtime waits on a thread of its parent), and so does chart rendering (Go's runtime). So the
tests of mutated modules take their stacks from those caches, and tests that render are left out.

    python tools/mutation.py [module ...]     # e.g. model_server.protocol; all of them by default
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ROOT / ".mutation"
# module -> (the files mutated, the tests that measure them)
MODULES = {
    "model_server.protocol": ("src/model_server/protocol.py", ["tests/app/test_protocol.py"]),
    "model_server.batching": ("src/model_server/batching.py", ["tests/app/test_batching.py"]),
    "model_server.http": ("src/model_server/http.py",
                          ["tests/app/test_http_connection.py", "tests/app/test_http_framing.py"]),
    "model_server.flow_control": ("src/model_server/flow_control.py",
                                  ["tests/app/test_flow_control.py", "tests/app/test_http_connection.py"]),
    "infra.settings": ("src/infra/settings/*", ["tests/infra/test_settings.py"]),
    "policy.rules": ("src/policy/rules.py", ["tests/policy/test_rules.py"]),
    "review.cost": ("src/review/cost.py", ["tests/infra/test_plan.py"]),
}
# Tests left out of every run: they start processes (a server, the CLI, git), or they render charts
# (helm-python-sdk's Go runtime is not fork-safe: a forked process that renders hangs).
OUT_OF_PROCESS = ["http_clients", "cli_reports", "secrets_never", "git_revision", "charts_rendered_objects",
                  "value_change_touches", "version_change_touches", "show_in_every_format", "diff_of_two_stacks"]


def stage(module: str) -> Path:
    mutated, tests = MODULES[module]
    root = STAGES / module
    shutil.rmtree(root, ignore_errors=True)
    src = root / "src"
    src.mkdir(parents=True)
    shutil.copytree(ROOT / "app" / "model_server", src / "model_server")
    shutil.copytree(ROOT / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("infra", "review", "policy"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__main__.py", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    deselect = " and ".join(f"not {name}" for name in OUT_OF_PROCESS)
    (root / "pyproject.toml").write_text(f"""[tool.pytest.ini_options]
pythonpath = ["src", "src/app"]
filterwarnings = ["ignore::DeprecationWarning"]

[tool.mutmut]
source_paths = ["src"]
only_mutate = [{mutated!r}]
pytest_add_cli_args_test_selection = {tests!r}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-k", "{deselect}"]
""")
    return root


def environment() -> dict[str, str]:
    """The staged tree is not beside ../shared: point the chart renderer at its archives, so that no
    test pulls a chart from the network (through the same Go runtime)."""
    charts = ROOT.parent / "shared" / "charts"
    return {**os.environ, **({"MODEL_SERVING_CHARTS": str(charts)} if charts.is_dir() else {})}


def score(module: str, root: Path) -> Counter[str]:
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=root,
                             capture_output=True, text=True).stdout
    return Counter(status.strip() for name, status in re.findall(r"^\s*(\S+): (.+)$", listing, re.MULTILINE)
                   if name.startswith(module + "."))


def main(modules: list[str]) -> int:
    unknown = sorted(set(modules) - MODULES.keys())
    if unknown:
        print(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}", file=sys.stderr)
        return 2
    report = []
    for module in modules or list(MODULES):
        root = stage(module)
        subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=root, env=environment())
        counts = score(module, root)
        total = sum(counts.values())
        # A mutant that makes its tests run out of time (a hang) counts as caught, as in mutmut's own score.
        caught = counts["killed"] + counts["timeout"]
        other = {k: v for k, v in counts.items() if k not in ("killed", "survived", "timeout")}
        report.append(f"{module:<24} {total:>8} {counts['killed']:>8} {counts['timeout']:>8} {counts['survived']:>9} "
                      f"{caught / max(total, 1):>7.1%}   {other or ''}")
    print(f"\n{'module':<24} {'mutants':>8} {'killed':>8} {'timeout':>8} {'survived':>9} {'score':>7}   other",
          *report, sep="\n")
    print("survivors: cd .mutation/<module> && python -m mutmut results; python -m mutmut show <name>")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
