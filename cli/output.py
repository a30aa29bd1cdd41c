"""Rendering for the CLI: tables a person reads, JSON a script reads.

Text that reaches the terminal may come from anyone who could write to the registry
(alias reasons, descriptions, tags, file names), so no control character is ever
written as itself: table cells are escaped before layout, and both consoles pass
everything else they print through :class:`_EscapeControls` (``\x1b`` is shown, not
run). JSON output escapes control characters by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from rich.console import Console, ConsoleOptions, ConsoleRenderable, RenderResult
from rich.console import RenderHook as _RenderHook
from rich.segment import Segment
from rich.table import Table

from paved.text import printable


class _Escaped:
    """A renderable whose text segments have every control character escaped."""

    def __init__(self, inner: ConsoleRenderable) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for seg in console.render(self.inner, options):
            # Control segments are rich's own cursor moves; the text is the content.
            yield seg if seg.control else Segment(printable(seg.text), seg.style)


class _EscapeControls(_RenderHook):
    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_Escaped(r) for r in renderables]


console = Console()
err_console = Console(stderr=True)
for _c in (console, err_console):
    _c.push_render_hook(_EscapeControls())


def _cell(value: Any) -> str:
    return "" if value is None else printable(str(value))


class Format(StrEnum):
    table = "table"
    json = "json"


def emit_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [d.model_dump(mode="json") for d in data]
    # Plain print: rich would wrap long lines and break the JSON for scripts.
    print(json.dumps(payload, indent=2, sort_keys=False))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(_cell(v) for v in r))
    console.print(t)


def kv(title: str, items: Sequence[tuple[str, Any]]) -> None:
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in items:
        t.add_row(printable(k), _cell(v))
    console.print(t)


def ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""
