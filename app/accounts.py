"""Demo accounts: each signs in with the demo password and belongs to one tenant. A real app
keeps accounts in its database; these are fixed so README can list them."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

DEMO_PASSWORD = "demo-password"


@dataclass(frozen=True)
class Account:
    email: str
    name: str
    tenant: str


ACCOUNTS = {
    account.email: account
    for account in (
        Account("ada@acme.test", "Ada", "acme"),
        Account("bob@acme.test", "Bob", "acme"),
        Account("grace@globex.test", "Grace", "globex"),
        Account("linus@globex.test", "Linus", "globex"),
    )
}


def _digest(password: str, email: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), email.encode(), 100_000)


_DIGESTS = {email: _digest(DEMO_PASSWORD, email) for email in ACCOUNTS}


def authenticate(email: str, password: str) -> Account | None:
    """The account if the password is right (in constant time per account)."""
    account = ACCOUNTS.get(email.strip().lower())
    if account is None:
        return None
    if not hmac.compare_digest(_digest(password, account.email), _DIGESTS[account.email]):
        return None
    return account
