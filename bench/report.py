"""bench/report.py -- builds results.md (markdown tables for the README) from results.json; used by bench/run.py,
and alone by `python bench/run.py --report`.

Tables: (a) wall-clock at equal work against SB3, (b) throughput against the raw env floor, (c) sample efficiency
(CartPole defaults, Pendulum, MuJoCo) with PASS/MISS against the targets; then how and where it was measured.
"""
import json
import os

GROUPS = {"cartpole": "CartPole-v1, each algorithm's defaults (`--algo NAME`, no other flags)",
          "pendulum": "Pendulum-v1", "mujoco": "MuJoCo"}


def _num(x):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}" if abs(x) < 100 else f"{x:.0f}"


def _med(stats, metric, spread=True):
    s = stats.get(metric)
    if not s or s["median"] is None:
        return "–"
    if not spread or s["min"] == s["max"]:
        return _num(s["median"])
    dash = "–" if s["min"] >= 0 else " to "
    return f"{_num(s['median'])} ({_num(s['min'])}{dash}{_num(s['max'])})"


def _reach(stats):
    s = stats.get("steps_to_threshold")
    if not s:
        return "–"
    return f"{_num(s['median']) if s['median'] is not None else 'not reached'} ({s['reached']}/{s['n']})"


def _ref_reach(ref):
    if not ref:
        return "–"
    m = ref.get("steps_to_threshold_median")
    return f"{_num(m) if m is not None else 'not reached'} ({ref['reached']}/{ref['seeds']})"


def _target(t):
    name = {"wall_s": "wall", "steps_to_threshold": "steps", "eval_return_mean": "eval"}[t["metric"]]
    unit = " s" if t["metric"] == "wall_s" else ""
    value = f"{t['value']:g}" if abs(t["value"]) < 1000 else _num(t["value"])
    return f"{name} {'≤' if t['op'] == '<=' else '≥'} {value}{unit}"


def _task(e):
    bad = e.get("failed", 0)
    return e["task"] + (f" ({bad} of {len(e['per_seed'])} seeds FAILED)" if bad else "")


def _table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
           ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""]


