"""bench/seeds.py -- CartPole-v1 and Pendulum-v1, five seeds of each algorithm with its defaults: does it solve the
task, on how many seeds, and does it stay solved.

    python bench/seeds.py                  # every cell not done yet, one at a time, then the report
    python bench/seeds.py --only CartPole  # the cells whose name contains CartPole
    python bench/seeds.py --force          # rerun the cells that are done too
    python bench/seeds.py --dry-run        # print the commands
    python bench/seeds.py --report         # bench/seeds.md from bench/seeds/results.json
    python bench/seeds.py --root /tmp/seeds --steps 2048 --seeds 0-1 --only CartPole-v1-ppo   # a smoke test

A cell is one `python minipg.py ARGS --seeds 0-4 --out bench/seeds/<cell> --jobs 2 --overwrite`, minipg's own
--seeds mode (a run per seed in <cell>/s<seed>/, --jobs of them at a time, then <cell>/seeds.json with every
seed's summary.json): the seven algorithms with their defaults on CartPole-v1 (`--algo A`), and PPO and TRPO with
`--preset pendulum`. A cell whose seeds.json exists is done and skipped (--force reruns it); an unfinished one
starts afresh. After each cell, bench/seeds/results.json gets its record: the command, commit, machine, versions
and times, and per seed the final deterministic evaluation, the steps to the env's threshold, and whether the
training return collapsed after solving (from progress.csv).
"""
import csv
import json
import os
import shlex
import statistics
import sys

import common

OUT = os.path.join(common.BENCH, "seeds")
ALGOS = ("reinforce", "vpg", "a2c", "npg", "trpo", "ppo", "ppo-penalty")
CELLS = {**{f"CartPole-v1-{a}": ["--algo", a] for a in ALGOS},
         **{f"Pendulum-v1-{a}": ["--algo", a, "--preset", "pendulum"] for a in ("ppo", "trpo")}}
SOLVED = 475  # CartPole-v1's reward threshold; the bars below are the issue's
COLLAPSE = 400  # after first reaching SOLVED, "dipped": return_mean falls below this; "collapsed": ends below it
SB3 = {"CartPole-v1-ppo": "ppo CartPole-v1 zoo 100k", "CartPole-v1-trpo": "trpo CartPole-v1 zoo 100k",
       "CartPole-v1-a2c": "a2c CartPole-v1 zoo 500k",  # SB3's A2C did not reach 475 in 100k
       "Pendulum-v1-ppo": "ppo Pendulum-v1 zoo-nosde 102k", "Pendulum-v1-trpo": "trpo Pendulum-v1 zoo-nosde 100k"}


def solved(env, evals):
    """The issue's bar. CartPole-v1: final eval >= 475 on at least 4 of 5 seeds and a median >= 490.
    Pendulum-v1: a median final eval >= -200."""
    if env == "CartPole-v1":
        return sum(e >= SOLVED for e in evals) >= 0.8 * len(evals) and statistics.median(evals) >= 490
    return statistics.median(evals) >= -200


def after_solving(progress_csv):
    """return_mean (the mean of the last 20 training episodes) from the row where it first reaches SOLVED on, or
    None when it never does."""
    with open(progress_csv) as f:
        ret = [float(r["return_mean"]) for r in csv.DictReader(f) if r["return_mean"] not in ("", "nan")]
    first = next((i for i, r in enumerate(ret) if r >= SOLVED), None)
    return None if first is None else ret[first:]


def dipped(progress_csv):
    """After first reaching SOLVED, does return_mean ever fall below COLLAPSE (and perhaps recover)?"""
    ret = after_solving(progress_csv)
    return None if ret is None else min(ret) < COLLAPSE


def collapsed(progress_csv):
    """After first reaching SOLVED, does the run end with return_mean below COLLAPSE: a fall it did not recover
    from by the end of training?"""
    ret = after_solving(progress_csv)
    return None if ret is None else ret[-1] < COLLAPSE


