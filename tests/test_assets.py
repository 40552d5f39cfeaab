"""The htmx builds the set-up installs from npm are the versions package-lock.json pins, and
none of them is committed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "static" / "vendor"


def pinned(alias: str) -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{alias}"]["version"]
    return version


@pytest.mark.parametrize(
    ("build", "alias", "pattern"),
    [
        ("htmx2/htmx.min.js", "htmx2", r'version:"([^"]+)"'),
        ("htmx4/htmx.min.js", "htmx4", r'version="([^"]+)"'),
    ],
)
def test_vendored_htmx_is_the_pinned_version(build: str, alias: str, pattern: str) -> None:
    text = (VENDOR / build).read_text()
    found = re.search(pattern, text)
    assert found is not None, f"no version in {build}"
    assert found.group(1) == pinned(alias)


def test_the_sse_extensions_are_there() -> None:
    for build in ("htmx2/sse.min.js", "htmx4/hx-sse.min.js"):
        assert (VENDOR / build).stat().st_size > 1000, build


def test_nothing_from_npm_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "static/vendor", "node_modules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tracked == ""