def build(results, reference):
    entries = list(results.values())
    runs = [e for e in entries if e["kind"] == "minipg"]
    floors = {e["env"]: e for e in entries if e["kind"] == "floor"}
    lines = ["# minipg benchmark results", "",
             "Made by `bench/run.py` (commands and machine at the end). Reference: Stable-Baselines3, "
             "measured on the same machine: " + reference.get("what", ""), ""]
    scales = sorted({e.get("scale", 1) for e in entries})
    if scales != [1]:
        scaled = ", ".join(map(str, scales))
        lines += [f"> **SMOKE RUN: budgets scaled by {scaled}. These are not benchmark figures.**", ""]

    timing = [e for e in runs if e["group"] == "timing"]
    if timing:
        lines += ["## Wall-clock at equal work", "",
                  "Training time (`wall_s` in summary.json: the training loop, without start-up and the final "
                  "evaluation), median (min–max) over seeds; speed-up = SB3 seconds / minipg median. "
                  "The split is the medians of rollout_s and update_s and of the rest of the loop "
                  "(checkpoints every --save-every-s seconds, progress.csv rows, bookkeeping).", ""]
        rows = []
        for e in timing:
            ref, wall = e.get("reference") or {}, e["stats"].get("wall_s", {}).get("median")
            refs = ref.get("learn_s_median")
            rows.append([_task(e), _med(e["stats"], "wall_s"), _num(refs),
                         f"{refs / wall:.1f}x" if refs and wall else "–",
                         " / ".join(_med(e["stats"], m, False) for m in ("rollout_s", "update_s", "other_s")),
                         "; ".join(_target(t) for t in e["targets"]) or "–",
                         "; ".join("PASS" if t["pass"] else "MISS" for t in e["targets"]) or "–",
                         f"{_reach(e['stats'])} / {_ref_reach(ref)}",
                         f"{_med(e['stats'], 'eval_return_mean', False)} / {_num(ref.get('eval_mean_median'))}"])
        lines += _table(["task", "minipg s", "SB3 s", "speed-up", "rollout / update / other s", "target", "result",
                         "steps to threshold, median (reached): minipg / SB3", "eval return: minipg / SB3"], rows)

    if runs or floors:
        lines += ["## Throughput", "",
                  "Env steps per second of training (the last row of progress.csv) and of the rollout phase alone "
                  "(total_steps / rollout_s), and their fraction of the raw floor: "
                  "the same env stepped with precomputed random actions, no policy "
                  f"(measured here with {next(iter(floors.values()))['num_envs'] if floors else 8} sync envs; "
                  "tasks with fewer envs pay more vector-env overhead per step).", ""]
        raw = reference.get("raw_env_steps_per_s", {})
        rows = [[f"raw floor {env}", f.get("num_envs", "?"), _med(f["stats"], "steps_per_s"), "", "", "",
                 _num((f.get("reference") or {}).get("steps_per_s"))] for env, f in floors.items()]
        for e in runs:
            floor, mark = (floors.get(e["env"]) or {}).get("stats", {}).get("steps_per_s", {}).get("median"), ""
            if floor is None:  # no floor measured here: the SB3 session's figure of the same floor
                floor, mark = next((v for k, v in raw.items() if k.startswith(f"{e['env']} ")), None), " (SB3's floor)"

            def frac(m, e=e, floor=floor, mark=mark):
                return f"{e['stats'][m]['median'] / floor:.0%}{mark}" if floor and m in e["stats"] else "–"
            rows.append([_task(e), e.get("num_envs", "?"), _med(e["stats"], "steps_per_s", False), frac("steps_per_s"),
                         _med(e["stats"], "rollout_steps_per_s", False), frac("rollout_steps_per_s"),
                         _num((e.get("reference") or {}).get("steps_per_s_median"))])
        lines += _table(["task", "envs", "training steps/s", "of floor", "rollout steps/s", "of floor",
                         "SB3 steps/s (training; floor)"], rows)

    for group, title in GROUPS.items():
        rows = []
        for e in (e for e in runs if e["group"] == group):
            ref = e.get("reference")
            rows.append([_task(e), _num(e.get("steps")), _num(e.get("threshold")), _reach(e["stats"]),
                         _med(e["stats"], "eval_return_mean"), _med(e["stats"], "wall_s", False),
                         "; ".join(_target(t) for t in e["targets"]),
                         "; ".join("PASS" if t["pass"] else "MISS" for t in e["targets"]),
                         f"{ref['task']}: {_ref_reach(ref)}, eval {_num(ref.get('eval_mean_median'))}"
                         if ref else "–"])
        if rows:
            lines += [f"## Sample efficiency: {title}", "",
                      "Targets are on the median over seeds; steps to threshold = the first env step at which the "
                      "mean of the last 20 training episodes reaches it (not reached counts as never); "
                      "eval = 20 deterministic episodes at the end.", ""]
            lines += _table(["task", "env steps", "threshold", "steps to threshold, median (reached)",
                             "eval return, median (min–max)", "wall s", "target", "result", "SB3 reference"], rows)

    lines += ["## How these figures were made", ""]
    for cmd in sorted({(e["bench_command"], e.get("scale", 1)) for e in entries}):
        dates = sorted(e["date"] for e in entries if (e["bench_command"], e.get("scale", 1)) == cmd)
        lines.append(f"- `{cmd[0]}` ({dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") + ")")
    for what in ("machine", "versions"):
        for v in sorted({json.dumps(e[what], sort_keys=True) for e in entries}):
            lines.append(f"- {what}: " + ", ".join(f"{k} {x}" for k, x in json.loads(v).items()))
    load = max((e.get("loadavg_1min_at_start") or 0 for e in entries), default=0)
    if load > 0.5:
        lines.append(f"- **load average at start up to {load}: the machine was not idle; timings are pessimistic**")
    lines += ["", "Per-seed figures and the exact minipg commands are in results.json."]
    return "\n".join(lines) + "\n"


def write(path, reference_path, quiet=False):
    """Rebuild results.md next to results.json. Returns a process exit code."""
    text = ""
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read().strip()
    if not text or not json.loads(text):
        print(f"{path} is missing or empty: run python bench/run.py first")
        return 1
    with open(reference_path) as f:
        reference = json.load(f)
    md = os.path.splitext(path)[0] + ".md"
    with open(md, "w") as f:
        f.write(build(json.loads(text), reference))
    if not quiet:
        print(f"wrote {md}")
    return 0
