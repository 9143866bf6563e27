"""bench/matrix.py -- the MuJoCo matrix and LunarLander: one preset per algorithm, 1M steps, 3 seeds, every cell.

    python bench/matrix.py                       # run every cell not yet done, two runs at a time (one per core)
    python bench/matrix.py --only Hopper         # the runs whose name contains Hopper
    python bench/matrix.py --dry-run             # print the commands
    python bench/matrix.py --report              # bench/matrix.md (the table) and bench/matrix.png (the curves)

Each run is `python minipg.py --algo A --preset P --env E --seed S --out bench/matrix/runs/<E>-<A>-s<S>`, nothing
else: the preset is the whole configuration (mujoco for every MuJoCo task and both algorithms; lunarlander;
lunarlander-continuous). A run whose summary.json exists is done and skipped, so the matrix can be stopped and
started again; an unfinished one is started afresh. While the file bench/matrix/PAUSE exists, no new run starts
(for quiet benchmarks in between). results.json gets one record per finished run: the command, the commit, the
versions, the final deterministic evaluation (10 episodes), the training return of the last 20 episodes, the
wall, rollout and update seconds, and when it ran.
"""
import csv
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import common

BENCH, ROOT = common.BENCH, common.ROOT
OUT = os.path.join(BENCH, "matrix")
MUJOCO = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5")
LUNAR = (("LunarLander-v3", "lunarlander"), ("LunarLanderContinuous-v3", "lunarlander-continuous"))
SEEDS = (0, 1, 2)
LOCK = threading.Lock()  # results and results.json, shared by the two runner threads


def cells():
    """(name, args) for every run: LunarLander first (short), then the MuJoCo cells seed by seed, so that a matrix
    cut short still has one seed of every cell."""
    runs = [(f"{env}-ppo-s{s}", ["--algo", "ppo", "--preset", preset, "--env", env, "--seed", str(s)])
            for env, preset in LUNAR for s in SEEDS]
    runs += [(f"{env}-{algo}-s{s}", ["--algo", algo, "--preset", "mujoco", "--env", env, "--seed", str(s)])
             for s in SEEDS for env in MUJOCO for algo in ("ppo", "trpo")]
    runs += [(f"{env}-{algo}-s{s}", ["--algo", algo, "--preset", "mujoco", "--env", env, "--seed", str(s)])
             for s in SEEDS for env in MUJOCO for algo in ("vpg", "a2c")]  # the notes' simpler algorithms, no target
    return runs


