"""bench/run.py -- minipg's benchmark: wall-clock, throughput and sample efficiency, next to Stable-Baselines3
figures measured on the same 2-core machine (bench/sb3_reference.json, a copy of the measurement notes).

    python bench/run.py                          # --size quick: 4 timed tasks x 3 seeds + the raw env floor (< 10 min)
    python bench/run.py --size full              # + CartPole defaults x 7 algorithms, Pendulum, MuJoCo: hours
    python bench/run.py --only trpo              # only tasks whose name contains 'trpo' (case-insensitive)
    python bench/run.py --size full --only reinforce --seeds 2
    python bench/run.py --dry-run                # print the commands, run nothing
    python bench/run.py --report                 # only rebuild bench/results.md from bench/results.json

Run it on an idle machine. Each minipg task runs, one seed after the other (never in parallel: timings), from the
repo root with OPENBLAS_NUM_THREADS=1:
    python minipg.py ARGS --seed S --out bench/runs/<task>/s<S> --eval-episodes 20
after one untimed one-batch warm-up run of the same configuration (it fills numba's on-disk cache, so no timed seed
pays for compilation). It reads each run's summary.json and the last row of its progress.csv; minipg's output goes to
bench/runs/<task>/s<S>/minipg.log. Results merge into bench/results.json keyed by task name (so --only reruns
accumulate), written after every task; bench/results.md (tables for the README) is rebuilt from it.

Smoke test: --scale 0.05 multiplies every budget (whole batches, at least one); its results go to
bench/runs/scale-0.05/results.{json,md} and are marked "scale", never into bench/results.json.
"""
import argparse
import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
REFERENCE = os.path.join(BENCH, "sb3_reference.json")
sys.path[:0] = [BENCH, ROOT]  # bench/report.py; minipg (imported only to resolve budgets)
import report  # noqa: E402
EVAL_EPISODES = 20
FLOOR_STEPS, FLOOR_ENVS = 100_000, 8


@dataclass
class Task:
    name: str
    args: str                # minipg.py arguments; for kind "floor" the env id
    seeds: int
    ref: str | None          # run name in sb3_reference.json (floors: key of raw_env_steps_per_s)
    group: str               # table of results.md: timing | floor | cartpole | pendulum | mujoco
    targets: tuple = ()      # (metric, "<=" | ">=", value), checked on the median over seeds
    kind: str = "minipg"
    needs: str | None = None  # optional module; the task is skipped when it does not import


ZOO_PPO = ("--algo ppo --env CartPole-v1 --steps 100000 --num-envs 8 --num-steps 32 --minibatch 256 --epochs 20 "
           "--gamma 0.98 --lam 0.8 --lr-pi 1e-3 --anneal-lr --anneal-clip --clip-eps 0.2 --ent-coef 0")
QUICK = [
    Task("ppo CartPole-v1 zoo 100k", ZOO_PPO, 3, "ppo CartPole-v1 zoo 100k", "timing", (("wall_s", "<=", 3.4),)),
    # the same run in float64: the measurement behind training in float32 by default
    Task("ppo CartPole-v1 zoo 100k float64", ZOO_PPO + " --dtype float64", 3, "ppo CartPole-v1 zoo 100k", "timing"),
    Task("trpo CartPole-v1 zoo 100k", "--algo trpo --steps 100000 --num-envs 2 --num-steps 512 --lam 0.98 --gamma 0.99 "
         "--cg-damping 1e-3 --v-iters 20 --max-kl 0.01 --lr-v 1e-3", 3, "trpo CartPole-v1 zoo 100k", "timing",
         (("wall_s", "<=", 4.0),)),
    Task("a2c CartPole-v1 zoo 100k", "--algo a2c --steps 100000 --num-envs 8 --num-steps 5 --lr-pi 7e-4 "
         "--optimiser rmsprop --ent-coef 0", 3, "a2c CartPole-v1 zoo 100k", "timing", (("wall_s", "<=", 1.6),)),
    Task("ppo Pendulum-v1 zoo 100k", "--algo ppo --env Pendulum-v1 --preset pendulum --steps 102400 --target -200", 3,
         "ppo Pendulum-v1 zoo-nosde 102k", "timing", (("wall_s", "<=", 5.6),)),
] + [Task(f"raw env floor {env}", env, 3, f"{env} 8 sync envs random actions", "floor", kind="floor")
       for env in ("CartPole-v1", "Pendulum-v1")]
CARTPOLE_TARGETS = {"ppo": 50_000, "ppo-penalty": 50_000, "trpo": 100_000, "npg": 100_000, "vpg": 300_000,
                    "a2c": 300_000, "reinforce": 500_000}
