"""Figures without pyplot: neuroscope never changes the user's matplotlib backend.

The report, ``compare``, ``Neuron.histogram()`` and ``HeatMap.figure()`` draw on
:class:`matplotlib.figure.Figure` objects that belong to no backend and no pyplot
state: nothing is switched (a notebook's inline backend, a user's own Qt window and
their later plots are left as they are), nothing is shown by surprise (pyplot would
display every figure a notebook cell created, the report's too), and nothing
accumulates (no ``plt.close`` needed). Files are written through Agg, which
``savefig`` picks for PNG and SVG itself. A figure returned to a notebook displays by
its ``_repr_png_``.
"""

from __future__ import annotations

import functools
import io
from typing import Any


@functools.lru_cache(maxsize=1)
def _figure_class() -> type:
    from matplotlib.figure import Figure

    class ShownFigure(Figure):
        """A Figure that a notebook displays (as PNG) when a cell returns it."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", bbox_inches="tight")
            return buffer.getvalue()

    return ShownFigure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """(figure, axes) as ``pyplot.subplots`` gives them, without pyplot."""
    fig = _figure_class()(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)
