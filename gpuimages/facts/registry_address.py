"""Where images go: a registry's address (HOST[:PORT][/NAMESPACE]) as a value.

Below the registry client so that the matrix (which names a default registry) and the
tagger can hold one without importing the HTTP API that talks to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuimages.core.errors import UserInputError
from gpuimages.core.reference import check_namespace
from gpuimages.facts.variant import Variant

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(frozen=True)
class Registry:
    """Where images go: HOST[:PORT] plus an optional namespace ('ghcr.io/team')."""

    host: str
    namespace: str = ""
    scheme: str = "https"

    @classmethod
    def parse(cls, text: str) -> Registry:
        raw = text.strip()
        scheme = None
        for prefix in ("http://", "https://"):
            if raw.startswith(prefix):
                scheme = prefix[:-3]
                raw = raw[len(prefix) :]
        raw = raw.rstrip("/")
        host, _, namespace = raw.partition("/")
        if not host or any(c.isspace() for c in raw) or "@" in raw or not _valid_host(host):
            raise UserInputError(
                f"registry '{text}' is not of the form HOST[:PORT][/NAMESPACE] "
                "(e.g. 127.0.0.1:5000, ghcr.io/my-team)."
            )
        check_namespace(namespace, f"registry '{host}/{namespace}': namespace")
        if scheme is None:
            # docker talks plain http only to loopback (or daemon-configured insecure)
            # registries; http://HOST says this one is such an insecure registry.
            scheme = "http" if is_loopback(host) else "https"
        return cls(host=host, namespace=namespace, scheme=scheme)

    @property
    def prefix(self) -> str:
        return f"{self.host}/{self.namespace}" if self.namespace else self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @classmethod
    def choose(cls, option: str | None, default: Registry | None) -> Registry | None:
        """--registry TEXT parsed, else the matrix's registry (already parsed), else None."""
        return cls.parse(option) if option else default

    def tag_for(self, variant: Variant, name: str | None = None) -> str:
        """'localhost:5000' + 'gpuimages/pytorch:X' -> 'localhost:5000/gpuimages/pytorch:X'."""
        return f"{self.prefix}/{variant.repository}:{name or variant.name}"

    def __str__(self) -> str:
        return self.prefix


def _valid_host(host: str) -> bool:
    return re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", host) is not None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in LOOPBACK_HOSTS or name.startswith("127.")


def split_ref(ref: str) -> tuple[str, str]:
    """'127.0.0.1:5000/a/b:tag' -> ('127.0.0.1:5000/a/b', 'tag')."""
    repo, tag = ref.rsplit(":", 1)
    return repo, tag


def repository_path(ref: str) -> str:
    """The repository as the registry's API names it: 'host/a/b:tag' -> 'a/b'."""
    return split_ref(ref)[0].split("/", 1)[1]
