"""Run an image as training jobs need it: GPUs, shared memory, the work dir, removed after.

`RunSpec` is the one description of a container run. `docker_argv()` renders it as the
equivalent `docker run` command line (what users copy into scripts), `run()` starts the
same container with the docker SDK and streams its output. Engine errors that mean "this
host cannot hand GPUs to containers" become one plain paragraph with the fix.

`tracked()` is the one container lifecycle every caller uses (run, smoke, doctor, the
release manifest): create -> track -> start -> wait -> logs, and removal in `finally`,
on failure and Ctrl-C too.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.models.networks import Network
from docker.types import DeviceRequest

from gpuimages.build.engine import SDK_ERRORS, engine_errors, sdk_message
from gpuimages.core.errors import GpuImagesError, UserInputError
from gpuimages.facts.select import Selection
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)

WORKDIR = "/workspace"
SHM_SIZE = re.compile(r"^\d+(\.\d+)?\s*([bkmgt]i?b?)?$", re.IGNORECASE)
GPU_ID = re.compile(r"^(\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+)$")

# What the engine says when no NVIDIA container runtime is installed (Docker has no
# device driver for the "gpu" capability), and what nvidia-container-cli says when the
# image's NVIDIA_REQUIRE_CUDA asks for a newer CUDA than the driver supports.
NO_GPU_RUNTIME = 'could not select device driver ""'
REQUIRE_REFUSED = "unsatisfied condition: cuda"

TOOLKIT_FIX = """\
Install the NVIDIA Container Toolkit (Ubuntu; NVIDIA's apt repository) and restart Docker:
  KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | sudo gpg --dearmor -o $KEYRING
  curl -sL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \\
    | sed "s#deb https://#deb [signed-by=$KEYRING] https://#g" \\
    | sudo tee /etc/apt/sources.list.d/nvidia-container-toolkit.list
  sudo apt-get update
  sudo apt-get install -y nvidia-container-toolkit
  sudo nvidia-ctk runtime configure --runtime=docker
  sudo systemctl restart docker
  docker run --rm --gpus all IMAGE nvidia-smi   # must list the host's GPUs"""

REQUIRE_FIX = """\
The image's NVIDIA_REQUIRE_CUDA asks for a newer CUDA than this driver supports. Either
install a newer driver (sudo ubuntu-drivers devices; sudo apt-get install -y
nvidia-driver-XXX; reboot), or, where CUDA minor-version compatibility covers it (same
CUDA major, driver at or above the floor `invoke doctor` names), start the container with
-e NVIDIA_DISABLE_REQUIRE=1."""


@dataclass(frozen=True)
class RunSpec:
    """One container run: image, command and the flags a training job needs."""

    image: str
    command: tuple[str, ...]
    gpus: str = "all"  # all | none | comma-separated indices or GPU UUIDs
    mount: Path | None = None  # bound read-write at /workspace, the working directory
    shm_size: str | None = None  # None: share the host's IPC namespace (--ipc=host)
    network_host: bool = False  # multi-node jobs: NCCL/Gloo talk over the host network
    remove: bool = True
    # The images run as uid 1000, group 0 (issue 15); a mounted folder is written as its
    # owner instead (group 0 keeps the venv and HOME writable), so files stay the user's.
    user: str | None = None

    def device_requests(self) -> list[DeviceRequest]:
        if self.gpus == "none":
            return []
        if self.gpus == "all":
            return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return [DeviceRequest(device_ids=self.gpus.split(","), capabilities=[["gpu"]])]

    def docker_argv(self) -> list[str]:
        """The equivalent `docker run` command, argument by argument."""
        argv = ["docker", "run"]
        if self.remove:
            argv.append("--rm")
        if self.gpus == "all":
            argv += ["--gpus", "all"]
        elif self.gpus != "none":
            argv += ["--gpus", f'"device={self.gpus}"']  # the quotes keep the comma intact
        argv += [f"--shm-size={self.shm_size}"] if self.shm_size else ["--ipc=host"]
        if self.network_host:
            argv.append("--network=host")
        if self.mount is not None:
            argv += ["-v", f"{self.mount}:{WORKDIR}", "-w", WORKDIR]
        if self.user is not None:
            argv += ["--user", self.user]
        return [*argv, self.image, *self.command]

    def docker_line(self) -> str:
        return shlex.join(self.docker_argv())

    def create_kwargs(self) -> dict[str, object]:
        """The same run as docker SDK `containers.create` arguments."""
        kwargs: dict[str, object] = {
            "device_requests": self.device_requests(),
            "network_mode": "host" if self.network_host else None,
        }
        if self.shm_size:
            kwargs["shm_size"] = self.shm_size
        else:
            kwargs["ipc_mode"] = "host"
        if self.mount is not None:
            kwargs["volumes"] = {str(self.mount): {"bind": WORKDIR, "mode": "rw"}}
            kwargs["working_dir"] = WORKDIR
        if self.user is not None:
            kwargs["user"] = self.user
        return {k: v for k, v in kwargs.items() if v is not None}


@dataclass(frozen=True)
class RunTarget:
    """What `invoke run` starts: an image, its default --gpus, the variant if one was named."""

    image: str
    default_gpus: str
    variant: Variant | None = None


def run_target(selection: Selection, image: str | None) -> RunTarget:
    """--image IMAGE (any name docker knows) or a selected variant's tag, not both."""
    if image:
        if selection.chosen:
            raise UserInputError("Give either --image or a variant (--variant/--torch ...).")
        return RunTarget(image, "all")
    _, (variant,) = selection.variants()
    return RunTarget(variant.tag, "none" if variant.is_cpu else "all", variant)


def parse_gpus(value: str | None, default: str) -> str:
    """--gpus all | none | 0,1 | GPU-<uuid>,...: normalized, or UserInputError."""
    text = (value if value is not None else default).strip()
    if text.lower() in ("all", "none"):
        return text.lower()
    ids = [p.strip() for p in text.split(",") if p.strip()]
    if not ids or not all(GPU_ID.match(i) for i in ids):
        raise UserInputError(
            f"--gpus '{text}' is not valid: use all, none, or GPU indices / UUIDs separated by "
            "commas, e.g. --gpus 0,1 (as nvidia-smi -L lists them)."
        )
    return ",".join(ids)


def make_spec(
    image: str,
    command: tuple[str, ...],
    *,
    gpus: str,
    mount: str | Path | None = None,
    shm_size: str | None = None,
    ipc_host: bool | None = None,
    network_host: bool = False,
) -> RunSpec:
    """Validate the options of `invoke run` and friends into a RunSpec."""
    if not command:
        raise UserInputError(
            "Say what to run in the container: `invoke run ... -- python train.py` or "
            "--cmd 'python train.py'."
        )
    if shm_size and ipc_host:
        raise UserInputError(
            "--shm-size and --ipc-host exclude each other: --ipc-host shares the host's "
            "/dev/shm (the default), --shm-size gives the container its own of that size."
        )
    if shm_size and not SHM_SIZE.match(shm_size.strip()):
        raise UserInputError(
            f"--shm-size '{shm_size}' is not a size: use a number with b, k, m or g, e.g. 16g."
        )
    path, user = None, None
    if mount is not None:
        path = Path(mount).expanduser().resolve()
        if not path.is_dir():
            raise UserInputError(f"--mount '{mount}' is not a directory on this host.")
        user = f"{path.stat().st_uid}:0"
    return RunSpec(
        image=image,
        command=tuple(command),
        gpus=gpus,
        mount=path,
        shm_size=shm_size.strip() if shm_size else None,
        network_host=network_host,
        user=user,
    )


def split_command(cmd: str | None, remainder: list[str] | None) -> tuple[str, ...]:
    """The container command from `--cmd "..."` (shell words) or the words after `--`."""
    if cmd and remainder:
        raise UserInputError("Give the command either after `--` or with --cmd, not both.")
    if cmd:
        try:
            return tuple(shlex.split(cmd))
        except ValueError as exc:
            raise UserInputError(f"--cmd '{cmd}' cannot be split into words: {exc}.") from None
    return tuple(remainder or ())


def explain_start_error(text: str, image: str = "IMAGE") -> tuple[str, str] | None:
    """(plain message, fix) for engine errors that mean the host cannot run GPU containers."""
    if NO_GPU_RUNTIME in text:
        return (
            "No NVIDIA container runtime on this host: Docker has no device driver for GPUs, "
            f"so `--gpus` cannot work (the engine said: {text.strip()}).",
            TOOLKIT_FIX.replace("IMAGE", image),
        )
    if REQUIRE_REFUSED in text:
        found = re.search(r"unsatisfied condition: (cuda\S*)", text)
        return (
            "The NVIDIA container runtime refused to start the container: the driver is too "
            f"old for the image's NVIDIA_REQUIRE_CUDA ({found.group(1) if found else 'cuda'}).",
            REQUIRE_FIX,
        )
    return None


class ImageMissingError(UserInputError):
    """The image to start a container from is not on this host."""

    def __init__(self, image: str) -> None:
        super().__init__(f"image {image} is not on this host.")
        self.image = image


class ContainerStartError(GpuImagesError):
    """The engine would not create or start a container; `known` explains GPU refusals."""

    def __init__(self, image: str, text: str) -> None:
        self.image, self.text = image, text
        self.known = explain_start_error(text, image)
        if self.known:
            super().__init__(f"{self.known[0]}\n{self.known[1]}")
        else:
            super().__init__(f"could not start a container from {image}: {text}")


class TrackedContainers:
    """Containers and networks one run creates, so that all of them are removed."""

    def __init__(
        self, client: docker.DockerClient, labels: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.run_id = uuid.uuid4().hex[:10]
        self.labels = {k: v.format(run_id=self.run_id) for k, v in (labels or {}).items()}
        self.containers: list[Container] = []
        self.networks: list[Network] = []

    def start(self, image: str, command: list[str] | tuple[str, ...], **kwargs: Any) -> Container:
        """Create, track, then start: a container whose start fails is still removed."""
        try:
            container = self.client.containers.create(
                image, list(command), labels=self.labels, **kwargs
            )
        except docker.errors.ImageNotFound:
            raise ImageMissingError(image) from None
        except SDK_ERRORS as exc:
            raise ContainerStartError(image, sdk_message(exc)) from None
        self.containers.append(container)
        try:
            container.start()
        except SDK_ERRORS as exc:
            raise ContainerStartError(image, sdk_message(exc)) from None
        return container

    def network(self, name: str) -> Network:
        with engine_errors(f"could not create network {name}"):
            net = self.client.networks.create(name, driver="bridge", labels=self.labels)
        self.networks.append(net)
        return net

    def wait(self, container: Container, timeout: float | None = None) -> int | None:
        """The exit code; None when it ran past timeout (then it is killed)."""
        try:
            return int(container.wait(timeout=timeout).get("StatusCode", -1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            try:
                container.kill()
            except SDK_ERRORS as exc:
                log.debug("could not kill container %s: %s", container.short_id, exc)
            return None

    def logs(self, container: Container, *, stdout: bool = True, stderr: bool = True) -> str:
        with engine_errors(f"could not read the output of container {container.short_id}"):
            return container.logs(stdout=stdout, stderr=stderr).decode(errors="replace")

    def stream(
        self, container: Container, on_line: Callable[[str], None], *, stdout: bool = True
    ) -> None:
        """Follow the container's output (stderr alone with stdout=False) line by line
        until it exits."""
        pending = ""
        with engine_errors(f"lost the output of container {container.short_id}"):
            for chunk in container.logs(stream=True, follow=True, stdout=stdout):
                pending += chunk.decode(errors="replace")
                *lines, pending = pending.split("\n")
                for line in lines:
                    on_line(line)
        if pending:
            on_line(pending)

    def follow(
        self, container: Container, on_line: Callable[[str], None], *, stdout: bool = True
    ) -> threading.Thread:
        """stream() in a daemon thread, for a caller that waits with a timeout meanwhile;
        it ends with the container. Progress only: a lost stream is logged, not raised."""

        def run() -> None:
            try:
                self.stream(container, on_line, stdout=stdout)
            except GpuImagesError as exc:
                log.debug("%s", exc)

        thread = threading.Thread(target=run, name=f"follow-{container.short_id}", daemon=True)
        thread.start()
        return thread

    def remove_all(self) -> None:
        for container in self.containers:
            try:
                container.remove(force=True)
            except SDK_ERRORS as exc:
                log.warning("could not remove container %s: %s", container.short_id, exc)
        for net in self.networks:
            try:
                net.remove()
            except SDK_ERRORS as exc:
                log.warning("could not remove network %s: %s", net.name, exc)


@contextmanager
def tracked(
    client: docker.DockerClient,
    labels: Mapping[str, str] | None = None,
    *,
    remove: bool = True,
) -> Iterator[TrackedContainers]:
    """A TrackedContainers whose containers and networks are removed when the block ends.

    Label values may say `{run_id}`: one id per block, to find what one run created.
    """
    box = TrackedContainers(client, labels)
    try:
        yield box
    finally:
        if remove:
            box.remove_all()


def run(
    spec: RunSpec,
    client: docker.DockerClient,
    on_line: Callable[[str], None] = print,
) -> int:
    """Start the container, stream its output line by line, return its exit code.

    Removed afterwards whatever happens (failed start, Ctrl-C): what `--rm` means in the
    printed line.
    """
    log.debug("run: %s", spec.docker_line())
    with tracked(client, remove=spec.remove) as box:
        container = box.start(spec.image, spec.command, **spec.create_kwargs())
        box.stream(container, on_line)
        code = box.wait(container)
    return 1 if code is None else code
