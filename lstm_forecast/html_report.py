"""report.html: one self-contained page per run, to read on a phone or mail as one file.

The page holds what `evaluate` prints (the same rich tables and lines, turned into HTML tables and
paragraphs), every chart of the run as a base64 `data:` URI, the resolved config and the data
fingerprint. Plain HTML and inline CSS: no script, font, stylesheet or image is fetched from anywhere,
and every value is escaped.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from rich.table import Table
from rich.text import Text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 70rem;
       padding: 0.8rem; color: #1b1b1b; background: #fff; line-height: 1.4; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; font-size: 0.85rem; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
th, td { padding: 0.2rem 0.5rem; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { background: #f2f4f7; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.section td { border-top: 2px solid #999; }
img { max-width: 100%; height: auto; display: block; margin: 0.4rem 0 1.2rem; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
""".strip()


def render(
    title: str, items: list[Table | str], charts: dict[str, bytes], config_yaml: str, fingerprint: dict[str, Any]
) -> str:
    """The page: `items` as the terminal shows them (rich tables and markup lines), then `charts` (caption ->
    PNG bytes), the config and the fingerprint."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for item in items:
        body.append(table_html(item) if isinstance(item, Table) else f"<p>{html.escape(plain(item))}</p>")
    if charts:
        body.append("<h2>Charts</h2>")
    for caption, png in charts.items():
        data = base64.b64encode(png).decode("ascii")
        body.append(f"<h3>{html.escape(caption)}</h3>")
        body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    body.append("<h2>Data fingerprint</h2>")
    body.append(
        '<div class="scroll"><table><tbody>'
        + "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
                  for key, value in fingerprint.items())
        + "</tbody></table></div>"
    )
    body.append("<h2>Config (resolved)</h2>")
    body.append(f"<pre>{html.escape(config_yaml)}</pre>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # Belt and braces: even a value that slipped through unescaped could load nothing.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def plain(markup: str) -> str:
    """A rich markup line as plain text ("[bold]Verdict[/]" -> "Verdict")."""
    return Text.from_markup(markup).plain


def table_html(table: Table) -> str:
    """A rich table as an HTML table: its title as the caption, right-aligned columns as numbers."""
    columns = table.columns
    head = "".join(f"<th>{html.escape(_cell(column.header))}</th>" for column in columns)
    cells = [list(column.cells) for column in columns]
    rows = []
    for index in range(table.row_count):
        previous_ended = index > 0 and table.rows[index - 1].end_section
        tds = "".join(
            f'<td{" class=number" if column.justify == "right" else ""}>{html.escape(_cell(cells[number][index]))}</td>'
            for number, column in enumerate(columns)
        )
        rows.append(f'<tr{" class=section" if previous_ended else ""}>{tds}</tr>')
    caption = f"<caption>{html.escape(_cell(table.title))}</caption>" if table.title else ""
    return (f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _cell(value: Any) -> str:
    """A rich cell (str with markup, or Text) as plain text."""
    if value is None:
        return ""
    return value.plain if isinstance(value, Text) else plain(str(value))
