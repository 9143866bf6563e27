"""minipg.py -- the command line: config, environments, rollouts, the training loop, checkpoints, evaluation, plots.

    python minipg.py --algo ppo                          # train PPO on CartPole-v1, then evaluate
    python minipg.py --algo trpo --env Pendulum-v1       # any Box-observation env with Discrete or Box actions
    python minipg.py --algo ppo --seeds 0-4              # five seeds and a summary table
    python minipg.py --eval runs/<run>/policy.npz        # evaluate a saved policy (--video DIR, --render)
    python minipg.py --plot runs/<run> [runs/<run2> ...] # learning_curve.png
    python minipg.py --resume runs/<run>                 # continue an interrupted run
    python minipg.py --help                              # every hyperparameter, grouped per algorithm

This is the only file that touches gymnasium, the filesystem or the command line; the gradient math is in
nets.py and algos.py.
"""
import argparse
import csv
import dataclasses
import difflib
import json
import math
import os
import signal
import sys
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass, field, asdict

# The matrices here are small (batch x 64): BLAS threads cost more than they save (measured in bench/).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import algos  # noqa: E402
import nets  # noqa: E402


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


class NonFiniteError(Exception):
    """A NaN or inf appeared in training."""


def _opt(default, doc, group="run"):
    return field(default=default, metadata={"sym": "", "help": doc, "group": group})


@dataclass
class Run:
    """What to run, where, and for how long. Every field is a flag (--num-envs, ...)."""
    algo: str = _opt("ppo", "algorithm: " + " | ".join(algos.UPDATES))
    env: str = _opt("CartPole-v1", "gymnasium env id (Box observations; Discrete or Box actions)")
    steps: int = _opt(0, "total env steps (0 = the algorithm's default)")
    seed: int = _opt(0, "random seed (one np.random.Generator per run, and the envs' seeds)")
    seeds: str = _opt("", "several seeds, e.g. 0-4 or 0,3,7: runs each and prints a summary table")
    num_envs: int = _opt(0, "E, parallel envs (0 = the algorithm's default)")
    num_steps: int = _opt(0, "T, steps per env per batch; the batch is E*T (0 = the algorithm's default)")
    vec: str = _opt("sync", "sync (minipg.SyncEnvs: the envs in a plain loop) | async (gymnasium's AsyncVectorEnv: "
                            "one process per env, uses more cores)")
    hidden: str = _opt("64,64", "hidden layer sizes, comma-separated")
    activation: str = _opt("tanh", "tanh | relu")
    dtype: str = _opt("float32", "float32 | float64 for training (float32 is ~2x faster, bench/; the tests use float64)")
    init_log_std: float = _opt(0.0, "initial log σ of a Gaussian policy")
    norm_obs: str = _opt("auto", "observation normalisation by running mean/std: on | off | auto (on for Box actions)")
    obs_clip: float = _opt(10.0, "clip normalised observations to ±this")
    norm_reward: str = _opt("auto", "scale rewards by the running std of the discounted return: on | off | auto (on for Box actions)")
    out: str = _opt("", "output folder (default runs/<env>-<algo>-s<seed>-<timestamp>)")
    eval_episodes: int = _opt(10, "deterministic evaluation episodes at the end (alias --episodes)")
    target: float = _opt(float("nan"), "return threshold for steps_to_threshold (default: the env's reward_threshold)")
    save_every_s: float = _opt(30.0, "write policy.npz at most every this many seconds, and at the end (0 = every iteration)")
    log_every: int = _opt(0, "print a progress line every this many iterations (0 = about 40 lines per run)")
    preset: str = _opt("", "named hyperparameter set, applied before your flags: " + ", ".join(["mujoco", "pendulum"]))


# Defaults per algorithm (applied before --preset and your flags). They solve CartPole-v1.
ALGO_DEFAULTS = {
    # rl-zoo's tuned CartPole PPO: 8 envs x 32 steps, 20 epochs of minibatch 256, lr and clip annealed
    "ppo": dict(steps=100_000, num_envs=8, num_steps=32, minibatch=256, epochs=20, gamma=0.98, lam=0.8,
                lr_pi=1e-3, anneal_lr=True, anneal_clip=True),
    # PPO-Penalty on PPO's batch; d_targ 0.02 (the PPO paper's 0.01 took a median 52k steps to 475 here, 0.02 36k)
    "ppo-penalty": dict(steps=100_000, num_envs=8, num_steps=32, minibatch=256, epochs=20, gamma=0.98, lam=0.8,
                        lr_pi=1e-3, anneal_lr=True, target_kl=0.02, beta=1.0),
    "trpo": dict(steps=100_000, num_envs=2, num_steps=512, lam=0.98, cg_damping=1e-3, max_kl=0.01,
                 v_iters=20, v_minibatch=512),
    "npg": dict(steps=100_000, num_envs=2, num_steps=512, lam=0.98, cg_damping=1e-3, max_kl=0.01,
                v_iters=20, v_minibatch=512),
    "vpg": dict(steps=300_000, num_envs=4, num_steps=500, lr_pi=3e-3, v_iters=20, v_minibatch=256),
    "a2c": dict(steps=300_000, num_envs=8, num_steps=5, lam=1.0, optimiser="rmsprop", lr_pi=7e-4, norm_adv=False),
    "reinforce": dict(steps=500_000, num_envs=4, num_steps=1000, lr_pi=1e-2, v_iters=20, v_minibatch=256),
}

# Named presets for other task families (--preset NAME), shown in --help and the README.
PRESETS = {
    # MuJoCo (HalfCheetah-v5 and kin). PPO: CleanRL's ppo_continuous_action (1 env x 2048, 10 epochs of 64, lr 3e-4
    # annealed, normalised observations and rewards) with log sigma_0 = -1 and a constant clip range: at 200k steps
    # that was 3100 on HalfCheetah against 860 with log sigma_0 = 0 and a decaying clip (bench/). TRPO: sb3-contrib's
    # zoo values (delta 0.04, CG damping 0.1, 20 critic epochs of minibatch 128 at lr 1e-3).
    "mujoco": dict(env="HalfCheetah-v5", num_envs=1, num_steps=2048, minibatch=64, epochs=10, lr_pi=3e-4, lr_v=1e-3,
                   anneal_lr=True, anneal_clip=False, gamma=0.99, lam=0.95, max_grad_norm=0.5, init_log_std=-1.0,
                   norm_obs="on", norm_reward="on", steps=1_000_000,
                   max_kl=0.04, cg_damping=0.1, cg_iters=15, v_iters=20, v_minibatch=128),
    # rl-zoo's Pendulum PPO without gSDE: 4 envs x 1024, 10 epochs of 64, gamma 0.9
    # (no normalisation, as in the zoo: with it the final evaluation was -740 at 100k, without it -159; bench/)
    "pendulum": dict(env="Pendulum-v1", num_envs=4, num_steps=1024, minibatch=64, epochs=10, gamma=0.9, lam=0.95, lr_pi=1e-3,
                     norm_obs="off", norm_reward="off", steps=100_000),
}

TIMING_COLUMNS = ("steps_per_s", "rollout_s", "update_s", "wall_s")  # cumulative seconds in each phase
PROGRESS_COLUMNS = ("iter", "steps", "episodes", "return_mean", "return_std", "length_mean", "loss_pi", "loss_v",
                    "kl", "entropy", "explained_var", "clipfrac", "backtracks", "beta") + TIMING_COLUMNS


# ---------------------------------------------------------------------------------------------------------------
# Command line, generated from the dataclasses
# ---------------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(message)


def _flag(name):
    return "--" + name.replace("_", "-")


MODES = ("eval", "video", "render", "plot", "resume", "lab")  # flags that pick what to do, not how to train


def parse_args(argv):
    """argv -> (the config flags given, the mode flags)."""
    given = vars(build_parser().parse_args(argv))
    return {k: v for k, v in given.items() if k not in MODES}, {k: given.get(k) for k in MODES}


GROUP_TITLES = {"run": "what to run (minipg.Run)", "common": "every algorithm (algos.Hyper)",
                "ppo": "ppo and ppo-penalty", "ppo-penalty": "ppo-penalty only", "trpo": "npg and trpo",
                "reinforce": "reinforce"}


def build_parser():
    p = _Parser(prog="minipg.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Per-algorithm defaults:\n" + "\n".join(f"  {a}: {d}" for a, d in ALGO_DEFAULTS.items())
                + "\nPresets:\n" + "\n".join(f"  {a}: {d}" for a, d in PRESETS.items()))
    groups = {}
    for cls in (Run, algos.Hyper):
        for f in dataclasses.fields(cls):
            g = f.metadata["group"]
            if g not in groups:
                groups[g] = p.add_argument_group(GROUP_TITLES.get(g, f"{g} options"))
            sym = f.metadata["sym"]
            doc = (f"{sym}: " if sym else "") + f.metadata["help"] + f" (default: {f.default})"
            kind = argparse.BooleanOptionalAction if isinstance(f.default, bool) else None
            typ = None if kind else type(f.default)
            names = [_flag(f.name)] + (["--episodes"] if f.name == "eval_episodes" else [])
            if kind:
                groups[g].add_argument(*names, dest=f.name, action=kind, default=argparse.SUPPRESS, help=doc)
            else:
                groups[g].add_argument(*names, dest=f.name, type=typ, default=argparse.SUPPRESS, help=doc,
                                       metavar=f.name.upper())
    m = p.add_argument_group("modes (instead of training)")
    m.add_argument("--eval", metavar="POLICY.npz", help="evaluate a saved policy with its saved normalisation")
    m.add_argument("--video", metavar="DIR", help="with --eval: record videos to DIR (needs moviepy)")
    m.add_argument("--render", action="store_true", help="with --eval: show a window (needs pygame)")
    m.add_argument("--plot", nargs="+", metavar="DIR", help="write learning_curve.png for these runs")
    m.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its last checkpoint")
    m.add_argument("--lab", choices=["variance"], help="measure the notes' claims about the gradient estimator on "
                   "--env (tables, variance.png, kl_quadratic.png in --out); about a minute on CartPole")
    return p