def record(root, cell, command, started):
    """results.json's record of a finished cell, from its seeds.json and each seed's progress.csv."""
    with open(os.path.join(root, cell, "seeds.json")) as f:
        s = json.load(f)
    per_seed = [{"seed": r["seed"], "eval": r["eval_return_mean"], "steps_to_threshold": r["steps_to_threshold"],
                 "threshold": r["threshold"], "total_steps": r["total_steps"], "wall_s": r["wall_s"],
                 "train_last20": r["train_return_last20"],
                 "dipped": dipped(os.path.join(root, cell, f"s{r['seed']}", "progress.csv"))
                 if s["env"] == "CartPole-v1" else None,
                 "collapsed": collapsed(os.path.join(root, cell, f"s{r['seed']}", "progress.csv"))
                 if s["env"] == "CartPole-v1" else None} for r in s["runs"]]
    known = command is not None  # a cell found done, with no record: who made it is not known
    return {"cell": cell, "algo": s["algo"], "env": s["env"], "command": command,
            "commit": common.commit() if known else None, "machine": common.machine() if known else None,
            "versions": common.versions() if known else None, "started": started,
            "ended": common.utc("%Y-%m-%dT%H:%M:%SZ") if known else None, "seeds": per_seed}


def run_cells(a, results, path):
    """Each chosen cell not done yet (or every one, with --force), one at a time; its record into results."""
    failed = 0
    for cell, args in CELLS.items():
        if a.only not in cell:
            continue
        folder = os.path.join(a.root, cell)
        args = [*args, "--seeds", a.seeds, "--jobs", str(a.jobs), *(["--steps", str(a.steps)] if a.steps else [])]
        cmd = shlex.join(["python", "minipg.py", *args, "--out", common.rel(folder), "--overwrite"])
        if os.path.exists(os.path.join(folder, "seeds.json")) and not a.force:
            print(f"{cell}: done ({common.rel(folder)}/seeds.json)")
            if cell not in results and not a.dry_run:
                results[cell] = record(a.root, cell, None, None)
            continue
        print(cmd, flush=True)
        if a.dry_run:
            continue
        started, log = common.utc("%Y-%m-%dT%H:%M:%SZ"), os.path.join(a.root, "logs", cell + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        try:
            common.run_minipg(args, folder, log=log, reads="seeds.json")
        except RuntimeError as e:
            print(f"{cell}: {e} (see {log})", flush=True)
            failed += 1
            continue
        results[cell] = record(a.root, cell, cmd, started)
        common.write_json(path, dict(sorted(results.items())))
        evals = [r["eval"] for r in results[cell]["seeds"]]
        print(f"{cell}: eval {', '.join(f'{e:.0f}' for e in evals)}", flush=True)
    if results and not a.dry_run:
        common.write_json(path, dict(sorted(results.items())))
    return failed


# ---------------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------------

def whole(x):
    """An integer for the table, with thousands separated: 34,868, never 34868.0; '–' for None."""
    return "–" if x is None else f"{round(x):,}"


def sb3_reference():
    """SB3 with rl-zoo's hyperparameters on the same kind of machine, by task name; {} when the file is absent."""
    path = os.path.join(common.ROOT, "..", "shared", "reference", "sb3.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["task"]: r for r in json.load(f)["runs"]}


def cell_row(r, sb3):
    """One row of the table: a cell's seeds, their medians, the collapse count, the bar, SB3's figures."""
    evals, reach = [s["eval"] for s in r["seeds"]], [s["steps_to_threshold"] for s in r["seeds"]]
    cartpole = r["env"] == "CartPole-v1"
    reached = f"{sum(e >= SOLVED for e in evals)}/{len(evals)}" if cartpole else "–"
    steps, steps_median = "no threshold", "–"
    if r["seeds"][0]["threshold"] is not None:
        med = statistics.median([float("inf") if x is None else x for x in reach])  # never reached: +inf
        steps = ", ".join(whole(x) for x in reach)
        hit = sum(x is not None for x in reach)
        steps_median = f"{'–' if med == float('inf') else whole(med)} ({hit}/{len(reach)})"
    fell = [s["collapsed"] for s in r["seeds"] if s["collapsed"] is not None]
    dips = [s.get("dipped") for s in r["seeds"] if s.get("dipped") is not None]
    ref, ref_text = sb3.get(SB3.get(r["cell"], "")), ""
    if ref:
        ref_text = f"{ref['task']}: eval {whole(ref['eval_mean_median'])}"
        if ref.get("steps_to_threshold_median"):
            ref_text += f", steps to {ref['threshold']:g} {whole(ref['steps_to_threshold_median'])}"
    cells = [r["cell"], ", ".join(whole(e) for e in evals), whole(statistics.median(evals)), reached, steps,
             steps_median, f"{sum(dips)} of {len(dips)}" if cartpole else "–",
             f"{sum(fell)} of {len(fell)}" if cartpole else "–",
             "yes" if solved(r["env"], evals) and not any(fell) else "no", ref_text]
    return "| " + " | ".join(cells) + " |"


def report(results, root):
    """ROOT.md (bench/seeds.md): the table, and how, when and where each cell was made."""
    sb3, rs = sb3_reference(), [results[c] for c in CELLS if c in results]
    lines = ["Per cell: `python minipg.py ARGS --seeds 0-4 --out bench/seeds/<cell> --jobs 2` (bench/seeds.py; ARGS "
             "`--algo A` on CartPole-v1, `--algo A --preset pendulum` on Pendulum-v1). eval: the final deterministic "
             "evaluation of each seed (minipg's default episodes), in seed order, and its median. Steps: the first "
             "env step at which the mean of the last 20 training episodes reaches the env's threshold (475 on "
             "CartPole-v1; Pendulum-v1 has none), the median counting a seed that never reaches it as never. "
             f"Of the seeds that reached {SOLVED}: dipped, those whose return_mean (progress.csv) later falls below "
             f"{COLLAPSE} at some point (a dip it may recover from); collapsed, those that end training below {COLLAPSE}. "
             f"Solved, the issue's bar: CartPole-v1, eval >= {SOLVED} on at least 4 of 5 seeds, a median >= 490 and "
             "no seed collapsed; Pendulum-v1, a median eval >= -200. SB3: rl-zoo's "
             "hyperparameters, shared/reference/sb3.json (medians; not run here).", "",
             f"| cell | eval per seed | eval median | eval >= {SOLVED} | steps to threshold per seed | steps median "
             "(reached) | dipped | collapsed | solved | SB3 (zoo) |", "|---|---|---:|---:|---|---:|---:|---:|---|---|"]
    lines += [cell_row(r, sb3) for r in rs]
    lines += ["", "How each cell was made (commands, commits and versions also in results.json):", ""]
    for r in rs:
        made = (f"`{r['command']}` at {r['commit']}, {r['started']} to {r['ended']}, on {r['machine']}"
                if r["command"] else "found done, with no record of who made it")
        lines.append(f"- {r['cell']}: {made}; training loops {sum(s['wall_s'] for s in r['seeds']):.0f} s")
    if any("--steps" in (r["command"] or "") for r in rs):
        lines += ["", "**A smoke run (--steps): these are not benchmark figures.**"]
    common.write_results(root.rstrip("/") + ".md", "CartPole-v1 and Pendulum-v1, five seeds per algorithm",
                         "\n".join(lines))


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--only", default="", help="the cells whose name contains this")
    p.add_argument("--seeds", default="0-4", help="minipg's --seeds (default 0-4)")
    p.add_argument("--jobs", type=int, default=2, help="seeds at once within a cell, minipg's --jobs (default 2)")
    p.add_argument("--force", action="store_true", help="rerun cells that are done")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report", action="store_true", help="only rebuild the report from results.json")
    p.add_argument("--root", default=OUT, help="the cells' folder (default bench/seeds); the report is ROOT.md")
    p.add_argument("--steps", type=int, help="every cell's budget: a smoke test, never into bench/seeds")
    a = p.parse_args(argv)
    a.root = os.path.abspath(a.root)
    if a.steps and a.root == OUT:
        p.error("a smoke run (--steps) must not write into bench/seeds: give --root")
    path = os.path.join(a.root, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    failed = 0 if a.report else run_cells(a, results, path)
    if a.dry_run:
        return 0
    if not results:
        print(f"{path}: no cell recorded yet", file=sys.stderr)
        return 1
    report(results, a.root)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
