"""Where images get their base and packages: matrix.yaml's `sources` and the build
options, parsed once into one typed value (for proxies, mirrors and air gaps)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from gpuimages.errors import UserInputError
from gpuimages.variant import Variant


@dataclass(frozen=True)
class PackageSources:
    """Where images get their base and packages: for proxies, mirrors and air gaps."""

    base_image: str | None = None
    builder_image: str | None = None
    pip_index_url: str | None = None
    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    apt_mirror: str | None = None
    offline: bool = False

    @classmethod
    def parse(cls, values: Mapping[str, object], where: str = "sources") -> PackageSources:
        """A `sources:` mapping (matrix.yaml) or options: paths as Path, offline a bool."""
        unknown = sorted(set(values) - set(SOURCE_KEYS))
        if unknown:
            raise UserInputError(f"{where}: unknown key '{unknown[0]}'.")
        typed: dict[str, object] = {}
        for key, value in values.items():
            if value is None or value == "":
                continue
            if key == "offline":
                if not isinstance(value, bool):
                    raise UserInputError(f"{where}: offline is true or false, not {value!r}.")
                typed[key] = value
            elif key in ("wheelhouse", "ca_bundle"):
                typed[key] = Path(str(value))
            else:
                typed[key] = str(value)
        sources = cls(**typed)  # type: ignore[arg-type]
        sources.check_index_url()
        return sources

    @classmethod
    def merged(
        cls, matrix_sources: PackageSources | Mapping[str, object], **options: object
    ) -> PackageSources:
        """matrix.yaml's `sources`, overridden by the options given on the command line."""
        base = matrix_sources
        if not isinstance(base, PackageSources):
            base = cls.parse(base)
        given = cls.parse({k: v for k, v in options.items() if v})
        return replace(base, **{k: getattr(given, k) for k, v in options.items() if v})

    def on_base(self, image: str) -> PackageSources:
        """The same sources with `image` as base and builder (e.g. the local Debian base)."""
        return replace(self, base_image=image, builder_image=image)

    def check_index_url(self) -> None:
        """A pip index URL is http(s) or file, with no credentials (they would be recorded
        in the image history as a build argument)."""
        if self.pip_index_url:
            parts = urlsplit(self.pip_index_url)
            if parts.scheme not in ("http", "https", "file"):
                raise UserInputError(
                    f"--pip-index-url '{self.pip_index_url}' is not an http(s) URL."
                )
            if parts.username or parts.password:
                raise UserInputError(
                    "--pip-index-url carries credentials; build arguments are recorded in the "
                    "image history, so gpuimages refuses them. Use a wheelhouse "
                    "(--wheelhouse DIR) or a mirror that needs no credentials in the URL."
                )

    def validate(self) -> None:
        """Before a build: the index URL, and that the named files and folders exist."""
        self.check_index_url()
        if self.wheelhouse is not None and not self.wheelhouse.is_dir():
            raise UserInputError(f"--wheelhouse '{self.wheelhouse}' is not a directory.")
        if self.offline and self.wheelhouse is None:
            raise UserInputError("--offline installs only from a wheelhouse: add --wheelhouse DIR.")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise UserInputError(f"--ca-bundle '{self.ca_bundle}' is not a file.")

    def build_args(self, variant: Variant) -> dict[str, str]:
        args: dict[str, str] = {}
        if self.base_image:
            args["BASE_IMAGE"] = self.base_image
        builder = self.builder_image
        if builder is None and self.base_image and variant.builder_image == variant.base_image:
            builder = self.base_image
        if builder:
            args["BUILDER_IMAGE"] = builder
        if self.pip_index_url:
            args["PIP_INDEX_URL"] = self.pip_index_url
        if self.offline:
            args["GPUIMAGES_OFFLINE"] = "1"
        if self.apt_mirror:
            args["APT_MIRROR"] = self.apt_mirror
        return args


SOURCE_KEYS = tuple(f.name for f in fields(PackageSources))
