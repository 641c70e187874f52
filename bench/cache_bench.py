"""Benchmark: a rebuild from BuildKit's registry cache against the cold build, in one run.

    python bench/cache_bench.py [--wheelhouse wheelhouse]

Needs a running Docker engine, the local base (scripts/make-base-image.sh), a wheelhouse
with the CPU variant's wheels (`invoke wheelhouse --variant 2.13.0-cpu-runtime`) and
Debian's docker-registry (scripts/start-registry.sh installs it). What a fresh CI runner
does with `invoke build --cache-from REF` after an earlier run pushed the tested image:

1. a registry of the benchmark's own on a free port of 127.0.0.1;
2. a fresh base (the local base plus a one-file layer of its own, as bench/build_bench.py
   does), so no layer of an earlier build on this engine can be reused;
3. cold build of the CPU runtime variant with `--cache-to REF --cache-from REF` (REF does
   not exist yet: a missing cache must not fail the build); push it to REF, as `invoke
   publish` to the staging registry does after the smoke tests;
4. remove the images, and prune ONLY the build-cache records this benchmark created (the
   records descending from the fresh base, and its context uploads: `docker builder prune
   --filter id=...` one record at a time); nothing else of the engine's cache is touched,
   so it can run beside other builds;
5. rebuild with `--cache-from REF` from a new context path; time it and count the bytes the
   registry served (its log's `http.response.written` for GET requests).

The base image itself stays on the engine (a runner pulls its base either way). Results
are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import docker

from gpuimages.build.engine import find_docker_cli
from gpuimages.build.image import MB, PackageSources, build_many
from gpuimages.build.render import render_all
from gpuimages.core.paths import ROOT
from gpuimages.facts.matrix import load_matrix

sys.path.insert(0, str(Path(__file__).parent))
from build_bench import RUNTIME, fresh_base

REPOSITORY = "gpuimages-bench/cache"
MIN_FREE_BYTES = 5 * 10**9
_WRITTEN = re.compile(r"http\.response\.written=(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def records(client: docker.DockerClient) -> dict[str, dict]:
    return {r["ID"]: r for r in client.df().get("BuildCache") or []}


def ours(before: dict[str, dict], after: dict[str, dict], base_roots: set[str]) -> list[str]:
    """New records descending from the fresh base's records, leaves first."""
    new = {i: r for i, r in after.items() if i not in before}
    mine: dict[str, int] = {}

    def depth(i: str) -> int | None:
        seen, d = i, 0
        while seen and seen in new:
            if seen in base_roots:
                return d
            seen, d = new[seen].get("Parent") or "", d + 1
        return None

    for i in new:
        d = depth(i)
        if d is not None:
            mine[i] = d
    return sorted(mine, key=lambda i: -mine[i])


def base_records(before: dict[str, dict], after: dict[str, dict]) -> set[str]:
    """The fresh base as BuildKit holds it: new 'from local' records (its unique layer)."""
    return {
        i
        for i, r in after.items()
        if i not in before and (r.get("Description") or "").startswith("from local")
    }


