"""Where images get their base and packages: matrix.yaml's `sources` and the build
options, parsed once into one typed value (for proxies, mirrors and air gaps)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from gpuimages.core.errors import UserInputError
from gpuimages.core.reference import shown
from gpuimages.facts.variant import Variant


@dataclass(frozen=True)
class MirrorLogin:
    """The user and password of an authenticated mirror (Artifactory, Nexus): handed to
    the build only as a BuildKit secret, never as a build argument, a layer or a log line."""

    scheme: str
    host: str  # host[:port]
    path: str
    user: str
    password: str = field(repr=False)

    def apt_auth_conf(self) -> str:
        """apt_auth.conf(5): an entry without a scheme matches https only, so http says so."""
        machine = f"{self.host}{self.path.rstrip('/')}"
        if self.scheme != "https":
            machine = f"{self.scheme}://{machine}"
        return f"machine {machine}\nlogin {self.user}\npassword {self.password}\n"

    def netrc(self) -> str:
        """A netrc for pip (requests matches the host without its port)."""
        return f"machine {self.host.split(':')[0]}\nlogin {self.user}\npassword {self.password}\n"


def split_login(url: str, option: str) -> tuple[str, MirrorLogin | None]:
    """A mirror URL without its user:password part, and that part as a MirrorLogin.

    Query strings and fragments are refused: a token there would be a build argument
    (recorded in the image history) and in every log line that shows the URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserInputError(f"{option} {shown(url)} is not an http(s) URL.")
    if parts.query or parts.fragment:
        raise UserInputError(
            f"{option} carries a query string or fragment (a token?): it would be recorded in "
            "the image history and the build log. Give credentials as "
            "https://USER:PASSWORD@host/path instead: they are handed to the build as a "
            "BuildKit secret."
        )
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UserInputError(f"{option} {shown(url)} holds whitespace or control characters.")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, host, parts.path, "", ""))
    if parts.username is None and parts.password is None:
        return bare, None
    if not parts.username or not parts.password:
        raise UserInputError(f"{option}: give both a user and a password (USER:PASSWORD@host).")
    login = MirrorLogin(
        parts.scheme, host, parts.path or "/", unquote(parts.username), unquote(parts.password)
    )
    return bare, login


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
    apt_login: MirrorLogin | None = field(default=None, repr=False)
    pip_login: MirrorLogin | None = field(default=None, repr=False)

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
            elif key == "apt_mirror":
                typed[key], typed["apt_login"] = split_login(str(value), "--apt-mirror")
            else:
                typed[key] = str(value)
        if typed.get("pip_index_url"):
            url = str(typed["pip_index_url"])
            if urlsplit(url).scheme == "file":
                cls(pip_index_url=url).check_index_url()
            else:
                typed["pip_index_url"], typed["pip_login"] = split_login(url, "--pip-index-url")
        return cls(**typed)  # type: ignore[arg-type]

    @classmethod
    def merged(
        cls, matrix_sources: PackageSources | Mapping[str, object], **options: object
    ) -> PackageSources:
        """matrix.yaml's `sources`, overridden by the options given on the command line."""
        base = matrix_sources
        if not isinstance(base, PackageSources):
            base = cls.parse(base)
        given = cls.parse({k: v for k, v in options.items() if v})
        chosen = {k: getattr(given, k) for k, v in options.items() if v}
        if "apt_mirror" in chosen:
            chosen["apt_login"] = given.apt_login
        if "pip_index_url" in chosen:
            chosen["pip_login"] = given.pip_login
        return replace(base, **chosen)

    def on_base(self, image: str) -> PackageSources:
        """The same sources with `image` as base and builder (e.g. the local Debian base)."""
        return replace(self, base_image=image, builder_image=image)

    def check_index_url(self) -> None:
        """A pip index URL is http(s) or file; credentials live in `pip_login`, never here."""
        if self.pip_index_url:
            parts = urlsplit(self.pip_index_url)
            if parts.scheme not in ("http", "https", "file"):
                raise UserInputError(
                    f"--pip-index-url {shown(self.pip_index_url)} is not an http(s) URL."
                )
            if parts.username or parts.password or parts.query:
                raise UserInputError("--pip-index-url still carries credentials.")

    @property
    def logins(self) -> tuple[MirrorLogin, ...]:
        return tuple(x for x in (self.apt_login, self.pip_login) if x)

    @contextlib.contextmanager
    def secret_files(self) -> Iterator[list[str]]:
        """`docker build --secret` arguments for the mirror logins, as files readable only
        by this user, removed when the build is over."""
        if not self.logins:
            yield []
            return
        with tempfile.TemporaryDirectory(prefix="gpuimages-secrets-") as tmp:
            argv: list[str] = []
            for secret_id, text in (
                ("apt-auth", self.apt_login.apt_auth_conf() if self.apt_login else None),
                ("pip-netrc", self.pip_login.netrc() if self.pip_login else None),
            ):
                if text is None:
                    continue
                path = Path(tmp) / secret_id
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                argv += ["--secret", f"id={secret_id},src={path}"]
            yield argv

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


SOURCE_KEYS = (
    "base_image",
    "builder_image",
    "pip_index_url",
    "wheelhouse",
    "ca_bundle",
    "apt_mirror",
    "offline",
)  # what matrix.yaml's `sources:` and the build options name; logins come from the URLs
