"""bench/pairs.py -- minipg against Stable-Baselines3, or against another checkout of minipg, back to back: the same
task, seed, hyperparameters and budget, one run right after the other.

    python bench/pairs.py --sb3-python /tmp/sb3venv/bin/python --out bench/pairs.md    # ppo, trpo, a2c, pendulum
    python bench/pairs.py --sb3-python ... --tasks ppo --seeds 0 1 2
    git worktree add /tmp/old e90aeb2 && python bench/pairs.py --trees /tmp/old . --seeds 0 --repeats 2   # old, new
    python bench/pairs.py --trees . . --tasks a2c --seeds 0 --steps 4000                 # a smoke test

SB3 lives in a virtualenv of its own, outside the project (minipg never imports torch):
    python3 -m venv /tmp/sb3venv && /tmp/sb3venv/bin/pip install torch==2.13.0 stable-baselines3==2.9.2 \\
        sb3-contrib==2.9.2 gymnasium==1.4.0 numpy==2.4.6
This machine's speed drifts by up to 1.6x within an hour, so each pair is SB3 then minipg (or the first tree then
the second), at once, each alone on the machine (one thread each: OMP_NUM_THREADS=1 for torch,
OPENBLAS_NUM_THREADS=1 for NumPy). The ratio of a pair is the first run's seconds over the second's: SB3's
model.learn() seconds over minipg's wall_s (its training loop, without the final evaluation), or one tree's
wall_s over the other's, with their rollout and update seconds beside them. The SB3 scripts are
bench/sb3/ppo_cartpole_zoo.py and bench/sb3/others.py (rl-zoo's hyperparameters, as in shared/reference/sb3.json);
the minipg commands below are the same settings.
"""
import os
import re
import statistics
import subprocess
import sys

import common

MINIPG = {
    "ppo": "--algo ppo --env CartPole-v1 --steps 100000 --num-envs 8 --num-steps 32 --minibatch 256 --epochs 20 "
           "--gamma 0.98 --lam 0.8 --lr-pi 1e-3 --anneal-lr --anneal-clip --clip-eps 0.2 --ent-coef 0",
    "trpo": "--algo trpo --steps 100000 --num-envs 2 --num-steps 512 --lam 0.98 --gamma 0.99 --cg-damping 1e-3 "
            "--v-iters 20 --max-kl 0.01 --lr-v 1e-3",
    "a2c": "--algo a2c --steps 100000 --num-envs 8 --num-steps 5 --lr-pi 7e-4 --optimiser rmsprop --ent-coef 0",
    "pendulum": "--algo ppo --env Pendulum-v1 --preset pendulum --steps 102400 --target -200",
}


def sb3(py):
    """A side that runs SB3's script for (task, seed) in py; {"wall_s": model.learn() seconds}."""
    def run(task, seed, out):
        script = ["ppo_cartpole_zoo.py"] if task == "ppo" else ["others.py", task]
        text = subprocess.run([py, os.path.join(common.BENCH, "sb3", script[0]), *script[1:], str(seed)],
                              capture_output=True, text=True, env=common.child_env(), check=True).stdout
        return {"wall_s": float(re.search(r"learn ([0-9.]+)", text).group(1))}
    return run


def minipg(tree, steps=None):
    """A side that runs minipg's command for (task, seed) from tree, with --steps steps if given; its summary.json."""
    def run(task, seed, out):
        args = MINIPG[task].split() + ["--seed", str(seed), "--episodes", "1"]
        if steps:
            i = args.index("--steps")
            args[i + 1] = str(steps)
        return common.run_minipg(args, out, tree=tree)
    return run


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--sb3-python", help="SB3's interpreter: pairs are SB3, then minipg")
    p.add_argument("--trees", nargs=2, metavar=("FIRST", "SECOND"), help="two minipg checkouts: pairs are one, then "
                   "the other (was bench/ab.sh)")
    p.add_argument("--tasks", nargs="+", default=list(MINIPG), choices=list(MINIPG))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=1, help="pairs per task and seed (default 1)")
    p.add_argument("--steps", type=int, help="minipg's budget instead of the task's (a smoke test; --trees only)")
    p.add_argument("--runs", default="/tmp/minipg-pairs", help="folder for minipg's run folders")
    p.add_argument("--out", default="", help="also write the tables here (markdown)")
    args = p.parse_args(argv)
    if bool(args.sb3_python) == bool(args.trees):
        p.error("give --sb3-python (SB3 against minipg) or --trees FIRST SECOND (minipg against minipg)")
    if args.steps and args.sb3_python:
        p.error("--steps would make the pair unequal: SB3's scripts have the task's budget")
    if args.sb3_python:
        names, trees = ["SB3", "minipg"], [common.ROOT]
        sides = [sb3(args.sb3_python), minipg(common.ROOT)]
    else:
        names, trees = ["A", "B"], [os.path.abspath(t) for t in args.trees]
        sides = [minipg(t, args.steps) for t in trees]
    made = "; ".join(f"{n}: {t} at {common.commit(t)}" for n, t in zip(names[-len(trees):], trees))
    timings = not args.sb3_python  # both sides are minipg: their rollout and update seconds too
    lines = ["| task | seed | " + " | ".join(f"{n} s" + " (rollout / update)" * timings for n in names)
             + f" | {names[0]} / {names[1]} |", "|---|---:|---:|---:|---:|"]
    ratios, seconds = {}, {}
    for seed in args.seeds:
        for task in args.tasks:
            for _ in range(args.repeats):
                got = [run(task, seed, os.path.join(args.runs, f"{n}-{task}-s{seed}")) for n, run in zip(names, sides)]
                walls = [g["wall_s"] for g in got]
                ratios.setdefault(task, []).append(walls[0] / walls[1])
                seconds.setdefault(task, []).append(walls)
                shown = [f"{g['wall_s']:.2f}" + (f" ({g['rollout_s']:.2f} / {g['update_s']:.2f})" if timings else "")
                         for g in got]
                lines.append(f"| {task} | {seed} | {' | '.join(shown)} | {walls[0] / walls[1]:.2f}x |")
                print(lines[-1], flush=True)
    lines += ["", f"| task | {names[0]} s, median | {names[1]} s, median | {names[0]} / {names[1]}, median "
              "(min–max) | pairs |", "|---|---:|---:|---|---:|"]
    for t, r in ratios.items():
        first, second = (statistics.median(w[i] for w in seconds[t]) for i in (0, 1))
        lines.append(f"| {t} | {first:.2f} | {second:.2f} | {statistics.median(r):.2f}x ({min(r):.2f}–{max(r):.2f}) "
                     f"| {len(r)} |")
    lines += ["", "minipg commands (plus --seed S --episodes 1 --out DIR"
              + (f", and --steps {args.steps} instead of the task's" if args.steps else "") + "):", ""]
    lines += [f"    {t}: python minipg.py {MINIPG[t]}" for t in args.tasks]
    common.write_results(args.out, f"{' against '.join(names)}, back to back ({made})", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
