"""bench/rollout.py -- what stepping E envs costs, per env step, with each vector env minipg can use.

    python bench/rollout.py                      # HalfCheetah-v5 and CartPole-v1, E = 8; writes bench/rollout.md

Fixed actions (zeros), no policy: this is the physics plus each vector env's own overhead. The rows: one env alone
(the floor), vecenv.SyncEnvs (a loop), gymnasium's AsyncVectorEnv with shared memory (a process per env), and
vecenv.ProcEnvs with `near` envs in this process and the rest in a child (minipg's default is near = 3 of 8:
this process also runs the policy in a real rollout, so it takes the smaller share). Medians of 3 blocks of
2,000 vector steps, each vector env alone on the machine. Run it on an idle machine.
"""
import functools
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def per_env_step(envs, E, action, steps=2000):
    envs.reset(seed=0)
    for _ in range(100):
        envs.step(action)
    blocks = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            envs.step(action)
        blocks.append((time.perf_counter() - t) / (steps * E))
    envs.close()
    return statistics.median(blocks) * 1e6


def main():
    import gymnasium as gym
    import minipg
    import vecenv
    E = 8
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"# Stepping {E} envs, per env step (bench/rollout.py at {commit}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             "| env | vector env | us per env step |", "|---|---|---:|"]
    for env_id in ("HalfCheetah-v5", "CartPole-v1"):
        sp = minipg.spaces_of(env_id)
        single = minipg.make_env(env_id)
        single.reset(seed=0)
        a = 0 if sp.discrete else np.zeros(sp.n_act, np.float32)
        t = time.perf_counter()
        for _ in range(20_000):
            _, _, term, trunc, _ = single.step(a)
            if term or trunc:
                single.reset()
        rows = [("one env alone (the floor)", (time.perf_counter() - t) / 20_000 * 1e6)]
        action = np.zeros(E, np.int64) if sp.discrete else np.zeros((E, sp.n_act), np.float32)
        rows.append(("SyncEnvs", per_env_step(minipg.make_envs(env_id, E, "sync"), E, action)))
        rows.append(("gymnasium AsyncVectorEnv, shared memory", per_env_step(gym.vector.AsyncVectorEnv(
            [lambda: minipg.make_env(env_id) for _ in range(E)], shared_memory=True,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP), E, action)))
        for near in (4, 3, 2):
            envs = vecenv.ProcEnvs(functools.partial(minipg.make_env, env_id), E, sp.obs_dim,
                                   0 if sp.discrete else sp.n_act, near=near)
            rows.append((f"ProcEnvs, {near} here and {E - near} in the child", per_env_step(envs, E, action)))
        lines += [f"| {env_id} | {name} | {us:.1f} |" for name, us in rows]
        print("\n".join(lines[-len(rows):]), flush=True)
    lines += ["", "In a real rollout this process also runs the policy once per vector step (about 30 us for 8 "
              "envs), while the child waits; that is why the default gives the child the larger share."]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(ROOT, "bench", "rollout.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
