"""Tables and panels for the CLI edge (tasks.py); the library itself only logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from gpuimages.core.errors import GpuImagesError, UserInputError
from gpuimages.facts.variant import Variant
from gpuimages.vet.smoke_report import SmokeReport

if TYPE_CHECKING:
    from gpuimages.release.promote import PromoteRun

# Piped output (CI logs) gets a wide fixed width instead of rich's 80-column default.
console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )


def variants_table(
    variants: Iterable[Variant], title: str = "Variants", base: str | None = None
) -> Table:
    """One row per variant; BASE, where given, is the base image really used
    (--local-base, --base-image) instead of the variant's nominal one."""
    table = Table(title=title, title_justify="left")
    for col in ("name", "python", "os", "horovod", "base image", "min driver"):
        table.add_column(col, overflow="fold")
    for v in variants:
        table.add_row(
            v.name, v.python, v.os, v.horovod or "-", base or v.base_image, v.min_driver or "-"
        )
    return table


def variant_table(variant: Variant) -> Table:
    table = Table(title=f"{variant.tag}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in variant.as_dict().items():
        if isinstance(value, list):
            value = " ".join(value) or "-"
        table.add_row(key, "-" if value is None else str(value))
    return table


def _live_lines(name: str, console: Console, *, transient: bool):
    """A rich Progress of spinner, NAME (a task field or a fixed title), elapsed time and
    the task's description: the one look of every live step."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn(name, style="bold"),
        TimeElapsedColumn(),
        TextColumn("{task.description}", style="dim"),
        console=console,
        transient=transient,
    )


class BuildProgress:
    """A live view of several builds: one line per variant with its latest log line."""

    def __init__(self, names: list[str]) -> None:
        self.progress = _live_lines("{task.fields[name]}", err_console, transient=False)
        self.ids = {n: self.progress.add_task("waiting", name=n, total=None) for n in names}

    def __enter__(self) -> BuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, name: str, text: str) -> None:
        text = text.strip()
        if text.startswith("#"):
            self.progress.update(self.ids[name], description=text[:90])

    def done(self, name: str, status: str) -> None:
        self.progress.update(self.ids[name], description=status, total=1, completed=1)


class StepProgress:
    """A long step as it goes: a spinner with what is under way and the elapsed time, and
    a line per finished part ("ddp: passed (3.1 s) ...") kept above it. Used as the
    library's Progress callable (gpuimages.core.progress); on a pipe only the lines show."""

    PIPE_EVERY_S = 10.0  # on a pipe (CI logs) a moving figure is printed this often at most

    def __init__(self, title: str, console: Console = err_console) -> None:
        self.printed_at = float("-inf")
        self.progress = _live_lines(title, console, transient=True)
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> StepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, line: str) -> None:
        line = line.strip()
        if line.endswith("..."):  # a part begins: show it on the live line
            self.progress.update(self.task, description=line[:100])
        elif ": passed" in line or ": failed" in line or ": skipped" in line:
            self.progress.console.print(f"  {line[:200]}", markup=False, highlight=False)
        else:  # a figure that moves (bytes, layers): live line, and a line where not a tty
            self.progress.update(self.task, description=line[:100])
            now = time.monotonic()
            if not self.progress.console.is_terminal and now - self.printed_at >= self.PIPE_EVERY_S:
                self.printed_at = now
                self.progress.console.print(f"  {line[:200]}", markup=False, highlight=False)


def build_table(results: list) -> Table:
    table = Table(title="Build report", title_justify="left")
    for col in ("variant", "status", "image id", "size MB", "seconds", "log"):
        table.add_column(col, overflow="fold")
    for r in results:
        style = "green" if r.ok else "red"
        table.add_row(
            r.variant.name,
            f"[{style}]{r.status}[/{style}]",
            (r.image_id or "-").removeprefix("sha256:")[:12],
            f"{r.size_bytes / 1e6:.0f}" if r.size_bytes else "-",
            f"{r.duration_s:.0f}",
            str(r.log_path or "-"),
        )
    return table


def print_builds(results: list, report: object) -> None:
    console.print(build_table(results))
    for r in results:
        if r.ok:
            console.print(f"image {r.tags[0]} ({r.image_id})")
        else:
            err_console.print(f"{r.variant.name}: {r.error}", style="red", markup=False)
    console.print(f"report: {report}")


