"""The interactive plots of ``report.html``, built with plotly from :func:`ecgbench_plugins.reporters.html.plot_inputs`.

Points carry no text labels (labels collide): each pipeline is a legend entry
with its own colour and marker, and hovering a point names it, with every other
pipeline at the same spot. The page loads ``plotly.min.js`` from beside it
(:data:`PLOTLY_JS`, written by the reporter), so it works offline.
"""

from __future__ import annotations

import math
from typing import Any

PLOTLY_JS = "plotly.min.js"
"""File name of the plotly bundle the page loads, written beside ``report.html``."""

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "hexagon", "triangle-down", "pentagon", "star-square", "hourglass")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
LAYOUT = dict(
    template="plotly_white",
    height=460,
    margin=dict(l=60, r=20, t=50, b=55),
    hovermode="closest",
    legend=dict(title=dict(text="pipeline (click to hide)"), font=dict(size=11)),
)


def plotly_js() -> str:
    """The plotly.js bundle that ships with the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def palette() -> list[str]:
    from plotly.colors import qualitative

    return list(qualitative.D3) + list(qualitative.Dark24)


def styles(names: list[str]) -> dict[str, tuple[str, str]]:
    """A distinct (colour, marker symbol) per name, in order; the same name gets the same style in every plot."""
    colours = palette()
    return {name: (colours[i % len(colours)], SYMBOLS[i % len(SYMBOLS)]) for i, name in enumerate(dict.fromkeys(names))}


def _series_name(point: dict[str, Any], several: bool) -> str:
    return point["pipeline"] + (f" · {point['dataset']}/{point['model']}" if several else "")


def _same_spot(points: list[dict[str, Any]]) -> list[str]:
    """Per point, the other pipelines drawn at the same spot (equal to 3 significant figures), as hover text."""

    def spot(p):
        x = float(f"{p['x']:.3g}") if p["x"] else 0.0
        return (p["dataset"], p["model"], x, round(p["f1"], 4))

    spots: dict[tuple, list[str]] = {}
    for p in points:
        spots.setdefault(spot(p), []).append(p["pipeline"])
    out = []
    for p in points:
        others = [name for name in spots[spot(p)] if name != p["pipeline"]]
        out.append(f"<br>same spot: {', '.join(others)}" if others else "")
    return out


def tradeoff_traces(points: list[dict[str, Any]], x_title: str, x_format: str, style: dict[str, tuple[str, str]], extra: dict | None = None) -> list:
    """Scatter traces of F1 against x: one per pipeline (error bars: std across seeds), and each dataset/model's Pareto front.

    ``extra`` maps (dataset, model, pipeline) to a hover line and whether to draw the marker open (e.g. does not fit).
    """
    import plotly.graph_objects as go

    several = len({(p["dataset"], p["model"]) for p in points}) > 1
    traces = []
    for combo in dict.fromkeys((p["dataset"], p["model"]) for p in points):
        front = sorted((p for p in points if (p["dataset"], p["model"]) == combo and p.get("pareto")), key=lambda p: p["x"])
        if front:
            traces.append(
                go.Scatter(
                    x=[p["x"] for p in front], y=[p["f1"] for p in front], mode="lines", line=dict(color="#999", width=6, shape="hv"),
                    opacity=0.35, name="Pareto front" + (f" · {combo[0]}/{combo[1]}" if several else ""), hoverinfo="skip",
                    legendrank=2000,
                )
            )
    notes = _same_spot(points)
    for p, note in zip(points, notes):
        colour, symbol = style[p["pipeline"]]
        line, open_marker = (extra or {}).get((p["dataset"], p["model"], p["pipeline"]), ("", False))
        hover = (
            f"<b>{p['pipeline']}</b>" + (f" ({p['dataset']}/{p['model']})" if several else "")
            + f"<br>{x_title}: %{{x:{x_format}}}<br>test F1: %{{y:.3f}}"
            + (f" ± {p['f1_std']:.3f} ({p['seeds']} seeds)" if p["seeds"] > 1 else "")
            + ("<br>on the Pareto front" if p.get("pareto") else "")
            + line + note + "<extra></extra>"
        )
        traces.append(
            go.Scatter(
                x=[p["x"]], y=[p["f1"]], mode="markers", name=_series_name(p, several), legendgroup=p["pipeline"],
                marker=dict(color=colour, symbol=symbol + ("-open" if open_marker else ""), size=12, line=dict(width=1.5, color=colour)),
                error_y=dict(type="data", array=[p["f1_std"]], visible=p["seeds"] > 1, color=colour, thickness=1),
                hovertemplate=hover,
            )
        )
    return traces


def _axis(points: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """A log x axis when the values span more than 1.5 decades (none is zero: an unsimulated figure has no place on it), else linear."""
    xs = [p["x"] for p in points]
    log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 30
    return dict(type="log" if log else "linear", title=dict(text=title + (" (log scale)" if log else "")))


def _height(legend_entries: int) -> int:
    """Pixels tall enough for the legend beside the plot (about 30 px an entry) and never under 460."""
    return max(460, 180 + 30 * legend_entries)


def size_figure(points: list[dict[str, Any]], style: dict[str, tuple[str, str]]):
    """Test F1 against storage bytes (the smallest lossless file), Pareto front shaded; None without points."""
    import plotly.graph_objects as go

    if not points:
        return None
    fig = go.Figure(tradeoff_traces(points, "storage bytes", ",.0f", style))
    fig.update_layout(**{**LAYOUT, "height": _height(len(fig.data))}, title=dict(text="Test F1 vs storage size (grey: Pareto front)"), xaxis=_axis(points, "storage bytes (smallest lossless file)"))
    fig.update_yaxes(title_text="test challenge F1")
    return fig


def latency_figure(per_device: dict[str, list[dict[str, Any]]], style: dict[str, tuple[str, str]], fits: dict[str, dict] | None = None):
    """Test F1 against simulated latency on one device at a time, chosen in a dropdown; None without points.

    ``fits`` maps device to (dataset, model, pipeline) to the fit text (``yes``, ``no``, ``1/2 seeds``);
    a model that does not fit the device is drawn with an open marker.
    """
    import plotly.graph_objects as go

    devices = [d for d, points in per_device.items() if points]
    if not devices:
        return None
    fig = go.Figure()
    owner: list[str] = []
    for device in devices:
        extra = {key: (f"<br>fits {device}: {text}", text != "yes") for key, text in ((fits or {}).get(device) or {}).items()}
        for trace in tradeoff_traces(per_device[device], f"{device} latency (ms)", ".3g", style, extra):
            trace.visible = device == devices[0]
            fig.add_trace(trace)
            owner.append(device)

    def relayout(device: str) -> dict[str, Any]:
        axis = _axis(per_device[device], f"simulated latency of one inference on {device} (ms)")
        return {"xaxis.type": axis["type"], "xaxis.autorange": True, "yaxis.autorange": True, "xaxis.title.text": axis["title"]["text"], "title.text": f"Test F1 vs simulated latency: {device}"}

    buttons = [dict(label=f"device: {d}", method="update", args=[{"visible": [o == d for o in owner]}, relayout(d)]) for d in devices]
    fig.update_layout(
        **{**LAYOUT, "height": _height(max(owner.count(d) for d in devices))},
        title=dict(text=relayout(devices[0])["title.text"]),
        xaxis=_axis(per_device[devices[0]], f"simulated latency of one inference on {devices[0]} (ms)"),
        updatemenus=[dict(buttons=buttons, direction="down", x=1, xanchor="right", y=1.02, yanchor="bottom", showactive=True, bgcolor="#f3f3f3")],
    )
    fig.update_layout(margin=dict(t=80))
    fig.update_yaxes(title_text="test challenge F1")
    return fig


def lottery_figure(trajectories: list[dict[str, Any]]):
    """Validation F1 against sparsity for each lottery-ticket search; None without rounds.

    Each search has its own colour, marker and dash; accepted rounds are joined,
    rejected ones are crosses, its F1 budget a thin dotted line. Searches with the
    very same rounds are shifted apart along x by 0.4 % sparsity each (hover shows the true values).
    """
    import plotly.graph_objects as go

    trajectories = [t for t in trajectories if t["rounds"]]
    if not trajectories:
        return None
    colours = palette()
    seen: dict[tuple, int] = {}
    fig = go.Figure()
    for k, t in enumerate(trajectories):
        colour, symbol, dash = colours[k % len(colours)], SYMBOLS[k % len(SYMBOLS)], DASHES[k % len(DASHES)]
        rounds = t["rounds"]
        shape = tuple((r["sparsity"], r["val_challenge_f1"], r["accepted"]) for r in rounds)
        shift = 0.004 * seen.get(shape, 0)
        seen[shape] = seen.get(shape, 0) + 1
        note = f" (drawn shifted by {shift:+.3f} sparsity: same rounds as another search)" if shift else ""
        hover = (
            f"<b>{t['label']}</b>{note}<br>round %{{customdata[0]}}<br>sparsity: %{{customdata[1]:.3f}}<br>"
            "val F1: %{y:.3f}<br>%{customdata[2]}<extra></extra>"
        )
        legend_done = False
        for accepted in (True, False):
            chosen = [r for r in rounds if bool(r.get("accepted", True)) == accepted]
            if not chosen:
                continue
            showlegend, legend_done = not legend_done, True  # one entry per search, even one that accepted no round
            fig.add_trace(
                go.Scatter(
                    x=[r["sparsity"] + shift for r in chosen], y=[r["val_challenge_f1"] for r in chosen],
                    customdata=[[r.get("round", ""), r["sparsity"], "accepted" if accepted else "rejected"] for r in chosen],
                    mode="lines+markers" if accepted else "markers", name=t["label"], legendgroup=t["label"], showlegend=showlegend,
                    line=dict(color=colour, dash=dash, width=2),
                    marker=dict(color=colour, symbol=symbol if accepted else "x-thin-open", size=10 if accepted else 12, line=dict(width=2, color=colour)),
                    hovertemplate=hover,
                )
            )
        budget = t.get("min_val_challenge_f1")
        if budget is not None and math.isfinite(budget):
            xs = [r["sparsity"] + shift for r in rounds]
            fig.add_trace(
                go.Scatter(
                    x=[min(xs), max(xs)], y=[budget, budget], mode="lines", legendgroup=t["label"], showlegend=False,
                    line=dict(color=colour, dash="dot", width=1), name=f"{t['label']} F1 budget",
                    hovertemplate=f"{t['label']}: F1 budget %{{y:.3f}}<extra></extra>",
                )
            )
    fig.update_layout(
        **{**LAYOUT, "height": _height(len(trajectories)), "legend": dict(title=dict(text="search (click to hide)"), font=dict(size=11))},
        title=dict(text="Lottery-ticket rounds (joined: accepted, ×: rejected, dotted: F1 budget)"),
    )
    fig.update_xaxes(title_text="sparsity (share of prunable weights at zero)")
    fig.update_yaxes(title_text="validation challenge F1")
    return fig


def figure_html(fig, div_id: str) -> str:
    """The figure as a ``<div>`` and the script drawing it (plotly.js must be loaded before)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
