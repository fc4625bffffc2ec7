"""An OCI reference: `host[:port]/repository[:tag][@sha256:hex]`, as the distribution spec and
the containers tools spell it. The registry part is required: ashctl never guesses a default
registry (a line of layers pushed to a public index by mistake is not undone)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ashcore.errors import UsageError

# The distribution spec's grammar, reduced to what a registry accepts.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(
    r"^(?:localhost|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*[.][A-Za-z0-9.-]+|[A-Za-z0-9-]+)(?::[0-9]{1,5})?$"
)


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None

    @property
    def pinned(self) -> str:
        """What to ask the registry for: the digest when given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def looks_like_reference(text: str) -> bool:
    """Whether `text` names a registry (a first part with a dot, a port, or `localhost`)."""
    first, slash, _ = text.partition("/")
    return bool(slash) and (first == "localhost" or "." in first or ":" in first)


def parse_reference(text: str) -> Reference:
    bad = UsageError(
        f"not an OCI reference: {text!r}",
        hint="write HOST:PORT/REPOSITORY:TAG or HOST:PORT/REPOSITORY@sha256:DIGEST",
    )
    if not looks_like_reference(text) or any(c.isspace() for c in text):
        raise bad
    registry, _, rest = text.partition("/")
    rest, at, digest = rest.partition("@")
    repository, tag = rest, None
    if ":" in rest:
        repository, _, tag = rest.rpartition(":")
    if not _HOST.match(registry) or not _REPOSITORY.match(repository):
        raise bad
    if tag is not None and not _TAG.match(tag):
        raise bad
    if at and not _DIGEST.match(digest):
        raise bad
    return Reference(registry, repository, tag, digest if at else None)
