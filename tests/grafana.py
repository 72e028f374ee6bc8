"""The series a Grafana dashboard queries, for the tests that check them against the platform."""

from __future__ import annotations

import re
from typing import Any

SERIES = re.compile(r"\b(ray_[a-z_]+)(?=\{|\[|\))")


def dashboard_series(dashboard: dict[str, Any]) -> set[str]:
    """Every metric name in the panels' PromQL (with Prometheus' `_total`/`_bucket` suffixes)."""
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in SERIES.findall(expr)}
