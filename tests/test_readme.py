"""The README's Python example runs as written."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_readme_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "README.md has no Python example"
    env = {**os.environ, "FDBSYNC_URL": f"sqlite:///{tmp_path / 'readme.db'}"}
    for block in blocks:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            block,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        assert stdout.strip() == b"10"
