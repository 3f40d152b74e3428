"""Console output shared by commands: tables and progress bars (rich), all on stderr except data."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Piped output (CI logs, `| tee`) gets a wide fixed width instead of rich's 80 columns, so tables never wrap.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
out = Console(width=_WIDTH, highlight=False)  # data: tables and reports go to stdout
err = Console(stderr=True, highlight=False)  # progress and status go to stderr, so `--json | jq` stays clean


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def say(text: str) -> None:
    """Plain text on stdout (no markup parsing: exit mixes contain brackets)."""
    out.print(text, markup=False)


def progress() -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal unless forced by tests."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
                    disable=not sys.stderr.isatty())


def status(message: str) -> None:
    err.print(f"[bold cyan]>>[/] {message}")
