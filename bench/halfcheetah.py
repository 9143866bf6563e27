"""bench/halfcheetah.py -- a 1M-step HalfCheetah-v5 run against the env's own floor, measured minutes apart.

    python bench/halfcheetah.py                   # PPO then TRPO, --preset mujoco, seed 0
    python bench/halfcheetah.py --algos ppo --out bench/halfcheetah.md

The floor is what the physics alone costs: one HalfCheetah-v5 from gymnasium.make, stepped with a fixed action (no
policy, no sampling), reset when an episode ends, in a fresh process like the run's; 1M steps divided by its step
rate. It is measured right before each run, because this machine's speed drifts by up to 1.6x within an hour; the
ratio of the run's wall time (the training loop, without the final evaluation) to that floor is the figure. Both
cores may work (the preset steps half its envs in a second process), so a ratio below 1 is possible.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR = """
import time, numpy as np, gymnasium as gym
env = gym.make("HalfCheetah-v5")
env.reset(seed=0)
a = np.zeros(env.action_space.shape, env.action_space.dtype)
for _ in range(1000):  # warm-up
    env.step(a)
n, t = {n}, time.perf_counter()
for _ in range(n):
    _, _, term, trunc, _ = env.step(a)
    if term or trunc:
        env.reset()
print(n / (time.perf_counter() - t))
"""


def floor_rate(n=100_000):
    out = subprocess.run([sys.executable, "-c", FLOOR.format(n=n)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    return float(out.stdout.split()[-1])


def train(algo, seed, out):
    cmd = ["minipg.py", "--algo", algo, "--preset", "mujoco", "--seed", str(seed), "--out", out, "--overwrite"]
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(out, "progress.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    return "python " + " ".join(cmd[:-2]), s, last


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["ppo", "trpo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="/tmp/minipg-halfcheetah")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"HalfCheetah-v5, 1M steps, against the env floor (bench/halfcheetah.py at {commit}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             "| run | floor: env steps/s | floor s (1M) | wall s | rollout s | update s | wall / floor | eval |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    commands = []
    for algo in args.algos:
        rate = floor_rate()
        cmd, s, last = train(algo, args.seed, os.path.join(args.runs, algo))
        commands.append(cmd)
        fl = 1_000_000 / rate
        lines.append(f"| {algo} seed {args.seed} | {rate:,.0f} | {fl:.1f} | {s['wall_s']:.1f} | "
                     f"{float(last['rollout_s']):.1f} | {float(last['update_s']):.1f} | {s['wall_s'] / fl:.2f} | "
                     f"{s['eval_return_mean']:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", "Commands:", ""] + [f"    {c}" for c in commands]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
