"""Latency distributions of a ``make bench`` run as one SVG of box plots.

Hand-written rather than matplotlib: the bench needs one static figure, and a plotting
library would add tens of megabytes (and native wheels) to the environment for it. Each panel
compares a measure with its reference from the same run: the box spans p25-p75, the line in it
is the median, the whiskers reach p1 and p99, and the dots are the samples beyond them.
"""

from __future__ import annotations

import html

WIDTH = 900
ROW = 26
PAD_LEFT = 330
PAD_RIGHT = 30
COLORS = ("#2f6fb0", "#c0504d", "#4f9a4f", "#8064a2")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _panel(title: str, unit: str, series: dict[str, list[float]], top: int) -> tuple[str, int]:
    series = {k: v for k, v in series.items() if v}
    if not series:
        return "", 0
    hi = max(_pct(v, 0.99) for v in series.values()) * 1.08 or 1.0
    span = WIDTH - PAD_LEFT - PAD_RIGHT

    def x(v: float) -> float:
        return PAD_LEFT + span * min(v, hi) / hi

    out = [
        f'<text x="10" y="{top + 16}" font-size="14" font-weight="bold">{html.escape(title)}</text>'
    ]
    y = top + 30
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        p1, p25, p50, p75, p99 = (_pct(values, q) for q in (0.01, 0.25, 0.5, 0.75, 0.99))
        mid = y + ROW / 2
        label = f"{name} (n={len(values)}, median {p50:.3g} {unit})"
        out.append(f'<text x="10" y="{mid + 4}" font-size="11">{html.escape(label)}</text>')
        out.append(
            f'<line x1="{x(p1):.1f}" x2="{x(p99):.1f}" y1="{mid}" y2="{mid}" stroke="{color}"/>'
        )
        out.append(
            f'<rect x="{x(p25):.1f}" y="{y + 5}" width="{max(1.0, x(p75) - x(p25)):.1f}" '
            f'height="{ROW - 10}" fill="{color}" fill-opacity="0.35" stroke="{color}"/>'
        )
        out.append(
            f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{y + 3}" y2="{y + ROW - 3}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        for v in values:
            if v < p1 or v > p99:
                out.append(f'<circle cx="{x(v):.1f}" cy="{mid}" r="1.8" fill="{color}"/>')
        y += ROW
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        tx = PAD_LEFT + span * frac
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top + 26}" y2="{y}" stroke="#ddd"/>')
        out.append(
            f'<text x="{tx:.1f}" y="{y + 12}" font-size="10" text-anchor="middle">'
            f"{hi * frac:.3g}</text>"
        )
    out.append(
        f'<text x="{WIDTH - PAD_RIGHT}" y="{y + 24}" font-size="10" text-anchor="end">'
        f"{html.escape(unit)}</text>"
    )
    return "\n".join(out), y + 34 - top


def latency_svg(panels: list[tuple[str, str, dict[str, list[float]]]], caption: str = "") -> str:
    parts, top = [], 10
    for title, unit, series in panels:
        body, height = _panel(title, unit, series, top)
        if body:
            parts.append(body)
            top += height + 10
    if caption:
        parts.append(
            f'<text x="10" y="{top + 12}" font-size="10" fill="#555">{html.escape(caption)}</text>'
        )
        top += 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{top}" '
        f'viewBox="0 0 {WIDTH} {top}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>' + "\n".join(parts) + "</svg>\n"
    )
