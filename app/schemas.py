"""What the app accepts and returns: validated before anything is written."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
]
Team = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]

# Ids and teams in URLs become parts of storage keys, which have a size limit: longer ones
# get 422 (not a 500 from the storage layer). The app's own ids have 26 characters.
PersonId = Annotated[str, Path(min_length=1, max_length=100)]
TeamInPath = Annotated[str, Path(min_length=1, max_length=40)]


class PersonIn(BaseModel):
    """A person to create, or to store in full."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email
    team: Team = Field(description="lower-case letters, digits and dashes")


class PersonPatch(BaseModel):
    """Changes to a person: the fields given."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    team: Team | None = None


class PersonOut(BaseModel):
    id: str
    name: str
    email: str
    team: str
