"""The HTML tables notebooks show for results (validation, restore verification): numbers right-
aligned with thousands separators, a column left out when it is blank in every row, each row in the
colour of its status. Values are escaped; nothing here knows what the rows mean."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Number
from typing import Any

CELL = "padding:2px 10px"


def html_table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]], *,
               colour: Callable[[Mapping[str, Any]], str] | None = None) -> str:
    """`columns`: (row key, heading) in order. A row's `colour(row)` colours its text."""
    shown = [(key, heading) for key, heading in columns if any(not _blank(row.get(key)) for row in rows)]
    numeric = {key for key, _ in shown if all(_blank(row.get(key)) or _number(row.get(key)) for row in rows)}
    header = "".join(f'<th style="{CELL};text-align:{"right" if key in numeric else "left"};'
                     f'border-bottom:1px solid #888">{html.escape(heading)}</th>' for key, heading in shown)
    body = []
    for row in rows:
        style = f' style="color:{colour(row)}"' if colour is not None else ""
        cells = "".join(f'<td style="{CELL};text-align:{"right" if key in numeric else "left"}">'
                        f"{html.escape(_text(row.get(key)))}</td>" for key, _ in shown)
        body.append(f"<tr{style}>{cells}</tr>")
    return (f'<table class="etl-summary" style="border-collapse:collapse"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _blank(value: Any) -> bool:
    """None, empty text, NaN or pandas.NA (which refuses bool())."""
    if value is None or isinstance(value, str):
        return not value
    try:
        return bool(value != value)
    except TypeError:
        return True


def _number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if _blank(value):
        return ""
    if _number(value):
        if isinstance(value, Integral):
            return f"{int(value):,}"
        return f"{float(value):,.2f}" if math.isfinite(float(value)) else str(value)
    return str(value)
