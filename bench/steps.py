"""bench/steps.py -- where the microseconds of one rollout step and one PPO minibatch step go, and what stepping E
envs costs with each vector env minipg can use.

    python bench/steps.py                                  # this tree's code, CartPole-v1 and HalfCheetah-v5
    python bench/steps.py --tree /tmp/old                  # another checkout of minipg (for a before/after table)
    python bench/steps.py --out bench/steps-after.md
    python bench/steps.py --vec --out bench/rollout.md     # each vector env, per env step (was bench/rollout.py)
    python bench/steps.py --only CartPole                  # one setting (a smoke test; HalfCheetah needs mujoco)

Two settings: CartPole-v1 at the zoo settings (8 envs, minibatch 256) and HalfCheetah-v5 at the mujoco preset
(minibatch 64). Each part of a step is timed alone, on the arrays a real run makes (a Trainer's own batch after
one iteration), as the median over 7 blocks of repeated calls; the whole step is timed the same way, so the rows
can be compared with their sum. The rollout's env step is timed with the policy's actions replayed, so the
'policy and bookkeeping' row is what collect() adds to the physics. Run on an idle machine: every number here is
a time, and this machine's speed drifts within the hour (compare trees by running this script back to back).

--vec: fixed actions (zeros), no policy, 8 envs: the physics plus each vector env's own overhead. The rows: one env
alone (the floor), vecenv.SyncEnvs (a loop), gymnasium's AsyncVectorEnv with shared memory (a process per env),
and vecenv.ProcEnvs with `near` envs in this process and the rest in a child (minipg's default is near = 3 of 8:
this process also runs the policy in a real rollout, so it takes the smaller share). Medians of 3 blocks of
2,000 vector steps, after 100, each vector env alone on the machine.
"""
import copy
import functools
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy starts its threads: the matrices are small
import numpy as np  # noqa: E402

import common  # noqa: E402


def timed(f, reps, blocks=7, warmup=1):
    """Median seconds per call over `blocks` blocks of reps calls, after `warmup` calls."""
    for _ in range(warmup):
        f()
    times = []
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - t) / reps)
    return statistics.median(times)


