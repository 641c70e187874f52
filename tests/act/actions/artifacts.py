"""Upload and download artifacts through act's artifact server, as actions/upload-artifact
and actions/download-artifact (v4 and later) do through GitHub's.

Stand-ins for the act run only (tests/act/README.md): the marketplace actions cannot be
fetched on a host that reaches no GitHub. The protocol is the v4 artifact API that act
serves (nektos/act pkg/artifacts/artifacts_v4.go): CreateArtifact -> PUT the zip to the
signed URL -> FinalizeArtifact; ListArtifacts -> GetSignedArtifactURL -> GET the zip.
The run and job ids come from ACTIONS_RUNTIME_TOKEN's `scp` claim
("Actions.Results:RUN:JOB"), as @actions/artifact reads them.

Standard library only: it runs with whatever python3 the job has.
Inputs arrive as INPUT_<NAME> variables (the composite action's `env:`).
"""

from __future__ import annotations

import base64
import fnmatch
import glob
import hashlib
import io
import json
import os
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

SERVICE = "twirp/github.actions.results.api.v1.ArtifactService"
GLOB_CHARS = set("*?[")


class ArtifactError(Exception):
    """A problem the workflow's author can fix; printed as one ::error:: line."""


@dataclass(frozen=True)
class Runtime:
    """Where act's artifact server listens and which run/job this step belongs to."""

    url: str
    token: str
    run_id: str
    job_id: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Runtime:
        url = env.get("ACTIONS_RESULTS_URL") or env.get("ACTIONS_RUNTIME_URL")
        token = env.get("ACTIONS_RUNTIME_TOKEN")
        if not url or not token:
            raise ArtifactError(
                "ACTIONS_RESULTS_URL / ACTIONS_RUNTIME_TOKEN are not set: act starts its "
                "artifact server (and sets them) only with --artifact-server-path DIR."
            )
        run_id, job_id = backend_ids(token)
        return cls(url.rstrip("/") + "/", token, run_id, job_id)

    def call(self, method: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}{SERVICE}/{method}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        with opener().open(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def ids(self) -> dict[str, str]:
        return {"workflow_run_backend_id": self.run_id, "workflow_job_run_backend_id": self.job_id}


def opener() -> urllib.request.OpenerDirector:
    # The artifact server is on this host: an HTTP(S)_PROXY in the environment must not
    # carry the request elsewhere.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def backend_ids(token: str) -> tuple[str, str]:
    """(run, job) from a runtime token's `scp` claim "Actions.Results:RUN:JOB"."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ArtifactError(f"ACTIONS_RUNTIME_TOKEN is not a JWT: {exc}") from None
    for scope in str(claims.get("scp", "")).split():
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "Actions.Results":
            return parts[1], parts[2]
    raise ArtifactError("ACTIONS_RUNTIME_TOKEN has no Actions.Results:RUN:JOB scope")


# ----------------------------------------------------------------------------- upload


def patterns(text: str) -> tuple[list[str], list[str]]:
    """The `path` input's lines: (include patterns, exclude patterns without their '!')."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [p for p in lines if not p.startswith("!")], [p[1:] for p in lines if p[0] == "!"]


def search_path(pattern: str, cwd: Path) -> Path:
    """The literal folder or file a pattern starts from (before its first glob segment)."""
    literal: list[str] = []
    for part in Path(pattern).parts:
        if GLOB_CHARS & set(part):
            break
        literal.append(part)
    return (cwd / Path(*literal)) if literal else cwd


def root_of(searches: list[Path]) -> Path:
    """Where the artifact's paths start, as upload-artifact decides it: the common
    ancestor of the search paths; for one file, its folder."""
    if len(searches) == 1:
        only = searches[0]
        return only.parent if only.is_file() else only
    return Path(os.path.commonpath([str(p) for p in searches]))


def hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(text: str, cwd: Path, include_hidden: bool) -> tuple[Path, list[Path]]:
    """(root, files) the `path` input names, exclusions and hidden files left out."""
    include, exclude = patterns(text)
    if not include:
        raise ArtifactError("the `path` input names nothing to upload")
    files: set[Path] = set()
    for pattern in include:
        for match in glob.glob(str(cwd / pattern), recursive=True):
            found = Path(match)
            files |= {p for p in found.rglob("*") if p.is_file()} if found.is_dir() else {found}
    root = root_of([search_path(p, cwd) for p in include])
    kept = []
    for path in sorted(files):
        relative = str(path.relative_to(cwd))
        if any(
            fnmatch.fnmatch(relative, x) or relative.startswith(x.rstrip("/") + "/")
            for x in exclude
        ):
            continue
        if not include_hidden and hidden(path, root):
            continue
        kept.append(path)
    return root, kept


def zipped(root: Path, files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, str(path.relative_to(root)))
    return buffer.getvalue()


def upload(env: dict[str, str], cwd: Path) -> dict[str, str]:
    name = env.get("INPUT_NAME") or "artifact"
    policy = env.get("INPUT_IF_NO_FILES_FOUND") or "warn"
    if policy not in ("warn", "error", "ignore"):
        raise ArtifactError(f"if-no-files-found is warn, error or ignore, not {policy!r}")
    include_hidden = (env.get("INPUT_INCLUDE_HIDDEN_FILES") or "false").lower() == "true"
    root, files = collect(env.get("INPUT_PATH", ""), cwd, include_hidden)
    if not files:
        message = f"No files were found with the provided path: {env.get('INPUT_PATH')}"
        if policy == "error":
            raise ArtifactError(message)
        print(
            f"::{'warning' if policy == 'warn' else 'notice'}::{message}. No artifacts "
            "will be uploaded."
        )
        return {}
    runtime = Runtime.from_env(env)
    body = zipped(root, files)
    created = runtime.call("CreateArtifact", {**runtime.ids(), "name": name, "version": 4})
    signed = created.get("signedUploadUrl") or created.get("signed_upload_url")
    if not signed:
        raise ArtifactError(f"CreateArtifact answered without an upload URL: {created}")
    for comp, data in (("block", body), ("blockList", b"")):
        put = urllib.request.Request(f"{signed}&comp={comp}", data=data, method="PUT")
        with opener().open(put, timeout=300):
            pass
    digest = hashlib.sha256(body).hexdigest()
    final = runtime.call(
        "FinalizeArtifact",
        {**runtime.ids(), "name": name, "size": str(len(body)), "hash": f"sha256:{digest}"},
    )
    print(f"uploaded artifact {name}: {len(files)} file(s) from {root}, {len(body)} bytes zipped")
    return {"artifact-id": str(final.get("artifactId", "")), "artifact-digest": digest}


# --------------------------------------------------------------------------- download


def download(env: dict[str, str], cwd: Path) -> dict[str, str]:
    name, pattern = env.get("INPUT_NAME", ""), env.get("INPUT_PATTERN", "")
    merge = (env.get("INPUT_MERGE_MULTIPLE") or "false").lower() == "true"
    dest = cwd / (env.get("INPUT_PATH") or ".")
    runtime = Runtime.from_env(env)
    query = {**runtime.ids(), **({"name_filter": name} if name else {})}
    listed = [a["name"] for a in runtime.call("ListArtifacts", query).get("artifacts", [])]
    if name and name not in listed:
        raise ArtifactError(f"Artifact not found: {name} (this run has: {', '.join(listed)})")
    chosen = [n for n in listed if name or not pattern or fnmatch.fnmatchcase(n, pattern)]
    for artifact in sorted(chosen):
        # One artifact asked for by name lands in `path` itself, as with download-artifact;
        # several land in path/NAME/ unless merge-multiple.
        target = dest if name or merge else dest / artifact
        url = runtime.call("GetSignedArtifactURL", {**runtime.ids(), "name": artifact})
        signed = url.get("signedUrl") or url.get("signed_url")
        with opener().open(signed, timeout=300) as response:
            data = response.read()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ArtifactError(f"{artifact}: unsafe path in the zip: {member}")
            archive.extractall(target)
        print(f"downloaded artifact {artifact} into {target}")
    if not chosen:
        print(f"::warning::no artifact matches pattern {pattern!r} (this run has: {listed})")
    return {"download-path": str(dest)}


def main(argv: list[str]) -> int:
    commands = {"upload": upload, "download": download}
    if len(argv) != 2 or argv[1] not in commands:
        print(f"usage: {argv[0]} upload|download (inputs as INPUT_* variables)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        outputs = commands[argv[1]](env, Path.cwd())
    except (ArtifactError, OSError) as exc:
        print(f"::error::{argv[1]}-artifact (act stand-in): {exc}")
        return 1
    if env.get("GITHUB_OUTPUT"):
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in outputs.items())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