def smoke_table(report: SmokeReport) -> Table:
    table = Table(title=f"Smoke: {report.tag} ({report.status})", title_justify="left")
    for col in ("check", "status", "seconds", "reason"):
        table.add_column(col, overflow="fold")
    colors = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for check in report.checks:
        color = colors[check.status]
        table.add_row(
            check.name,
            f"[{color}]{check.status}[/{color}]",
            f"{check.duration_s:.1f}",
            check.reason,
        )
    return table


# --- doctor, run, launch (issue 7) -----------------------------------------------------

DOCTOR_COLORS = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
VERDICT_COLORS = {
    "supported": "green",
    "no GPU needed": "green",
    "minor-version compatibility, with limits": "yellow",
    "refused by NVIDIA_REQUIRE_CUDA": "red",
    "unsupported": "red",
    "no NVIDIA driver here": "dim",
}


def doctor_checks_table(checks: Iterable) -> Table:
    from rich.markup import escape

    table = Table(title="Host checks", title_justify="left")
    for col in ("check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for check in checks:
        color = DOCTOR_COLORS.get(check.status, "white")
        table.add_row(check.name, f"[{color}]{check.status}[/{color}]", escape(check.detail))
    return table


def verdicts_table(verdicts: Iterable, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("variant", "verdict", "driver vs CUDA", "container start", "GPU arch"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        color = VERDICT_COLORS.get(v.verdict, "white")
        table.add_row(v.variant, f"[{color}]{v.verdict}[/{color}]", v.driver, v.start, v.arch)
    return table


def print_doctor(report) -> None:
    """Checks, the fix of every failed or warned check, verdicts, and why (once per reason)."""
    from rich.markup import escape

    if report.checks:
        console.print(doctor_checks_table(report.checks))
        fixes: dict[str, list] = {}
        for check in report.checks:
            if check.fix and check.status in ("fail", "warn"):
                fixes.setdefault(check.fix, []).append(check)
        for fix, checks in fixes.items():
            color = DOCTOR_COLORS[checks[0].status]
            names = ", ".join(f"{c.name} ({c.status})" for c in checks)
            console.print(f"\n[{color}]Fix for {escape(names)}[/{color}]:")
            console.print(escape(fix), soft_wrap=True)
    host = f"driver {report.driver}" if report.driver else "this host (no NVIDIA driver)"
    if report.gpu_archs:
        host += f", GPU {', '.join(report.gpu_archs)}"
    title = ("Hypothetical host: " if report.hypothetical else "Variants on ") + host
    console.print()
    console.print(verdicts_table(report.verdicts, title))
    reasons: dict[str, list[str]] = {}
    for v in report.verdicts:
        reasons.setdefault(v.detail, []).append(v.variant)
    for detail, names in reasons.items():
        console.print(f"\n[bold]{', '.join(names)}[/bold]: {escape(detail)}")
    for note in report.notes:
        console.print(f"\n{escape(note)}")
    failed = [c.name for c in report.failed]
    if failed:
        err_console.print(
            f"\n[red]doctor: {len(failed)} check(s) failed: {', '.join(failed)}[/red]"
        )


def print_commands(commands: Iterable[tuple[str, str]], notes: Iterable[str] = ()) -> None:
    """Shell lines, unwrapped and without markup, each under a '# label' comment."""
    for label, line in commands:
        console.print(f"# {label}", markup=False, soft_wrap=True)
        console.print(line, markup=False, soft_wrap=True)
    for note in notes:
        console.print(f"# note: {note}", markup=False, soft_wrap=True)


def publish_table(outcome, dry_run: bool) -> Table:
    table = Table(
        title=f"{'Publish plan' if dry_run else 'Published'}: {outcome.registry}",
        title_justify="left",
    )
    for col in ("variant", "status", "registry tag", "digest", "smoke report"):
        table.add_column(col, overflow="fold")
    for r in outcome.results:
        style = "green" if r.ok else "red"
        table.add_row(
            r.variant.name,
            f"[{style}]{r.status}[/{style}]",
            r.registry_tag or "-",
            r.digest or "-",
            str(r.report_path or "-"),
        )
    return table


def print_publish(outcome, dry_run: bool, notes: Iterable[str] = ()) -> None:
    for note in notes:
        console.print(note)
    console.print(publish_table(outcome, dry_run))
    for r in outcome.not_published:
        err_console.print(
            f"{r.status} {r.variant.name}: {r.reason}", style="red", markup=False, soft_wrap=True
        )
    if outcome.manifest_md:
        console.print(f"release notes: {outcome.manifest_md}")
    if outcome.manifest_json:
        console.print(f"release manifest: {outcome.manifest_json}", soft_wrap=True)


# --- resolve (issue 15) ------------------------------------------------------------------


def print_resolution(result) -> None:
    """What fits (best first, with its published digest), then why each other does not."""
    from rich.markup import escape

    from gpuimages.host.resolve import describe

    host = describe(result.request)
    fits = Table(title=f"Fits {host} (best first)", title_justify="left")
    columns = ("#", "variant", "driver policy", "GPU", "image" if result.catalog_given else "tag")
    for col in columns:
        fits.add_column(col, overflow="fold")
    for i, c in enumerate(result.fits, 1):
        limited = c.policy == "minor-version compatibility" or c.start_refused
        color = "yellow" if limited else "green"
        if result.catalog_given:
            image = escape(c.published.pull) if c.published else "[red]not published[/red]"
        else:
            image = escape(c.variant.tag)
        arch = "-" if c.variant.is_cpu else c.arch
        fits.add_row(str(i), c.variant.name, f"[{color}]{c.policy}[/{color}]", arch, image)
    if result.fits:
        console.print(fits)
    else:
        console.print(f"Nothing in the matrix fits {host}.")
    for c in result.fits:
        for note in c.notes:
            console.print(f"  {c.variant.name}: {escape(note)}", soft_wrap=True)
    others = Table(title="Does not fit", title_justify="left")
    others.add_column("variant", overflow="fold")
    others.add_column("why not", overflow="fold")
    for c in result.others:
        others.add_row(c.variant.name, escape("; ".join(c.reasons)))
    if result.others:
        console.print()
        console.print(others)
    for note in result.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    if result.best:
        best = result.best
        where = best.published.pull if best.published else best.variant.tag
        console.print(f"\nbest: {escape(where)}", soft_wrap=True)


def promote(
    *,
    source: str | None,
    dest: str | None,
    variants: Iterable[str] = (),
    manifests: Iterable[str] = (),
    dry_run: bool = False,
    tries: str | None = None,
    backoff: str | None = None,
) -> PromoteRun:
    """`invoke promote`: run, print one line per variant, raise when any was not promoted."""
    from gpuimages.release import promote as promoting  # only this task needs the registry client

    if not source or not dest:
        raise UserInputError(
            "--from REGISTRY/NS and --to REGISTRY/NS are both required, e.g. `invoke promote "
            "--from ghcr.io/my-org/staging --to ghcr.io/my-org`."
        )
    try:
        policy = promoting.RetryPolicy.from_env(
            tries=None if tries is None else int(tries),
            backoff_s=None if backoff is None else float(backoff),
        )
    except ValueError:
        raise UserInputError(
            "--tries takes a whole number, --backoff a number of seconds."
        ) from None
    outcome = promoting.promote_release(
        source=source,
        dest=dest,
        variants=list(variants or ()),
        manifests=[Path(m) for m in (manifests or ())] or [promoting.RELEASE_ROOT],
        dry_run=dry_run,
        policy=policy,
    )
    for p in outcome.promotions:
        line = f"{p.status} {p.variant}: {p.pull or p.destination or ''} {p.reason}"
        (console if p.ok else err_console).print(
            line, markup=False, soft_wrap=True, style=None if p.ok else "red"
        )
    for path in outcome.manifests:
        console.print(f"release manifest: {path}", soft_wrap=True)
    if outcome.not_promoted:
        names = ", ".join(p.variant for p in outcome.not_promoted)
        raise GpuImagesError(
            f"{len(outcome.not_promoted)} of {len(outcome.promotions)} not promoted: {names}"
        )
    return outcome
