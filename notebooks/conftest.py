"""nbval settings for the notebooks: compare text, not pandas' HTML.

nbval compares every output of every cell. pandas changes its ``text/html`` rendering between
versions, so HTML is left out of the comparison and the ``text/plain`` beside it is compared
instead (the notebooks print their tables with ``to_string()`` anyway). A widget's display names
its model by a random id, so that is left out too; the widget's ``text/plain`` (one stable line,
e.g. ``Explorer of 72 saved points``) is compared. Images are never compared by nbval; ``stderr``
still is, so a warning in a cell fails the run.
"""

from __future__ import annotations

import pytest

#: Output types nbval must not compare (on top of its own: metadata, images, execution counts).
SKIP_COMPARE = ("text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Add :data:`SKIP_COMPARE` to every notebook nbval collects."""
    if collector.path.suffix == ".ipynb":
        collector.skip_compare = (*collector.skip_compare, *SKIP_COMPARE)
