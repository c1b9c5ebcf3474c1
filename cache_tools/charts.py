"""Inline SVG bar charts for the dashboard: no JavaScript, no framework, safe to embed.

>>> svg = bar_chart([1, 0, 3], label="computations per minute")
>>> svg.count('class="bar"')
2
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = ["bar_chart"]


def bar_chart(
    values: Sequence[float | None],
    *,
    label: str,
    top: float | None = None,
    width: int = 600,
    height: int = 80,
    percent: bool = False,
    compact: bool = False,
) -> SafeString:
    """One bar per value, left to right, scaled to ``top`` (default: the largest value);
    ``None`` and 0 draw no bar. Each bar has a ``<title>`` tooltip with its value. ``compact``
    leaves out the label and the scale (a sparkline in a table cell)."""
    peak = top if top is not None else max([v for v in values if v is not None] or [0]) or 1
    slot = width / max(len(values), 1)
    bars: list[str] = []
    for index, value in enumerate(values):
        if not value:
            continue
        tall = max(1.0, height * min(value, peak) / peak)
        shown = f"{value:.0%}" if percent else f"{value:g}"
        bars.append(
            f'<rect class="bar" x="{index * slot + 1:.1f}" y="{height - tall:.1f}" '
            f'width="{max(slot - 2, 1):.1f}" height="{tall:.1f}">'
            f"<title>{escape(shown)}</title></rect>"
        )
    peak_label = f"{peak:.0%}" if percent else f"{peak:g}"
    # Numbers are formatted as numbers and every text goes through escape().
    texts = (
        ""
        if compact
        else f'<text x="0" y="{height + 12}" class="axis">{escape(label)}</text>'
        f'<text x="0" y="10" class="axis">top: {escape(peak_label)}</text>'
    )
    total = height if compact else height + 14
    return mark_safe(
        f'<svg class="ct-chart" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width} {total}" width="{width}" height="{total}" '
        f'xmlns="http://www.w3.org/2000/svg">{texts}{"".join(bars)}</svg>'
    )
