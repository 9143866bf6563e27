"""plots.py -- the tables and pictures of finished runs: the --seeds table, and --plot's learning_curve.png.

    python minipg.py --plot runs/<run> [runs/<seeds-run> ...]     # in --out, or beside the runs

Reads only a run's progress.csv and config.json, each checked before use. Imports runs.py (for UsageError and
check_out); matplotlib is imported when a picture is drawn, with a one-line message when it is missing.
"""
import csv
import json
import math
import os

import numpy as np

from runs import UsageError, check_out


def read_progress(run_dir):
    """(steps, return_mean, "algo on env") of a run, checked: UsageError if its files are unreadable or damaged."""
    try:
        with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("return_mean")]
        x, y = np.array([float(r["steps"]) for r in rows]), np.array([float(r["return_mean"]) for r in rows])
        with open(os.path.join(run_dir, "config.json")) as f:
            run = json.load(f)["run"]
        name = f"{run['algo']} on {run['env']}"
        if not (isinstance(run["algo"], str) and isinstance(run["env"], str)):
            raise TypeError("algo and env must be text")
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as e:
        raise UsageError(f"{run_dir} is not a readable run ({type(e).__name__}: {e})".splitlines()[0])
    if len(x) == 0 or not np.all(np.isfinite(y)) or np.any(np.diff(x) < 0):
        raise UsageError(f"{run_dir}/progress.csv has no finished episodes to plot, or damaged rows")
    return x, y, name


def plot_runs(dirs, out):
    """learning_curve.png: per run, its curve; per --seeds folder, the median and the min-max band of its seeds."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs an optional extra: pip install matplotlib")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    titles = set()
    for d in dirs:
        members = [d] if os.path.isfile(os.path.join(d, "progress.csv")) else sorted(os.path.join(d, s) for s in (
            os.listdir(d) if os.path.isdir(d) else []) if os.path.isfile(os.path.join(d, s, "progress.csv")))
        if not members:
            raise UsageError(f"{d} holds no progress.csv (neither a run nor a --seeds folder of runs)")
        curves = [read_progress(r) for r in members]
        grid = np.linspace(0, min(c[0][-1] for c in curves), 200)
        ys = np.array([np.interp(grid, x, y) for x, y, _ in curves])  # (seeds, 200)
        line, = ax.plot(grid, np.median(ys, 0), label=os.path.basename(os.path.normpath(d))
                        + (f" (median of {len(members)})" if len(members) > 1 else ""))
        if len(members) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2, color=line.get_color())
        titles |= {c[2] for c in curves}
    title = ", ".join(sorted(titles))
    if ax.collections:
        title += "\n(line: median of the seeds, band: min to max)"
    ax.set_title(title, wrap=True, fontsize=10)
    ax.set(xlabel="env steps", ylabel="mean return of the last 20 episodes")
    ax.grid(alpha=0.3)
    ax.legend()
    folder = out or (dirs[0] if len(dirs) == 1 else os.path.commonpath([os.path.abspath(d) for d in dirs]))
    check_out(folder)
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "learning_curve.png"), dpi=120)
    print(f"wrote {os.path.join(folder, 'learning_curve.png')}")
    return 0


def seeds_table(run, seeds, summaries):
    """Markdown: median, min and max over the seeds of the final evaluation, the last-20 training return and, where
    the env has a threshold, the steps to it."""
    def row(name, xs, whole=False):
        xs = [x for x in xs if x is not None] or [math.nan]
        cells = [np.median(xs), min(xs), max(xs)]
        text = [f"{x:,.0f}" if whole and math.isfinite(x) else f"{x:.1f}" for x in cells]
        return f"| {name} | " + " | ".join(text) + " |\n"
    threshold, reach = summaries[0]["threshold"], [s["steps_to_threshold"] for s in summaries]
    return (f"{run.algo} on {run.env}, seeds {', '.join(map(str, seeds))}\n\n| | median | min | max |\n"
            + "|---|---|---|---|\n"
            + row("final eval return", [s["eval_return_mean"] for s in summaries])
            + row("train return, last 20 episodes", [s["train_return_last20"] for s in summaries])
            + (row(f"steps to {threshold:g} ({sum(x is not None for x in reach)}/{len(reach)} reached)", reach, True)
               if threshold is not None else f"\n{run.env} has no return threshold, so no steps to threshold.\n"))
