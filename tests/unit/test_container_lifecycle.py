"""The one container lifecycle (create -> track -> start -> wait -> logs -> remove), on fakes."""

from __future__ import annotations

import docker.errors
import pytest
import requests.exceptions

from gpuimages.vet.container import (
    NO_GPU_RUNTIME,
    ContainerStartError,
    ImageMissingError,
    RunSpec,
    run,
    tracked,
)


class FakeContainer:
    short_id = "c0ffee"

    def __init__(self, *, start_error=None, hang=False, output=b"hello\nworld"):
        self.start_error, self.hang, self.output = start_error, hang, output
        self.started = self.killed = self.removed = False

    def start(self):
        if self.start_error:
            raise docker.errors.APIError("500", explanation=self.start_error)
        self.started = True

    def wait(self, timeout=None):
        if self.hang:
            raise requests.exceptions.ReadTimeout()
        return {"StatusCode": 3}

    def kill(self):
        self.killed = True

    def logs(self, stdout=True, stderr=True, stream=False, follow=False):
        return iter([self.output[:3], self.output[3:]]) if stream else self.output

    def remove(self, force=False):
        self.removed = True


class FakeClient:
    def __init__(self, container=None, missing=False):
        self.made, self.container, self.missing = [], container, missing
        self.containers = self

    def create(self, image, command, **kwargs):
        if self.missing:
            raise docker.errors.ImageNotFound("no such image")
        self.made.append((image, command, kwargs))
        return self.container


def test_a_failed_start_is_explained_and_the_container_removed():
    box_container = FakeContainer(start_error=f"{NO_GPU_RUNTIME} with capabilities: [[gpu]]")
    client = FakeClient(box_container)
    with pytest.raises(ContainerStartError) as err, tracked(client, {"x": "{run_id}"}) as box:
        box.start("img:1", ["true"])
    assert "No NVIDIA container runtime on this host" in str(err.value)
    assert err.value.known and box_container.removed
    assert client.made[0][2]["labels"] == {"x": box.run_id}


def test_a_missing_image_is_a_user_error():
    missing = pytest.raises(ImageMissingError, match="image img:1 is not on this host")
    with missing, tracked(FakeClient(missing=True)) as box:
        box.start("img:1", ["true"])


def test_a_hung_container_is_killed_then_removed():
    hung = FakeContainer(hang=True)
    with tracked(FakeClient(hung)) as box:
        assert box.wait(box.start("img:1", ["sleep"]), 1) is None
    assert hung.killed and hung.removed


def test_run_streams_lines_and_returns_the_exit_code():
    container = FakeContainer()
    lines: list[str] = []
    spec = RunSpec(image="img:1", command=("echo",), gpus="none")
    assert run(spec, FakeClient(container), on_line=lines.append) == 3
    assert lines == ["hello", "world"] and container.removed
