"""The duration chart of a job's page: an inline SVG drawn on the server, no script.

One bar per run (oldest on the left), its height the run's duration on a linear scale up to
the longest run shown, its colour the outcome; each bar carries a ``<title>`` (a tooltip) with
the start time, duration and outcome. All text goes through ``markupsafe.escape``, so a job
name or host name cannot break out of the SVG.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from recurjobs.dashboard._format import absolute, duration
from recurjobs.dashboard._records import Run

__all__ = ["duration_chart"]

WIDTH = 720
HEIGHT = 160
_AXIS = 64  # room on the left for the scale labels
_COLOURS = {
    "executed": "#2e7d32",
    "failed": "#c62828",
    "canceled": "#8d6e63",
    "lease_lost": "#ef6c00",
    "ignored": "#9e9e9e",
    None: "#1565c0",  # still running
}


def duration_chart(runs: Sequence[Run], now_ms: int, title: str) -> Markup:
    """An SVG bar chart of the durations of ``runs`` (given newest first); a running run is
    drawn up to ``now_ms``. ``title`` names the chart for screen readers."""
    ordered = list(reversed(runs))
    label = escape(title)
    if not ordered:
        return Markup(
            f'<svg class="chart" role="img" aria-label="{label}" width="{WIDTH}" height="40" '
            f'xmlns="http://www.w3.org/2000/svg"><text x="8" y="24">no runs to chart</text></svg>'
        )
    lengths = [
        max(0, (r.ended_ms if r.ended_ms is not None else now_ms) - r.started_ms) for r in ordered
    ]
    top = max(max(lengths), 1)
    plot = HEIGHT - 20
    step = (WIDTH - _AXIS) / len(ordered)
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{label}</title>",
        f'<line x1="{_AXIS}" y1="{plot}" x2="{WIDTH}" y2="{plot}" stroke="#999"/>',
        f'<text x="{_AXIS - 6}" y="12" text-anchor="end" font-size="11">'
        f"{escape(duration(top))}</text>",
        f'<text x="{_AXIS - 6}" y="{plot}" text-anchor="end" font-size="11">0</text>',
    ]
    for index, (run, length) in enumerate(zip(ordered, lengths, strict=True)):
        height = max(1.0, (plot - 4) * length / top)
        x = _AXIS + index * step + (step - bar) / 2
        colour = _COLOURS.get(run.outcome, "#616161")
        tip = escape(
            f"{absolute(run.started_ms)}: {duration(length)}, {run.outcome or 'running'} "
            f"on {run.host}"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{plot - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
            f'fill="{colour}"><title>{tip}</title></rect>'
        )
    parts.append(
        f'<text x="{_AXIS}" y="{HEIGHT - 4}" font-size="11">'
        f"{escape(absolute(ordered[0].started_ms))}</text>"
    )
    parts.append(
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end" font-size="11">'
        f"{escape(absolute(ordered[-1].started_ms))}</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))
