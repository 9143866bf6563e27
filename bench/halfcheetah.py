"""bench/halfcheetah.py -- a 1M-step HalfCheetah-v5 run against the env's own floor, measured minutes apart.

    python bench/halfcheetah.py                   # PPO then TRPO, --preset mujoco, seed 0
    python bench/halfcheetah.py --algos ppo --out bench/halfcheetah.md

The floor is what the physics alone costs: one HalfCheetah-v5 from gymnasium.make, stepped with a fixed action (no
policy, no sampling), reset when an episode ends, in a fresh process like the run's; 1M steps divided by its step
rate. It is measured right before each run, because this machine's speed drifts by up to 1.6x within an hour; the
ratio of the run's wall time (the training loop, without the final evaluation) to that floor is the figure. Both
cores may work (the preset steps half its envs in a second process), so a ratio below 1 is possible.
"""
import os
import subprocess
import sys

import common

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
                         env=common.child_env())
    return float(out.stdout.split()[-1])


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--algos", nargs="+", default=["ppo", "trpo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="/tmp/minipg-halfcheetah")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    lines = ["| run | floor: env steps/s | floor s (1M) | wall s | rollout s | update s | wall / floor | eval |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    commands = []
    for algo in args.algos:
        rate = floor_rate()
        cmd = ["--algo", algo, "--preset", "mujoco", "--seed", str(args.seed)]
        s = common.run_minipg(cmd, os.path.join(args.runs, algo))
        commands.append("python minipg.py " + " ".join(cmd))
        fl = 1_000_000 / rate
        lines.append(f"| {algo} seed {args.seed} | {rate:,.0f} | {fl:.1f} | {s['wall_s']:.1f} | {s['rollout_s']:.1f} | "
                     f"{s['update_s']:.1f} | {s['wall_s'] / fl:.2f} | {s['eval_return_mean']:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", "Commands:", ""] + [f"    {c}" for c in commands]
    common.write_results(args.out, "HalfCheetah-v5, 1M steps, against the env floor", "\n".join(lines))


if __name__ == "__main__":
    main()
