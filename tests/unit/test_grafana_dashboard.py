"""`deployments/grafana/llamaray_dashboard.json` is a Grafana dashboard on Ray's variables whose
platform series are the ones the code exports (the integration test checks the live export)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.grafana import dashboard_series

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deployments" / "grafana" / "llamaray_dashboard.json").read_text())


def test_a_dashboard_on_rays_variables():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "SessionName" in variables  # as Ray's own dashboards filter by session
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert DASHBOARD["uid"] == "llamaray" and len(ids) == len(set(ids)) >= 10
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "$SessionName" in target["expr"], target["expr"]


def test_its_platform_series_are_the_ones_the_code_exports():
    source = "".join(path.read_text() for path in (ROOT / "platform" / "llamaray").rglob("*.py"))
    for name in dashboard_series(DASHBOARD):
        if name.startswith("ray_vllm_"):
            continue  # vLLM's own, checked live in tests/integration/test_metrics.py
        base = name.removeprefix("ray_").removesuffix("_total").removesuffix("_bucket")
        family = next((f for f in ("llamaray_training_", "llamaray_data_job_") if base.startswith(f)), None)
        if family:  # named as f"{family}{key}": the key is in the code
            assert f'"{base.removeprefix(family)}"' in source, name
        else:
            assert f'"{base}"' in source, name
