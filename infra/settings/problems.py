"""How a config problem is reported: the one mechanism every check in this package uses.

A check creates a `Problem` with `problem(message, fix)`. Field and model validators raise
it inside `Invalid` (pydantic keeps the exception in the error's context, and the loader
unwraps it); cross-checks yield it. The loader prefixes each problem's path with where it
was found, and `StackConfigError` lists them all in one message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Problem:
    message: str
    fix: str
    # Key path as `pulumi config set --path` spells it, relative to where the problem was raised.
    path: str = ""

    def under(self, prefix: str) -> Problem:
        if not prefix:
            return self
        return replace(self, path=f"{prefix}.{self.path}" if self.path else prefix)


def problem(message: str, fix: str, path: str = "") -> Problem:
    return Problem(message=message, fix=fix, path=path)


class Invalid(ValueError):
    """Raised by a validator with the problems it found (relative to the validated value)."""

    def __init__(self, *problems: Problem) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


class StackConfigError(Exception):
    """Every problem in a stack's config, in one message an operator can act on."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.stack = stack
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"Invalid stack config for '{self.stack}' ({count} problem{'s' if count != 1 else ''}):"]
        for found in self.problems:
            lines.append(f"  {found.path}: {found.message}")
            lines.append(f"      fix: {found.fix}")
        return "\n".join(lines)


def set_command(path: str, value: object) -> str:
    if "." in path or "[" in path:
        return f"pulumi config set --path '{path}' {value}"
    return f"pulumi config set {path} {value}"


def key_path(loc: tuple[str | int, ...]) -> str:
    """('nodePools', 'gpu', 'instanceTypes', 0) → nodePools.gpu.instanceTypes[0], as `--path` spells it."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for an invalid mapping key: the key itself is the path
            path += f".{part}" if path else part
    return path