def context_records(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Context uploads created in the window; only when unambiguous (context + Dockerfile)."""
    new = [
        i
        for i, r in after.items()
        if i not in before
        and r.get("Type") == "source.local"
        and (r.get("Description") or "").startswith("local source for")
    ]
    return new if len(new) <= 2 else []


def prune(ids: list[str], cli: str) -> int:
    gone = 0
    for i in ids:
        r = subprocess.run(
            [cli, "builder", "prune", "--all", "--force", "--filter", f"id={i}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        gone += r.returncode == 0 and i in r.stdout
    return gone


def served_bytes(log: Path, offset: int) -> tuple[int, int]:
    """Bytes the registry wrote for GET requests after offset; (bytes, requests)."""
    total = count = 0
    with open(log, errors="replace") as fh:
        fh.seek(offset)
        for line in fh:
            if "response completed" in line and "http.request.method=GET" in line:
                m = _WRITTEN.search(line)
                if m:
                    total += int(m.group(1))
                    count += 1
    return total, count


def main() -> None:
    ap = argparse.ArgumentParser(description="gpuimages registry-cache benchmark")
    ap.add_argument("--wheelhouse", default=str(ROOT / "wheelhouse"))
    args = ap.parse_args()
    if shutil.disk_usage("/var/lib/docker" if Path("/var/lib/docker").exists() else "/").free < (
        MIN_FREE_BYTES
    ):
        raise SystemExit("cache bench: less than 5 GB free for the engine; not starting")
    client = docker.from_env(timeout=900)
    cli = find_docker_cli()
    variant = replace(
        load_matrix(ROOT / "matrix.yaml").by_name()[RUNTIME],
        repository=REPOSITORY,
        size_budget_mb=None,
    )
    port = free_port()
    made: list[str] = []
    mine: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        state = tmpdir / "registry"
        script = str(ROOT / "scripts" / "start-registry.sh")
        subprocess.run(
            ["bash", script, "--port", str(port), "--dir", str(state)], check=True, timeout=600
        )
        try:
            dockerfiles = tmpdir / "dockerfiles"
            render_all((variant,), dockerfiles)
            ref = f"127.0.0.1:{port}/{REPOSITORY}:{{variant}}"
            t0 = records(client)
            base = fresh_base(client)
            made.append(base)
            sources = PackageSources(
                base_image=base, builder_image=base, wheelhouse=Path(args.wheelhouse), offline=True
            )

            start = time.monotonic()
            [cold] = build_many(
                (variant,), cli, sources, dockerfiles=dockerfiles, work_dir=tmpdir / "w1",
                cache_to=ref, cache_from=ref,
            )  # fmt: skip
            cold_s = time.monotonic() - start
            if not cold.ok:
                raise SystemExit(f"cold build failed: {cold.error}")
            made.append(variant.tag)
            print(f"cold build ({RUNTIME}, cache {cold.cache['kind']}): {cold_s:.1f} s")

            pushed = ref.format(variant=variant.name)
            repo, tag = pushed.rsplit(":", 1)
            client.images.get(cold.image_id).tag(repo, tag)
            made.append(pushed)
            start = time.monotonic()
            for chunk in client.images.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise SystemExit(f"push failed: {chunk['error']}")
            print(f"push to the benchmark registry: {time.monotonic() - start:.1f} s")

            t1 = records(client)
            roots = base_records(t0, t1)
            mine = ours(t0, t1, roots) + context_records(t0, t1)
            for tag_ in (variant.tag, pushed):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag_)
            size = sum(t1[i].get("Size") or 0 for i in mine if i in t1)
            pruned = prune(mine, cli.path)
            print(
                f"removed the images; pruned {pruned} of {len(mine)} build-cache records this "
                f"benchmark created ({size / MB:.0f} MB); the engine holds "
                f"{len(records(client))} records in all"
            )

            log = state / "registry.log"
            offset = log.stat().st_size
            start = time.monotonic()
            [warm] = build_many(
                (variant,), cli, sources, dockerfiles=dockerfiles, work_dir=tmpdir / "w2",
                cache_from=ref,
            )  # fmt: skip
            warm_s = time.monotonic() - start
            if not warm.ok:
                raise SystemExit(f"rebuild failed: {warm.error}")
            pulled, requests = served_bytes(log, offset)
            cached = (warm.log_path.read_text(errors="replace") if warm.log_path else "").count(
                "CACHED"
            )
            print(
                f"rebuild from the registry cache: {warm_s:.1f} s = {warm_s / cold_s:.1%} of cold "
                f"(target <= 25%); {pulled / MB:.0f} MB pulled in {requests} GET requests; "
                f"{cached} steps CACHED; image {(warm.size_bytes or 0) / MB:.0f} MB"
            )
            t2 = records(client)
            mine = ours(t0, t2, base_records(t0, t2)) + context_records(t1, t2)
        finally:
            for tag_ in reversed(made):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag_, noprune=False)
            if mine:
                prune(mine, cli.path)
            subprocess.run(
                ["bash", script, "--stop", "--port", str(port), "--dir", str(state)], timeout=60
            )


if __name__ == "__main__":
    main()
