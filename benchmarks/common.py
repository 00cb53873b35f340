"""What the benchmarks share: the shipped settings (config/settings.yaml) and the public
recordings (shared/data/*.csv beside the repository, else /tmp/shared/data). Import it after
putting src/ on ``sys.path`` (every benchmark does so first)."""
from __future__ import annotations

from pathlib import Path

import yaml

from gestor.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def shipped_settings() -> Settings:
    """config/settings.yaml, parsed and validated (raises SettingsError naming the key)."""
    example = ROOT / "config" / "settings.yaml"
    return parse_settings(yaml.safe_load(example.read_text()), str(example), example)


def recordings() -> list[Path]:
    """The public recordings, sorted by name (none: an empty list)."""
    files = sorted((ROOT.parent / "shared" / "data").glob("*.csv"))
    return files or sorted(Path("/tmp/shared/data").glob("*.csv"))
