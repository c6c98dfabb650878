"""Small inline-SVG bar charts for the HTML report, with no library and no external resources.

Values are plotted as given: a log scale for errors (zero shows as a stub at the bottom, nan and inf as
full-height outlined bars so they cannot hide), a linear scale from zero otherwise. Every bar carries a
<title> with its exact value, so hovering shows what the bar stands for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from percepiano_parity.reports.view import fmt_float

FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11"'
AXIS = "#888"
GRID = "#e3e3e3"
BAD = "#c62828"
HIGHLIGHT = "#fdecea"  # background of a highlighted category
BAND_OPACITY = "0.35"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str
    lows: Sequence[float | None] | None = None  # optional whiskers (e.g. min..max)
    highs: Sequence[float | None] | None = None


@dataclass(frozen=True)
class Mark:
    """A reference value per category (floor, tolerance), drawn as a dashed line across its group."""

    name: str
    values: Sequence[float | None]
    color: str
    dash: str = "4 3"


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _finite(v: float | None, *, positive: bool) -> bool:
    return v is not None and math.isfinite(v) and (v > 0 or not positive)


class Scale:
    """Maps values to a 0..1 fraction of the axis, log10 or linear."""

    def __init__(self, values: Sequence[float | None], *, log: bool) -> None:
        self.log = log
        finite = [v for v in values if v is not None and _finite(v, positive=log)]
        if log:
            if finite:
                # Leave room below the smallest value so it still shows as a bar.
                self.lo = math.floor(math.log10(min(finite)) - 0.3)
                self.hi = math.ceil(math.log10(max(finite)))
            else:
                self.lo, self.hi = -8, 0
            if self.hi <= self.lo:
                self.hi = self.lo + 1
        else:
            top = max(finite, default=1.0)
            bottom = min(finite, default=0.0)
            self.hi = _nice(top) if top > 0 else 1.0
            self.lo = -_nice(-bottom) if bottom < 0 else 0.0

    def frac(self, v: float) -> float:
        if self.log:
            if v <= 0:
                return 0.0
            f = (math.log10(v) - self.lo) / (self.hi - self.lo)
        else:
            f = (v - self.lo) / (self.hi - self.lo)
        return min(max(f, 0.0), 1.0)

    def ticks(self) -> list[tuple[float, str]]:
        if self.log:
            span = int(self.hi - self.lo)
            step = max(1, math.ceil(span / 8))
            return [(10.0**e, f"1e{e}" if e else "1") for e in range(int(self.lo), int(self.hi) + 1, step)]
        return [(self.lo + (self.hi - self.lo) * i / 5, fmt_float(self.lo + (self.hi - self.lo) * i / 5))
                for i in range(6)]


def _nice(x: float) -> float:
    exp = math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= x:
            return m * 10**exp
    return 10 ** (exp + 1)


def _label(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend_width(items: Sequence[tuple[str, str, str | None]]) -> float:
    return sum(30 + 6.2 * len(name) for name, _, _ in items)


def _legend(items: Sequence[tuple[str, str, str | None]], x: float, y: float) -> list[str]:
    """items: (name, color, dash; None for a filled swatch, "band" for a pale one)."""
    out = []
    for name, color, dash in items:
        if dash is None or dash == "band":
            opacity = f' fill-opacity="{BAND_OPACITY}"' if dash == "band" else ""
            out.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" fill="{_a(color)}"{opacity}/>')
        else:
            out.append(f'<line x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x + 14)}" y2="{_n(y - 4)}" '
                       f'stroke="{_a(color)}" stroke-width="2" stroke-dasharray="{_a(dash)}"/>')
        out.append(f'<text x="{_n(x + 18)}" y="{_n(y)}">{escape(name)}</text>')
        x += 30 + 6.2 * len(name)
    return out


def _value_text(v: float | None) -> str:
    return "—" if v is None else fmt_float(v)


def bar_chart(
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    log: bool,
    y_label: str,
    flagged: frozenset[int] = frozenset(),
    bands: Sequence[Mark] = (),
    highlight: int | None = None,
    highlight_label: str = "",
) -> str:
    """Vertical grouped bars, one group per category, one bar per series.

    `marks`: dashed reference lines per category; `bands`: shaded areas from the axis up to a value per
    category (a noise floor); `highlight`: one category drawn on a tinted background, labelled
    `highlight_label` above the plot (the root level of an explanation); `flagged`: categories whose labels
    are red (beyond tolerance, flagged heads).
    """
    n, k = len(categories), max(len(series), 1)
    bar_w = 20 if k == 1 else 14
    group_w = k * bar_w + 14
    label_len = min(max((len(c) for c in categories), default=4), 30)
    left, right, top, plot_h = 70, 20, 44, 220
    bottom = 30 + label_len * 4.6
    legend = ([(s.name, s.color, None) for s in series] + [(b.name, b.color, "band") for b in bands]
              + [(m.name, m.color, m.dash) for m in marks])
    width = max(left + n * group_w + right, left + _legend_width(legend) + right, 320)
    height = top + plot_h + bottom
    base = top + plot_h

    all_values = [v for s in series for v in s.values]
    for s in series:
        all_values += [v for v in (s.lows or []) if v is not None] + [v for v in (s.highs or []) if v is not None]
    all_values += [v for m in (*marks, *bands) for v in m.values]
    scale = Scale(all_values, log=log)

    def y(v: float) -> float:
        return base - plot_h * scale.frac(v)

    out = [f'<svg role="img" aria-label="{_a(title)}" width="{_n(width)}" height="{_n(height)}" '
           f'viewBox="0 0 {_n(width)} {_n(height)}" {FONT}>', f"<title>{escape(title)}</title>"]
    for value, text in scale.ticks():
        ty = y(value)
        out.append(f'<line x1="{left}" y1="{_n(ty)}" x2="{_n(width - right)}" y2="{_n(ty)}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{_n(ty + 4)}" text-anchor="end" fill="#555">{escape(text)}</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{_n(base)}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{_n(base)}" x2="{_n(width - right)}" y2="{_n(base)}" stroke="{AXIS}"/>')
    out.append(f'<text transform="translate(14 {_n(top + plot_h / 2)}) rotate(-90)" text-anchor="middle" '
               f'fill="#555">{escape(y_label + (" (log scale)" if log else ""))}</text>')

    if highlight is not None and 0 <= highlight < n:
        hx = left + highlight * group_w + 2
        out.append(f'<rect x="{_n(hx)}" y="{top}" width="{group_w - 4}" height="{plot_h}" fill="{HIGHLIGHT}">'
                   f"<title>{escape(categories[highlight])} · {escape(highlight_label)}</title></rect>")
        if highlight_label:
            out.append(f'<text x="{_n(hx + (group_w - 4) / 2)}" y="{top - 4}" text-anchor="middle" fill="{BAD}" '
                       f'font-weight="bold">{escape(highlight_label)}</text>')
    for i, category in enumerate(categories):
        gx = left + i * group_w + 6
        for b in bands:
            v = b.values[i] if i < len(b.values) else None
            if _finite(v, positive=log):
                by = y(v)
                out.append(f'<rect x="{_n(gx - 3)}" y="{_n(by)}" width="{_n(k * bar_w + 4)}" height="{_n(base - by)}" '
                           f'fill="{_a(b.color)}" fill-opacity="{BAND_OPACITY}"><title>{escape(category)} · '
                           f"{escape(b.name)}: {_value_text(v)}</title></rect>")
        for j, s in enumerate(series):
            v = s.values[i] if i < len(s.values) else None
            x = gx + j * bar_w
            tip = f"{category} · {s.name}: {_value_text(v)}"
            if v is None:
                continue
            if math.isnan(v) or math.isinf(v):
                out.append(f'<rect x="{_n(x)}" y="{top}" width="{bar_w - 2}" height="{plot_h}" fill="{_a(s.color)}" '
                           f'fill-opacity="0.25" stroke="{BAD}" stroke-dasharray="3 2"><title>{escape(tip)}</title></rect>')
                out.append(f'<text x="{_n(x + (bar_w - 2) / 2)}" y="{top - 3}" text-anchor="middle" '
                           f'fill="{BAD}">{escape(_value_text(v))}</text>')
                continue
            bar_top = y(v) if (v > 0 or not log) else base - 2
            if not log and v < 0:
                y0, h = y(0.0), y(v) - y(0.0)
            else:
                y0 = bar_top
                h = max((y(0.0) if not log else base) - bar_top, 1.0)
            out.append(f'<rect x="{_n(x)}" y="{_n(y0)}" width="{bar_w - 2}" height="{_n(h)}" fill="{_a(s.color)}">'
                       f"<title>{escape(tip)}</title></rect>")
            lo = s.lows[i] if s.lows is not None and i < len(s.lows) else None
            hi = s.highs[i] if s.highs is not None and i < len(s.highs) else None
            if _finite(lo, positive=log) and _finite(hi, positive=log):
                cx = x + (bar_w - 2) / 2
                out.append(f'<path d="M{_n(cx)} {_n(y(lo))}V{_n(y(hi))}M{_n(cx - 3)} {_n(y(lo))}h6M{_n(cx - 3)} '
                           f'{_n(y(hi))}h6" stroke="#333" fill="none"><title>{escape(category)} · {escape(s.name)} '
                           f"range {_value_text(lo)} … {_value_text(hi)}</title></path>")
        for m in marks:
            v = m.values[i] if i < len(m.values) else None
            if _finite(v, positive=log):
                my = y(v)
                out.append(f'<line x1="{_n(gx - 3)}" y1="{_n(my)}" x2="{_n(gx + k * bar_w + 1)}" y2="{_n(my)}" '
                           f'stroke="{_a(m.color)}" stroke-width="2" stroke-dasharray="{_a(m.dash)}">'
                           f"<title>{escape(category)} · {escape(m.name)}: {_value_text(v)}</title></line>")
        lx, ly = gx + k * bar_w / 2, base + 12
        colour = f' fill="{BAD}" font-weight="bold"' if i in flagged else ""
        out.append(f'<text transform="translate({_n(lx)} {_n(ly)}) rotate(-45)" text-anchor="end"{colour}>'
                   f"<title>{escape(category)}</title>{escape(_label(category, 30))}</text>")

    out += _legend(legend, left, 18)
    out.append("</svg>")
    return "\n".join(out)


def hbar_chart(
    *,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    color: str,
    name: str,
    marks: Sequence[Mark] = (),
    log: bool = True,
) -> str:
    """Horizontal bars, one row per label (long names such as parameter paths)."""
    n = len(labels)
    label_w, plot_w, right, top, row_h = 330, 500, 50, 52, 16
    width = label_w + plot_w + right
    height = top + n * row_h + 12
    scale = Scale(list(values) + [v for m in marks for v in m.values], log=log)

    def x(v: float) -> float:
        return label_w + plot_w * scale.frac(v)

    out = [f'<svg role="img" aria-label="{_a(title)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT}>', f"<title>{escape(title)}</title>"]
    for value, text in scale.ticks():
        tx = x(value)
        out.append(f'<line x1="{_n(tx)}" y1="{top - 6}" x2="{_n(tx)}" y2="{height - 12}" stroke="{GRID}"/>')
        out.append(f'<text x="{_n(tx)}" y="{top - 10}" text-anchor="middle" fill="#555">{escape(text)}</text>')
    out.append(f'<line x1="{label_w}" y1="{top - 6}" x2="{label_w}" y2="{height - 12}" stroke="{AXIS}"/>')
    for i, (label, v) in enumerate(zip(labels, values, strict=False)):
        ry = top + i * row_h
        shown = label if len(label) <= 52 else "…" + label[-51:]
        out.append(f'<text x="{label_w - 6}" y="{ry + 11}" text-anchor="end"><title>{escape(label)}</title>'
                   f"{escape(shown)}</text>")
        tip = f"{label} · {name}: {_value_text(v)}"
        if v is None:
            continue
        if math.isnan(v) or math.isinf(v):
            out.append(f'<rect x="{label_w}" y="{ry + 2}" width="{plot_w}" height="{row_h - 4}" fill="{_a(color)}" '
                       f'fill-opacity="0.25" stroke="{BAD}" stroke-dasharray="3 2"><title>{escape(tip)}</title></rect>')
            out.append(f'<text x="{label_w + plot_w + 4}" y="{ry + 11}" fill="{BAD}">{escape(_value_text(v))}</text>')
            continue
        w = max(x(v) - label_w, 1.0) if (v > 0 or not log) else 2.0
        out.append(f'<rect x="{label_w}" y="{ry + 2}" width="{_n(w)}" height="{row_h - 4}" fill="{_a(color)}">'
                   f"<title>{escape(tip)}</title></rect>")
        for m in marks:
            mv = m.values[i] if i < len(m.values) else None
            if _finite(mv, positive=log):
                mx = x(mv)
                out.append(f'<line x1="{_n(mx)}" y1="{ry}" x2="{_n(mx)}" y2="{ry + row_h}" stroke="{_a(m.color)}" '
                           f'stroke-width="2" stroke-dasharray="{_a(m.dash)}"><title>{escape(label)} · '
                           f"{escape(m.name)}: {_value_text(mv)}</title></line>")
    legend = [(name + (" (log scale)" if log else ""), color, None)] + [(m.name, m.color, m.dash) for m in marks]
    out += _legend(legend, label_w, 18)
    out.append("</svg>")
    return "\n".join(out)


def line_chart(*, title: str, xs: Sequence[str], series: Sequence[Series], y_label: str) -> str:
    """Lines with a point per x (e.g. one per epoch) on a linear axis fitted to the values' own range, so that
    close curves stay apart; each point carries a <title> with its exact value. Non-finite values are skipped."""
    n = max(len(xs), 1)
    left, right, top, plot_h, step = 80, 20, 44, 200, max(60, 480 / n)
    legend = [(s.name, s.color, None) for s in series]
    width = max(left + step * max(n - 1, 1) + right + 20, left + _legend_width(legend) + right, 320)
    base = top + plot_h
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad

    def px(i: int) -> float:
        return left + 10 + i * step

    def py(v: float) -> float:
        return base - plot_h * (v - lo) / (hi - lo)

    out = [f'<svg role="img" aria-label="{_a(title)}" width="{_n(width)}" height="{_n(base + 40)}" '
           f'viewBox="0 0 {_n(width)} {_n(base + 40)}" {FONT}>', f"<title>{escape(title)}</title>"]
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{left}" y1="{_n(py(v))}" x2="{_n(width - right)}" y2="{_n(py(v))}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{_n(py(v) + 4)}" text-anchor="end" fill="#555">{escape(fmt_float(v))}'
                   "</text>")
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{_n(base)}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{_n(base)}" x2="{_n(width - right)}" y2="{_n(base)}" stroke="{AXIS}"/>')
    out.append(f'<text transform="translate(14 {_n(top + plot_h / 2)}) rotate(-90)" text-anchor="middle" '
               f'fill="#555">{escape(y_label)}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{_n(px(i))}" y="{_n(base + 16)}" text-anchor="middle">{escape(x)}</text>')
    for s in series:
        points = [(px(i), py(v), v) for i, v in enumerate(s.values) if v is not None and math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{'M' if k == 0 else 'L'}{_n(x)} {_n(y)}" for k, (x, y, _) in enumerate(points))
            out.append(f'<path d="{path}" stroke="{_a(s.color)}" stroke-width="2" fill="none"/>')
        for i, (x, y, v) in enumerate(points):
            out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="3.5" fill="{_a(s.color)}"><title>'
                       f"{escape(s.name)} · {escape(xs[i] if i < len(xs) else '')}: {escape(fmt_float(v))}"
                       "</title></circle>")
    out += _legend(legend, left, 18)
    out.append("</svg>")
    return "\n".join(out)