def resolve(given):
    """Defaults <- the algorithm's defaults <- --preset <- flags given. Returns (Run, Hyper)."""
    algo = given.get("algo", Run.algo)
    if algo not in algos.UPDATES:
        raise UsageError(f"unknown --algo {algo!r}; choose one of {', '.join(algos.UPDATES)}")
    preset = given.get("preset", "")
    if preset and preset not in PRESETS:
        raise UsageError(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {**ALGO_DEFAULTS[algo], **(PRESETS[preset] if preset else {}), **given}
    names = {f.name for f in dataclasses.fields(Run)}
    run = Run(**{k: v for k, v in values.items() if k in names})
    hp = algos.Hyper(**{k: v for k, v in values.items() if k not in names})
    validate(run, hp)
    return run, hp


def parse_hidden(text):
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--hidden must be positive layer sizes like 64,64, got {text!r}")
    return sizes


def parse_seeds(text):
    try:
        if "-" in text:
            lo, hi = (int(s) for s in text.split("-"))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds:
        raise UsageError(f"--seeds must look like 0-4 or 0,3,7, got {text!r}")
    return seeds


def validate(run, hp):
    checks = [
        (0 < hp.gamma <= 1, f"--gamma must be in (0, 1], got {hp.gamma}"),
        (0 <= hp.lam <= 1, f"--lam must be in [0, 1], got {hp.lam}"),
        (hp.lr_pi > 0, f"--lr-pi must be > 0, got {hp.lr_pi}"),
        (hp.lr_v > 0, f"--lr-v must be > 0, got {hp.lr_v}"),
        (hp.clip_eps > 0, f"--clip-eps must be > 0, got {hp.clip_eps}"),
        (hp.max_kl > 0, f"--max-kl must be > 0, got {hp.max_kl}"),
        (0 < hp.backtrack_coef < 1, f"--backtrack-coef must be in (0, 1), got {hp.backtrack_coef}"),
        (hp.target_kl > 0 or run.algo != "ppo-penalty", "--target-kl must be > 0 for ppo-penalty"),
        (min(hp.epochs, hp.minibatch, hp.v_minibatch, hp.cg_iters) >= 1 and hp.v_iters >= 0,
         "--epochs, --minibatch, --v-minibatch and --cg-iters must be >= 1"),
        (hp.phi in ("return", "rtg"), f"--phi must be return or rtg, got {hp.phi!r}"),
        (hp.baseline in ("none", "mean", "optimal", "v"), f"--baseline must be none, mean, optimal or v, got {hp.baseline!r}"),
        (hp.beta_rule in ("ppo", "additive"), f"--beta-rule must be ppo or additive, got {hp.beta_rule!r}"),
        (hp.optimiser in nets.OPTIMISERS, f"--optimiser must be adam or rmsprop, got {hp.optimiser!r}"),
        (run.activation in nets.ACTIVATIONS, f"--activation must be tanh or relu, got {run.activation!r}"),
        (run.vec in ("sync", "async"), f"--vec must be sync or async, got {run.vec!r}"),
        (run.dtype in ("float32", "float64"), f"--dtype must be float32 or float64, got {run.dtype!r}"),
        (run.norm_obs in ("on", "off", "auto"), f"--norm-obs must be on, off or auto, got {run.norm_obs!r}"),
        (run.norm_reward in ("on", "off", "auto"), f"--norm-reward must be on, off or auto, got {run.norm_reward!r}"),
        (run.num_envs >= 1 and run.num_steps >= 1, "--num-envs and --num-steps must be >= 1"),
        (run.steps >= run.num_envs * run.num_steps,
         f"--steps {run.steps} is smaller than one batch (num_envs*num_steps = {run.num_envs * run.num_steps})"),
        (run.eval_episodes >= 0 and run.save_every_s >= 0, "--eval-episodes and --save-every-s must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    parse_hidden(run.hidden)
    if run.seeds:
        parse_seeds(run.seeds)


# ---------------------------------------------------------------------------------------------------------------
# Environments and normalisation
# ---------------------------------------------------------------------------------------------------------------

def _gym():
    import gymnasium
    return gymnasium


def check_env_id(env_id):
    """Unknown ids get a one-line error with close names. 'module:EnvId' imports module first (it registers EnvId),
    as gymnasium.make does, so your own envs work from the command line."""
    gym = _gym()
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            __import__(module)
        except ImportError as e:
            raise UsageError(f"cannot import {module!r} for env {env_id!r}: {e}")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see gymnasium.registry for the ids"
        raise UsageError(f"unknown env id {env_id!r}{hint}")


def make_env(env_id, render_mode=None):
    gym = _gym()
    check_env_id(env_id)
    try:
        env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))
    except gym.error.DependencyNotInstalled as e:
        raise UsageError(f"{env_id} needs an optional extra: {str(e).splitlines()[0]}"
                         + (' (pip install "gymnasium[mujoco]")' if "mujoco" in str(e).lower() else ""))
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        env.close()
        raise UsageError(f"{env_id} has a {type(obs_space).__name__} observation space; minipg needs a Box")
    if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
        env.close()
        raise UsageError(f"{env_id} has a {type(act_space).__name__} action space; minipg needs Discrete or Box")
    if len(obs_space.shape) != 1:
        env = gym.wrappers.FlattenObservation(env)
    return env


def make_envs(env_id, n, vec="sync"):
    """E copies of the env as one vector env with SAME_STEP autoreset: on the step an episode ends, the env
    resets at once and info['final_obs'][i] holds its true last observation (for bootstrapping truncations).
    'sync' is SyncEnvs below; 'async' is gymnasium's AsyncVectorEnv (one process per env)."""
    gym = _gym()
    make_env(env_id).close()  # validate once, in this process, with a clear message
    if vec == "async":
        return gym.vector.AsyncVectorEnv([lambda: make_env(env_id) for _ in range(n)],
                                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return SyncEnvs([make_env(env_id) for _ in range(n)])


class SyncEnvs:
    """gymnasium's SyncVectorEnv with SAME_STEP autoreset, cut down to what collect() uses: the same envs, the
    same seeds (env i gets seed + i) and the same observations, but a plain loop. Its generic space handling
    (numpy-scalar actions, batched infos) cost about 40% of CartPole's step time (bench/results.md)."""

    def __init__(self, envs):
        self.envs, self.num_envs = envs, len(envs)
        self.single_observation_space, self.single_action_space = envs[0].observation_space, envs[0].action_space
        self.discrete = isinstance(self.single_action_space, _gym().spaces.Discrete)

    def reset(self, seed=None):
        obs = [e.reset(seed=None if seed is None else seed + i)[0] for i, e in enumerate(self.envs)]
        return np.stack(obs), {}

    def step(self, actions):
        """actions (E,) or (E, A) -> obs (E, obs_dim), rew, terminated, truncated (E,), {'final_obs': {i: obs}}."""
        obs, final = [None] * self.num_envs, {}
        rew, term, trunc = np.zeros(self.num_envs), np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        for i, (env, a) in enumerate(zip(self.envs, actions.tolist() if self.discrete else actions)):
            obs[i], rew[i], term[i], trunc[i], _ = env.step(a)
            if term[i] or trunc[i]:
                final[i], (obs[i], _) = obs[i], env.reset()
        return np.array(obs), rew, term, trunc, {"final_obs": final}

    def close(self):
        for env in self.envs:
            env.close()


def head_for(act_space):
    gym = _gym()
    if isinstance(act_space, gym.spaces.Discrete):
        return nets.Categorical(int(act_space.n))
    return nets.DiagGaussian(int(np.prod(act_space.shape)))


class RunningMeanStd:
    """Running mean and variance (Chan et al.'s parallel update), for observations and returns."""

    def __init__(self, shape=()):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, x):  # x: (n, *shape)
        n = len(x)
        m = x.sum(0) / n  # x.mean(0) and x.var(0), without their per-call overhead (once per env step)
        d = x - m
        v = (d * d).sum(0) / n
        delta, total = m - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + v * n + delta ** 2 * self.count * n / total) / total
        self.count = total


