"""The example app's settings, from the environment with working defaults for `make run`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"

#: Tenants the demo seeds; each demo account belongs to one of them.
TENANTS = ("acme", "globex")

#: htmx version pages use unless the `htmx` cookie says 2 or 4 (FDBSYNC_HTMX sets the default).
HTMX_DEFAULT = 2 if os.environ.get("FDBSYNC_HTMX") == "2" else 4


def secret_key() -> str:
    """The key that signs session cookies and CSRF tokens: $FDBSYNC_SECRET_KEY, else one made
    once in var/secret.key, so every worker (and every restart) signs alike."""
    configured = os.environ.get("FDBSYNC_SECRET_KEY")
    if configured:
        return configured
    path = VAR / "secret.key"
    VAR.mkdir(exist_ok=True)
    try:
        with open(path, "x") as created:  # exclusive: two workers starting agree on one key
            created.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()
