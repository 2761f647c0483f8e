"""The documentation names what the code has: every setting, every topic."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.topics import TOPIC_MAP
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_in_readme() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `(OMNI_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE))


def test_readme_settings_table_matches_the_settings_object() -> None:
    fields = {f"OMNI_{name.upper()}" for name in Settings.model_fields}
    assert settings_in_readme() == fields


def test_topic_map_documents_every_topic_and_key() -> None:
    text = (ROOT / "docs" / "topics.md").read_text()
    for suffix, key, _ in TOPIC_MAP.values():
        assert re.search(rf"\| `omni\.{re.escape(suffix)}` \|.*\| `{key}` \|", text), suffix
