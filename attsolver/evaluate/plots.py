"""The two figures of a comparison: the work-precision front and the error over time.

matplotlib is imported inside the functions: it costs about a second at import, and only a
caller that draws pays it.
"""

from __future__ import annotations

from pathlib import Path

from .._report import save_png
from .metrics import VPT_THRESHOLD
from .result import CompareResult, format_speedup

__all__ = ["plot_work_precision", "plot_error_vs_time", "save_figures"]

#: line style of each ladder's family; a family not listed gets one of _MORE_STYLES
_STYLES = {"same": "k-o", "rk4": "b-s", "dopri5": "g-d", "etdrk4": "m-^", "ifrk4": "c-v"}
_MORE_STYLES = ("y-p", "r-h", "k--x", "b--+")
_WHERE = {"err_q1": "up to 1/4 horizon", "err_q2": "up to 1/2 horizon", "err_full": "whole horizon"}


def _families(entries: list[dict]) -> dict[str, str]:
    """Family -> style for every classical family present, the known ones in their usual order."""
    present = [e["family"] for e in entries if e["family"] != "corrected"]
    styles = {fam: style for fam, style in _STYLES.items() if fam in present}
    extra = [fam for fam in dict.fromkeys(present) if fam not in _STYLES]
    styles.update({fam: _MORE_STYLES[i % len(_MORE_STYLES)] for i, fam in enumerate(extra)})
    return styles


def plot_work_precision(result: CompareResult):
    """Error (the ``match`` error) against wall time (ms) for every contender; a matplotlib figure."""
    import matplotlib.pyplot as plt  # lazy: heavy, and only drawing needs it
    from matplotlib.ticker import NullFormatter  # lazy, as above

    match = result.setting["match"]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for fam, style in _families(result.entries).items():
        es = [e for e in result.entries if e["family"] == fam]
        if fam == "same":
            name = f"{result.setting['method']} h/k"
        else:
            name = f"{fam} over rtol" if "rtol" in es[0] else f"{fam} h/k"
        ax.plot([e["time_s"] * 1e3 for e in es], [max(e[match], 1e-16) for e in es], style, ms=4, lw=1,
                label=name)
    for e in result.entries:
        if e["family"] == "corrected":
            ax.scatter([e["time_s"] * 1e3], [max(e[match], 1e-16)], marker="*", s=140, color="red", zorder=5,
                       label=e["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow decade would print overlapping minor labels
    ax.set_xlabel("wall time of the test batch (ms, steady state, min over rounds)")
    ax.set_ylabel(f"relative L2 error ({_WHERE[match]})")
    title = "work-precision"
    if result.verdict:
        v = result.verdict
        title += (f": {format_speedup(v['speedup_same'])} vs same method, "
                  f"{format_speedup(v['speedup_best'])} vs best classical")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_error_vs_time(result: CompareResult):
    """Mean normalised error ``e(t)`` of the coarse, corrected and best classical solves,
    over time (in Lyapunov times when the comparison used an exponent)."""
    import matplotlib.pyplot as plt  # lazy: heavy, and only drawing needs it

    curves = result.error_vs_time
    t = curves["t"]
    lam = result.setting["lyapunov_exponent"] if result.setting["vpt_units"] == "Lyapunov times" else None
    x = [(v - t[0]) * lam for v in t] if lam else [v - t[0] for v in t]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for label, ys in curves.items():
        if label == "t":
            continue
        ax.semilogy(x[1:], [max(y, 1e-16) for y in ys[1:]], lw=1.5 if "+" in label else 1, label=label)
    bars = result.error_bars
    if bars and bars.get("bound"):
        ax.semilogy(x[1:], [max(y, 1e-16) for y in bars["bound"][1:]], "r:", lw=1.2,
                    label=f"corrected: {bars['coverage']:.0%} conformal bound (held-out coverage "
                          f"{bars['held_out_coverage_mean']:.0%})")
    ax.axhline(VPT_THRESHOLD, color="gray", ls="--", lw=0.8, label=f"valid-prediction threshold {VPT_THRESHOLD}")
    ax.set_xlabel("time (Lyapunov times)" if lam else "time")
    ax.set_ylabel("normalised error e(t) (mean over the test set)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def save_figures(result: CompareResult, work_precision: Path, error_vs_time: Path, *, dpi: int = 110) -> None:
    """Write both figures as PNG files (atomically), with the non-interactive backend."""
    import matplotlib  # lazy: heavy, and only drawing needs it

    matplotlib.use("Agg")
    save_png(plot_work_precision(result), work_precision, dpi=dpi)
    save_png(plot_error_vs_time(result), error_vs_time, dpi=dpi)
