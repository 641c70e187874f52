"""The grammars of what reaches a Dockerfile, a tag or a path: image repositories and tags
(the OCI distribution reference rules, as docker applies them), and how user input is
echoed back in an error (bounded, terminal escapes stripped).

Values are checked where they enter (matrix.yaml, an option), so nothing later has to
guess whether a repository can carry a quote, a newline or `../`.
"""

from __future__ import annotations

import re

from gpuimages.core.errors import UserInputError

# distribution/reference: path components are lowercase alphanumerics joined by one
# separator ('.', '_', '__' or any run of '-'); a first component with a '.' or ':' or
# 'localhost' is a registry host (optionally with a port).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
)
REPOSITORY = re.compile(rf"(?:{_HOST}(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*")
NAMESPACE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_REPOSITORY = 255  # docker's limit on a repository name, host included

ECHO_LIMIT = 80
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """User input as an error may echo it: quoted, escape sequences and control characters
    made visible, and at most `limit` characters (with how many were left out)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 4 * limit:  # repr of a huge structure: never format all of it
        text = text[: 4 * limit]
        cut = True
    else:
        cut = False
    text = _ESCAPES.sub("", text)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > limit:
        text, cut = text[:limit], True
    if isinstance(value, str) and cut:
        return f"'{text}'... ({len(value)} characters)"
    return f"'{text}'" + ("..." if cut else "")


_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
RUN_LIMIT = 300  # longer than any path, URL or digest a message names on purpose


def tamed(message: str, run_limit: int = RUN_LIMIT) -> str:
    """An error message as the CLI prints it, whatever input it echoes: terminal escape
    sequences removed, other control characters (not newline or tab) made visible, and
    any run of more than run_limit non-blank characters cut in the middle."""
    text = _ESCAPES.sub("", message)
    text = _CONTROL_BUT_LINES.sub(lambda m: f"\\x{ord(m.group()):02x}", text)

    def cut(m: re.Match[str]) -> str:
        run = m.group()
        return f"{run[:60]}...({len(run):,} characters)...{run[-20:]}"

    return re.sub(rf"\S{{{run_limit + 1},}}", cut, text)


def check_repository(value: object, where: str = "repository") -> str:
    """An image repository such as gpuimages/pytorch or ghcr.io/team/pytorch, or refused."""
    text = value if isinstance(value, str) else None
    if text is None or len(text) > MAX_REPOSITORY or not REPOSITORY.fullmatch(text):
        raise UserInputError(
            f"{where} {shown(value)} is not an image repository name: lowercase letters, "
            "digits and single '.', '_' or '-' between them, path parts joined by '/', "
            f"an optional registry host first, at most {MAX_REPOSITORY} characters "
            "(e.g. gpuimages/pytorch, ghcr.io/my-team/pytorch)."
        )
    return text


def check_namespace(value: str, where: str = "registry namespace") -> str:
    """The path after a registry host ('my-team' in ghcr.io/my-team)."""
    if value and (len(value) > MAX_REPOSITORY or not NAMESPACE.fullmatch(value)):
        raise UserInputError(
            f"{where} {shown(value)} is not a repository path: lowercase letters, digits and "
            "single '.', '_' or '-' between them, parts joined by '/' (e.g. my-team)."
        )
    return value


def check_tag(value: object, where: str = "tag") -> str:
    """A tag name: letters, digits, '_', '.', '-', not starting with '.' or '-', <= 128."""
    text = value if isinstance(value, str) else None
    if text is None or not TAG.fullmatch(text):
        raise UserInputError(
            f"{where} {shown(value)} is not a tag name: up to 128 letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-' (e.g. latest)."
        )
    return text


AXIS_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")


def check_axis_value(axis: str, value: object, where: str = "") -> str:
    """One value of a variant axis (a version, 'cpu', 'runtime', 'debian12', 'none'):
    short, and only the characters versions and names are made of."""
    text = str(value).strip() if isinstance(value, (str, int, float)) else None
    if text is None or not AXIS_VALUE.fullmatch(text):
        prefix = f"{where}: " if where else ""
        raise UserInputError(
            f"{prefix}{axis} {shown(value)} is not a version or name: at most 32 letters, "
            "digits, '.', '_', '+' and '-' (e.g. 1.12.0, 11.3, cpu, runtime)."
        )
    return text
