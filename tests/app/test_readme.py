from __future__ import annotations

from model_server.settings import ServerSettings
from tests.support.server import APP_DIR

README = (APP_DIR.parent / "README.md").read_text()


def test_readme_names_every_server_setting() -> None:
    for field in ServerSettings.model_fields:
        assert f"`MODEL_{field.upper()}`" in README, f"MODEL_{field.upper()} is not in the README"
