"""BuildKit's registry cache: what `invoke build --cache-to REF --cache-from REF` hands docker.

Two kinds, by the client that builds (gpuimages/build/engine.py picks it):
- `registry` (a client with buildx): `--cache-to type=registry,ref=REF,mode=max` writes
  every stage's layers (the builder stage too) to their own cache image at REF;
  `--cache-from type=registry,ref=REF` reads them.
- `inline` (a pre-23 client with BuildKit built in, e.g. Debian's 20.10, which has no
  `--cache-to` flag): `--build-arg BUILDKIT_INLINE_CACHE=1` writes the cache metadata of
  the final stage's layers into the image itself, so the cache reaches REF when that very
  image is pushed there (`invoke publish` to the staging registry, after its smoke tests:
  nothing untested is pushed for the cache's sake); `--cache-from REF` reads it.

`{variant}` in REF stands for the variant's name, so one option serves `--all`:
`--cache-from ghcr.io/my-org/staging/gpuimages/pytorch:{variant}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import Variant

CacheKind = Literal["inline", "registry"]
INLINE_ARG = "BUILDKIT_INLINE_CACHE"
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@{}-]*")


def _check_ref(option: str, ref: str) -> str:
    ref = ref.strip()
    if not _REF.fullmatch(ref) or "://" in ref or ref.count("@") > 1 or "," in ref:
        raise UserInputError(
            f"{option} '{ref}' is not an image reference (HOST[:PORT]/REPOSITORY[:TAG], "
            "'{variant}' allowed in it), e.g. 127.0.0.1:5000/gpuimages/pytorch:{variant}."
        )
    if "@" in ref.split("/", 1)[0]:  # USER@HOST: a digest comes after the repository
        raise UserInputError(f"{option} '{ref}' looks like it carries credentials (USER@HOST).")
    return ref


@dataclass(frozen=True)
class BuildCache:
    """Where a build reads its cache from and writes it to (image references)."""

    cache_to: str | None = None
    cache_from: str | None = None

    @classmethod
    def from_options(cls, cache_to: str | None, cache_from: str | None) -> BuildCache | None:
        """None when neither option was given."""
        if not cache_to and not cache_from:
            return None
        return cls(
            _check_ref("--cache-to", cache_to) if cache_to else None,
            _check_ref("--cache-from", cache_from) if cache_from else None,
        )

    @staticmethod
    def kind(buildx: bool) -> CacheKind:
        return "registry" if buildx else "inline"

    def refs(self, variant: Variant) -> tuple[str | None, str | None]:
        def fill(ref: str | None) -> str | None:
            return ref.replace("{variant}", variant.name) if ref else None

        return fill(self.cache_to), fill(self.cache_from)

    def argv(self, variant: Variant, buildx: bool) -> list[str]:
        """The flags for `docker buildx build` (buildx) or `DOCKER_BUILDKIT=1 docker build`."""
        to, frm = self.refs(variant)
        argv: list[str] = []
        if buildx:
            if to:
                argv += ["--cache-to", f"type=registry,ref={to},mode=max"]
            if frm:
                argv += ["--cache-from", f"type=registry,ref={frm}"]
        else:
            if to:
                argv += ["--build-arg", f"{INLINE_ARG}=1"]
            if frm:
                argv += ["--cache-from", frm]
        return argv

    def report(self, variant: Variant, buildx: bool) -> dict[str, object]:
        """What the build report says about the cache."""
        to, frm = self.refs(variant)
        kind = self.kind(buildx)
        if kind == "registry":
            note = "type=registry,mode=max: every stage's layers in a cache image at cache_to"
        else:
            note = (
                "inline (this docker client has no --cache-to): cache metadata of the final "
                "stage is in the image; it reaches cache_to when the image is pushed there"
            )
        return {"kind": kind, "to": to, "from": frm, "note": note if to else None}