CARTPOLE_REFS = {"ppo": "ppo CartPole-v1 zoo 100k", "trpo": "trpo CartPole-v1 zoo 100k",
                 "a2c": "a2c CartPole-v1 zoo 500k"}  # SB3 ran a2c for 100k (never reached 475) and 500k
FULL = QUICK + [
    Task(f"{a} CartPole-v1 defaults", f"--algo {a}", 5, CARTPOLE_REFS.get(a), "cartpole",
         (("steps_to_threshold", "<=", t),)) for a, t in CARTPOLE_TARGETS.items()
] + [
    Task("ppo Pendulum-v1 preset", "--algo ppo --env Pendulum-v1 --preset pendulum --target -200", 3,
         "ppo Pendulum-v1 zoo-nosde 102k", "pendulum", (("eval_return_mean", ">=", -200),)),
    Task("trpo Pendulum-v1 preset", "--algo trpo --env Pendulum-v1 --preset pendulum --target -200", 3,
         "trpo Pendulum-v1 zoo-nosde 100k", "pendulum", (("eval_return_mean", ">=", -200),)),
    Task("ppo HalfCheetah-v5 1M", "--algo ppo --env HalfCheetah-v5 --preset mujoco", 3, None, "mujoco",
         (("eval_return_mean", ">=", 2500), ("wall_s", "<=", 600)), needs="mujoco"),
    Task("trpo HalfCheetah-v5 1M", "--algo trpo --env HalfCheetah-v5 --preset mujoco --steps 1000000", 3, None,
         "mujoco", (("eval_return_mean", ">=", 1800),), needs="mujoco"),
]
METRICS = ("wall_s", "rollout_s", "update_s", "other_s", "steps_per_s", "rollout_steps_per_s", "eval_return_mean",
           "total_steps", "process_s")


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------

