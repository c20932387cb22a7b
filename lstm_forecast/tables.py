"""The one rule for every table the tool prints: a number is never cut, and the table fits the width it is
printed at.

A column declared `no_wrap=True` holds numbers, dates, ids or short labels: it gets exactly the width of its
widest cell, so no cell of it is ever shortened with `…` or broken across lines (its header may wrap onto a
second line at a space instead). Every other column is text (notes, reasons, paths) and wraps to what width is
left. When even that cannot fit, the table leaves out its optional columns, lowest priority first, and says so
under itself. No line ends in spaces, so a table piped to a file has no padding to strip.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

UNBOUNDED = 1_000_000  # a width no table reaches: measures a cell's whole length
TEXT_MIN = 10  # the narrowest a text column is squeezed to before optional columns go


class FitTable(Table):
    """A rich Table rendered by the rule above; `optional` names the headers it may leave out, first to go first,
    and `whole` says where the left-out columns can be read in full."""

    def __init__(self, *headers: Any, optional: Sequence[str] = (), whole: str = "--json", **settings: Any) -> None:
        settings.setdefault("title_justify", "left")
        settings.setdefault("header_style", "bold")
        super().__init__(*headers, **settings)
        self.optional = tuple(optional)
        self.whole = whole

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # A console printing with soft_wrap would leave the title one long line: it wraps at the width instead.
        options = options.update(no_wrap=False, overflow="fold")
        table, left_out, minimum = self.fitted(console, options)
        # Still too wide with every optional column left out: the table takes the width it needs (the terminal
        # wraps its lines) rather than letting rich shorten every column, numbers included.
        wide = options.update_width(max(minimum, options.max_width))
        lines = list(Segment.split_lines(Table.__rich_console__(table, console, wide)))
        if left_out:
            names = ", ".join(left_out) if len(left_out) <= 3 else f"{left_out[0]}, …, {left_out[-1]} ({len(left_out)})"
            note = f"Not shown at {options.max_width} columns: {names} ({self.whole} has every column)."
            lines += console.render_lines(Text(note, style="dim"), options, pad=False)
        for line in lines:
            yield from _without_trailing_spaces(line)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        table, _, _ = self.fitted(console, options)
        return Table.__rich_measure__(table, console, options)

    def fitted(self, console: Console, options: ConsoleOptions) -> tuple[Table, list[str], int]:
        """A copy of the table that fits the width if it can, trying in turn: every header on one line; headers
        wrapped at their spaces; then leaving out the optional columns one by one. Returns the copy, the headers
        left out (in that order) and the least width the copy needs."""
        wide = options.update_width(UNBOUNDED)
        widest = [[Measurement.get(console, wide, cell) for cell in [column.header, *column.cells]]
                  for column in self.columns]
        # A number column: its widest cell, and its whole header or the header's longest word.
        one_line = [max(size.maximum for size in sizes) if column.no_wrap else None
                    for column, sizes in zip(self.columns, widest, strict=True)]
        wrapped = [max([sizes[0].minimum, *(size.maximum for size in sizes[1:])]) if column.no_wrap else None
                   for column, sizes in zip(self.columns, widest, strict=True)]
        # A text column can fold down to a few characters; it counts as at most TEXT_MIN wide when fitting, or
        # its own min_width (the width at which its cells still read well) if it has one.
        text = [None if column.no_wrap else max(min(TEXT_MIN, max(size.maximum for size in sizes)),
                                                column.min_width or 0)
                for column, sizes in zip(self.columns, widest, strict=True)]
        present = {str(column.header) for column in self.columns}
        candidates = [header for header in self.optional if header in present]
        left_out: list[str] = []
        if self._least_width(console, one_line, text, left_out) <= options.max_width:
            return self._copy(one_line, left_out), left_out, 0
        while True:
            minimum = self._least_width(console, wrapped, text, left_out)
            if minimum <= options.max_width or not candidates:
                return self._copy(wrapped, left_out), left_out, minimum
            left_out.append(candidates.pop(0))

    def _least_width(self, console: Console, pinned: list[int | None], text: list[int | None],
                     left_out: list[str]) -> int:
        """The least width a copy needs: its pinned columns whole, its text columns folded to `text`."""
        widths = [width if width is not None else fold for width, fold in zip(pinned, text, strict=True)]
        table = self._copy(widths, left_out, pin_text=True)
        return Table.__rich_measure__(table, console, console.options.update_width(UNBOUNDED)).minimum

    def _copy(self, widths: list[int | None], left_out: list[str], pin_text: bool = False) -> Table:
        table = copy.copy(self)  # the same title, box, padding and styles; rendered by Table's own methods
        table.columns, table.rows = [], []
        kept = [(column, width) for column, width in zip(self.columns, widths, strict=True)
                if str(column.header) not in left_out]
        for column, width in kept:
            pinned = column.no_wrap or pin_text
            table.add_column(
                column.header, column.footer, header_style=column.header_style, footer_style=column.footer_style,
                style=column.style, justify=column.justify, vertical=column.vertical, highlight=column.highlight,
                # A pinned column is exactly as wide as its widest cell, so only its header ever wraps; text folds
                # a word longer than its column (a path) rather than cutting it with `…`.
                width=width if pinned else column.width, overflow="fold", no_wrap=False,
                min_width=column.min_width, max_width=column.max_width, ratio=column.ratio,
            )
        cells = [list(column.cells) for column, _ in kept]
        for index, row in enumerate(self.rows):
            table.add_row(*(column_cells[index] for column_cells in cells), style=row.style,
                          end_section=row.end_section)
        return table


def _without_trailing_spaces(line: Iterable[Segment]) -> list[Segment]:
    segments = list(line)
    while segments and not segments[-1].control and not segments[-1].text.strip(" "):
        segments.pop()
    if segments and not segments[-1].control:
        last = segments[-1]
        segments[-1] = Segment(last.text.rstrip(" "), last.style, last.control)
    return segments
