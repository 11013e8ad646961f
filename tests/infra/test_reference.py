from __future__ import annotations

from infra.settings import PROJECT_DIR, declared_keys
from tools.config_reference import BEGIN, END, reference


def test_readme_carries_the_generated_config_reference() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == reference(), "regenerate it: python -m tools.config_reference"


def test_reference_names_every_declared_key() -> None:
    text = reference()
    for key in declared_keys():
        assert f"| `{key}` |" in text
