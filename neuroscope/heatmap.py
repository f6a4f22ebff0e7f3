"""Heat maps of neurons over the words of a sentence (NeuroX's ``visualize_activations``,
for several neurons at once): HTML for Jupyter, coloured text for a terminal, SVG or PNG.

Colours diverge around zero: red for positive activations, blue for negative, the
intensity ``|value| / scale`` where ``scale`` is the largest absolute value shown (stated
with every rendering), so one map compares its cells, not two maps with each other.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import attrs
import numpy as np

from neuroscope.errors import ValidationError
from neuroscope.rundir import atomic_path


def _rgb(value: float, scale: float) -> tuple[int, int, int]:
    """White at 0, saturated red at +scale, saturated blue at -scale."""
    t = 0.0 if scale == 0 else min(1.0, abs(value) / scale)
    fade = int(round(255 * (1 - t)))
    return (255, fade, fade) if value >= 0 else (fade, fade, 255)


@attrs.frozen(repr=False)
class HeatMap:
    """Activations ``values`` (neurons, words) of named neurons over ``words``. Shown as
    HTML in Jupyter, coloured text in a terminal, a table of numbers as ``str()`` (a pipe,
    a log file); its ``repr`` is one line."""

    words: tuple[str, ...]
    neurons: tuple[str, ...]
    values: np.ndarray = attrs.field(eq=False)
    title: str = ""

    def __attrs_post_init__(self) -> None:
        if self.values.shape != (len(self.neurons), len(self.words)):
            raise ValidationError(f"heat map values {self.values.shape} do not fit {len(self.neurons)} neurons x "
                                  f"{len(self.words)} words")

    @property
    def scale(self) -> float:
        """The largest absolute value shown: full colour."""
        return float(np.abs(self.values).max()) if self.values.size else 0.0

    def legend(self) -> str:
        return (f"red positive, blue negative; full colour at |activation| = {self.scale:.3g} "
                "(the largest shown)")

    def to_html(self) -> str:
        """A self-contained HTML table: one row per neuron, one cell per word (value on hover)."""
        rows = []
        header = "".join(f"<th style='padding:2px 4px;font-weight:normal'>{html.escape(w)}</th>" for w in self.words)
        rows.append(f"<tr><th></th>{header}</tr>")
        for name, row in zip(self.neurons, self.values):
            cells = "".join(
                f"<td title='{v:.4g}' style='background:rgb{_rgb(float(v), self.scale)};padding:2px 6px;"
                f"font-family:monospace;text-align:center'>{html.escape(w)}</td>" for w, v in zip(self.words, row))
            rows.append(f"<tr><th style='text-align:right;padding-right:6px;font-family:monospace'>"
                        f"{html.escape(name)}</th>{cells}</tr>")
        title = f"<div style='font-weight:bold'>{html.escape(self.title)}</div>" if self.title else ""
        return (f"<div class='neuroscope-heatmap'>{title}<table style='border-collapse:collapse'>{''.join(rows)}"
                f"</table><div style='font-size:smaller;color:#555'>{html.escape(self.legend())}</div></div>")

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_svg(self, cell_height: int = 22, char_width: int = 8) -> str:
        """An SVG drawing of the map (no fonts or scripts needed beyond a monospace font)."""
        label_width = char_width * (max((len(n) for n in self.neurons), default=0) + 2)
        widths = [char_width * (len(w) + 2) for w in self.words]
        x_at = np.concatenate([[label_width], label_width + np.cumsum(widths)])
        height = cell_height * (len(self.neurons) + 2)
        parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{int(x_at[-1])}' height='{height}' "
                 "font-family='monospace' font-size='12'>"]
        for r, (name, row) in enumerate(zip(self.neurons, self.values)):
            y = r * cell_height
            parts.append(f"<text x='{label_width - char_width}' y='{y + 15}' text-anchor='end'>"
                         f"{html.escape(name)}</text>")
            for k, (w, v) in enumerate(zip(self.words, row)):
                r_, g_, b_ = _rgb(float(v), self.scale)
                parts.append(f"<rect x='{x_at[k]}' y='{y}' width='{widths[k]}' height='{cell_height}' "
                             f"fill='rgb({r_},{g_},{b_})'><title>{v:.4g}</title></rect>")
                parts.append(f"<text x='{x_at[k] + widths[k] / 2}' y='{y + 15}' text-anchor='middle'>"
                             f"{html.escape(w)}</text>")
        parts.append(f"<text x='2' y='{height - 8}' font-size='10' fill='#555'>{html.escape(self.legend())}</text>")
        parts.append("</svg>")
        return "".join(parts)

    def to_text(self):  # type: ignore[no-untyped-def]
        """The map as rich Text: each word on its colour, one line per neuron."""
        from rich.text import Text

        width = max((len(n) for n in self.neurons), default=0)
        text = Text()
        for name, row in zip(self.neurons, self.values):
            text.append(name.rjust(width) + "  ")
            for w, v in zip(self.words, row):
                r, g, b = _rgb(float(v), self.scale)
                text.append(f" {w} ", style=f"black on rgb({r},{g},{b})")
            text.append("\n")
        text.append(self.legend(), style="dim")
        return text

    def __rich__(self):  # type: ignore[no-untyped-def]
        return self.to_text()

    def to_plain(self, digits: int = 2) -> str:
        """The map as plain text for a pipe or a file: a column per word, a row per neuron,
        each cell the activation (no colour is lost: the numbers are what it encodes)."""
        cells = [[f"{v:.{digits}f}" for v in row] for row in self.values]
        widths = [max([len(w)] + [len(r[k]) for r in cells]) for k, w in enumerate(self.words)]
        name_width = max((len(n) for n in self.neurons), default=0)
        lines = [" " * name_width + "  " + "  ".join(w.rjust(n) for w, n in zip(self.words, widths))]
        lines += [name.rjust(name_width) + "  " + "  ".join(c.rjust(n) for c, n in zip(row, widths))
                  for name, row in zip(self.neurons, cells)]
        return "\n".join(([self.title] if self.title else []) + lines)

    def __str__(self) -> str:
        return self.to_plain()

    def __repr__(self) -> str:
        shown = " ".join(self.words[:8]) + (" ..." if len(self.words) > 8 else "")
        return (f"HeatMap({len(self.neurons)} neurons x {len(self.words)} words: {shown!r}; "
                f"|activation| up to {self.scale:.3g})")

    def save(self, path: str | Path) -> Path:
        """Write the map as .html, .svg or .png (by the suffix)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".html", ".htm", ".svg", ".png"):
            raise ValidationError(f"{path}: a heat map is saved as .html, .svg or .png")
        with atomic_path(path) as tmp:  # never a half-written file; a full disk names it
            if suffix == ".png":
                self.figure().savefig(tmp, format="png", dpi=150, bbox_inches="tight")
            else:
                tmp.write_text(self.to_svg() if suffix == ".svg" else
                               "<!doctype html><meta charset='utf-8'>" + self.to_html(), encoding="utf-8")
        return path

    def figure(self):  # type: ignore[no-untyped-def]
        """A matplotlib figure of the map (the same colours, a colour bar with the scale)."""
        from neuroscope.figures import subplots

        fig, ax = subplots(figsize=(max(4, 0.7 * len(self.words)), 0.5 * len(self.neurons) + 1.5))
        scale = self.scale or 1.0
        image = ax.imshow(self.values, cmap="bwr", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_xticks(range(len(self.words)), self.words, rotation=45, ha="right")
        ax.set_yticks(range(len(self.neurons)), self.neurons)
        fig.colorbar(image, ax=ax, label="activation")
        if self.title:
            ax.set_title(self.title)
        fig.tight_layout()
        return fig


def heat_map(words: Sequence[str], neurons: Sequence[str], values: np.ndarray, title: str = "") -> HeatMap:
    return HeatMap(tuple(words), tuple(neurons), np.asarray(values, dtype=np.float32), title)
