"""A job's curves as a PNG: training and validation loss over the steps, and the learning rate.

Drawn from the metrics the `JobTracker` holds, so the route's picture is as current as the
job's status; the job writes the same picture among its artifacts at each checkpoint and at its
end."""

from __future__ import annotations

import io


def loss_plot(metrics: list[dict[str, float]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display: a PNG in memory
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6), dpi=100)
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for key, label, style in (("loss", "training loss", "-"), ("eval_loss", "validation loss", "o--")):
        points = [(m["step"], m[key]) for m in metrics if key in m and "step" in m]
        if points:
            loss_axes.plot(*zip(*points), style, label=label)
    rates = [(m["step"], m["learning_rate"]) for m in metrics if "learning_rate" in m and "step" in m]
    if rates:
        lr_axes.plot(*zip(*rates), color="tab:green")
    loss_axes.set_title(title)
    loss_axes.set_ylabel("loss")
    if loss_axes.lines:
        loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("step")
    lr_axes.grid(alpha=0.3)
    if not metrics:
        loss_axes.text(0.5, 0.5, "no step logged yet", ha="center", va="center", transform=loss_axes.transAxes)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
