"""The `fdbsync` console command: migrations (`revision`, `upgrade`, `downgrade`, `current`,
`history`, `check`), `tenants`, `dump` and `load`, configured by `[tool.fdbsync]` in the
project's pyproject.toml (see config.py)."""

from .app import app, main

__all__ = ["app", "main"]
