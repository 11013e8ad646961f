"""`make mutation`: mutation scores of the modules where a silent bug hurts most.

mutmut (pinned in requirements-mutation.txt) names a function by its file's path and strips only
a leading `src/`, while the tests import the server as `model_server` (app/ is on their path). So
the run happens in a staging tree, .mutation/, where every package sits under src/: src/model_server,
src/infra, src/review, src/policy, with the project files beside them. Only in-process tests run
there (a test that starts a server process or synthesizes another git revision would run code
outside the mutated copy).

    python tools/mutation.py [mutant-name-glob ...]     # e.g. "model_server.protocol*"
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutation"
MODULES = {
    "model_server.protocol": "src/model_server/protocol.py",
    "model_server.batching": "src/model_server/batching.py",
    "model_server.http": "src/model_server/http.py",
    "infra.settings": "src/infra/settings/*",
    "review.cost": "src/review/cost.py",
    "policy.rules": "src/policy/rules.py",
}
TESTS = ["tests/app/test_protocol.py", "tests/app/test_batching.py", "tests/app/test_http_connection.py",
         "tests/app/test_http_framing.py",
         "tests/infra/test_settings.py", "tests/infra/test_plan.py", "tests/policy/test_rules.py"]
OUT_OF_PROCESS = ["http_clients", "cli_reports", "secrets_never", "git_revision", "charts_rendered_objects",
                  "value_change_touches", "version_change_touches"]


def stage() -> None:
    shutil.rmtree(STAGE, ignore_errors=True)
    src = STAGE / "src"
    src.mkdir(parents=True)
    shutil.copytree(ROOT / "app" / "model_server", src / "model_server")
    shutil.copytree(ROOT / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("infra", "review", "policy"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__main__.py", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    deselect = " and ".join(f"not {name}" for name in OUT_OF_PROCESS)
    (STAGE / "pyproject.toml").write_text(f"""[tool.pytest.ini_options]
pythonpath = ["src", "src/app"]
filterwarnings = ["ignore::DeprecationWarning"]

[tool.mutmut]
source_paths = ["src"]
only_mutate = {list(MODULES.values())!r}
pytest_add_cli_args_test_selection = {TESTS!r}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-k", "{deselect}"]
""")


def scores() -> dict[str, Counter[str]]:
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=STAGE,
                             capture_output=True, text=True).stdout
    found: dict[str, Counter[str]] = {module: Counter() for module in MODULES}
    for name, status in re.findall(r"^\s*(\S+): (.+)$", listing, re.MULTILINE):
        module = next((m for m in MODULES if name.startswith(m + ".")), None)
        if module is not None:
            found[module][status.strip()] += 1
    return found


def main(patterns: list[str]) -> int:
    stage()
    subprocess.run([sys.executable, "-m", "mutmut", "run", *patterns], cwd=STAGE)
    print(f"\n{'module':<24} {'mutants':>8} {'killed':>8} {'survived':>9} {'score':>7}   other")
    for module, counts in scores().items():
        total = sum(counts.values())
        if not total:
            continue
        killed = counts["killed"] + counts["timeout"]
        other = {k: v for k, v in counts.items() if k not in ("killed", "survived", "timeout")}
        print(f"{module:<24} {total:>8} {killed:>8} {counts['survived']:>9} {killed / total:>7.1%}   {other or ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
