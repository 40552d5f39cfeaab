"""The README's Python examples run as written and print what the README says they print.

Each ```python block runs on its own, in a fresh directory holding the files the README shows
(blocks whose first line is a Jinja comment naming a path, such as `{# templates/a.html #}`).
```py blocks are snippets, not run."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


EXAMPLE = re.compile(r"```python\n(.*?)```\s*```text\n(.*?)```", re.DOTALL)
FILE = re.compile(r"```\w*\n\{# ([\w./-]+) #\}\n(.*?)```", re.DOTALL)


async def test_readme_examples_run(tmp_path: Path) -> None:
    examples = EXAMPLE.findall(README.read_text())
    for path, text in FILE.findall(README.read_text()):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert len(examples) == README.read_text().count("```python"), "an example lacks its output"
    for number, (block, expected) in enumerate(examples):
        env = {**os.environ, "FDBSYNC_URL": f"sqlite:///{tmp_path / f'readme{number}.db'}"}
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
        assert stdout.decode().strip() == expected.strip()