def budget(args, scale):
    """(args with the budget scaled, steps, batch, num_envs), by minipg's own resolution of defaults, presets, flags."""
    import minipg
    try:
        run, _ = minipg.resolve(minipg.parse_args(args)[0])
    except minipg.UsageError as e:
        sys.exit(f"bench/run.py: bad minipg arguments {shlex.join(args)!r}: {e}")
    batch = run.num_envs * run.num_steps
    if scale == 1:
        return args, run.steps, batch, run.num_envs
    steps = max(batch, int(run.steps * scale) // batch * batch)
    return with_steps(args, steps), steps, batch, run.num_envs


def with_steps(args, steps):
    """args with their --steps (if any) replaced by --steps STEPS."""
    keep = [x for i, x in enumerate(args) if x != "--steps" and (i == 0 or args[i - 1] != "--steps")]
    return keep + ["--steps", str(steps)]


def child_env():
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_minipg(args, seed, out, episodes=EVAL_EPISODES):
    """One seed in a fresh interpreter. Returns its figures, or {"seed", "error"} when minipg failed."""
    shutil.rmtree(os.path.join(ROOT, out), ignore_errors=True)  # no stale summary.json from an earlier run
    os.makedirs(os.path.join(ROOT, out))
    cmd = [sys.executable, "minipg.py", *args, "--seed", str(seed), "--out", out, "--eval-episodes", str(episodes)]
    t = time.perf_counter()
    with open(os.path.join(ROOT, out, "minipg.log"), "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    process_s = time.perf_counter() - t
    if rc != 0:
        with open(os.path.join(ROOT, out, "minipg.log")) as f:
            tail = (f.read().strip().splitlines() or ["(no output)"])[-1]
        return {"seed": seed, "error": f"exit code {rc}: {tail}", "log": f"{out}/minipg.log"}
    with open(os.path.join(ROOT, out, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(ROOT, out, "progress.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    with open(os.path.join(ROOT, out, "config.json")) as f:
        config = json.load(f)  # the fully resolved config (defaults change: e.g. --dtype)
    return {"seed": seed, **{k: s[k] for k in ("total_steps", "wall_s", "rollout_s", "update_s", "steps_to_threshold",
                                                "threshold", "eval_return_mean", "env")},
            "other_s": s["wall_s"] - s["rollout_s"] - s["update_s"],  # checkpoints, progress.csv, bookkeeping
            "steps_per_s": float(last["steps_per_s"]), "rollout_steps_per_s": s["total_steps"] / s["rollout_s"],
            "process_s": process_s,  # the whole child process: start-up, warm numba cache, training, evaluation
            "config": config}


def run_floor(env_id, seed, steps, num_envs=FLOOR_ENVS):
    """Env steps/s of a SyncVectorEnv (SAME_STEP autoreset, as minipg uses) fed precomputed random actions."""
    import gymnasium as gym
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=seed)
    space, rng, n = envs.single_action_space, np.random.default_rng(seed), max(1, steps // num_envs)
    if isinstance(space, gym.spaces.Discrete):
        acts = rng.integers(0, space.n, size=(n, num_envs))
    else:
        acts = rng.uniform(space.low, space.high, size=(n, num_envs, *space.shape)).astype(space.dtype)
    t = time.perf_counter()
    for a in acts:
        envs.step(a)
    wall = time.perf_counter() - t
    envs.close()
    return {"seed": seed, "env": env_id, "total_steps": n * num_envs, "wall_s": wall,
            "steps_per_s": n * num_envs / wall}


def summarise(per_seed):
    ok = [r for r in per_seed if "error" not in r]
    stats = {}
    for m in METRICS:
        vals = [r[m] for r in ok if r.get(m) is not None]
        if vals:
            stats[m] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    if ok and "steps_to_threshold" in ok[0]:  # not reached counts as +inf in the median
        reach = [r["steps_to_threshold"] for r in ok]
        hit = [x for x in reach if x is not None]
        med = statistics.median([math.inf if x is None else x for x in reach])
        stats["steps_to_threshold"] = {"median": None if math.isinf(med) else med, "min": min(hit, default=None),
                                       "max": max(hit, default=None), "reached": len(hit), "n": len(reach)}
    return stats


def check_targets(targets, stats):
    out = []
    for metric, op, value in targets:
        m = (stats.get(metric) or {}).get("median")
        ok = m is not None and (m <= value if op == "<=" else m >= value)
        out.append({"metric": metric, "op": op, "value": value, "median": m, "pass": ok})
    return out


def versions():
    v = {"python": platform.python_version()}
    for pkg in ("numpy", "gymnasium", "numba", "mujoco"):
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            v[pkg] = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout
        v["minipg_git"] = head.strip() + (" + uncommitted changes" if dirty.strip() else "")
    except OSError:
        v["minipg_git"] = None
    return v


def machine():
    info = {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(), "ram_gib": None,
            "os": platform.platform()}
    for path, key, fn in (("/proc/cpuinfo", "model name", lambda s: s),
                          ("/proc/meminfo", "MemTotal", lambda s: round(int(s.split()[0]) / 2 ** 20, 1))):
        try:
            with open(path) as f:
                line = next(l for l in f if l.startswith(key))
            info["cpu" if key == "model name" else "ram_gib"] = fn(line.split(":", 1)[1].strip())
        except (OSError, StopIteration):
            pass
    return info


def load_results(path):
    """The results so far ({} when the file is absent or empty)."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        text = f.read()
    return json.loads(text) if text.strip() else {}


def save_results(path, task_name, entry):
    results = load_results(path)  # re-read: keep every other task's entry
    results[task_name] = entry
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
    return results


def run_task(task, seeds, scale, runs_dir, reference, dry_run):
    slug = task.name.replace(" ", "-")
    if task.kind == "floor":
        steps = max(FLOOR_ENVS, int(FLOOR_STEPS * scale))
        print(f"  {FLOOR_ENVS} x SyncVectorEnv({task.args}), {steps} random-action steps, seeds {seeds}")
        if dry_run:
            return None
        per_seed = [run_floor(task.args, s, steps) for s in seeds]
        for r in per_seed:
            print(f"    seed {r['seed']}: {r['steps_per_s']:,.0f} steps/s")
        return {"kind": "floor", "env": task.args, "num_envs": FLOOR_ENVS, "per_seed": per_seed,
                "stats": summarise(per_seed),
                "reference": {"steps_per_s": reference["raw_env_steps_per_s"].get(task.ref), "what": task.ref}}
    args, steps, batch, num_envs = budget(shlex.split(task.args), scale)
    cmds = [shlex.join(["OPENBLAS_NUM_THREADS=1", "python", "minipg.py", *args, "--seed", str(s), "--out",
                        f"{runs_dir}/{slug}/s{s}", "--eval-episodes", str(EVAL_EPISODES)]) for s in seeds]
    warm_args = with_steps(args, batch)
    print(f"  warm-up (untimed): python minipg.py {shlex.join(warm_args)} --eval-episodes 1")
    print("\n".join("  " + c for c in cmds))
    if dry_run:
        return None
    warm = run_minipg(warm_args, 0, f"{runs_dir}/{slug}/warmup", episodes=1)
    if "error" in warm:
        print(f"    warm-up failed: {warm['error']} (see {warm['log']})")
    per_seed = []
    for s in seeds:
        r = run_minipg(args, s, f"{runs_dir}/{slug}/s{s}")
        per_seed.append(r)
        print(f"    seed {s}: " + (f"FAILED {r['error']} (see {r['log']})" if "error" in r else
              f"wall {r['wall_s']:.2f} s (rollout {r['rollout_s']:.2f}, update {r['update_s']:.2f}), "
              f"{r['steps_per_s']:,.0f} steps/s, {r['threshold']:g} reached at step {r['steps_to_threshold']}, "
              f"eval {r['eval_return_mean']:.1f}"))
    stats = summarise(per_seed)
    config = next((r.pop("config") for r in per_seed if "config" in r), None)
    for r in per_seed:
        r.pop("config", None)
    ref = next((r for r in reference["runs"] if r["task"] == task.ref), None)
    return {"kind": "minipg", "env": next((r["env"] for r in per_seed if "env" in r), None), "steps": steps,
            "batch": batch, "num_envs": num_envs, "minipg_args": args, "commands": cmds, "per_seed": per_seed,
            "stats": stats, "threshold": next((r["threshold"] for r in per_seed if "threshold" in r), None),
            "reference": ref, "failed": sum("error" in r for r in per_seed), "config": config}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("quick", "full"), default="quick", help="quick (< 10 min) or full (hours)")
    p.add_argument("--only", metavar="SUBSTRING", help="run only the tasks whose name contains this (case-insensitive)")
    p.add_argument("--seeds", type=int, help="seeds per task (default: the task's own, 3 or 5), seeds 0..N-1")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report", action="store_true", help="only rebuild results.md from results.json")
    p.add_argument("--results", help="results file (default bench/results.json; with --scale bench/runs/scale-S/)")
    p.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)  # smoke tests: budgets x this
    a = p.parse_args(argv)
    runs_dir = "bench/runs" if a.scale == 1 else f"bench/runs/scale-{a.scale:g}"
    path = os.path.abspath(a.results or os.path.join(ROOT, runs_dir if a.scale != 1 else "bench", "results.json"))
    if a.scale != 1 and path == os.path.join(BENCH, "results.json"):
        p.error("scaled (smoke) runs must not be written to bench/results.json")
    if a.report:
        return report.write(path, REFERENCE)
    tasks = [t for t in (QUICK if a.size == "quick" else FULL) if not a.only or a.only.lower() in t.name.lower()]
    if not tasks:
        hint = " (try --size full)" if any(a.only.lower() in t.name.lower() for t in FULL) else ""
        p.error(f"no {a.size} task matches --only {a.only!r}{hint}; tasks: " + "; ".join(t.name for t in FULL))
    with open(REFERENCE) as f:
        reference = json.load(f)
    bench_command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    t0, failed, vers, mach = time.time(), 0, versions(), machine()
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if not a.dry_run and (load or 0) > 0.5:
        print(f"warning: load average {load}: the machine is not idle, the timings will suffer")
    for i, task in enumerate(tasks, 1):
        seeds = list(range(a.seeds or task.seeds))
        print(f"[{i}/{len(tasks)}] {task.name}  ({len(seeds)} seeds)", flush=True)
        if task.needs:
            try:
                __import__(task.needs)
            except Exception:
                print(f"  skipped: cannot import {task.needs} (pip install 'gymnasium[mujoco]')")
                continue
        entry = run_task(task, seeds, a.scale, runs_dir, reference, a.dry_run)
        if entry is None:
            continue
        entry.update(task=task.name, group=task.group, ref_task=task.ref, seeds=seeds, scale=a.scale,
                     targets=check_targets(task.targets, entry["stats"]), bench_command=bench_command,
                     loadavg_1min_at_start=load, date=datetime.datetime.now().isoformat(timespec="seconds"),
                     versions=vers, machine=mach)
        failed += entry.get("failed", 0)
        for t in entry["targets"]:
            median = "none" if t["median"] is None else f"{t['median']:.4g}"
            print(f"  target: median {t['metric']} {median} {t['op']} {t['value']}? "
                  + ("PASS" if t["pass"] else "MISS"))
        save_results(path, task.name, entry)
        report.write(path, REFERENCE, quiet=True)
    if not a.dry_run:
        print(f"done in {time.time() - t0:.0f} s: {path} and {os.path.splitext(path)[0]}.md"
              + (f"; {failed} run(s) FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
