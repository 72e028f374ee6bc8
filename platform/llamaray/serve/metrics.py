"""The gateway's Prometheus metrics, exported through Ray's metrics agent.

Created inside the replica (Ray metrics need a worker), and read in the dashboard's metrics
view or from the node's `/metrics` endpoint under the `ray_llamaray_` prefix.
"""

from __future__ import annotations

LATENCY_BOUNDARIES = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]


class GatewayMetrics:
    def __init__(self) -> None:
        from ray.util import metrics

        self._requests = metrics.Counter(
            "llamaray_requests",
            description="HTTP requests answered, by route and status.",
            tag_keys=("route", "method", "status"),
        )
        self._latency = metrics.Histogram(
            "llamaray_request_latency_seconds",
            description="Time to the response's first byte, by route.",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("route",),
        )
        self._tokens = metrics.Counter(
            "llamaray_generated_tokens", description="Tokens generated, by model.", tag_keys=("model",)
        )

        self._agent_steps = metrics.Histogram(
            "llamaray_agent_step_seconds",
            description="Agent turn steps and how long each took, by step type.",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("step_type",),
        )
        self._violations = metrics.Counter(
            "llamaray_agent_violations",
            description="Shield violations in agent turns, by violation type.",
            tag_keys=("violation_type",),
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.inc(1, tags={"route": route, "method": method, "status": str(status)})
        self._latency.observe(seconds, tags={"route": route})

    def generated(self, model: str, tokens: int) -> None:
        if tokens:
            self._tokens.inc(tokens, tags={"model": model})

    def agent_step(self, step_type: str, seconds: float, violation: str | None) -> None:
        self._agent_steps.observe(seconds, tags={"step_type": step_type})
        if violation:
            self._violations.inc(1, tags={"violation_type": violation})
