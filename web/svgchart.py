"""Small inline SVG charts for reports (no browser or kaleido needed; weasyprint renders SVG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def line_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]],
               width: int = 640, height: int = 220, y_label: str = "") -> str:
    """An SVG line chart of ``{name: [(x, y), ...]}`` with a legend; x is epoch seconds.

    >>> "<polyline" in line_chart("t", {"a": [(0, 1), (60, 2)]})
    True
    """
    points = [p for pts in series.values() for p in pts]
    if not points:
        return f'<p class="nodata">{escape(title)}: no data</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(max(p[1] for p in points), 1e-9)
    left, top, right, bottom = 50, 24, width - 10, height - 40
    sx = (right - left) / ((x1 - x0) or 1)
    sy = (bottom - top) / y1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
             f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>',
             f'<text x="4" y="{top + 8}">{y1:.3g}</text><text x="4" y="{bottom}">0</text>',
             f'<text x="{left}" y="{bottom + 14}">{escape(y_label)}</text>']
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{left + (x - x0) * sx:.1f},{bottom - y * sy:.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                     f'points="{coords}"/>')
        lx = left + (i % 4) * 150
        ly = height - 10 - 12 * (i // 4)
        parts.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{ly - 4}">{escape(name[:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], width: int = 640,
              height: int = 220) -> str:
    """An SVG horizontal bar chart of ``[(label, value), ...]``.

    >>> bar_chart("t", [("a", 2.0)]).count("<rect")
    1
    """
    if not bars:
        return f'<p class="nodata">{escape(title)}: no data</p>'
    top, row = 24, max(12, min(24, (height - 30) // len(bars)))
    vmax = max(max(v for _, v in bars), 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{top + row * len(bars) + 6}" font-family="sans-serif" font-size="10">',
             f'<text x="0" y="14" font-size="12" font-weight="bold">{escape(title)}</text>']
    for i, (label, value) in enumerate(bars):
        y, w = top + i * row, (width - 260) * value / vmax
        parts.append(f'<text x="0" y="{y + row * 0.7:.0f}">{escape(label[:40])}</text>'
                     f'<rect x="220" y="{y + 2}" width="{w:.1f}" height="{row - 4}" '
                     f'fill="#1f77b4"/><text x="{224 + w:.0f}" y="{y + row * 0.7:.0f}">'
                     f"{value:.4g}</text>")
    parts.append("</svg>")
    return "".join(parts)
