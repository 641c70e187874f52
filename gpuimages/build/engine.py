"""The Docker engine and CLI gpuimages talks to: find a BuildKit-capable CLI, start an
engine when none answers, make a local base image for hosts without a registry.

`engine_client()` is the one place a docker SDK client is made, and `engine_errors()`
the one place SDK exceptions become the package's error type (no tracebacks)."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.models.images
import requests.exceptions

from gpuimages.core.errors import CommandError, GpuImagesError, UserInputError
from gpuimages.core.paths import SCRIPTS
from gpuimages.core.runner import capture, run
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

LOCAL_BASE = "gpuimages-local/debian:bookworm"
# The Debian releases a local base can be made of (debootstrap reaches Debian's archive
# only): the variant's OS -> (image name, suite).
LOCAL_BASES: dict[str, tuple[str, str]] = {
    "debian12": (LOCAL_BASE, "bookworm"),
    "debian13": ("gpuimages-local/debian:trixie", "trixie"),
}
ENGINE_FIX = (
    "Start one (as root: bash scripts/start-docker.sh, or sudo systemctl start docker); "
    "`invoke doctor` checks the whole host."
)
# What the docker SDK raises: its own errors, and requests' when the engine stops answering.
SDK_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class NoEngineError(GpuImagesError):
    """No Docker engine answers; `cause` is what the SDK said, without the fix."""

    def __init__(self, cause: str = "") -> None:
        detail = f" ({cause})" if cause else ""
        super().__init__(f"No Docker engine answers{detail}. {ENGINE_FIX}")
        self.cause = cause


def built_image(variant: Variant, client: docker.DockerClient) -> docker.models.images.Image:
    """The image the variant's tag names on this host; refuse with the build command when
    there is none (a user's order of steps, not a fault: no traceback)."""
    try:
        return client.images.get(variant.tag)
    except docker.errors.ImageNotFound:
        raise UserInputError(
            f"{variant.tag} is not built on this host. Build it first: invoke build --variant "
            f"{variant.name} (or docker pull it from your registry and tag it {variant.tag})."
        ) from None
    except SDK_ERRORS as exc:
        raise GpuImagesError(f"could not inspect {variant.tag}: {sdk_message(exc)}") from None


def engine_client(timeout: int = 600) -> docker.DockerClient:
    """A docker SDK client for an engine that answers, or NoEngineError saying what to do."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except SDK_ERRORS as exc:
        raise NoEngineError(str(exc)) from None
    return client


def sdk_message(exc: BaseException) -> str:
    """The engine's own words for an SDK error (its explanation, not the HTTP preamble)."""
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


@contextmanager
def engine_errors(what: str, error: type[GpuImagesError] = GpuImagesError) -> Iterator[None]:
    """Turn docker SDK exceptions inside the block into `error('{what}: {engine's words}')`."""
    try:
        yield
    except SDK_ERRORS as exc:
        raise error(f"{what}: {sdk_message(exc)}") from None


@dataclass(frozen=True)
class DockerCli:
    """A docker client and how it builds with BuildKit."""

    path: str
    buildx: bool  # `docker buildx build --load`; else `DOCKER_BUILDKIT=1 docker build`
    # Why it was chosen, and the clients passed over on the way: `invoke doctor` shows both.
    reason: str = field(default="", compare=False)
    skipped: tuple[str, ...] = field(default=(), compare=False)

    def build_argv(self) -> list[str]:
        return [self.path, "buildx", "build", "--load"] if self.buildx else [self.path, "build"]

    def build_env(self) -> dict[str, str]:
        return {} if self.buildx else {"DOCKER_BUILDKIT": "1"}

    def describe(self) -> str:
        skipped = f"; skipped {'; '.join(self.skipped)}" if self.skipped else ""
        return f"{self.path} ({self.reason}{skipped})"


class NoBuildKitClientError(GpuImagesError):
    """No docker client on this host can build with BuildKit; `tried` says which were seen."""

    def __init__(self, tried: tuple[str, ...], remedy: str) -> None:
        seen = f" (tried: {'; '.join(tried)})" if tried else " (no docker client on PATH)"
        super().__init__(f"No docker client that can build with BuildKit was found{seen}. {remedy}")
        self.tried = tried


def _candidates(preferred: str | None) -> list[str]:
    names = [preferred] if preferred else []
    if os.environ.get("GPUIMAGES_DOCKER"):
        names.append(os.environ["GPUIMAGES_DOCKER"])
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            names.append(str(candidate))
    names.append("/usr/bin/docker")
    seen: list[str] = []
    for name in names:
        resolved = shutil.which(name) or name
        if resolved not in seen and Path(resolved).exists():
            seen.append(resolved)
    return seen


def install_remedy(*, root: bool | None = None, apt: bool | None = None) -> str:
    """What to do about a missing BuildKit client on this host, in one paragraph's tail."""
    root = os.geteuid() == 0 if root is None else root
    apt = shutil.which("apt-get") is not None if apt is None else apt
    if root and apt:
        how = (
            "Pass --start-engine (or --local-base) and gpuimages installs Debian's docker.io "
            "(its 20.10 client has BuildKit built in; docker-buildx too where the release has "
            "it), or run: bash scripts/start-docker.sh."
        )
    elif apt:
        how = (
            "As root, `sudo bash scripts/start-docker.sh` installs Debian's docker.io (its 20.10 "
            "client has BuildKit built in); or install Docker's buildx plugin "
            "(docker-buildx-plugin) for your client."
        )
    else:
        how = (
            "Install Docker's buildx plugin for your client (docker-buildx-plugin, see "
            "docs.docker.com/engine/install) or a Docker client older than 23."
        )
    return how + " Or name a client with --docker PATH / GPUIMAGES_DOCKER."


@functools.cache
def find_docker_cli(preferred: str | None = None) -> DockerCli:
    """The first docker client that can build with BuildKit.

    A client with the buildx plugin uses it; a client older than 23 has BuildKit built
    in (Debian's 20.10); a newer client without buildx cannot build with BuildKit and is
    skipped (the Docker 28 client on some hosts has no buildx plugin).
    """
    tried: list[str] = []
    for path in _candidates(preferred):
        try:
            banner = capture([path, "buildx", "version"], timeout=20)
            plugin = banner.split()[1] if len(banner.split()) > 1 else "buildx"
            return DockerCli(path, True, f"buildx plugin {plugin}", tuple(tried))
        except CommandError:
            pass
        try:
            # `docker --version` answers without an engine: "Docker version 20.10.24+dfsg1, ..."
            banner = capture([path, "--version"], timeout=20)
        except CommandError:
            banner = ""
        found = re.search(r"(\d+)\.\d+", banner)
        version = found.group(0) if found else ""
        if found and int(found.group(1)) < 23:
            reason = f"client {version}: BuildKit built in, no buildx needed"
            return DockerCli(path, False, reason, tuple(tried))
        tried.append(f"{path} ({version.strip() or 'unknown version'}, no buildx)")
    raise NoBuildKitClientError(tuple(tried), install_remedy())


def docker_for_builds(preferred: str | None = None, *, install: bool = False) -> DockerCli:
    """A BuildKit-capable client; with install, one is installed first when none is here.

    The install (scripts/start-docker.sh --client-only) runs only as root with apt-get;
    elsewhere the error says what to install. The client is chosen after the install, so
    a host whose only client is a 23+ one without buildx gets Debian's 20.10 client."""
    try:
        return find_docker_cli(preferred)
    except NoBuildKitClientError:
        if not (install and os.geteuid() == 0 and shutil.which("apt-get")):
            raise
    log.info("no docker client here builds with BuildKit: installing one")
    run(
        ["bash", str(SCRIPTS / "start-docker.sh"), "--client-only"],
        env={"DOCKER": preferred} if preferred else None,
        what="installing a docker client that builds with BuildKit",
        timeout=900,
    )
    find_docker_cli.cache_clear()
    return find_docker_cli(preferred)


def engine_answers(cli: DockerCli) -> bool:
    try:
        capture([cli.path, "info", "--format", "{{.ServerVersion}}"], timeout=15)
        return True
    except CommandError:
        return False


def ensure_engine(cli: DockerCli, *, start: bool = True) -> None:
    """Start a Docker engine (scripts/start-docker.sh) when none answers and start is set."""
    if engine_answers(cli):
        return
    if not start:
        raise GpuImagesError(f"No Docker engine answers. {ENGINE_FIX} Or pass --start-engine.")
    log.info("no Docker engine answers: starting one with scripts/start-docker.sh")
    run(
        ["bash", str(SCRIPTS / "start-docker.sh")],
        env={"DOCKER": cli.path},
        what="starting the Docker engine",
        timeout=900,
    )


def check_local_base(variants: tuple[Variant, ...], base_image: str | None = None) -> str:
    """The OS of the local base these variants need: one Debian release (LOCAL_BASES) on
    the os route for all of them. A --base-image beside it would be silently ignored."""
    if base_image:
        raise UserInputError(
            f"--local-base and --base-image {base_image} both name the base image: give one "
            "(--local-base builds on a Debian made here; --base-image on an image you have "
            "or can pull)."
        )
    debians = ", ".join(LOCAL_BASES)
    bad = [v.name for v in variants if not (v.base == "os" and v.os in LOCAL_BASES)]
    if bad:
        raise UserInputError(
            f"--local-base makes a plain Debian image ({debians}); it fits variants on those "
            f"whose CUDA comes from torch's wheels (base os), not: {', '.join(bad)}. Use "
            "--base-image with a mirrored image of the variant's OS (or nvidia/cuda image "
            "for base nvidia)."
        )
    found = sorted({v.os for v in variants})
    if len(found) > 1:
        raise UserInputError(
            f"--local-base makes one base image, but these variants sit on {', '.join(found)}: "
            "build them in one call per OS."
        )
    return found[0] if found else "debian12"


def ensure_local_base(
    cli: DockerCli, os_name: str = "debian12", on_line: Callable[[str], None] | None = None
) -> str:
    """A debootstrap'd Debian base for os_name (LOCAL_BASES), made once; returns its name.

    The first time takes about a minute: on_line hears the script's steps."""
    name, suite = LOCAL_BASES[os_name]
    run(
        ["bash", str(SCRIPTS / "make-base-image.sh"), name, suite],
        env={"DOCKER": cli.path},
        what="making the local base image",
        timeout=900,
        on_line=on_line,
    )
    return name
