"""bench/pairs.py -- minipg against Stable-Baselines3, run back to back: same task, seed, hyperparameters, budget.

    python bench/pairs.py --sb3-python /tmp/sb3venv/bin/python                # ppo, trpo, a2c, pendulum; seeds 0 1 2
    python bench/pairs.py --sb3-python ... --tasks ppo --seeds 0 1 2 --out bench/pairs.md

SB3 lives in a virtualenv of its own, outside the project (minipg never imports torch):
    python3 -m venv /tmp/sb3venv && /tmp/sb3venv/bin/pip install torch==2.13.0 stable-baselines3==2.9.2 \\
        sb3-contrib==2.9.2 gymnasium==1.4.0 numpy==2.4.6
This machine's speed drifts by up to 1.6x within an hour, so each pair is SB3 then minipg, at once, each alone on
the machine (one thread each: OMP_NUM_THREADS=1 for torch, OPENBLAS_NUM_THREADS=1 for NumPy). The speed-up of a
pair is SB3's model.learn() seconds over minipg's wall_s (its training loop, without the final evaluation). The
SB3 scripts are bench/sb3/ppo_cartpole_zoo.py and bench/sb3/others.py (rl-zoo's hyperparameters, as in
shared/reference/sb3.json); the minipg commands below are the same settings.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
MINIPG = {
    "ppo": "--algo ppo --env CartPole-v1 --steps 100000 --num-envs 8 --num-steps 32 --minibatch 256 --epochs 20 "
           "--gamma 0.98 --lam 0.8 --lr-pi 1e-3 --anneal-lr --anneal-clip --clip-eps 0.2 --ent-coef 0",
    "trpo": "--algo trpo --steps 100000 --num-envs 2 --num-steps 512 --lam 0.98 --gamma 0.99 --cg-damping 1e-3 "
            "--v-iters 20 --max-kl 0.01 --lr-v 1e-3",
    "a2c": "--algo a2c --steps 100000 --num-envs 8 --num-steps 5 --lr-pi 7e-4 --optimiser rmsprop --ent-coef 0",
    "pendulum": "--algo ppo --env Pendulum-v1 --preset pendulum --steps 102400 --target -200",
}


def sb3_seconds(py, task, seed):
    script = ["ppo_cartpole_zoo.py"] if task == "ppo" else ["others.py", task]
    out = subprocess.run([py, os.path.join(BENCH, "sb3", script[0]), *script[1:], str(seed)], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True).stdout
    return float(re.search(r"learn ([0-9.]+)", out).group(1))


def minipg_seconds(task, seed, out):
    cmd = [sys.executable, "minipg.py", *MINIPG[task].split(), "--seed", str(seed), "--episodes", "1", "--out", out,
           "--overwrite"]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["wall_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sb3-python", required=True)
    p.add_argument("--tasks", nargs="+", default=list(MINIPG), choices=list(MINIPG))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", default="/tmp/minipg-pairs", help="folder for minipg's run folders")
    p.add_argument("--out", default="", help="also write the table here (markdown)")
    args = p.parse_args(argv)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"minipg {commit} against SB3, back to back, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", "| task | seed | SB3 learn s | minipg wall_s | speed-up |", "|---|---:|---:|---:|---:|"]
    ratios = {}
    for seed in args.seeds:
        for task in args.tasks:
            sb3 = sb3_seconds(args.sb3_python, task, seed)
            mp = minipg_seconds(task, seed, os.path.join(args.runs, f"{task}-s{seed}"))
            ratios.setdefault(task, []).append(sb3 / mp)
            lines.append(f"| {task} | {seed} | {sb3:.2f} | {mp:.2f} | {sb3 / mp:.2f}x |")
            print(lines[-1], flush=True)
    lines += ["", "| task | median speed-up | pairs |", "|---|---:|---:|"]
    lines += [f"| {t} | {statistics.median(r):.2f}x | {len(r)} |" for t, r in ratios.items()]
    lines += ["", "minipg commands (plus --seed S --episodes 1 --out DIR):", ""]
    lines += [f"    {t}: python minipg.py {MINIPG[t]}" for t in args.tasks]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
