"""Draws the figures of a `tokred bench` report from its results.csv.

    python3 plot_report.py REPORT_DIR

fidelity.png: attention error and reconstruction error against the fraction of tokens kept, one
line per method (the mean at each budget over the inputs where every method of that budget ran,
as the report's summary; baselines dashed), images and videos apart. latency.png: the median
time of one apply against the fraction kept, with the mean memcpy of the inputs, images and
videos apart.
"""
import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINES = {"random", "uniform", "downsample"}
GROUPS = (("images", lambda r: int(r["frames"]) == 1), ("videos", lambda r: int(r["frames"]) > 1))
MARKERS = "os^vD<>pPX*h"


def read_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if not r["note"]]


def common_items(rows):
    """{budget: the items on which every method that ran at that budget ran}, as the report's
    summary averages them: every method's mean at a budget is over the same inputs."""
    ran = defaultdict(lambda: defaultdict(set))
    for r in rows:
        ran[float(r["budget"])][r["method"]].add(r["item"])
    return {budget: set.intersection(*by_method.values()) for budget, by_method in ran.items()}


def mean_by_method(rows, column):
    """{method: [(mean kept fraction, mean value)] by budget, budgets descending}, over the items
    common to the budget's methods (over each method's own items where none is common)."""
    common = common_items(rows)
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        budget = float(r["budget"])
        if common[budget] and r["item"] not in common[budget]:
            continue
        acc[r["method"]][budget].append((float(r["kept_fraction"]), float(r[column])))
    out = {}
    for method, by_budget in acc.items():
        points = []
        for budget in sorted(by_budget, reverse=True):
            pts = by_budget[budget]
            points.append((sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)))
        out[method] = points
    return out


def draw_lines(ax, series, methods):
    palettes = (plt.get_cmap("tab20"), plt.get_cmap("tab20b"))  # 40 distinct colours
    for method in series:
        i = methods.index(method)
        xs, ys = zip(*series[method])
        style = "--" if method in BASELINES else "-"
        colour = palettes[(i // 20) % 2](i % 20)
        ax.plot(xs, ys, style, marker=MARKERS[i % len(MARKERS)], markersize=4, color=colour, label=method)


def main(report_dir):
    rows = read_rows(os.path.join(report_dir, "results.csv"))
    if not rows:
        print("no results to plot", file=sys.stderr)
        return 1

    methods = sorted({r["method"] for r in rows}, key=lambda m: (m not in BASELINES, m))
    groups = [(title, [r for r in rows if keep(r)]) for title, keep in GROUPS]
    groups = [(title, g) for title, g in groups if g]

    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4.5 * len(groups)), squeeze=False)
    for (title, group), row_axes in zip(groups, axes):
        for ax, column, what in (
            (row_axes[0], "attention_rel_err", "attention error  ||A - Â|| / ||A||"),
            (row_axes[1], "recon_rel_l2", "reconstruction error  ||X - X̂|| / ||X||"),
        ):
            draw_lines(ax, mean_by_method(group, column), methods)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("fraction of tokens kept")
            ax.set_title(f"{title}: {what}")
            ax.grid(True, which="both", alpha=0.3)
        row_axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(report_dir, "fidelity.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for (title, group), ax in zip(groups, axes[0]):
        draw_lines(ax, mean_by_method(group, "median_us"), methods)
        memcpy = [float(r["memcpy_us"]) for r in group]
        ax.axhline(sum(memcpy) / len(memcpy), color="black", linewidth=0.8, linestyle=":",
                   label="memcpy of the input")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fraction of tokens kept")
        ax.set_ylabel("median µs per apply (one thread)")
        ax.set_title(f"{title}: latency, mean over the inputs")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(report_dir, "latency.png"), dpi=110)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