def record(name, args, tree, started, s):
    """results.json's record of a finished run, from its summary s and the last row of its progress.csv."""
    with open(os.path.join(OUT, "runs", name, "progress.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    return {"name": name, "command": "python minipg.py " + " ".join(args) + f" --out bench/matrix/runs/{name}",
            "commit": common.commit(tree), "versions": common.versions(), "eval_mean": s["eval_return_mean"],
            "eval_std": s["eval_return_std"], "train_last20": s["train_return_last20"], "wall_s": s["wall_s"],
            "rollout_s": float(last["rollout_s"]), "update_s": float(last["update_s"]), "steps": int(last["steps"]),
            "started": started, "ended": common.utc("%Y-%m-%dT%H:%M:%SZ")}


def run_one(name, args, tree, results):
    while os.path.exists(os.path.join(OUT, "PAUSE")):
        time.sleep(5)
    started = common.utc("%Y-%m-%dT%H:%M:%SZ")
    try:
        s = common.run_minipg(args, os.path.join(OUT, "runs", name), tree, log=os.path.join(OUT, "logs", name + ".log"))
    except RuntimeError as e:
        print(f"{name}: {e} (see bench/matrix/logs/{name}.log)", flush=True)
        return
    r = record(name, args, tree, started, s)
    with LOCK:
        results[name] = r
        common.write_json(os.path.join(OUT, "results.json"), dict(sorted(results.items())))
    print(f"{name}: eval {r['eval_mean']:.0f} +- {r['eval_std']:.0f}, train {r['train_last20']:.0f}, "
          f"{r['wall_s']:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------------

SCHEDULE = ("the LunarLander-v3 runs two at a time, one per core (their preset steps its 16 envs in one process); "
            "every other run alone on the machine, `--jobs 1`, because its preset (`vec=procs`) steps half its envs in "
            "a second process and so keeps both cores busy. The work of the session went on beside them.")


BATCHES = ((("ppo", "trpo"), "a 2-core Intel Xeon (LunarLander included)"), (("vpg", "a2c"), "a 2-core AMD EPYC"))
COMMITS = ("they differ in the vector env's error handling, the signal handling and docs, not in what a run "
           "computes: the final code repeats the HalfCheetah PPO and TRPO seed-0 runs to every digit")


def reference():
    with open(os.path.join(ROOT, "..", "shared", "reference", "mujoco.json")) as f:
        return json.load(f)


def report(results):
    ref = reference()
    zoo, clean = ref["sb3_zoo"], ref["cleanrl"]["ppo"]
    by = {}
    for r in results.values():
        env, algo, _ = r["name"].rsplit("-", 2)
        by.setdefault((env, algo), []).append(r)
    lines = ["# The MuJoCo matrix and LunarLander (bench/matrix.py)", "",
             "Every run: `python minipg.py --algo A --preset P --env E --seed S` (the commands are in results.json), "
             "1M steps, final evaluation = 10 deterministic episodes; train = mean return of the last 20 training "
             "episodes. Medians over the seeds, min-max in brackets. zoo = rl-baselines3-zoo (tuned per task, "
             "deterministic evaluation, v3 tasks); CleanRL = ppo_continuous_action (one recipe, training return, v4 "
             "tasks), both as published in shared/reference/mujoco.json; gymnasium 1.4 has v5, whose dynamics are "
             "close to, not the same as, v3/v4's. A cell is won when minipg beats the better of the two figures, "
             "like with like: the evaluation against the zoo's, the training return against CleanRL's (the zoo's "
             "is the better figure in every cell that has both).", "",
             "| task | algo | seeds | eval median [min-max] | train median [min-max] | zoo (eval) | CleanRL (train) "
             "| won | wall s median |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    won, total = {}, {}  # per algorithm: cells won, cells with a reference
    order = ("ppo", "trpo", "vpg", "a2c")
    for (env, algo), rs in sorted(by.items(), key=lambda kv: (kv[0][0].startswith("Lunar"), kv[0][0],
                                                             order.index(kv[0][1]))):
        task = env.split("-")[0]
        ev, tr, wall = ([r[k] for r in rs] for k in ("eval_mean", "train_last20", "wall_s"))
        z = zoo.get(algo, {}).get(task)
        c = clean.get(task) if algo == "ppo" else None
        verdict = ""
        if z is not None:  # the better of the two figures, against its own kind of number
            ok = statistics.median(ev) > z[0] if c is None or z[0] >= c[0] else statistics.median(tr) > c[0]
            verdict = ("yes" if ok else "no") + ("" if len(rs) == 3 else f" ({len(rs)} seed{'s' * (len(rs) > 1)})")
            won[algo], total[algo] = won.get(algo, 0) + ok, total.get(algo, 0) + 1
        lines.append(f"| {env} | {algo} | {len(rs)} | {statistics.median(ev):.0f} [{min(ev):.0f}, {max(ev):.0f}] | "
                     f"{statistics.median(tr):.0f} [{min(tr):.0f}, {max(tr):.0f}] | "
                     f"{'' if z is None else f'{z[0]:.0f}'} | {'' if c is None else f'{c[0]:.0f}'} | {verdict} | "
                     f"{statistics.median(wall):.0f} |")
    target = [a for a in ("ppo", "trpo") if a in total]
    lines += ["", f"Cells won: {sum(won[a] for a in target)} of {sum(total[a] for a in target)} PPO/TRPO cells with "
              "results (the target)" + "".join(f"; {a.upper()} against the zoo's tuned {a.upper()}: {won[a]} of "
                                               f"{total[a]} (not a target)" for a in total if a not in target) + ".", ""]
    if results:
        busy = sum(r["wall_s"] for r in results.values()) / 3600
        batches = []
        for algos, machine in BATCHES:
            rs = [r for r in results.values() if r["name"].rsplit("-", 2)[1] in algos]
            if rs:
                batches.append(f"{' and '.join(a.upper() for a in algos)} ({len(rs)} runs): from "
                               f"{min(r['started'] for r in rs)} to {max(r['ended'] for r in rs)} on {machine}, the "
                               f"training loops {sum(r['wall_s'] for r in rs) / 3600:.2f} h")
        lines += [f"Runs: {len(results)}, the training loops alone {busy:.2f} h in all. " + "; ".join(batches)
                  + f". Schedule: {SCHEDULE} Commits: "
                  + "; ".join(f"{a}: " + ", ".join(sorted({r['commit'] for r in results.values()
                                                           if r['name'].rsplit('-', 2)[1] == a}))
                              for a in sorted({r['name'].rsplit('-', 2)[1] for r in results.values()}))
                  + f" ({COMMITS}). Versions: "
                  + json.dumps(next(iter(results.values()))["versions"]), ""]
    with open(os.path.join(BENCH, "matrix.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(by)


def plot(by):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        print("the figure needs matplotlib: pip install matplotlib", file=sys.stderr)
        return
    envs = sorted({e for e, _ in by}, key=lambda e: (e.startswith("Lunar"), MUJOCO.index(e) if e in MUJOCO else e))
    ref = reference()
    cols = (len(envs) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 6.5), squeeze=False)
    grid = np.linspace(0, 1_000_000, 101)
    for ax, env in zip(axes.flat, envs):
        for algo, colour in (("ppo", "C0"), ("trpo", "C1"), ("vpg", "C2"), ("a2c", "C3")):
            curves = []
            for r in by.get((env, algo), []):
                with open(os.path.join(OUT, "runs", r["name"], "progress.csv")) as f:
                    rows = [(float(x["steps"]), float(x["return_mean"])) for x in csv.DictReader(f)
                            if x["return_mean"] not in ("", "nan")]
                if rows:
                    s, ret = map(np.array, zip(*rows))
                    curves.append(np.interp(grid, s, ret, left=np.nan))
            if curves:
                c, ok = np.array(curves), ~np.all(np.isnan(curves), 0)
                ax.plot(grid[ok], np.nanmedian(c[:, ok], 0), colour, label=f"minipg {algo} ({len(curves)} seeds)")
                ax.fill_between(grid[ok], np.nanmin(c[:, ok], 0), np.nanmax(c[:, ok], 0), color=colour, alpha=0.2)
                z = ref["sb3_zoo"].get(algo, {}).get(env.split("-")[0])
                if z:
                    ax.axhline(z[0], color=colour, ls="--", lw=1, label=f"zoo {algo} (eval)")
                cl = ref["cleanrl"]["ppo"].get(env.split("-")[0]) if algo == "ppo" else None
                if cl:
                    ax.axhline(cl[0], color=colour, ls=":", lw=1, label="CleanRL ppo (train)")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=6)
    for row in axes:
        row[0].set_ylabel("training return, last 20 episodes")
    fig.suptitle("minipg, 1M steps, one preset per algorithm: median and min-max over seeds", fontsize=10)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(BENCH, "matrix.png"), dpi=80)
    print("bench/matrix.png")


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--only", default="")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--tree", default=ROOT, help="the minipg checkout to run (default: this one)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    path = os.path.join(OUT, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    if args.report:
        return report(results)
    todo = [(n, a) for n, a in cells() if args.only in n and n not in results]
    if args.dry_run:
        for n, a in todo:
            print("python minipg.py " + " ".join(a) + f" --out bench/matrix/runs/{n}")
        return
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(run_one, n, a, args.tree, results) for n, a in todo]:
            f.result()
    report(results)


if __name__ == "__main__":
    main()
