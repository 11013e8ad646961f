"""The README's layout table is the source of truth for where things live: every path it names
exists, and every package and module of the program, and every top-level folder, is in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import PurePosixPath

from infra.settings import PROJECT_DIR

TABLE_HEADER = "| Path | What lives there |"


def layout_rows() -> list[tuple[list[str], list[str]]]:
    """(paths in the first column, names in the second) per row of the README's layout table."""
    lines = (PROJECT_DIR / "README.md").read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        first, second = line.split(" | ", 1)
        rows.append((re.findall(r"`([^`]+)`", first), re.findall(r"`([^`]+)`", second)))
    return rows


def expand(item: str) -> list[str]:
    """`Pulumi.{dev,staging,prod}.yaml` → the three stack files."""
    braces = re.search(r"\{([^}]*)\}", item)
    if braces is None:
        return [item]
    return [item[:braces.start()] + choice + item[braces.end():] for choice in braces[1].split(",")]


def documented() -> set[str]:
    """Every path the table names: a row's first path sets the folder its bare names are in."""
    paths: set[str] = set()
    for firsts, names in layout_rows():
        folder = PurePosixPath(firsts[0]).parent if not firsts[0].endswith("/") else PurePosixPath(firsts[0])
        for index, item in enumerate(firsts):
            for path in expand(item):
                paths.add(path if index == 0 or "/" in path.rstrip("/") else str(folder / path))
        if firsts[0].endswith("/"):
            paths.update(str(folder / name) for name in names if re.fullmatch(r"[\w.-]+(\.py|/)", name))
    return paths


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True,
                          check=True).stdout.split()


def test_every_path_the_layout_names_exists() -> None:
    missing = sorted(path for path in documented() if not (PROJECT_DIR / path.rstrip("/")).exists())
    assert missing == []


def test_every_module_and_folder_of_the_program_is_in_the_layout() -> None:
    names = {path.rstrip("/") for path in documented()}
    files = tracked()
    top_folders = {path.split("/", 1)[0] for path in files if "/" in path and not path.startswith(".")} | {".github"}
    infra = {str(PurePosixPath(path).parent) if path.count("/") > 1 else path
             for path in files if path.startswith("infra/") and path.endswith(".py") and
             not path.endswith("__init__.py")}
    undocumented = sorted({folder for folder in top_folders if not any(name.split("/")[0] == folder for name in names)}
                          | {module for module in infra if module not in names})
    assert undocumented == []


def test_the_layout_reads_what_it_checks() -> None:
    """The parser sees the rows a reader sees (a guard against the two tests above passing on nothing)."""
    paths = documented()
    assert {"infra/cluster.py", "infra/workload/contract.py", "Pulumi.prod.yaml", "review/summary.py"} <= paths
    assert not (PROJECT_DIR / "infra" / "nowhere.py").exists() and "infra/nowhere.py" not in paths
