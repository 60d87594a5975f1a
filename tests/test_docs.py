"""The documentation site builds with ``mkdocs build --strict``: no broken link, no API page that fails to render."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_without_warnings(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-5000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "Retriever" in api and "compare_per_query" in api and "load_run" in api  # mkdocstrings rendered the API


def test_readme_stays_a_short_entry_point():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    for page in sorted(set((ROOT / "docs").glob("*.md")) - {ROOT / "docs" / "index.md"}):
        assert f"docs/{page.name}" in readme, f"README's map of the docs misses docs/{page.name}"