class Normaliser:
    """Observation normalisation (clipped to ±obs_clip) and reward scaling by the running std of the
    discounted return, each on or off by config, and saved with the policy."""

    def __init__(self, obs_dim, num_envs, norm_obs, norm_reward, obs_clip, gamma):
        self.norm_obs, self.norm_reward, self.obs_clip, self.gamma = norm_obs, norm_reward, obs_clip, gamma
        self.obs_rms, self.ret_rms = RunningMeanStd((obs_dim,)), RunningMeanStd(())
        self.discounted = np.zeros(num_envs)  # (E,) running discounted return, for the reward scale

    def obs(self, raw, update=False):
        if not self.norm_obs:
            return raw
        if update:
            self.obs_rms.update(raw)
        return np.clip((raw - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -self.obs_clip, self.obs_clip)

    def reward(self, rew, done):
        if not self.norm_reward:
            return rew
        self.discounted = self.discounted * self.gamma + rew
        self.ret_rms.update(self.discounted)
        self.discounted[done] = 0.0
        return rew / np.sqrt(self.ret_rms.var + 1e-8)

    def state(self):
        return {"obs_mean": self.obs_rms.mean, "obs_var": self.obs_rms.var, "obs_count": np.array(self.obs_rms.count),
                "ret_var": np.array(self.ret_rms.var), "ret_count": np.array(self.ret_rms.count)}

    def load(self, s):
        self.obs_rms.mean, self.obs_rms.var, self.obs_rms.count = s["obs_mean"], s["obs_var"], float(s["obs_count"])
        self.ret_rms.var, self.ret_rms.count = float(s["ret_var"]), float(s["ret_count"])


# ---------------------------------------------------------------------------------------------------------------
# Rollouts
# ---------------------------------------------------------------------------------------------------------------

class Rollout:
    """The vector env and what carries over between batches: the current observation, the running episode
    returns, and the list of finished episodes (env step at which each ended, its return and length)."""

    def __init__(self, envs, norm, seed):
        self.envs, self.norm = envs, norm
        self.act_space = envs.single_action_space
        self.discrete = isinstance(self.act_space, _gym().spaces.Discrete)
        self.raw_obs = envs.reset(seed=seed)[0].astype(np.float64)  # (E, obs_dim)
        self.ep_ret, self.ep_len = np.zeros(envs.num_envs), np.zeros(envs.num_envs, dtype=np.int64)
        self.steps, self.episodes = 0, []  # episodes: (step, return, length)

    def reset(self):
        """Start every env afresh (REINFORCE wants whole episodes); unfinished episodes are dropped."""
        self.raw_obs = self.envs.reset()[0].astype(np.float64)
        self.ep_ret[:], self.ep_len[:] = 0.0, 0
        self.norm.discounted[:] = 0.0


def collect(agent, ro, T, rng):
    """Run E envs for T steps with the current policy. Returns an algos.Batch of (T, E) arrays.
    Gaussian actions are clipped to the bounds only on the way into the env; the batch keeps the sampled ones."""
    E, obs_dim, dt = ro.envs.num_envs, ro.raw_obs.shape[1], agent.dtype
    b = algos.Batch(obs=np.zeros((T, E, obs_dim), dt), act=None, logp=np.zeros((T, E), dt), val=np.zeros((T, E), dt),
                    rew=np.zeros((T, E), dt), terminated=np.zeros((T, E), bool), truncated=np.zeros((T, E), bool),
                    final_val=np.zeros((T, E), dt), last_val=None)
    acts = []
    obs = ro.norm.obs(ro.raw_obs, update=True).astype(dt)
    for t in range(T):
        a, logp, val = agent.act(obs, rng)
        env_a = a if ro.discrete else np.clip(a, ro.act_space.low, ro.act_space.high)
        raw_next, rew, term, trunc, info = ro.envs.step(env_a)
        b.obs[t], b.logp[t], b.val[t], b.terminated[t], b.truncated[t] = obs, logp, val, term, trunc
        acts.append(a)
        done = term | trunc
        if trunc.any():  # bootstrap a time-limit cut from V(true final observation), normalised as usual
            rows = np.flatnonzero(trunc)
            final = np.stack([info["final_obs"][i] for i in rows]).astype(np.float64).reshape(len(rows), -1)
            b.final_val[t, rows] = agent.value(ro.norm.obs(final).astype(dt))
        b.rew[t] = ro.norm.reward(rew.astype(np.float64), done)
        ro.ep_ret += rew
        ro.ep_len += 1
        ro.steps += E
        if done.any():
            for i in np.flatnonzero(done):
                ro.episodes.append((ro.steps, float(ro.ep_ret[i]), int(ro.ep_len[i])))
            ro.ep_ret[done], ro.ep_len[done] = 0.0, 0
        ro.raw_obs = raw_next.astype(np.float64).reshape(E, -1)
        obs = ro.norm.obs(ro.raw_obs, update=True).astype(dt)
    b.act = np.array(acts) if ro.discrete else np.array(acts).reshape(T, E, -1)
    b.last_val = agent.value(obs)
    return b


def evaluate(agent, norm, env_id, episodes, seed, render_mode=None, video=None):
    """Deterministic policy (the head's mode), frozen normalisation; episode i starts from reset(seed + i).
    Returns the list of episode returns."""
    if render_mode == "rgb_array":
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames for a video need no screen
    env = make_env(env_id, render_mode=render_mode)
    if video:
        try:
            import moviepy  # noqa: F401  (gymnasium's RecordVideo writes mp4 through moviepy)
        except ImportError:
            env.close()
            raise UsageError("--video needs moviepy: pip install moviepy")
        env = _gym().wrappers.RecordVideo(env, video, episode_trigger=lambda i: True, disable_logger=True)
    try:
        with warnings.catch_warnings():  # gymnasium's notes about video folders and frames
            warnings.simplefilter("ignore")
            return _episodes(agent, norm, env, episodes, seed)
    except _gym().error.DependencyNotInstalled as e:  # rendering needs an extra (pygame, mujoco, ...)
        raise UsageError(f"{'--video' if video else '--render'} needs an optional extra: {str(e).splitlines()[0]}")
    finally:
        env.close()


def _episodes(agent, norm, env, episodes, seed):
    act_space, returns = env.action_space, []
    discrete = isinstance(act_space, _gym().spaces.Discrete)
    for i in range(episodes):
        raw, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            z, _ = agent.pi.dist(norm.obs(np.asarray(raw, np.float64).reshape(1, -1)).astype(agent.dtype))
            a = agent.pi.head.mode(z)[0]
            raw, r, term, trunc, _ = env.step(int(a) if discrete else np.clip(a, act_space.low, act_space.high))
            total, done = total + float(r), term or trunc
        returns.append(total)
    return returns


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: policy.npz holds weights, optimiser states, normalisation, RNG, progress, config and spaces
# ---------------------------------------------------------------------------------------------------------------

def save_checkpoint(path, agent, norm, rng, ro, it, run, hp, spaces):
    arrays = {"theta_pi": agent.pi.theta, "theta_v": agent.v.theta,
              **{f"opt_pi_{k}": v for k, v in agent.opt_pi.state().items()},
              **{f"opt_v_{k}": v for k, v in agent.opt_v.state().items()},
              **{f"norm_{k}": v for k, v in norm.state().items()},
              "norm_discounted": norm.discounted, "beta": np.array(np.nan if agent.beta is None else agent.beta),
              "episodes": np.array(ro.episodes, dtype=np.float64).reshape(-1, 3),
              "iteration": np.array(it), "steps": np.array(ro.steps),
              "rng_state": np.array(json.dumps(rng.bit_generator.state)),
              "config": np.array(json.dumps({"run": asdict(run), "hyper": asdict(hp)})),
              "env_id": np.array(run.env), "spaces": np.array(json.dumps(spaces))}
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:  # atomic: write a temp file, then rename over the old checkpoint
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path):
    """Returns a dict of arrays, or raises UsageError for a missing, truncated or corrupt file."""
    if not os.path.isfile(path):
        raise UsageError(f"no such policy file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            ck = {k: z[k] for k in z.files}
        json.loads(str(ck["config"])), json.loads(str(ck["spaces"])), str(ck["env_id"])
        ck["theta_pi"], ck["theta_v"]
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, KeyError, ...
        raise UsageError(f"{path} is not a readable minipg policy ({type(e).__name__}: {e})".splitlines()[0])
    return ck


def spaces_of(envs):
    o, a = envs.single_observation_space, envs.single_action_space
    return {"obs_dim": int(np.prod(o.shape)), "action": type(a).__name__,
            "n": int(a.n) if hasattr(a, "n") else None, "act_shape": list(a.shape or ())}


def build_agent(run, hp, obs_dim, head, rng):
    return nets.Agent(obs_dim, head, parse_hidden(run.hidden), run.activation, rng, hp.optimiser,
                      hp.lr_pi, hp.lr_v, hp.adam_eps, run.init_log_std, run.dtype)


def restore(ck, agent, norm):
    agent.pi.theta = ck["theta_pi"]
    agent.v.theta[:] = ck["theta_v"]
    agent.opt_pi.load({k[7:]: v for k, v in ck.items() if k.startswith("opt_pi_")})
    agent.opt_v.load({k[6:]: v for k, v in ck.items() if k.startswith("opt_v_")})
    norm.load({k[5:]: v for k, v in ck.items() if k.startswith("norm_")})
    agent.beta = None if np.isnan(ck["beta"]) else float(ck["beta"])


def agent_from_checkpoint(ck, env_id=None):
    """Rebuild the agent and normaliser saved in a checkpoint, checking it fits the env."""
    cfg, spaces = json.loads(str(ck["config"])), json.loads(str(ck["spaces"]))
    run, hp = Run(**cfg["run"]), algos.Hyper(**cfg["hyper"])
    saved_env = str(ck["env_id"])
    if env_id and env_id != saved_env:
        raise UsageError(f"this policy was saved for {saved_env}, not {env_id}; drop --env or pass --env {saved_env}")
    env = make_env(saved_env)
    if spaces_of(_gym().vector.SyncVectorEnv([lambda: env])) != spaces:
        raise UsageError(f"the spaces of {saved_env} here do not match the saved policy's {spaces}")
    head = head_for(env.action_space)
    agent = build_agent(run, hp, spaces["obs_dim"], head, np.random.default_rng(0))
    if agent.pi.n_params != ck["theta_pi"].size or agent.v.theta.size != ck["theta_v"].size:
        raise UsageError("the saved weights do not fit the saved network shape (corrupt file?)")
    norm = Normaliser(spaces["obs_dim"], 1, *_norm_flags(run, env.action_space), run.obs_clip, hp.gamma)
    restore(ck, agent, norm)
    return agent, norm, run, hp


def _norm_flags(run, act_space):
    box = not isinstance(act_space, _gym().spaces.Discrete)
    return [(s == "on") or (s == "auto" and box) for s in (run.norm_obs, run.norm_reward)]


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------

def default_out(run):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{run.env.split(':')[-1]}-{run.algo}-s{run.seed}-{stamp}")


def threshold_of(run):
    if not math.isnan(run.target):
        return run.target
    spec = _gym().spec(run.env.split(":")[-1])
    return None if spec.reward_threshold is None else float(spec.reward_threshold)


def steps_to_threshold(episodes, threshold, window=20):
    """First env step at which the mean return of the last `window` finished episodes >= threshold, or None."""
    if threshold is None:
        return None
    last = deque(maxlen=window)
    for step, ret, _ in episodes:
        last.append(ret)
        if len(last) == window and np.mean(last) >= threshold:
            return int(step)
    return None


def _fmt(x, width=9):
    if x is None or x == "":
        return " " * (width - 1) + "-"
    if isinstance(x, float):
        return f"{x:{width}.3g}" if abs(x) < 1e5 else f"{x:{width}.3e}"
    return f"{x:>{width}}"


def train(run, hp, resume_dir=None, quiet=False):
    """Train one seed. Returns the summary dict. Writes config.json, progress.csv, policy.npz, summary.json."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    update = algos.UPDATES[run.algo]
    check_env_id(run.env)
    envs = make_envs(run.env, run.num_envs, run.vec)
    ck = None
    try:
        if resume_dir:
            ck = load_checkpoint(os.path.join(resume_dir, "policy.npz"))
        out = resume_dir or run.out or default_out(run)
        os.makedirs(out, exist_ok=True)
        spaces = spaces_of(envs)
        obs_dim, head = spaces["obs_dim"], head_for(envs.single_action_space)
        rng = np.random.default_rng(run.seed)
        agent = build_agent(run, hp, obs_dim, head, rng)
        norm = Normaliser(obs_dim, run.num_envs, *_norm_flags(run, envs.single_action_space), run.obs_clip, hp.gamma)
        start_it = 0
        ro = Rollout(envs, norm, run.seed)
        if ck is not None:
            restore(ck, agent, norm)
            norm.discounted = ck["norm_discounted"]
            rng.bit_generator.state = json.loads(str(ck["rng_state"]))
            start_it = int(ck["iteration"])
            ro.steps, ro.episodes = int(ck["steps"]), [(int(s), float(r), int(l)) for s, r, l in ck["episodes"]]
            ro.raw_obs = envs.reset(seed=run.seed + 1000 * start_it)[0].astype(np.float64)
        return _loop(run, hp, update, agent, norm, ro, rng, out, spaces, start_it, say, resumed=ck is not None)
    finally:
        envs.close()


def _loop(run, hp, update, agent, norm, ro, rng, out, spaces, start_it, say, resumed):
    """The training loop: collect, update, check, log, checkpoint; then save, evaluate and summarise."""
    iters = run.steps // (run.num_envs * run.num_steps)
    threshold = threshold_of(run)
    log_every = run.log_every or max(1, math.ceil(iters / 40))
    ck_path = os.path.join(out, "policy.npz")
    progress_file, progress = open_progress(out, run, hp, iters, start_it, resumed, say)
    # done_*: the iterations whose row is in progress.csv, and their env steps and episodes
    t0, steps0, done_it, done_steps, done_episodes = time.time(), ro.steps, start_it, ro.steps, len(ro.episodes)
    phase, last_save = {"rollout_s": 0.0, "update_s": 0.0}, time.time()
    try:
        for it in range(start_it, iters):
            frac = 1.0 - it / iters  # the fraction of training left, for annealing
            if hp.anneal_lr:
                agent.opt_pi.lr, agent.opt_v.lr = hp.lr_pi * frac, hp.lr_v * frac
            if getattr(update, "whole_episodes", False):
                ro.reset()
            with np.errstate(all="ignore"):  # overflow shows up below as a named non-finite quantity
                t_collect = time.time()
                b = collect(agent, ro, run.num_steps, rng)
                t_update = time.time()
                info = update(agent, b, hp, rng, frac)
                phase["rollout_s"] += t_update - t_collect
                phase["update_s"] += time.time() - t_update
            check_finite(info, agent, it + 1)
            wall = time.time() - t0
            row = progress_row(it + 1, ro, info, phase, wall, (ro.steps - steps0) / max(wall, 1e-9))
            progress.writerow([_csv(row[c]) for c in PROGRESS_COLUMNS])
            progress_file.flush()
            done_it, done_steps, done_episodes = it + 1, ro.steps, len(ro.episodes)
            if (it + 1) % log_every == 0 or it + 1 == iters:
                eta = wall / (it + 1 - start_it) * (iters - it - 1)
                say(" ".join(_fmt(x) for x in (it + 1, ro.steps, len(ro.episodes), row["return_mean"], info["kl"],
                                                info["entropy"], info["explained_var"], int(row["steps_per_s"]),
                                                f"{wall:.1f}s", f"{eta:.1f}s")))
            if time.time() - last_save >= run.save_every_s:
                save_checkpoint(ck_path, agent, norm, rng, ro, it + 1, run, hp, spaces)
                last_save = time.time()
    except KeyboardInterrupt:  # drop the half-collected batch, so that --resume starts a whole iteration
        ro.steps, ro.episodes = done_steps, ro.episodes[:done_episodes]
        save_checkpoint(ck_path, agent, norm, rng, ro, done_it, run, hp, spaces)
        write_summary(out, run, ro, threshold, time.time() - t0, [], interrupted=True, phase=phase)
        print(f"\ninterrupted after iteration {done_it}: checkpoint saved. Continue with:\n"
              f"  python minipg.py --resume {out}", file=sys.stderr, flush=True)
        raise
    except NonFiniteError as e:
        kept = f"the last good checkpoint is kept in {ck_path}" if os.path.exists(ck_path) else "no checkpoint had been written yet"
        raise NonFiniteError(f"{e}; training stopped, {kept}")
    finally:
        progress_file.close()
    save_checkpoint(ck_path, agent, norm, rng, ro, iters, run, hp, spaces)
    wall = time.time() - t0  # training time: the evaluation below is not counted
    returns = evaluate(agent, norm, run.env, run.eval_episodes, run.seed + 10_000) if run.eval_episodes else []
    summary = write_summary(out, run, ro, threshold, wall, returns, phase=phase)
    if returns:
        say(f"evaluation ({len(returns)} deterministic episodes): {np.mean(returns):.1f} ± {np.std(returns):.1f}")
    say(f"steps to threshold {threshold}: {summary['steps_to_threshold']}\nfiles: {out}/"
        "{config.json, progress.csv, summary.json, policy.npz}")
    return summary


def open_progress(out, run, hp, iters, start_it, resumed, say):
    """Print the header, write config.json, and open progress.csv for appending one row per iteration. On resume,
    keep the rows up to the checkpoint: a run killed without warning may have written more."""
    batch = run.num_envs * run.num_steps
    defaults = {**asdict(Run()), **asdict(algos.Hyper())}
    changed = {k: v for k, v in {**asdict(run), **asdict(hp)}.items()
               if defaults.get(k) != v and not (isinstance(v, float) and math.isnan(v))}
    say(f"minipg {run.algo} on {run.env}  |  {iters} iterations x {batch} steps = {iters * batch} env steps  |  "
        f"seed {run.seed}  |  {run.dtype}\n  config (differs from defaults): {json.dumps(changed)}\n  output: {out}")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"run": asdict(run), "hyper": asdict(hp)}, f, indent=1)
    path = os.path.join(out, "progress.csv")
    if resumed:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f)][:start_it + 1]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    progress_file = open(path, "a" if resumed else "w", newline="")
    progress = csv.writer(progress_file)
    if not resumed:
        progress.writerow(PROGRESS_COLUMNS)
    cols = ("iter", "steps", "episodes", "return", "kl", "entropy", "expl_var", "steps/s", "elapsed", "eta")
    say(" ".join(f"{c:>9}" for c in cols))
    return progress_file, progress


def check_finite(info, agent, it):
    """A NaN or inf in a loss, the KL or a parameter stops training, naming the quantity and the iteration."""
    for name, x in [("loss_pi", info["loss_pi"]), ("loss_v", info["loss_v"]), ("kl", info["kl"]),
                    ("policy parameters theta", agent.pi.theta), ("critic parameters phi", agent.v.theta)]:
        if not np.all(np.isfinite(x)):
            raise NonFiniteError(f"{name} is not finite at iteration {it}")


def progress_row(it, ro, info, phase, wall, steps_per_s):
    """One row of progress.csv: returns over the last 20 finished episodes, the update's diagnostics, timing."""
    recent = ro.episodes[-20:]
    n, mean = len(recent), sum(r for _, r, _ in recent) / max(len(recent), 1)
    return {"iter": it, "steps": ro.steps, "episodes": len(ro.episodes),
            "return_mean": mean if n else "", "return_std": math.sqrt(sum((r - mean) ** 2 for _, r, _ in recent) / n) if n else "",
            "length_mean": sum(l for _, _, l in recent) / n if n else "",
            **{k: info.get(k, "") for k in ("loss_pi", "loss_v", "kl", "entropy", "explained_var", "clipfrac",
                                            "backtracks", "beta")},
            "steps_per_s": steps_per_s, **phase, "wall_s": wall}


def _csv(x):
    return "" if x == "" or x is None else (repr(float(x)) if isinstance(x, (float, np.floating)) else x)


def write_summary(out, run, ro, threshold, wall, returns, interrupted=False, phase=None):
    summary = {"algo": run.algo, "env": run.env, "seed": run.seed, "total_steps": ro.steps, "wall_s": wall,
               **(phase or {}),
               "eval_return_mean": float(np.mean(returns)) if returns else None,
               "eval_return_std": float(np.std(returns)) if returns else None, "eval_episodes": len(returns),
               "eval_seed": run.seed + 10_000, "threshold": threshold,
               "steps_to_threshold": steps_to_threshold(ro.episodes, threshold),
               "train_return_last20": float(np.mean([r for _, r, _ in ro.episodes[-20:]])) if ro.episodes else None,
               "interrupted": interrupted}
    tmp = os.path.join(out, "summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, os.path.join(out, "summary.json"))
    return summary


# ---------------------------------------------------------------------------------------------------------------
# The other modes
# ---------------------------------------------------------------------------------------------------------------

def eval_cmd(path, given, video, render):
    ck = load_checkpoint(path)
    agent, norm, run, hp = agent_from_checkpoint(ck, given.get("env"))
    episodes = given.get("eval_episodes", run.eval_episodes or 10)
    seed = given.get("seed", run.seed) + 10_000
    if render:
        try:
            import pygame  # noqa: F401
        except ImportError:
            raise UsageError("--render needs pygame: pip install pygame")
    returns = evaluate(agent, norm, run.env, episodes, seed, "human" if render else ("rgb_array" if video else None), video)
    print(f"{path}: {run.env}, {len(returns)} deterministic episodes (seeds {seed}..{seed + episodes - 1}): "
          f"{np.mean(returns):.2f} ± {np.std(returns):.2f}" + (f"; videos in {video}" if video else ""))
    return 0


def read_progress(run_dir):
    with open(os.path.join(run_dir, "progress.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["return_mean"] != ""]
    return np.array([float(r["steps"]) for r in rows]), np.array([float(r["return_mean"]) for r in rows])


def plot_cmd(dirs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for d in dirs:
        if os.path.isfile(os.path.join(d, "progress.csv")):
            x, y = read_progress(d)
            ax.plot(x, y, label=os.path.basename(os.path.normpath(d)))
            continue
        runs = sorted(os.path.join(d, s) for s in os.listdir(d) if os.path.isfile(os.path.join(d, s, "progress.csv"))) \
            if os.path.isdir(d) else []
        if not runs:
            raise UsageError(f"{d} holds no progress.csv (neither a run nor a --seeds folder of runs)")
        curves = [read_progress(r) for r in runs]
        grid = np.linspace(0, min(c[0][-1] for c in curves), 200)
        ys = np.array([np.interp(grid, x, y) for x, y in curves])  # (seeds, 200)
        line, = ax.plot(grid, np.median(ys, 0), label=f"{os.path.basename(os.path.normpath(d))} (median of {len(runs)})")
        ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2, color=line.get_color())
    titles = set()
    for d in dirs:  # "ppo on CartPole-v1" from the runs' config.json
        for root, _, files in os.walk(d):
            if "config.json" in files:
                cfg = json.load(open(os.path.join(root, "config.json")))["run"]
                titles.add(f"{cfg['algo']} on {cfg['env']}")
    ax.set_title(", ".join(sorted(titles)) + ("  (line: median, band: min-max over seeds)" if len(ax.collections) else ""))
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return of the last 20 episodes")
    ax.grid(alpha=0.3)
    ax.legend()
    path = os.path.join(dirs[0] if len(dirs) == 1 and os.path.isdir(dirs[0]) else ".", "learning_curve.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    return 0


def seeds_cmd(run, hp):
    seeds = parse_seeds(run.seeds)
    root = run.out or os.path.join("runs", f"{run.env.split(':')[-1]}-{run.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    summaries = []
    for s in seeds:
        r = dataclasses.replace(run, seed=s, seeds="", out=os.path.join(root, f"s{s}"))
        summaries.append(train(r, hp))
        print()
    finals = [s["eval_return_mean"] for s in summaries if s["eval_return_mean"] is not None]
    reach = [s["steps_to_threshold"] for s in summaries]
    hit = [x for x in reach if x is not None]
    print(f"{run.algo} on {run.env}, seeds {run.seeds} -> {root}")
    print(f"{'':22}{'median':>10}{'min':>10}{'max':>10}")
    if finals:
        print(f"{'final eval return':22}{np.median(finals):10.1f}{min(finals):10.1f}{max(finals):10.1f}")
    print(f"{'steps_to_threshold':22}" + (f"{np.median(reach) if len(hit) == len(reach) else float('nan'):10.0f}"
                                           f"{min(hit):10d}{max(hit):10d}" if hit else f"{'-':>10}{'-':>10}{'-':>10}")
          + f"   ({len(hit)}/{len(reach)} reached {summaries[0]['threshold']})")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The variance lab: --lab variance
# ---------------------------------------------------------------------------------------------------------------
"""The variance lab: what the notes claim about the policy-gradient estimator, measured on a real task.

    python minipg.py --lab variance --env CartPole-v1      # tables on stdout, variance.png and kl_quadratic.png

Claims measured (one table each):
  1. Reward-to-go and baselines lower the variance of g_hat without changing its mean (000 §Don't Let the Past
     Distract You, §Baselines in Policy Gradients; 003 §5.2, §5.3); the optimal baseline b = E[g^2 r]/E[g^2]
     beats the mean baseline, per parameter (003 §5.3.4); GAE(lambda < 1) trades bias for variance (000 §Other Forms).
  2. KL(pi_old || pi_new) ~ 1/2 dtheta^T F dtheta for small steps along the natural gradient (001 §Method 2).
  3. The full-trajectory importance weight prod_t pi'/pi explodes with the horizon; the per-decision ratio does
     not (003 §6).
J is undiscounted (gamma = 1) and the env's time limit is the horizon T of the notes (no bootstrap), so that
R(tau), reward-to-go and every baseline estimate the same gradient, as in algos.update_reinforce.

Design. Snapshots are minipg's PPO after 0 and 6400 env steps (a return of ~150 on CartPole: a trained policy's
500-step episodes would cost 3x more). Per snapshot, three independent sets of whole episodes: n_fit episodes fit a
fresh V_phi to R_hat_t and give the fixed baselines (mean and per-parameter optimal b) and the reference gradient
(rtg - optimal b over all of them); n_batches batches of n_traj episodes give every estimator once per batch, all
from one (N, P) matrix of per-sample gradients (nets.per_sample_grads, numba). "(batch)" baselines are estimated
from the batch itself, as algos.pg_estimate does, and so depend on its actions: an O(1/n) bias.
"""

TINY = 1e-300
LAB_SNAPSHOTS = (("untrained", 0), ("partly trained", 6400))  # PPO env steps; 6400 reaches a return of ~150
HORIZONS = (1, 2, 5, 10, 20, 50, 100)
QUADS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0)  # 1/2 dtheta^T F dtheta of the natural-gradient steps
Z_MAX = 4.0  # |mean difference| within this many standard errors counts as "agrees"


@dataclass
class Episodes:
    """Whole episodes of one policy, end to end: rows start[i]..start[i+1]-1 are episode i, in time order."""
    obs: np.ndarray    # (N, obs_dim) s_t as the policy sees it (normalised if the snapshot normalises)
    act: np.ndarray    # (N,) int or (N, A) float
    rew: np.ndarray    # (N,) r_t, unscaled
    ep: np.ndarray     # (N,) episode index 0..n-1
    start: np.ndarray  # (n + 1,) first row of each episode, then N

    def take(self, i, j):
        """Episodes i..j-1, renumbered from 0."""
        a, b = self.start[i], self.start[j]
        return Episodes(self.obs[a:b], self.act[a:b], self.rew[a:b], self.ep[a:b] - i, self.start[i:j + 1] - a)

    @property
    def done(self):
        return np.diff(np.r_[self.ep, self.ep[-1] + 1]) > 0  # (N,) the last step of each episode

    @property
    def returns(self):
        return np.add.reduceat(self.rew, self.start[:-1])   # (n,) R(tau)

    def rtg(self):
        """000 §Don't Let the Past Distract You: R_hat_t = sum_{t'>=t} r_t' (gamma = 1). (N,)"""
        return algos.discount_cumsum(self.rew[:, None], self.done[:, None], 1.0)[:, 0]


def rollout_episodes(agent, norm, env_id, n_episodes, rng, num_envs=16):
    """n_episodes whole episodes of the stochastic policy, from make_envs. Each env slot runs a fixed quota
    of episodes from reset (a fixed count, not a fixed time, so that long episodes are not under-sampled)."""
    envs = make_envs(env_id, min(num_envs, n_episodes))
    E, space = envs.num_envs, envs.single_action_space
    quota = n_episodes // E + (np.arange(E) < n_episodes % E)  # (E,)
    finished = np.zeros(E, dtype=np.int64)
    obs_l, act_l, rew_l, done_l, keep_l = [], [], [], [], []
    try:
        raw = envs.reset(seed=int(rng.integers(2 ** 31)))[0]
        while (finished < quota).any():
            obs = norm.obs(raw.astype(np.float64).reshape(E, -1))                     # (E, obs_dim), frozen stats
            a = agent.pi.head.sample(agent.pi.dist(obs)[0], rng)
            env_a = a if isinstance(agent.pi.head, nets.Categorical) else np.clip(a, space.low, space.high)
            raw, rew, term, trunc, _ = envs.step(env_a)
            keep = finished < quota                                                    # (E,) slot still collecting
            finished += (term | trunc) & keep                                          # time limit = horizon T
            obs_l.append(obs), act_l.append(a), rew_l.append(rew), done_l.append(term | trunc), keep_l.append(keep)
    finally:
        envs.close()
    keep = algos.flat(np.array(keep_l))                                                # (E*T,) env-major
    done = algos.flat(np.array(done_l))[keep]
    ep = np.cumsum(np.r_[0, done[:-1]])
    return Episodes(algos.flat(np.array(obs_l))[keep], algos.flat(np.array(act_l))[keep],
                    algos.flat(np.array(rew_l, dtype=np.float64))[keep], ep, np.r_[0, np.flatnonzero(done) + 1])


def snapshot(env_id, steps, seed, workdir):
    """The policy after `steps` env steps of minipg's PPO (0 = the untrained initial policy), in float64 so that
    tiny steps and variances are exact. Returns (agent, norm)."""
    given = {"algo": "ppo", "env": env_id, "seed": seed, "dtype": "float64", "eval_episodes": 0,
             "out": os.path.join(workdir, str(steps))}
    if steps > 0:
        train(*resolve({**given, "steps": steps}), quiet=True)
        return agent_from_checkpoint(load_checkpoint(os.path.join(given["out"], "policy.npz")))[:2]
    run, hp = resolve(given)
    env = make_env(env_id)
    obs_dim, head = int(np.prod(env.observation_space.shape)), head_for(env.action_space)
    env.close()
    agent = build_agent(run, hp, obs_dim, head, np.random.default_rng(seed))  # = train()'s initial agent
    return agent, Normaliser(obs_dim, 1, False, False, run.obs_clip, hp.gamma)


# ---------------------------------------------------------------------------------------------------------------
# Estimators of grad J on one batch of n whole episodes, all from one matrix of per-sample gradients
# ---------------------------------------------------------------------------------------------------------------

def score_matrix(pi, d):
    """G (N, P): row t is grad_theta log pi(a_t|s_t), from the numba per-sample kernel."""
    z, hs = pi.dist(d.obs)
    return nets.per_sample_grads(pi, hs, pi.head.dlogp(z, d.act))


def fit_statistics(pi, d, chunk=10):
    """From many episodes d, per parameter k: the optimal baseline (003 §5.3.4)
        b_k = E[g_k(tau)^2 r(tau)] / E[g_k(tau)^2],  with g_k(tau) r(tau) -> h_k(tau) for reward-to-go
    (as algos.pg_estimate), and the reference gradient 1/n sum_tau (h(tau) - b g(tau)) with its standard error
    (relative, in norm).
    Returns b (P,), ref (P,), rel_se. (b comes from the same episodes: an O(1/n) bias, negligible for large n.)"""
    ret, n = d.rtg(), len(d.start) - 1
    s = {"gg": 0.0, "gh": 0.0, "hh": 0.0, "g": 0.0, "h": 0.0}  # sums over episodes, each (P,)
    for i in range(0, n, chunk):
        part = d.take(i, min(i + chunk, n))
        g_tau, h_tau = algos.trajectory_sums(score_matrix(pi, part), part.ep, ret[d.start[i]:d.start[i] + len(part.ep)])
        for key, x in (("gg", g_tau * g_tau), ("gh", g_tau * h_tau), ("hh", h_tau * h_tau), ("g", g_tau), ("h", h_tau)):
            s[key] = s[key] + x.sum(0)
    b = s["gh"] / np.maximum(s["gg"], TINY)
    ref = (s["h"] - b * s["g"]) / n
    var = (s["hh"] - 2 * b * s["gh"] + b * b * s["gg"]) / n - ref * ref  # (P,) Var[h - b g] per episode
    return b, ref, float(np.sqrt(var.sum() / n) / np.linalg.norm(ref))


def batch_estimates(pi, d, phis, b_opt):
    """Every estimator g_hat (P,) on the batch d of n episodes. phis: name -> Phi_t (N,), forms that do not depend
    on the batch; b_opt (P,) a per-parameter baseline fixed in advance. Returns name -> g_hat."""
    G, n, ret = score_matrix(pi, d), len(d.start) - 1, d.rtg()                   # (N, P)
    # 000 §Other Forms of the Policy Gradient: g_hat = 1/n sum_tau sum_t grad log pi(a_t|s_t) Phi_t
    g = dict(zip(phis, (G.T @ np.stack(list(phis.values()), 1)).T / n))
    # 003 §5.3.1 and §5.3.4 baselines estimated from this batch: the library's own estimator
    for kind in ("mean", "optimal"):
        g[f"rtg - {kind} b (batch)"] = algos.pg_estimate(pi, d.obs, d.act, ret, d.ep, kind)
    # 003 §5.3.4 g_hat = 1/n sum_tau (h(tau) - b * g(tau)), with b per parameter fixed in advance
    g_tau, h_tau = algos.trajectory_sums(G, d.ep, ret)
    g["rtg - optimal b (fixed)"] = (h_tau.sum(0) - b_opt * g_tau.sum(0)) / n
    return g


def phi_forms(d, val, b_mean, lams):
    """The batch-independent Phi_t (N,): R(tau), R_hat_t, R_hat_t - b, R_hat_t - V_phi(s_t), GAE(lambda)."""
    ret, done = d.rtg(), d.done
    zero = np.zeros((len(ret), 1))
    phis = {"R(tau)": ret[d.start[:-1]][d.ep], "reward-to-go": ret, "rtg - mean b (fixed)": ret - b_mean,
            "rtg - V_phi": ret - val}
    for lam in lams:  # GAE(1) = R_hat_t - V_phi(s_t) exactly here (gamma = 1, no bootstrap at the end)
        phis[f"GAE lam={lam:g}"] = algos.gae(d.rew[:, None], val[:, None], done[:, None], zero, zero, np.zeros(1),
                                             1.0, lam)[:, 0]
    return phis


def bias_kind(name):
    if name.startswith("GAE"):
        return "none" if name == "GAE lam=1" else "lam<1, V inexact"
    return "O(1/n)" if name.endswith("(batch)") else "none"  # the batch's own b depends on its actions


def measure_estimators(agent, norm, env_id, rng, n_traj=10, n_batches=200, n_fit=2000, lams=(0.0, 0.9, 0.97),
                       v_iters=5, lr_v=3e-3):
    """One snapshot. n_fit episodes fit a fresh critic V_phi to R_hat_t and give the fixed baselines and the
    reference gradient; then n_batches independent batches of n_traj episodes give every estimator once each.
    Returns dict: names (K,), g (M, K, P), ref (P,), ref_rel_se, explained_var, fit and lab (Episodes)."""
    fit = rollout_episodes(agent, norm, env_id, n_fit, rng)
    agent.v = nets.MLP(agent.v.sizes, agent.v.activation, out_gain=1.0, rng=rng)
    agent.opt_v = nets.Adam(agent.v.theta.size, lr=lr_v)
    algos.fit_value(agent, fit.obs, fit.rtg(), algos.Hyper(v_iters=v_iters, v_minibatch=256), rng)
    b_opt, ref, ref_rel_se = fit_statistics(agent.pi, fit)
    lab = rollout_episodes(agent, norm, env_id, n_traj * n_batches, rng)
    phis = phi_forms(lab, agent.value(lab.obs), float(fit.rtg().mean()), lams)
    names = ["R(tau)", "reward-to-go", "rtg - mean b (fixed)", "rtg - mean b (batch)", "rtg - optimal b (fixed)",
             "rtg - optimal b (batch)", "rtg - V_phi"] + [f"GAE lam={lam:g}" for lam in lams]
    g = np.zeros((n_batches, len(names), agent.pi.n_params))                       # (M, K, P)
    for m in range(n_batches):
        rows = slice(lab.start[m * n_traj], lab.start[(m + 1) * n_traj])
        est = batch_estimates(agent.pi, lab.take(m * n_traj, (m + 1) * n_traj), {k: v[rows] for k, v in phis.items()},
                              b_opt)
        g[m] = [est[k] for k in names]
    return dict(names=names, g=g, ref=ref, ref_rel_se=ref_rel_se, fit=fit, lab=lab,
                explained_var=algos.explained_variance(agent.value(lab.obs), lab.rtg()))


def estimator_stats(g, ref, pair=1):
    """g (M, K, P): M independent batch estimates of K estimators. Per estimator: tr Cov = sum_p Var[g_hat_p];
    the cosine between its mean and the reference; z = the mean paired difference from estimator `pair`
    (reward-to-go), projected on the reference direction u, in standard errors. Returns dict of (K,) arrays."""
    M, mean, u = len(g), g.mean(0), ref / np.linalg.norm(ref)
    var = g.var(0, ddof=1)                                                          # (K, P)
    diff = (g - g[:, pair:pair + 1]) @ u                                            # (M, K)
    se = diff.std(0, ddof=1) / np.sqrt(M)
    z = np.where(se > 0, diff.mean(0) / np.maximum(se, TINY), 0.0)
    cos = mean @ u / np.maximum(np.linalg.norm(mean, axis=1), TINY)
    return dict(var=var, trcov=var.sum(1), ratio=var.sum(1) / var[0].sum(), cos=cos, z=z)


def compare_variance(g_a, g_b):
    """Per parameter: Var[a] - Var[b] over M paired batches (M, P) each, in standard errors of that difference
    (delta method on the paired squared deviations). Returns (fraction with Var[a] <= Var[b], z (P,))."""
    da, db = (g_a - g_a.mean(0)) ** 2, (g_b - g_b.mean(0)) ** 2                    # (M, P)
    diff = da - db
    se = diff.std(0, ddof=1) / np.sqrt(len(diff))
    return float(np.mean(g_a.var(0) <= g_b.var(0))), diff.mean(0) / np.maximum(se, TINY)


# ---------------------------------------------------------------------------------------------------------------
# Natural gradient: KL against its quadratic model; surrogate against true improvement
# ---------------------------------------------------------------------------------------------------------------

def kl_scan(pi, d, adv, quads=QUADS, damping=1e-3, cg_iters=10):  # CG as minipg's TRPO on CartPole
    """001 §Method 2 along the natural gradient x = F^{-1} g (by CG): steps dtheta = sqrt(2 q) x / sqrt(x^T F x), so
    that 1/2 dtheta^T F dtheta = q exactly. F: the Fisher matrix at the states of the episodes d; g: pg_estimate
    with Phi_t = adv (N,). Returns rows (q, mean KL(pi_old || pi_new) over d's states, surrogate gain,
    first-order gain g^T dtheta), and the steps (P,)."""
    theta_old, head, n = pi.theta, pi.head, len(d.start) - 1
    z_old, hs = pi.dist(d.obs)
    logp_old = head.log_prob(z_old, d.act)
    g = algos.pg_estimate(pi, d.obs, d.act, adv, d.ep, "none")                     # (P,)
    x = algos.cg(lambda v: algos.fisher_vector_product(pi, z_old, hs, v, damping), g, cg_iters)
    direction = x / np.sqrt(x @ algos.fisher_vector_product(pi, z_old, hs, x))   # (P,) with F-norm 1 (undamped F)
    rows, steps = [], []
    for q in quads:
        step = np.sqrt(2 * q) * direction
        pi.theta = theta_old + step
        z = pi.dist(d.obs)[0]
        ratio = np.exp(head.log_prob(z, d.act) - logp_old)
        # 003 §6 first-order (per-decision) surrogate: J(theta') - J(theta) ~ 1/n sum_tau sum_t (r_t - 1) A_hat_t
        rows.append((q, float(head.kl(z_old, z).mean()), float(((ratio - 1) * adv).sum() / n), float(g @ step)))
        steps.append(step)
    pi.theta = theta_old
    return rows, steps


def true_improvement(agent, norm, env_id, steps, n_eval, rng):
    """J(theta + step) - J(theta) for each step, from n_eval episodes each, paired by env seed and action noise.
    Returns [(mean, standard error)]."""
    theta_old, seed = agent.pi.theta, int(rng.integers(2 ** 31))
    old = rollout_episodes(agent, norm, env_id, n_eval, np.random.default_rng(seed)).returns
    out = []
    for step in steps:
        agent.pi.theta = theta_old + step
        diff = rollout_episodes(agent, norm, env_id, n_eval, np.random.default_rng(seed)).returns - old
        out.append((float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(n_eval))))
    agent.pi.theta = theta_old
    return out


# ---------------------------------------------------------------------------------------------------------------
# Importance weights: full trajectory against per decision
# ---------------------------------------------------------------------------------------------------------------

def importance_weights(pi, theta_new, d, horizons=HORIZONS):
    """003 §6 on episodes d of pi_theta: the full-trajectory weight W_h = prod_{t<min(h,L)} pi'(a_t|s_t)/pi(a_t|s_t)
    (stopped at the episode's end, so E[W_h] = 1) and the per-decision ratio w_h = pi'(a_h|s_h)/pi(a_h|s_h) at
    step t = h-1. Rows: (h, Var W_h, mean W_h, ESS/n of W_h, Var w_h, mean w_h, episodes with L >= h)."""
    theta_old = pi.theta
    logp = pi.head.log_prob(pi.dist(d.obs)[0], d.act)
    pi.theta = theta_new
    log_w = pi.head.log_prob(pi.dist(d.obs)[0], d.act) - logp                      # (N,) log r_t
    pi.theta = theta_old
    cum, length = np.cumsum(log_w), np.diff(d.start)                               # (N,), (n,)
    before = np.r_[0.0, cum][d.start[:-1]]                                         # (n,) sum of log r_t before
    t = np.arange(len(log_w)) - d.start[d.ep]                                      # (N,) step within the episode
    rows = []
    for h in horizons:
        W = np.exp(cum[d.start[:-1] + np.minimum(h, length) - 1] - before)          # (n,)
        w = np.exp(log_w[t == h - 1])                                              # (episodes with L >= h,)
        var_w, mean_w = (w.var(ddof=1), w.mean()) if len(w) > 1 else (np.nan, np.nan)
        rows.append((h, W.var(ddof=1), W.mean(), W.sum() ** 2 / (W @ W) / len(W), var_w, mean_w, len(w)))
    return rows


def perturbation(pi, d, kl_target, rng):
    """theta' = theta + sigma xi, xi ~ N(0, I), with sigma such that the mean KL(pi || pi') over d's states is
    kl_target: bisection on log sigma around the quadratic guess 1/2 (sigma xi)^T F (sigma xi) = kl_target
    (001 §Method 2), which can be off by several times here. Returns (theta', the measured mean KL)."""
    theta_old, (z, hs) = pi.theta, pi.dist(d.obs)
    xi = rng.standard_normal(pi.n_params)

    def mean_kl(sigma):
        pi.theta = theta_old + sigma * xi
        kl = float(pi.head.kl(z, pi.dist(d.obs)[0]).mean())
        pi.theta = theta_old
        return kl

    guess = 0.5 * np.log(2 * kl_target / (xi @ algos.fisher_vector_product(pi, z, hs, xi)))
    lo, hi = guess - 5, guess + 5  # KL is about e^(2 (log sigma - guess)) kl_target: below, then above the target
    for _ in range(20):  # the bracket shrinks to 10 / 2^20 in log sigma
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_kl(np.exp(mid)) < kl_target else (lo, mid)
    sigma = np.exp((lo + hi) / 2)
    return theta_old + sigma * xi, mean_kl(sigma)


# ---------------------------------------------------------------------------------------------------------------
# The lab: tables on stdout, two pictures
# ---------------------------------------------------------------------------------------------------------------

def print_table(title, header, rows):
    cells = [header] + [[c if isinstance(c, str) else f"{c:.4g}" for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(title)
    for r in cells:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print()


def report_estimators(name, steps, r, n_traj, n_fit):
    """Print the estimator table of one snapshot; return its numbers."""
    ix, R = r["names"].index, r["lab"].returns
    s = estimator_stats(r["g"], r["ref"], pair=ix("reward-to-go"))
    print_table(f"[{name}] PPO {steps} env steps: return {R.mean():.1f} +- {R.std():.1f} ({len(R)} episodes, "
                f"{R.sum():.0f} steps). V_phi fitted on {n_fit} other episodes: explained variance "
                f"{r['explained_var']:.2f}."
                f"\n{len(r['g'])} batches of {n_traj} episodes. Reference gradient: rtg - optimal b over the {n_fit} "
                f"fit episodes (relative standard error {r['ref_rel_se']:.3f}).\nz: mean minus reward-to-go's mean, "
                f"along the reference, in standard errors of the paired difference.",
                ["estimator", "bias (theory)", "tr Cov", "/ R(tau)", "cos(mean, ref)", "z vs rtg", f"|z| < {Z_MAX:g}"],
                [[k, bias_kind(k), trcov, f"{ratio:.3f}", f"{cos:.3f}"]
                 + (["-", ""] if k == "reward-to-go" else [f"{z:+.2f}", "yes" if abs(z) < Z_MAX else "NO"])
                 for k, trcov, ratio, cos, z in zip(r["names"], s["trcov"], s["ratio"], s["cos"], s["z"])])
    out = dict(name=name, steps=steps, return_mean=float(R.mean()), names=r["names"], explained_var=r["explained_var"],
               ref_rel_se=r["ref_rel_se"], **{k: s[k] for k in ("trcov", "ratio", "cos", "z")})
    for kind in ("fixed", "batch"):
        frac, z = compare_variance(r["g"][:, ix(f"rtg - optimal b ({kind})")], r["g"][:, ix(f"rtg - mean b ({kind})")])
        print(f"  003 §5.3.4 per parameter, {kind} b: Var[optimal b] <= Var[mean b] for {100 * frac:.1f}% of the "
              f"{z.size} parameters; larger by more than {Z_MAX:g} standard errors for {int((z > Z_MAX).sum())}")
        out[f"optimal_le_mean_{kind}"], out[f"optimal_worse_{kind}"] = frac, int((z > Z_MAX).sum())
    print()
    return out


def lab_variance(env_id="CartPole-v1", seed=0, out_dir=".", snapshots=LAB_SNAPSHOTS, n_traj=10, n_batches=200,
                 n_fit=2000, lams=(0.0, 0.9, 0.97), n_ng=500, n_eval=50, kl_target=0.01):
    """The variance lab (see the module docstring). snapshots: (name, PPO env steps) pairs; the natural-gradient
    and importance-weight parts use the last one. n_ng: episodes for F and g; n_eval: episodes per true
    improvement; kl_target: mean KL of the perturbed policy. Prints the tables, writes variance.png and
    kl_quadratic.png to out_dir, and returns every number in a dict."""
    t0, rng, out = time.time(), np.random.default_rng(seed), {"env": env_id, "seed": seed, "snapshots": []}
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name, steps in snapshots:
            agent, norm = snapshot(env_id, steps, seed, work)
            r = measure_estimators(agent, norm, env_id, rng, n_traj, n_batches, n_fit, lams)
            out["snapshots"].append(report_estimators(name, steps, r, n_traj, n_fit))
    # the last snapshot, its V_phi and its lab episodes (independent of V_phi)
    d = r["lab"].take(0, n_ng)
    kl_rows, ng_steps = kl_scan(agent.pi, d, d.rtg() - agent.value(d.obs))
    gains = true_improvement(agent, norm, env_id, ng_steps, n_eval, rng)
    print_table(f"[{name}] 001 §Method 2 along the natural gradient F^-1 g (CG as TRPO's; g with rtg - V_phi; "
                f"F, g and KL over {n_ng} episodes, {d.ep.size} states).\nSurrogate, 003 §6 first order: "
                f"1/n sum_t (r_t - 1) A_t. True: return of pi_new minus pi_old, {n_eval} episodes each, paired by seed.",
                ["1/2 dth'F dth", "mean KL", "KL / quad", "surrogate gain", "g'dth", "true gain", "+- se"],
                [[q, kl, f"{kl / q:.3f}", surr, lin, f"{m:+.1f}", f"{se:.1f}"]
                 for (q, kl, surr, lin), (m, se) in zip(kl_rows, gains)])
    theta_new, kl = perturbation(agent.pi, d, kl_target, rng)
    iw = importance_weights(agent.pi, theta_new, r["lab"])
    print_table(f"[{name}] 003 §6 importance weights of pi' = pi_(theta + sigma xi), mean KL(pi || pi') = {kl:.4f}, "
                f"on {len(r['lab'].start) - 1} episodes of pi.\nFull trajectory: W_h = prod_(t<h) r_t (stopped at the "
                f"episode's end, so E = 1). Per decision: r_h = pi'/pi at step h.",
                ["h", "Var W_h", "mean W_h", "ESS/n", "Var r_h", "mean r_h", "episodes L >= h"],
                [[str(h), vw, f"{mw:.3f}", f"{ess:.3f}", vr, f"{mr:.3f}", str(n)] for h, vw, mw, ess, vr, mr, n in iw])
    out.update(kl=kl_rows, true_gain=gains, iw=iw, iw_kl=kl, seconds=time.time() - t0)
    plot_lab(out, out_dir)
    print(f"variance lab: {out['seconds']:.0f} s")
    return out


def plot_lab(out, out_dir):
    """variance.png: tr Cov per estimator relative to R(tau), per snapshot, and the importance-weight variances;
    kl_quadratic.png: KL against 1/2 dth^T F dth, and surrogate against true improvement."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("variance lab: matplotlib is not installed (pip install matplotlib), so no pictures")
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    names, S = out["snapshots"][0]["names"], len(out["snapshots"])
    y = np.arange(len(names))
    for j, snap in enumerate(out["snapshots"]):
        ax.barh(y + (j - (S - 1) / 2) * 0.8 / S, snap["ratio"], 0.8 / S,
                label=f"{snap['name']} (return {snap['return_mean']:.0f})")
    ax.set_yticks(y, [f"{k}  [{bias_kind(k)}]" for k in names])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("tr Cov[g_hat] / tr Cov[g_hat with R(tau)]   (bias in brackets)")
    ax.set_title("Variance of the policy-gradient estimators")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    h = [row[0] for row in out["iw"]]
    ax2.loglog(h, [row[1] for row in out["iw"]], "o-", label="full trajectory  prod_(t<h) pi'/pi")
    ax2.loglog(h, [row[4] for row in out["iw"]], "s-", label="per decision  pi'(a_h|s_h)/pi(a_h|s_h)")
    ax2.set_xlabel("horizon h")
    ax2.set_ylabel("variance of the importance weight")
    ax2.set_title(f"003 §6 importance weights, KL(pi||pi') = {out['iw_kl']:.3f}")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "variance.png"), dpi=110)
    plt.close(fig)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    q, kl = np.array([r[0] for r in out["kl"]]), np.array([r[1] for r in out["kl"]])
    ax.semilogx(q, kl / q, "o-", label="true mean KL(pi_old || pi_new) / (1/2 dth^T F dth)")
    ax.axhspan(0.9, 1.1, color="0.85", label="within 10%")
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_xlabel("1/2 dth^T F dth  (step along the natural gradient)")
    ax.set_ylabel("KL / quadratic model")
    ax.set_title("001 §Method 2: KL ~ 1/2 dth^T F dth")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax2.semilogx(q, [r[2] for r in out["kl"]], "o-", label="surrogate  1/n sum (r_t - 1) A_t")
    ax2.semilogx(q, [r[3] for r in out["kl"]], "k--", label="first order  g^T dth")
    ax2.errorbar(q, [m for m, _ in out["true_gain"]], [2 * se for _, se in out["true_gain"]], fmt="s", capsize=3,
                 label="true  J(pi_new) - J(pi_old)  (+- 2 se)")
    ax2.set_xlabel("1/2 dth^T F dth")
    ax2.set_ylabel("improvement of the return")
    ax2.set_title("Surrogate against true improvement")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "kl_quadratic.png"), dpi=110)
    plt.close(fig)
    print(f"wrote {os.path.join(out_dir, 'variance.png')} and kl_quadratic.png")


def main(argv=None):
    try:
        args, modes = parse_args(argv)
        if modes["plot"]:
            return plot_cmd(modes["plot"])
        if modes["eval"]:
            return eval_cmd(modes["eval"], args, modes["video"], modes["render"])
        if modes["lab"]:
            run, _ = resolve(args)
            make_env(run.env).close()
            lab_variance(run.env, run.seed, run.out or os.path.join("runs", f"lab-variance-{run.env}-s{run.seed}"))
            return 0
        if modes["resume"]:
            ck = load_checkpoint(os.path.join(modes["resume"], "policy.npz")) \
                if os.path.isfile(os.path.join(modes["resume"], "config.json")) else None
            if ck is None:
                raise UsageError(f"{modes['resume']} is not a minipg run folder (no config.json and policy.npz)")
            cfg = json.loads(str(ck["config"]))
            run, hp = Run(**cfg["run"]), algos.Hyper(**cfg["hyper"])
            train(run, hp, resume_dir=modes["resume"])
            return 0
        run, hp = resolve(args)
        check_env_id(run.env)
        make_env(run.env).close()  # unsupported spaces fail here, before any file is written
        if run.seeds:
            return seeds_cmd(run, hp)
        train(run, hp)
        return 0
    except UsageError as e:
        print(f"minipg: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"minipg: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python minipg.py ... | head` ends quietly
    sys.exit(main())
