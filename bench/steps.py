"""bench/steps.py -- where the microseconds of one rollout step and one PPO minibatch step go.

    python bench/steps.py                     # this tree's code
    python bench/steps.py --tree /tmp/old     # another checkout of minipg (for a before/after table)
    python bench/steps.py --out bench/steps-after.md

Two settings: CartPole-v1 at the zoo settings (8 envs, minibatch 256) and HalfCheetah-v5 at the mujoco preset
(minibatch 64). Each part of a step is timed alone, on the arrays a real run makes (a Trainer's own batch after
one iteration), as the median over 7 blocks of repeated calls; the whole step is timed the same way, so the rows
can be compared with their sum. The rollout's env step is timed with the policy's actions replayed, so the
'policy and bookkeeping' row is what collect() adds to the physics. Run on an idle machine: every number here is
a time, and this machine's speed drifts within the hour (compare trees by running this script back to back).
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np


def timed(f, reps):
    """Median seconds per call over 7 blocks of reps calls."""
    f()
    blocks = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        blocks.append((time.perf_counter() - t) / reps)
    return statistics.median(blocks)


def minibatch_parts(minipg, algos, nets, tr):
    """The PPO minibatch step of algos.ppo_epochs, part by part, on the trainer's own batch."""
    b = tr.collect()
    hp, agent = tr.hp, tr.agent
    obs, act, logp_old, adv, ret, val_old = algos.prepare(b, hp)
    pi, head, N = agent.pi, agent.pi.head, len(obs)
    z_old, _ = pi.dist(obs)
    mb = np.random.default_rng(0).permutation(N)[:hp.minibatch]
    z, hs = pi.dist(obs[mb])
    A = algos.normalise(adv[mb])
    dz = algos.dz_clip(head, z, z_old[mb], act[mb], logp_old[mb], A, hp, hp.clip_eps, 0.0)
    v, hv = agent.v.forward(obs[mb])
    dv = v[:, 0] - ret[mb]
    dphi, _ = agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)
    g_pi = pi.backward(dz, hs)
    grad, _ = nets.clip_grad_norm(np.concatenate([g_pi, dphi]), hp.max_grad_norm)
    theta = pi.theta
    # the optimisers are timed on copies, so the agent's state does not drift between parts
    import copy
    opt_pi, opt_v, phi = copy.deepcopy(agent.opt_pi), copy.deepcopy(agent.opt_v), agent.v.theta.copy()
    parts = [
        ("gather the minibatch (obs, act, logp_old, adv, ret, val_old, z_old)",
         lambda: (obs[mb], act[mb], logp_old[mb], adv[mb], ret[mb], val_old[mb], z_old[mb])),
        ("policy forward pi.dist", lambda: pi.dist(obs[mb])),
        ("advantage normalise", lambda: algos.normalise(adv[mb])),
        ("dz of the clipped objective (log_prob, dlogp)",
         lambda: algos.dz_clip(head, z, z_old[mb], act[mb], logp_old[mb], A, hp, hp.clip_eps, 0.0)),
        ("value forward", lambda: agent.v.forward(obs[mb])),
        ("value backward", lambda: agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)),
        ("policy backward", lambda: pi.backward(dz, hs)),
        ("joint gradient-norm clip", lambda: nets.clip_grad_norm(np.concatenate([g_pi, dphi]), hp.max_grad_norm)),
        ("Adam step, policy (and theta get/set)", lambda: setattr(pi, "theta", opt_pi.step(pi.theta, grad[:pi.n_params]))),
        ("Adam step, critic", lambda: opt_v.step(phi, grad[pi.n_params:])),
    ]
    n_mb, saved = max(1, N // hp.minibatch), hp.epochs
    theta0, phi0 = pi.theta, agent.v.theta.copy()

    def update(epochs):
        hp.epochs = epochs
        algos.UPDATES["ppo"](agent, b, hp, np.random.default_rng(0), 1.0)
        hp.epochs = saved
    # the whole step: an update of 1 + k epochs less one of 1, over the k * n_mb (>= 64) minibatch steps between
    # them, so that prepare(), the diagnostics and the full-batch passes cancel; the epoch's shuffle is counted in
    k = max(4, -(-64 // n_mb))
    whole = (timed(lambda: update(1 + k), 3) - timed(lambda: update(1), 3)) / (k * n_mb)
    pi.theta, agent.v.theta[:] = theta0, phi0
    rows = [(name, timed(f, 2000 if N <= 4096 else 500)) for name, f in parts]
    pi.theta, agent.v.theta[:] = theta0, phi0
    return rows, whole


def rollout_parts(minipg, tr):
    """One vector step of collect(): the whole of it, and the env step alone with the same kind of actions."""
    E, T = tr.run.num_envs, tr.run.num_steps
    whole = timed(tr.collect, 2) / T
    obs = tr.norm.obs(tr.raw_obs).astype(tr.agent.dtype)
    a, _, _ = tr.agent.act(obs, tr.rng)
    a_env = tr.spaces.to_env(a)
    rows = [("agent.act: policy forward, sample, log_prob, value", lambda: tr.agent.act(obs, tr.rng)),
            ("to_env (clip the actions)", lambda: tr.spaces.to_env(a)),
            ("normaliser: observations (update + normalise)", lambda: tr.norm.obs(tr.raw_obs, update=True)),
            ("envs.step (the physics of E envs, and resets)", lambda: tr.envs.step(a_env))]
    out = [(name, timed(f, max(20, 2000 // E))) for name, f in rows]
    return out, whole


SETTINGS = {
    "CartPole-v1, zoo PPO (8 envs, minibatch 256)": dict(algo="ppo", steps=100_000),
    "HalfCheetah-v5, mujoco preset (8 envs, minibatch 64)": dict(algo="ppo", preset="mujoco"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.tree))
    import minipg, algos, nets  # noqa: E401 (the tree's own)
    commit = subprocess.run(["git", "-C", args.tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", args.tree, "status", "--porcelain", "--", "*.py"], capture_output=True,
                           text=True).stdout.strip()
    lines = [f"# One rollout step and one PPO minibatch step, part by part ({commit}{' + changes' if dirty else ''})",
             "", f"`python bench/steps.py --tree {args.tree}` on {platform.processor() or platform.machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; microseconds, medians of 7 blocks.", ""]
    for title, given in SETTINGS.items():
        run, hp = minipg.resolve(dict(given))
        tr = minipg.Trainer(run, hp)
        tr.start()
        tr.iteration()
        mrows, mwhole = minibatch_parts(minipg, algos, nets, tr)
        rrows, rwhole = rollout_parts(minipg, tr)
        tr.close()
        lines += [f"## {title}", "", "| one PPO minibatch step | us |", "|---|---:|"]
        lines += [f"| {n} | {t * 1e6:.1f} |" for n, t in mrows]
        lines += [f"| sum of the parts | {sum(t for _, t in mrows) * 1e6:.1f} |",
                  f"| **the whole step, inside ppo_epochs** | **{mwhole * 1e6:.1f}** |", "",
                  f"| one rollout vector step ({run.num_envs} envs, vec={run.vec}) | us |", "|---|---:|"]
        lines += [f"| {n} | {t * 1e6:.1f} |" for n, t in rrows]
        env = dict(rrows)["envs.step (the physics of E envs, and resets)"]
        lines += [f"| **the whole vector step, inside collect()** | **{rwhole * 1e6:.1f}** |",
                  f"| what collect() adds to envs.step | {(rwhole - env) * 1e6:.1f} "
                  f"({(rwhole - env) / run.num_envs * 1e6:.1f} per env step) |", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