def minibatch_parts(minipg, algos, nets, tr):
    """The PPO minibatch step of algos.ppo_epochs, part by part, on the trainer's own batch."""
    b = tr.collect()
    hp, agent = tr.hp, tr.agent
    prepared = algos.prepare(b, hp)
    if isinstance(prepared, tuple):  # a tree from before prepare returned algos.Samples
        obs, act, logp_old, adv, ret, val_old = prepared
    else:
        obs, act, logp_old, adv, ret, val_old = (prepared.obs, prepared.act, prepared.logp_old, prepared.adv,
                                                 prepared.v_target, prepared.val_old)
    pi, head, N = agent.pi, agent.pi.head, len(obs)

    def clip_dz():  # the gradient of the clipped loss w.r.t. z, as each tree computes it
        if hasattr(algos, "ppo_clip_objective"):
            return -algos.ppo_clip_objective(head, z, act[mb], logp_old[mb], A, hp.clip_eps)[1]
        return algos.dz_clip(head, z, z_old[mb], act[mb], logp_old[mb], A, hp, hp.clip_eps, 0.0)
    z_old, _ = pi.dist(obs)
    mb = np.random.default_rng(0).permutation(N)[:hp.minibatch]
    z, hs = pi.dist(obs[mb])
    A = algos.normalise(adv[mb])
    dz = clip_dz()
    v, hv = agent.v.forward(obs[mb])
    dv = v[:, 0] - ret[mb]
    dphi, _ = agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)
    g_pi = pi.backward(dz, hs)
    grad, _ = nets.clip_grad_norm(np.concatenate([g_pi, dphi]), hp.max_grad_norm)
    theta = pi.theta
    # the optimisers are timed on copies, so the agent's state does not drift between parts
    opt_pi, opt_v, phi = copy.deepcopy(agent.opt_pi), copy.deepcopy(agent.opt_v), agent.v.theta.copy()
    parts = [
        ("gather the minibatch (obs, act, logp_old, adv, ret, val_old, z_old)",
         lambda: (obs[mb], act[mb], logp_old[mb], adv[mb], ret[mb], val_old[mb], z_old[mb])),
        ("policy forward pi.dist", lambda: pi.dist(obs[mb])),
        ("advantage normalise", lambda: algos.normalise(adv[mb])),
        ("dz of the clipped objective (log_prob, dlogp)", clip_dz),
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


def vec_rows(minipg, vecenv, env_id, E=8):
    """(vector env, us per env step) for one env alone and each vector env, E envs, fixed actions."""
    import gymnasium as gym
    sp = minipg.spaces_of(env_id)
    single = minipg.make_env(env_id)
    single.reset(seed=0)
    a = 0 if sp.discrete else np.zeros(sp.n_act, np.float32)

    def step_one():
        _, _, term, trunc, _ = single.step(a)
        if term or trunc:
            single.reset()
    rows = [("one env alone (the floor)", timed(step_one, 20_000, blocks=1, warmup=0))]
    action = np.zeros(E, np.int64) if sp.discrete else np.zeros((E, sp.n_act), np.float32)
    envs = {"SyncEnvs": lambda: minipg.make_envs(env_id, E, "sync"),
            "gymnasium AsyncVectorEnv, shared memory": lambda: gym.vector.AsyncVectorEnv(
                [lambda: minipg.make_env(env_id) for _ in range(E)], shared_memory=True,
                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)}
    for near in (4, 3, 2):
        envs[f"ProcEnvs, {near} here and {E - near} in the child"] = functools.partial(
            vecenv.ProcEnvs, functools.partial(minipg.make_env, env_id), E, sp.obs_dim, 0 if sp.discrete else sp.n_act,
            near=near)
    for name, make in envs.items():
        v = make()
        v.reset(seed=0)
        rows.append((name, timed(lambda: v.step(action), 2000, blocks=3, warmup=100) / E))
        v.close()
    return [(name, t * 1e6) for name, t in rows]


SETTINGS = {
    "CartPole-v1, zoo PPO (8 envs, minibatch 256)": dict(algo="ppo", steps=100_000),
    "HalfCheetah-v5, mujoco preset (8 envs, minibatch 64)": dict(algo="ppo", preset="mujoco"),
}


def profile(minipg, algos, nets, only):
    lines = ["Microseconds, medians of 7 blocks.", ""]
    for title, given in SETTINGS.items():
        if only not in title:
            continue
        run, hp = getattr(minipg, "CONFIG", minipg).resolve(dict(given))
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
    return "\n".join(lines)


def vec_table(minipg, vecenv, only):
    lines = ["| env | vector env | us per env step |", "|---|---|---:|"]
    for env_id in ("HalfCheetah-v5", "CartPole-v1"):
        if only in env_id:
            rows = [f"| {env_id} | {name} | {us:.1f} |" for name, us in vec_rows(minipg, vecenv, env_id)]
            print("\n".join(rows), flush=True)
            lines += rows
    lines += ["", "In a real rollout this process also runs the policy once per vector step (about 30 us for 8 "
              "envs), while the child waits; that is why the default gives the child the larger share."]
    return "\n".join(lines)


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--tree", default=common.ROOT, help="the minipg checkout to time (default: this one)")
    p.add_argument("--vec", action="store_true", help="each vector env's cost per env step instead of the profile")
    p.add_argument("--only", default="", help="the settings (or with --vec, the envs) whose name contains this")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    tree = os.path.abspath(args.tree)
    sys.path.insert(0, tree)
    import minipg, algos, nets, vecenv  # noqa: E401 (the tree's own)
    if args.vec:
        common.write_results(args.out, "Stepping 8 envs, per env step", vec_table(minipg, vecenv, args.only), tree)
    else:
        common.write_results(args.out, "One rollout step and one PPO minibatch step, part by part",
                             profile(minipg, algos, nets, args.only), tree)


if __name__ == "__main__":
    main()
