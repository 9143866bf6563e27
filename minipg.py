"""minipg.py -- the runner: config -> envs -> the training loop -> files.

    python minipg.py --algo ppo                          # train PPO on CartPole-v1, then evaluate
    python minipg.py --algo trpo --env Pendulum-v1       # any Box-observation env with Discrete or Box actions
    python minipg.py --algo ppo --seeds 0-3              # four seeds, in parallel on all cores, and a summary table
    python minipg.py --eval runs/<run>/policy.npz        # evaluate a saved policy (--video DIR, --render)
    python minipg.py --plot runs/<run> [runs/<run2> ...] # learning_curve.png
    python minipg.py --resume runs/<run>                 # continue an interrupted run (--steps N to extend it)
    python minipg.py --lab variance                      # the variance lab (lab.py)
    python minipg.py --algo trpo --help                  # every flag, with its symbol and the value it takes for trpo

This file and lab.py are the only ones that touch gymnasium, files or the command line; the gradient maths is in
nets.py and algos.py. The training state has one owner, the Trainer: its state() is what policy.npz holds, written
by write_checkpoint and read, checked field by field, by read_checkpoint.
"""
import argparse
import contextlib
import csv
import dataclasses
import difflib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field, asdict

# The matrices here are small (batch x 64): BLAS threads cost more than they save (measured in bench/).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import algos  # noqa: E402
import nets  # noqa: E402
import vecenv  # noqa: E402


class UsageError(Exception):
    """Bad input (the command line, a damaged file, a folder in use): one line on stderr, exit code 2."""


class RunError(Exception):
    """Training cannot go on (a NaN, a failed write): one line on stderr, exit code 1."""


def _opt(default, doc, typ=None):
    return field(default=default, metadata={"sym": "", "help": doc, "group": "run", "type": typ})


@dataclass
class Run:
    """What to run, where, and for how long. Every field is a flag (--num-envs, ...)."""
    algo: str = _opt("ppo", "algorithm: " + " | ".join(algos.UPDATES))
    env: str = _opt("CartPole-v1", "gymnasium env id (Box observations; Discrete or 1-D Box actions), or module:EnvId")
    steps: int = _opt(100_000, "total env steps; the run has steps // (num_envs * num_steps) iterations")
    seed: int = _opt(0, "random seed, >= 0 (one np.random.Generator per run; env i is seeded seed + i)")
    num_envs: int = _opt(8, "E, parallel envs")
    num_steps: int = _opt(32, "T, steps per env per batch; the batch is E*T")
    vec: str = _opt("sync", "sync (the envs in a loop) | procs (half of them in a second process) | async (gymnasium's"
                    " AsyncVectorEnv, a process per env)")
    hidden: str = _opt("64,64", "hidden layer sizes, comma-separated")
    activation: str = _opt("tanh", "tanh | relu")
    dtype: str = _opt("float32", "float32 | float64 for training (float32 is faster, bench/; the tests use float64)")
    init_log_std: float = _opt(0.0, "initial log σ of a Gaussian policy")
    norm_obs: str = _opt("auto", "observation normalisation by running mean/std: on | off | auto (on for Box actions)")
    obs_clip: float = _opt(10.0, "clip normalised observations to ±this, > 0")
    norm_reward: str = _opt("auto", "reward / running std of the discounted return: on | off | auto (on: Box actions)")
    out: str = _opt("", "output folder (default runs/<env>-<algo>-s<seed>-<timestamp>/)")
    eval_episodes: int = _opt(10, "deterministic evaluation episodes at the end, >= 1 (alias --episodes)")
    target: float = _opt(None, "return threshold for steps_to_threshold (None: the env's reward_threshold)", float)
    save_every_s: float = _opt(30.0, "write policy.npz every this many seconds and at the end (0: every iteration)")
    log_every: int = _opt(0, "print a progress line every this many iterations (0: about 40 lines per run)")
    preset: str = _opt("", "named hyperparameter set, applied before your flags: mujoco | lunarlander | "
                            "lunarlander-continuous | pendulum")


# Defaults per algorithm, applied before --preset and your flags; they solve CartPole-v1. PPO: rl-zoo's tuned
# CartPole PPO, 8 envs x 32 steps, 20 epochs of minibatch 256, the learning rate (and for PPO-Clip the clip) annealed.
_PPO = dict(steps=100_000, num_envs=8, num_steps=32, minibatch=256, epochs=20, gamma=0.98, lam=0.8, lr_pi=1e-3,
            anneal_lr=True)
_TRPO = dict(steps=100_000, num_envs=2, num_steps=512, lam=0.98, cg_damping=1e-3, max_kl=0.01, v_iters=20,
             v_minibatch=512)
ALGO_DEFAULTS = {
    "ppo": dict(_PPO, anneal_clip=True),
    # PPO-Penalty on PPO's batch; d_targ 0.02 (the PPO paper's 0.01 took a median 52k steps to 475 here, 0.02 36k)
    "ppo-penalty": dict(_PPO, target_kl=0.02, beta=1.0),
    "trpo": _TRPO, "npg": _TRPO,
    "vpg": dict(steps=300_000, num_envs=4, num_steps=500, lr_pi=3e-3, v_iters=20, v_minibatch=256),
    "a2c": dict(steps=300_000, num_envs=8, num_steps=5, lam=1.0, optimiser="rmsprop", lr_pi=7e-4, norm_adv=False),
    "reinforce": dict(steps=500_000, num_envs=4, num_steps=1000, lr_pi=1e-2, v_iters=20, v_minibatch=256),
}

# Named presets for other task families (--preset NAME), shown in --help and the README.
PRESETS = {
    # MuJoCo (HalfCheetah-v5 and kin). PPO: CleanRL's ppo_continuous_action (a batch of 2048, 10 epochs of 64, lr 3e-4
    # annealed, normalised observations and rewards) with log sigma_0 = -1 and a constant clip range: at 200k steps
    # that was 3100 on HalfCheetah against 860 with log sigma_0 = 0 and a decaying clip (bench/). TRPO: sb3-contrib's
    # zoo values (delta 0.04, CG damping 0.1, 20 critic epochs of minibatch 128 at lr 1e-3). The batch is 8 envs x 256
    # steps (CleanRL: 1 x 2048), half of them in a second process, so the policy runs once per 8 env steps and two
    # cores run physics (bench/rollout.md, bench/halfcheetah.md).
    "mujoco": dict(env="HalfCheetah-v5", num_envs=8, num_steps=256, vec="procs", minibatch=64, epochs=10, lr_pi=3e-4,
                   lr_v=1e-3, anneal_lr=True, anneal_clip=False, gamma=0.99, lam=0.95, max_grad_norm=0.5, init_log_std=-1.0,
                   norm_obs="on", norm_reward="on", steps=1_000_000, max_kl=0.04, cg_damping=0.1, cg_iters=15,
                   v_iters=20, v_minibatch=128),
    # rl-zoo's LunarLander-v3 PPO: 16 envs x 1024, 4 epochs of 64, gamma 0.999, lambda 0.98, entropy bonus 0.01
    "lunarlander": dict(env="LunarLander-v3", num_envs=16, num_steps=1024, minibatch=64, epochs=4, gamma=0.999,
                        lam=0.98, ent_coef=0.01, lr_pi=3e-4, anneal_lr=False, anneal_clip=False, steps=1_000_000),
    # LunarLanderContinuous-v3: the mujoco preset, unchanged but for the env (bench/matrix.md)
    "lunarlander-continuous": {},
    # rl-zoo's Pendulum PPO without gSDE: 4 envs x 1024, 10 epochs of 64, gamma 0.9
    # (no normalisation, as in the zoo: with it the final evaluation was -740 at 100k, without it -159; bench/)
    "pendulum": dict(env="Pendulum-v1", num_envs=4, num_steps=1024, minibatch=64, epochs=10, gamma=0.9, lam=0.95,
                     lr_pi=1e-3, norm_obs="off", norm_reward="off", steps=100_000),
}

PRESETS["lunarlander-continuous"] = dict(PRESETS["mujoco"], env="LunarLanderContinuous-v3")

RUN_FILES = ("config.json", "progress.csv", "summary.json", "policy.npz")
TIMING_COLUMNS = ("steps_per_s", "rollout_s", "update_s", "wall_s")  # cumulative seconds in each phase
PROGRESS_COLUMNS = ("iter", "steps", "episodes", "return_mean", "return_std", "length_mean", "loss_pi", "loss_v",
                    "kl", "entropy", "explained_var", "clipfrac", "backtracks", "beta") + TIMING_COLUMNS


# ---------------------------------------------------------------------------------------------------------------
# The command line, generated from the dataclasses, and the checks of a config
# ---------------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(message)


def _flag(name):
    return "--" + name.replace("_", "-")


def _type(f):
    return f.metadata.get("type") or type(f.default)


# Flags that pick what to do, not how to train; they are not saved with a run.
MODES = {
    "seeds": (dict(metavar="SEEDS"), "seeds (0-3 or 0,3,7): a run each in ROOT/s<seed>, ROOT/seeds.md (ROOT: --out)"),
    "jobs": (dict(type=int, metavar="N"), f"with --seeds: runs at once (default: the {os.cpu_count()} cores, or half as many runs with --vec procs)"),
    "overwrite": (dict(action="store_true"), "replace a finished or interrupted run in --out (else minipg refuses)"),
    "eval": (dict(metavar="POLICY.npz"), "evaluate a saved policy with its saved normalisation (--episodes, --seed)"),
    "video": (dict(metavar="DIR"), "with --eval: record videos to DIR (needs moviepy)"),
    "render": (dict(action="store_true"), "with --eval: show a window (needs pygame)"),
    "plot": (dict(nargs="+", metavar="DIR"), "learning_curve.png of runs or --seeds folders, in --out or beside them"),
    "resume": (dict(metavar="DIR"), "continue the run in DIR from its last checkpoint; --steps N extends it to N"),
    "lab": (dict(choices=["variance"]), "the variance lab (lab.py) on --env: tables and pictures in --out"),
}
GROUP_TITLES = {"run": "what to run (minipg.Run)", "common": "every algorithm (algos.Hyper)",
                "ppo": "ppo and ppo-penalty", "ppo-penalty": "ppo-penalty only", "trpo": "npg and trpo"}


def parse_args(argv):
    """argv -> (the config flags given, the mode flags). --help shows the defaults of the --algo and --preset given."""
    pre = _Parser(add_help=False)
    pre.add_argument("--algo", default="ppo"), pre.add_argument("--preset", default="")
    algo, preset = pre.parse_known_args(argv)[0].__dict__.values()
    algo, preset = (algo if algo in ALGO_DEFAULTS else "ppo"), (preset if preset in PRESETS else "")
    shown = {**asdict(Run()), **asdict(algos.Hyper()), **ALGO_DEFAULTS[algo], **PRESETS.get(preset, {})}
    p = _Parser(prog="minipg.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                description=__doc__.split("\n\n")[0] + f"\n\nThe defaults shown are those of --algo {algo}"
                + (f" --preset {preset}" if preset else "") + " (give --algo NAME --help for another's).",
                epilog="Per-algorithm defaults:\n" + "\n".join(f"  {a}: {d}" for a, d in ALGO_DEFAULTS.items())
                + "\nPresets:\n" + "\n".join(f"  {a}: {d}" for a, d in PRESETS.items()))
    groups = {}
    for f in dataclasses.fields(Run) + dataclasses.fields(algos.Hyper):
        g = f.metadata["group"]
        groups[g] = groups.get(g) or p.add_argument_group(GROUP_TITLES.get(g, g))
        sym, doc = f.metadata["sym"], f"{f.metadata['help']} (default: {shown[f.name]})"
        doc = f"{sym}: {doc}" if sym else doc
        kind = dict(action=argparse.BooleanOptionalAction) if _type(f) is bool else dict(type=_type(f),
                                                                                          metavar=f.name.upper())
        names = [_flag(f.name)] + (["--episodes"] if f.name == "eval_episodes" else [])
        groups[g].add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=doc, **kind)
    m = p.add_argument_group("modes (instead of one training run)")
    for name, (kw, doc) in MODES.items():
        m.add_argument(_flag(name), help=doc, **kw)
    given = vars(p.parse_args(argv))
    return {k: v for k, v in given.items() if k not in MODES}, {k: given.get(k) for k in MODES}


def resolve(given):
    """Defaults <- the algorithm's defaults <- --preset <- flags given. Returns (Run, Hyper), checked."""
    algo, preset = given.get("algo", Run.algo), given.get("preset", "")
    for name, value, known in (("algo", algo, tuple(algos.UPDATES)), ("preset", preset, ("", *PRESETS))):
        if value not in known:
            raise UsageError(f"unknown --{name} {value!r}; choose one of {', '.join(k for k in known if k)}")
    values = {**ALGO_DEFAULTS[algo], **PRESETS.get(preset, {}), **given}
    names = [f.name for f in dataclasses.fields(Run)]
    run, hp = Run(**{k: v for k, v in values.items() if k in names}), algos.Hyper(
        **{k: v for k, v in values.items() if k not in names})
    validate(run, hp)
    return run, hp


def parse_hidden(text):
    sizes = tuple(int(s) if s.strip().isascii() and s.strip().isdigit() else 0 for s in text.split(","))
    if min(sizes) < 1:
        raise UsageError(f"--hidden must be positive layer sizes like 64,64, got {text!r}")
    return sizes


def parse_seeds(text):
    lo, _, hi = text.partition("-")
    try:
        seeds = list(range(int(lo), min(int(hi), int(lo) + 1000) + 1)) if hi else [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not 0 < len(seeds) <= 1000 or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise UsageError(f"--seeds must be distinct seeds >= 0 like 0-3 or 0,3,7, got {text!r}")
    return seeds


CHOICES = {"algo": tuple(algos.UPDATES), "phi": ("return", "rtg"), "baseline": ("none", "mean", "optimal", "v"),
           "beta_rule": ("ppo", "additive"), "optimiser": tuple(nets.OPTIMISERS), "activation": nets.ACTIVATIONS,
           "vec": ("sync", "procs", "async"), "dtype": ("float32", "float64"), "norm_obs": ("on", "off", "auto"),
           "norm_reward": ("on", "off", "auto"), "preset": ("", *PRESETS)}


def validate(run, hp):
    """Every value of a config, as the command line or a saved run gives it; raises UsageError naming the flag."""
    v, batch = {**asdict(run), **asdict(hp)}, run.num_envs * run.num_steps
    checks = [
        *[(f"{_flag(k)} must be one of {', '.join(c)}", v[k] in c) for k, c in CHOICES.items()],
        *[(f"{_flag(k)} must be a finite number, got {x}", math.isfinite(x)) for k, x in v.items() if type(x) is float],
        *[(f"{_flag(k)} must be > 0", v[k] > 0) for k in "lr_pi lr_v adam_eps beta_lr clip_eps max_kl obs_clip".split()],
        *[(f"{_flag(k)} must be >= 0", v[k] >= 0) for k in ("max_grad_norm ent_coef vf_coef target_kl beta cg_damping "
                                                            "v_iters seed save_every_s log_every").split()],
        *[(f"{_flag(k)} must be >= 1", v[k] >= 1) for k in ("epochs minibatch v_minibatch cg_iters backtrack_iters "
                                                            "num_envs num_steps").split()],
        ("--gamma must be in (0, 1]", 0 < hp.gamma <= 1), ("--lam must be in [0, 1]", 0 <= hp.lam <= 1),
        ("--backtrack-coef must be in (0, 1)", 0 < hp.backtrack_coef < 1),
        ("--target-kl must be > 0 for ppo-penalty", hp.target_kl > 0 or run.algo != "ppo-penalty"),
        (f"--steps {run.steps} is smaller than one batch (num_envs*num_steps = {batch})", run.steps >= batch),
        (f"--minibatch {hp.minibatch} is larger than the batch ({batch})",
         hp.minibatch <= batch or "ppo" not in run.algo),
        ("--episodes (--eval-episodes) must be >= 1", run.eval_episodes >= 1),
        ("--num-envs must be <= 1024, the batch <= 10^7 steps and --steps <= 10^12",
         run.num_envs <= 1024 and batch <= 10 ** 7 and run.steps <= 10 ** 12),
    ]
    for message, ok in checks:
        if not ok:
            raise UsageError(message)
    parse_hidden(run.hidden)


def config_from(cfg):
    """(Run, Hyper) from a saved config dict: every field present, of its declared type, and valid."""
    if not isinstance(cfg, dict) or set(cfg) != {"run", "hyper"}:
        raise UsageError("config must hold 'run' and 'hyper'")
    made = []
    for key, cls in (("run", Run), ("hyper", algos.Hyper)):
        fields, got = {f.name: f for f in dataclasses.fields(cls)}, cfg[key]
        got = got if isinstance(got, dict) else {}
        if set(got) != set(fields):
            raise UsageError(f"config.{key} has missing or unknown fields: {sorted(set(got) ^ set(fields))}")
        for name, f in fields.items():  # a float may be written as an int; a bool is never a number here
            x, t = got[name], _type(f)
            if not (isinstance(x, (int, float) if t is float else t) and (t is bool) == isinstance(x, bool)
                    or x is None is f.default):
                raise UsageError(f"config.{key}.{name} must be a {t.__name__}, got {x!r}")
        made.append(cls(**{k: float(x) if _type(fields[k]) is float and x is not None else x for k, x in got.items()}))
    validate(*made)
    return tuple(made)


def check_out(path):
    """--out must be a folder or not exist yet, and not lie under a file."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {path} is a file, not a folder" if parent == os.path.abspath(path) else
                         f"--out {path} lies under {parent}, which is a file")


def run_folder(run, seeds=False):
    """The default output folder: runs/<env>-<algo>[-s<seed>]-<timestamp>."""
    return run.out or os.path.join("runs", f"{run.env.split(':')[-1]}-{run.algo}" + ("" if seeds else f"-s{run.seed}")
                                   + time.strftime("-%Y%m%d-%H%M%S"))


# ---------------------------------------------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------------------------------------------

def check_env_id(env_id):
    """Unknown ids get a one-line error with close names. 'module:EnvId' imports module first (it registers EnvId),
    as gymnasium.make does, so your own envs work from the command line. Returns the id without the module."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            __import__(module)
        except (ImportError, ValueError) as e:
            raise UsageError(f"cannot import {module!r} for env {env_id!r}: {e}")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        raise UsageError(f"unknown env id {env_id!r}" + (f"; did you mean {' or '.join(close)}?" if close else ""))
    return env_id


def make_env(env_id, render_mode=None):
    env_id = check_env_id(env_id)
    try:
        env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))
    except gym.error.DependencyNotInstalled as e:
        raise UsageError(f"{env_id} needs an optional extra: {str(e).splitlines()[0]}")
    try:
        Spaces(env.observation_space, env.action_space)  # refuses the spaces minipg does not take
    except UsageError as e:
        env.close()
        raise UsageError(f"{env_id} has {e}")
    return env if len(env.observation_space.shape) == 1 else gym.wrappers.FlattenObservation(env)


class Spaces:
    """What minipg needs of an env's spaces, decided here once: the observation size, whether actions are discrete,
    the policy head, and how a sampled action goes into the env."""

    def __init__(self, obs_space, act_space):
        if not isinstance(obs_space, gym.spaces.Box) or np.prod(obs_space.shape) < 1:
            raise UsageError(f"a {type(obs_space).__name__} observation space; minipg needs a Box of size >= 1")
        self.obs_dim, self.discrete = int(np.prod(obs_space.shape)), isinstance(act_space, gym.spaces.Discrete)
        box = isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1 and act_space.shape[0] > 0
        if not (self.discrete or box):
            raise UsageError(f"a {type(act_space).__name__} action space; minipg needs Discrete or a 1-D Box")
        self.n_act = int(act_space.n) if self.discrete else int(act_space.shape[0])
        self.start, self.low, self.high = (int(act_space.start), None, None) if self.discrete else \
            (0, act_space.low, act_space.high)

    def head(self):
        return nets.Categorical(self.n_act) if self.discrete else nets.DiagGaussian(self.n_act)

    def to_env(self, a):
        """Gaussian actions are clipped to the bounds only on the way into the env; the batch keeps the sampled ones."""
        return a + self.start if self.discrete else np.clip(a, self.low, self.high)

    def describe(self):
        return {"obs_dim": self.obs_dim, "action": "Discrete" if self.discrete else "Box", "n": self.n_act}


def spaces_of(env_id):
    env = make_env(env_id)
    env.close()
    return Spaces(env.observation_space, env.action_space)


def make_envs(env_id, n, vec="sync"):
    """E copies of the env as one vector env with SAME_STEP autoreset (vecenv.py): 'sync' steps them in a loop,
    'procs' half of them in a second process; 'async' is gymnasium's AsyncVectorEnv (a process per env, a pipe
    round trip per env per step: 143 us a HalfCheetah step against 52 us for the env alone, bench/rollout.md)."""
    if vec == "async":
        return gym.vector.AsyncVectorEnv([lambda: make_env(env_id) for _ in range(n)],
                                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    if vec == "procs" and n > 1:
        sp = spaces_of(env_id)
        return vecenv.ProcEnvs(functools.partial(make_env, env_id), n, sp.obs_dim, 0 if sp.discrete else sp.n_act)
    return vecenv.SyncEnvs([make_env(env_id) for _ in range(n)])


# ---------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------

class RunningMeanStd:
    """Running mean and variance of a stream of rows (Chan et al.'s parallel update), for observations and returns."""

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
    """Observation normalisation (clipped to ±obs_clip) and reward scaling by the running std of the discounted
    return, each on or off by config. Its statistics are part of the training state; the running discounted
    return of each env belongs to the episodes in progress, which a resume starts afresh."""

    def __init__(self, obs_dim, num_envs, norm_obs, norm_reward, obs_clip, gamma):
        self.norm_obs, self.norm_reward, self.obs_clip, self.gamma = norm_obs, norm_reward, obs_clip, gamma
        self.obs_rms, self.ret_rms = RunningMeanStd((obs_dim,)), RunningMeanStd(())
        self.discounted = np.zeros(num_envs)  # (E,) running discounted return, for the reward scale

    def obs(self, raw, update=False):
        """(N, obs_dim) -> normalised; update=True first adds the rows to the statistics (each observation once)."""
        if not self.norm_obs:
            return raw
        if update:
            self.obs_rms.update(raw)
        return np.clip((raw - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -self.obs_clip, self.obs_clip)

    def reward(self, rew, done):
        """r / std(discounted return), the return R = gamma R + r running per env and ending with its episode."""
        if not self.norm_reward:
            return rew
        self.discounted = self.discounted * self.gamma + rew
        self.ret_rms.update(self.discounted)
        self.discounted[done] = 0.0
        return rew / np.sqrt(self.ret_rms.var + 1e-8)

    def state(self):
        return {f"{name}_{k}": np.array(getattr(rms, k), np.float64)
                for name, rms in (("obs", self.obs_rms), ("ret", self.ret_rms)) for k in ("mean", "var", "count")}

    def load(self, s):
        for name, rms in (("obs", self.obs_rms), ("ret", self.ret_rms)):
            rms.mean, rms.var, rms.count = (s[f"{name}_{k}"].copy() for k in ("mean", "var", "count"))
            rms.count = float(rms.count)


# ---------------------------------------------------------------------------------------------------------------
# The training state, with one owner
# ---------------------------------------------------------------------------------------------------------------

LEAST = {"opt_pi_v": 0, "opt_v_v": 0, "opt_pi_t": 0, "opt_v_t": 0, "beta": 0, "norm_obs_var": 0, "norm_ret_var": 0,
         "norm_obs_count": 1e-4, "norm_ret_count": 1e-4, "iteration": 0, "seconds": 0}  # least values in a state


class Trainer:
    """Everything that must survive an interrupt, and the one-iteration step that changes it:
      agent     pi_theta, V_phi, their optimiser moments, PPO-Penalty's beta
      norm      the observation statistics and the return statistics behind the reward scale
      episodes  the finished episodes (env step at which each ended, return, length); it, the iteration
      rng       the run's one np.random.Generator;  seconds: wall, rollout and update time so far
    state() and load() round-trip these exactly, and load() checks every array first. The envs and the episodes
    they are in the middle of are not state: gymnasium cannot save an env, so start() begins every env afresh
    (seeded by the iteration, so a resume is reproducible) and unfinished episodes are dropped."""

    def __init__(self, run, hp, spaces=None):
        self.run, self.hp, self.spaces = run, hp, spaces or spaces_of(run.env)
        self.update, self.rng, sp = algos.UPDATES[run.algo], np.random.default_rng(run.seed), self.spaces
        self.agent = nets.Agent(sp.obs_dim, sp.head(), parse_hidden(run.hidden), run.activation, self.rng,
                                hp.optimiser, hp.lr_pi, hp.lr_v, hp.adam_eps, run.init_log_std, run.dtype)
        on = [s == "on" or s == "auto" and not sp.discrete for s in (run.norm_obs, run.norm_reward)]
        self.norm = Normaliser(sp.obs_dim, run.num_envs, *on, run.obs_clip, hp.gamma)
        self.it, self.episodes, self.envs, self.seconds = 0, [], None, dict(wall_s=0.0, rollout_s=0.0, update_s=0.0)

    batch = property(lambda self: self.run.num_envs * self.run.num_steps)
    iters = property(lambda self: self.run.steps // self.batch)
    steps = property(lambda self: self.it * self.batch)
    config = property(lambda self: {"run": asdict(self.run), "hyper": asdict(self.hp)})

    def start(self):
        """Open the envs and begin an episode in each."""
        self.envs = make_envs(self.run.env, self.run.num_envs, self.run.vec)
        self._begin(self.envs.reset(seed=self.run.seed + 1000 * self.it)[0])

    def _begin(self, raw):
        self.raw_obs = np.asarray(raw, np.float64).reshape(self.run.num_envs, -1)  # (E, obs_dim)
        self.norm.obs(self.raw_obs, update=True)
        self.ep_ret, self.ep_len = np.zeros(self.run.num_envs), np.zeros(self.run.num_envs, np.int64)
        self.norm.discounted[:] = 0.0

    def close(self):
        if self.envs is not None:
            self.envs.close()
        self.envs = None

    def iteration(self):
        """One whole iteration: anneal, collect a batch, update, check for NaN. Returns the update's info."""
        agent, hp, frac, t0 = self.agent, self.hp, 1.0 - self.it / self.iters, time.time()  # frac: training left
        if hp.anneal_lr:
            agent.opt_pi.lr, agent.opt_v.lr = hp.lr_pi * frac, hp.lr_v * frac
        if getattr(self.update, "whole_episodes", False):  # REINFORCE: every batch starts from reset
            self._begin(self.envs.reset()[0])
        with np.errstate(all="ignore"):  # overflow shows up below as a named non-finite quantity
            t1 = time.time()
            b = self.collect()
            t2 = time.time()
            info = self.update(agent, b, hp, self.rng, frac)
        self.seconds["rollout_s"] += t2 - t1
        self.seconds["update_s"] += time.time() - t2
        self.seconds["wall_s"] += time.time() - t0
        for name, x in [("loss_pi", info["loss_pi"]), ("loss_v", info["loss_v"]), ("kl", info["kl"]),
                        ("policy parameters theta", agent.pi.theta), ("critic parameters phi", agent.v.theta)]:
            if not np.all(np.isfinite(x)):
                raise RunError(f"{name} is not finite at iteration {self.it + 1}")
        self.it += 1
        return info

    def collect(self):
        """Run E envs for T steps with the current policy. Returns an algos.Batch of (T, E) arrays."""
        T, E, dt, agent, norm = self.run.num_steps, self.run.num_envs, self.agent.dtype, self.agent, self.norm
        b = algos.Batch(obs=np.zeros((T, E, self.spaces.obs_dim), dt), act=None, logp=np.zeros((T, E), dt),
                        val=np.zeros((T, E), dt), rew=np.zeros((T, E), dt), terminated=np.zeros((T, E), bool),
                        truncated=np.zeros((T, E), bool), final_val=np.zeros((T, E), dt), last_val=None)
        acts, obs = [], norm.obs(self.raw_obs).astype(dt)
        for t in range(T):
            a, b.logp[t], b.val[t] = agent.act(obs, self.rng)
            raw_next, rew, b.terminated[t], b.truncated[t], info = self.envs.step(self.spaces.to_env(a))
            b.obs[t] = obs
            acts.append(a)
            done = b.terminated[t] | b.truncated[t]
            if b.truncated[t].any():  # bootstrap a time-limit cut from V(true final observation), normalised as usual
                rows = np.flatnonzero(b.truncated[t])
                final = np.stack([info["final_obs"][i] for i in rows]).astype(np.float64).reshape(len(rows), -1)
                b.final_val[t, rows] = agent.value(norm.obs(final).astype(dt))
            b.rew[t] = norm.reward(rew.astype(np.float64), done)
            self.ep_ret += rew
            self.ep_len += 1
            for i in np.flatnonzero(done):
                self.episodes.append((self.steps + (t + 1) * E, float(self.ep_ret[i]), int(self.ep_len[i])))
            self.ep_ret[done], self.ep_len[done] = 0.0, 0
            self.raw_obs = raw_next.astype(np.float64).reshape(E, -1)
            obs = norm.obs(self.raw_obs, update=True).astype(dt)
        b.act = np.array(acts) if self.spaces.discrete else np.array(acts).reshape(T, E, -1)
        b.last_val = agent.value(obs)
        return b

    def state(self):
        """The training state as named arrays (copies): what policy.npz holds besides the config and the spaces."""
        a = self.agent
        return {"theta_pi": a.pi.theta, "theta_v": a.v.theta.copy(),
                **{f"opt_{n}_{k}": np.array(x) for n, o in (("pi", a.opt_pi), ("v", a.opt_v))
                   for k, x in o.state().items()},
                "beta": np.array(self.hp.beta if a.beta is None else a.beta, np.float64),
                **{f"norm_{k}": x for k, x in self.norm.state().items()},
                "episodes": np.array(self.episodes, np.float64).reshape(-1, 3), "iteration": np.array(self.it),
                "seconds": np.array(list(self.seconds.values())),
                "rng_state": np.array(json.dumps(self.rng.bit_generator.state))}

    def check(self, s):
        """Raise UsageError naming the first array of s that is missing, unknown, of another dtype or shape than a
        fresh trainer's state() has, not finite, or out of range, before any of it is used."""
        own = self.state()
        odd = sorted(set(own) ^ set(s))
        if odd:
            raise UsageError(f"{'missing' if odd[0] in own else 'unknown'} array {odd[0]!r}")
        for name, want in own.items():
            x, skip = s[name], name == "episodes"  # any number of episodes
            if (x.dtype.kind != "U" if want.dtype.kind == "U" else x.dtype != want.dtype) or x.ndim != want.ndim \
                    or x.shape[skip:] != want.shape[skip:]:
                raise UsageError(f"{name} must be {want.dtype} of shape {want.shape}, got {x.dtype} of shape {x.shape}")
            if want.dtype.kind != "U" and not (np.all(np.isfinite(x)) and np.all(x >= LEAST.get(name, -np.inf))):
                raise UsageError(f"{name} must be finite" + (f" and >= {LEAST[name]:g}" if name in LEAST else ""))
        it, ep = int(s["iteration"]), s["episodes"]
        if it > self.iters:
            raise UsageError(f"iteration {it} is past the run's {self.iters}")
        if len(ep) and (np.any(ep[:, [0, 2]] % 1) or np.any(np.diff(ep[:, 0]) < 0) or np.any(ep[:, [0, 2]] < 1)
                        or ep[-1, 0] > it * self.batch or np.abs(ep[:, 1]).max() > 1e15):
            raise UsageError(f"episodes must be (step, return, length) rows, steps whole, rising to {self.batch * it}")
        try:
            np.random.PCG64().state = json.loads(str(s["rng_state"]))  # PCG64 checks every field of it
        except Exception as e:
            raise UsageError(f"rng_state is not a PCG64 state ({type(e).__name__})")

    def load(self, s):
        """Set the training state from s, as state() gives it, after check(s)."""
        self.check(s)
        a = self.agent
        a.pi.theta, a.v.theta[:] = s["theta_pi"], s["theta_v"]
        for n, o in (("pi", a.opt_pi), ("v", a.opt_v)):
            o.load({k: s[f"opt_{n}_{k}"] for k in o.state()})
        a.beta = float(s["beta"]) if self.run.algo == "ppo-penalty" else None
        self.norm.load({k[5:]: x for k, x in s.items() if k.startswith("norm_")})
        self.episodes = [(int(st), float(r), int(n)) for st, r, n in s["episodes"]]
        self.it, self.seconds = int(s["iteration"]), dict(zip(self.seconds, map(float, s["seconds"])))
        self.rng.bit_generator.state = json.loads(str(s["rng_state"]))


# ---------------------------------------------------------------------------------------------------------------
# Files: the checkpoint, the run folder and its lock, progress.csv, summary.json
# ---------------------------------------------------------------------------------------------------------------

FORMAT = 2  # policy.npz layout version


def write_atomic(path, write):
    """write(f) into path.tmp, fsync, rename over path: a reader sees the old file or the new one, never neither.
    SIGINT and SIGTERM wait until the rename is done, so an interrupt cannot leave half a file either."""
    tmp, old = path + ".tmp", signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RunError(f"cannot write {path}: {e.strerror or e}")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_json(path, obj):
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1, allow_nan=False).encode()))


def write_checkpoint(path, tr):
    """The one writer of policy.npz: the trainer's state(), the config and the spaces."""
    arrays = {**tr.state(), "format": np.array(FORMAT), "config": np.array(json.dumps(tr.config)),
              "spaces": np.array(json.dumps(tr.spaces.describe()))}
    write_atomic(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path, env_id=None):
    """The one reader of policy.npz. Every array and field is checked before anything uses it: presence, dtype,
    shape (against the saved config and the env's spaces), range and finiteness. Returns a Trainer holding the
    saved state, its envs not yet open. Raises UsageError naming the file and the field."""
    if not os.path.isfile(path):
        raise UsageError(f"no such policy file: {path} (not a minipg run or policy)")
    try:
        with np.load(path, allow_pickle=False) as z:
            s = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, MemoryError, ...
        raise UsageError(f"{path} is not a readable minipg policy ({type(e).__name__}: {e})".splitlines()[0])
    try:
        for k, kind in (("format", "i"), ("config", "U"), ("spaces", "U")):
            if k not in s or s[k].shape != () or s[k].dtype.kind != kind:
                raise UsageError(f"{k} is missing or not a {'number' if kind == 'i' else 'text'}")
        if s.pop("format") != FORMAT:
            raise UsageError(f"format is not this minipg's {FORMAT}")
        try:
            cfg, spaces = json.loads(str(s.pop("config"))), json.loads(str(s.pop("spaces")))  # a NaN fails below
        except (ValueError, RecursionError):
            raise UsageError("config or spaces is not valid JSON")
        run, hp = config_from(cfg)
        if env_id and check_env_id(env_id) != check_env_id(run.env):
            raise UsageError(f"this policy was saved for {run.env}, not {env_id}; drop --env or pass --env {run.env}")
        tr = Trainer(run, hp)
        if spaces != tr.spaces.describe():
            raise UsageError(f"spaces {spaces} do not match {run.env}'s {tr.spaces.describe()}")
        tr.load(s)
    except UsageError as e:
        raise UsageError(f"{path}: {e}")
    return tr


@contextlib.contextmanager
def folder_lock(out):
    """DIR/.lock, flock'ed while a run writes into DIR, and naming that run. The kernel drops the lock when the
    process ends, however it ends, so a killed run never leaves a stale one: only the flock counts, and the name in
    the file is read only when the flock is taken. A run that ends in Python empties the file."""
    import fcntl
    fd = os.open(os.path.join(out, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        who = os.read(fd, 200).decode(errors="replace").strip()
        os.close(fd)
        raise UsageError(f"{out} is in use by a live run ({who}); wait or use another --out")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # and with it the lock


def folder_state(out):
    """'new' (none of minipg's files), 'finished' (its summary says so) or 'unfinished' (interrupted or killed)."""
    if not any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES + ("seeds.json",)):
        return "new"
    try:
        with open(os.path.join(out, "summary.json")) as f:
            return "finished" if json.load(f).get("interrupted") is False else "unfinished"
    except (OSError, ValueError, AttributeError):
        return "unfinished"


def repair_progress(path, it):
    """On resume, progress.csv is made to match the checkpoint: the header, then the rows of iterations 1..it,
    which the checkpoint vouches for; a partial row, or rows past it (a hard kill), are dropped."""
    rows = []
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if len(r) == len(PROGRESS_COLUMNS) and r[0].isdigit()]
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    rows = [r for i, r in enumerate(rows[:it]) if r[0] == str(i + 1)]
    if len(rows) < it:
        raise UsageError(f"{path} has whole rows for iterations 1..{len(rows)}, not 1..{it}: it cannot be repaired")
    write_atomic(path, lambda f: f.write("".join(",".join(r) + "\r\n" for r in [PROGRESS_COLUMNS, *rows]).encode()))


def progress_row(tr, info):
    """One row of progress.csv: returns over the last 20 finished episodes, the update's diagnostics, timing."""
    recent = tr.episodes[-20:]
    k, mean = len(recent), sum(r for _, r, _ in recent) / max(len(recent), 1)
    row = {**info, "iter": tr.it, "steps": tr.steps, "episodes": len(tr.episodes), **({} if not k else {
           "return_mean": mean, "return_std": math.sqrt(sum((r - mean) ** 2 for _, r, _ in recent) / k),
           "length_mean": sum(n for _, _, n in recent) / k}),
           "steps_per_s": tr.steps / max(tr.seconds["wall_s"], 1e-9), **tr.seconds}
    return [repr(float(row[c])) if isinstance(row.get(c), (float, np.floating)) else row.get(c, "")
            for c in PROGRESS_COLUMNS]


def threshold_of(run):
    spec = gym.spec(check_env_id(run.env))
    return run.target if run.target is not None else spec.reward_threshold and float(spec.reward_threshold)


def steps_to_threshold(episodes, threshold, window=20):
    """First env step at which the mean return of the last `window` finished episodes >= threshold, or None."""
    c = np.cumsum([0.0] + [r for _, r, _ in episodes])  # c[i + window] - c[i]: the sum of episodes i..i+window-1
    hit = np.flatnonzero((c[window:] - c[:-window]) / window >= threshold) if threshold is not None else []
    return int(episodes[hit[0] + window - 1][0]) if len(hit) else None


def write_summary(out, tr, returns=(), interrupted=False):
    returns, threshold = [float(r) for r in returns if math.isfinite(r)], threshold_of(tr.run)
    summary = {"algo": tr.run.algo, "env": tr.run.env, "seed": tr.run.seed, "total_steps": tr.steps, **tr.seconds,
               "eval_return_mean": float(np.mean(returns)) if returns else None,
               "eval_return_std": float(np.std(returns)) if returns else None, "eval_episodes": len(returns),
               "eval_seed": tr.run.seed + 10_000, "threshold": threshold,
               "steps_to_threshold": steps_to_threshold(tr.episodes, threshold),
               "train_return_last20": float(np.mean([r for _, r, _ in tr.episodes[-20:]])) if tr.episodes else None,
               "interrupted": interrupted}
    write_json(os.path.join(out, "summary.json"), summary)
    return summary


# ---------------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------------

class Interrupts:
    """Ctrl-C (SIGINT) or SIGTERM asks the run to stop at the end of the iteration in progress, where the state is
    whole. Only work marked `with stop.at_once(n)` is dropped, on the n-th signal: an iteration on the second (the
    last checkpoint written is kept), the final evaluation on the first. Anywhere else (starting, writing files,
    releasing the folder) a signal only asks, so none lands halfway through the run's own bookkeeping."""

    def __enter__(self):
        self.count, self.n, self.old = 0, 0, {s: signal.signal(s, self.ask) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def ask(self, signum, frame):
        self.count += 1
        if 0 < self.n <= self.count:
            self.n = 0  # from here on a signal only asks: the bookkeeping that follows runs whole
            raise KeyboardInterrupt
        if self.count == 1:
            print("\nstopping at the end of this iteration (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def at_once(self, n):
        self.n = n
        try:
            yield
        finally:
            self.n = 0

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


def open_run(tr, out, resumed, overwrite):
    """The run folder, locked by the caller: a resumed run's progress.csv repaired to its checkpoint, or a new run's
    files started (refusing a folder that holds a run, unless overwrite); config.json written in both cases."""
    ck_path, path = os.path.join(out, "policy.npz"), os.path.join(out, "progress.csv")
    if resumed and os.stat(ck_path).st_mtime_ns != resumed:
        raise UsageError(f"{ck_path} changed while it was being read; try again")
    state = folder_state(out)
    if resumed:
        repair_progress(path, tr.it)
    elif state != "new" and not overwrite:
        raise UsageError(f"{out} holds {'a finished' if state == 'finished' else 'an unfinished'} run; "
                         + ("" if state == "finished" else f"continue it with --resume {out}, or ")
                         + "pass --overwrite to replace it, or choose another --out")
    else:
        for f in RUN_FILES:
            if os.path.exists(os.path.join(out, f)):
                os.remove(os.path.join(out, f))
        write_atomic(path, lambda f: f.write((",".join(PROGRESS_COLUMNS) + "\r\n").encode()))
        write_checkpoint(ck_path, tr)
    write_json(os.path.join(out, "config.json"), tr.config)


def train(tr, out, resumed=None, overwrite=False, quiet=False):
    """Train `tr` in the run folder `out`, then evaluate it: a new run, or one read from out/policy.npz (resumed is
    then that file's st_mtime_ns when it was read). Writes config.json, progress.csv, policy.npz, summary.json.
    Returns the summary, with "interrupted": True after a Ctrl-C."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    run, ck_path = tr.run, os.path.join(out, "policy.npz")
    os.makedirs(out, exist_ok=True)
    with Interrupts() as stop, folder_lock(out):  # the handler outlives the lock: see Interrupts
        open_run(tr, out, resumed, overwrite)
        defaults = {**asdict(Run()), **asdict(algos.Hyper())}
        say(f"minipg {run.algo} on {run.env}  |  {tr.iters} iterations x {tr.batch} steps  |  seed {run.seed}  |  "
            f"{run.dtype}" + (f"  |  resumed at iteration {tr.it}" if resumed else "") + "\n  config (differs from "
            f"defaults): {json.dumps({k: v for k, v in {**asdict(run), **asdict(tr.hp)}.items() if defaults[k] != v})}"
            f"\n  output: {out}\n" + " ".join(f"{c:>9}" for c in ("iter", "steps", "episodes", "return", "kl",
                                                                  "entropy", "expl_var", "steps/s", "elapsed", "eta")))
        log_every, saved, last_save = run.log_every or max(1, math.ceil(tr.iters / 40)), tr.it, time.time()
        try:
            tr.start()
            with open(os.path.join(out, "progress.csv"), "a", newline="") as progress:
                while tr.it < tr.iters and not stop.count:
                    with stop.at_once(2):
                        info = tr.iteration()
                    row = progress_row(tr, info)
                    progress.write(",".join(map(str, row)) + "\r\n")
                    progress.flush()
                    if tr.it % log_every == 0 or tr.it == tr.iters:
                        say(" ".join(f"{x:9.3g}" if isinstance(x, float) else f"{x or '-':>9}" for x in (
                            tr.it, tr.steps, len(tr.episodes), row[3] and float(row[3]), info["kl"], info["entropy"],
                            info["explained_var"], int(tr.steps / max(tr.seconds["wall_s"], 1e-9)),
                            f"{tr.seconds['wall_s']:.1f}s", f"{tr.seconds['wall_s'] / tr.it * (tr.iters - tr.it):.1f}s")))
                    if time.time() - last_save >= run.save_every_s and tr.it < tr.iters:
                        os.fsync(progress.fileno())  # a checkpoint vouches for the rows before it: they go first
                        write_checkpoint(ck_path, tr)
                        saved, last_save = tr.it, time.time()
                os.fsync(progress.fileno())
            write_checkpoint(ck_path, tr)
            saved = tr.it
            if stop.count:
                write_summary(out, tr, interrupted=True)
                print(f"interrupted after iteration {tr.it}: checkpoint saved. Continue with:\n  python minipg.py "
                      f"--resume {out}", file=sys.stderr, flush=True)
                return {"interrupted": True}
            with stop.at_once(1):
                returns = evaluate(tr, run.eval_episodes, run.seed + 10_000)
        except KeyboardInterrupt:
            print(f"stopped at once: the checkpoint of iteration {saved} is kept. Continue with:\n  python minipg.py "
                  f"--resume {out}", file=sys.stderr, flush=True)
            raise
        except (RunError, vecenv.EnvError, OSError) as e:
            raise RunError(f"{e}; training stopped, the last good checkpoint is kept in {ck_path} (iteration {saved})")
        finally:
            tr.close()
        summary = write_summary(out, tr, returns)
    say(f"evaluation ({len(returns)} deterministic episodes): {np.mean(returns):.1f} ± {np.std(returns):.1f}")
    threshold = summary["threshold"]
    say(f"{run.env} has no return threshold, so no steps to threshold (give one with --target R)" if threshold is None
        else f"steps to threshold {threshold}: {summary['steps_to_threshold']}")
    say(f"files: {out}/" + "{" + ", ".join(RUN_FILES) + "}")
    return summary


def evaluate(tr, episodes, seed, render_mode=None, video=None):
    """The deterministic policy (the head's mode) with the normaliser frozen; episode i starts from reset(seed + i).
    Returns the list of episode returns."""
    if render_mode == "rgb_array":
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames for a video need no screen
    env, agent, returns = make_env(tr.run.env, render_mode=render_mode), tr.agent, []
    try:
        with warnings.catch_warnings():  # gymnasium's notes about video folders and frames
            warnings.simplefilter("ignore")
            if video:  # RecordVideo writes mp4 through moviepy, and says so if it is missing
                env = gym.wrappers.RecordVideo(env, video, episode_trigger=lambda i: True, disable_logger=True)
            for i in range(episodes):
                raw, _ = env.reset(seed=seed + i)
                total, done = 0.0, False
                while not done:
                    obs = tr.norm.obs(np.asarray(raw, np.float64).reshape(1, -1)).astype(agent.dtype)
                    a = agent.pi.head.mode(agent.pi.dist(obs)[0])[0]
                    raw, r, term, trunc, _ = env.step(tr.spaces.to_env(a))
                    total, done = total + float(r), term or trunc
                returns.append(total)
    except gym.error.DependencyNotInstalled as e:  # rendering needs an extra (pygame, moviepy, ...)
        raise UsageError(f"{'--video' if video else '--render'} needs an optional extra: {str(e).splitlines()[0]}")
    finally:
        env.close()
    return returns


# ---------------------------------------------------------------------------------------------------------------
# The other modes
# ---------------------------------------------------------------------------------------------------------------

def only(given, allowed, mode):
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise UsageError(f"{_flag(extra[0])} has no effect with {mode} (it takes {', '.join(map(_flag, allowed))})")


def eval_cmd(path, given, video, render):
    only(given, ("env", "eval_episodes", "seed"), "--eval")
    tr = read_checkpoint(os.path.join(path, "policy.npz") if os.path.isdir(path) else path, given.get("env"))
    validate(dataclasses.replace(tr.run, **{k: v for k, v in given.items() if k != "env"}), tr.hp)
    episodes, seed = given.get("eval_episodes", tr.run.eval_episodes), given.get("seed", tr.run.seed) + 10_000
    returns = evaluate(tr, episodes, seed, "human" if render else ("rgb_array" if video else None), video)
    print(f"{path}: {tr.run.env}, {len(returns)} deterministic episodes (seeds {seed}..{seed + episodes - 1}): "
          f"{np.mean(returns):.2f} ± {np.std(returns):.2f}" + (f"; videos in {video}" if video else ""))
    return 0


def resume_cmd(out, given):
    only(given, ("steps", "eval_episodes", "save_every_s", "log_every"), "--resume (a run keeps its config)")
    ck_path = os.path.join(out, "policy.npz")
    stamp = os.path.isfile(ck_path) and os.stat(ck_path).st_mtime_ns  # taken first: a later write changes it
    tr = read_checkpoint(ck_path)
    run = dataclasses.replace(tr.run, **given)
    validate(run, tr.hp)
    if run.steps < tr.run.steps:
        raise UsageError(f"--steps {run.steps} is below the run's {tr.run.steps} steps: it can only be extended")
    if folder_state(out) == "finished" and run.steps // tr.batch == tr.it:
        print(f"{out} is a finished run ({tr.it} iterations, {tr.steps} steps): nothing to do. To train it further: "
              f"--resume {out} --steps N, with N >= {tr.steps + tr.batch}")
        return 0
    if run.steps != tr.run.steps:
        print(f"extending {out} from {tr.run.steps} to {run.steps} steps (annealed rates follow the new horizon)")
    tr.run = run
    return 130 if train(tr, out, resumed=stamp)["interrupted"] else 0


def seeds_cmd(run, hp, root, seeds, jobs, overwrite):
    """One run per seed in root/s<seed>/, `jobs` at a time, each a minipg.py process of its own; then the table.
    A Ctrl-C reaches each running seed once (it stops at the end of its iteration), and no new seed starts."""
    args = [a for k, v in {**asdict(run), **asdict(hp)}.items() if k not in ("seed", "out") and v is not None
            for a in (["--" + "no-" * (not v) + k.replace("_", "-")] if isinstance(v, bool) else [_flag(k), str(v)])]
    os.makedirs(root, exist_ok=True)
    with folder_lock(root):
        if os.path.exists(os.path.join(root, "seeds.json")) and not overwrite:
            raise UsageError(f"{root} holds a finished --seeds run; pass --overwrite to replace it, or another --out")
        procs, stop = {}, []
        old = {sig: signal.signal(sig, lambda *a: stop.append(1) or [p.send_signal(signal.SIGINT) for p in
                                                                    procs.values() if p.poll() is None])
               for sig in (signal.SIGINT, signal.SIGTERM)}  # each running seed is asked once to stop
        try:
            for s in seeds:
                while sum(p.poll() is None for p in procs.values()) >= jobs and not stop:
                    time.sleep(0.05)
                if stop:
                    break
                print(f"seed {s}: running in {os.path.join(root, f's{s}')}", flush=True)
                cmd = [sys.executable, os.path.abspath(__file__), *args, "--seed", str(s), "--out", f"{root}/s{s}"]
                procs[s] = subprocess.Popen(cmd + ["--overwrite"] * overwrite, stdout=subprocess.DEVNULL,
                                            start_new_session=True)  # the terminal's Ctrl-C is ours, not theirs
            codes = {s: p.wait() for s, p in procs.items()}
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if stop or len(codes) < len(seeds) or any(codes.values()):
            print(f"not every seed finished ({codes}): continue each with --resume {root}/s<seed>", file=sys.stderr)
            return 130 if stop else 1
        summaries = [json.load(open(os.path.join(root, f"s{s}", "summary.json"))) for s in seeds]
        table = _lab().seeds_table(run, seeds, summaries)
        write_atomic(os.path.join(root, "seeds.md"), lambda f: f.write(table.encode()))
        write_json(f"{root}/seeds.json", {"algo": run.algo, "env": run.env, "seeds": seeds, "runs": summaries})
    print(f"\n{table}\nfiles: {root}/" + "{seeds.json, seeds.md, s<seed>/}")
    return 0


def _lab():
    """lab.py: the variance lab and the pictures of runs. It imports this module: the running one, not a copy."""
    sys.modules.setdefault("minipg", sys.modules[__name__])
    import lab
    return lab


def main(argv=None):
    try:
        given, modes = parse_args(argv)
        chosen = [m for m in ("eval", "plot", "resume", "lab", "seeds") if modes[m]]
        for bad, message in [(len(chosen) > 1, f"choose one of --{' and --'.join(chosen)}"),
                             *[(modes[m] and not modes[needs], f"--{m} goes with --{needs}")
                               for m, needs in (("video", "eval"), ("render", "eval"), ("jobs", "seeds"))],
                             (modes["jobs"] is not None and modes["jobs"] < 1, "--jobs must be >= 1"),
                             (modes["overwrite"] and chosen not in ([], ["seeds"]), "--overwrite goes with a new run"),
                             (modes["seeds"] and "seed" in given, "give --seed or --seeds, not both")]:
            if bad:
                raise UsageError(message)
        if modes["plot"]:
            only(given, ("out",), "--plot")
            return _lab().plot_runs(modes["plot"], given.get("out"))
        if modes["eval"]:
            return eval_cmd(modes["eval"], given, modes["video"], modes["render"])
        if modes["resume"]:
            return resume_cmd(modes["resume"], given)
        run, hp = resolve(given)
        make_env(run.env).close()  # unsupported envs and spaces fail here, before any file is written
        out = run_folder(dataclasses.replace(run, algo="lab-variance") if modes["lab"] else run, bool(modes["seeds"]))
        check_out(out)
        if modes["lab"]:
            only(given, ("env", "seed", "out"), "--lab")
            _lab().lab_variance(run.env, run.seed, out)
            return 0
        if modes["seeds"]:
            cores = os.cpu_count() or 1  # a --vec procs run keeps two cores busy
            seeds, jobs = parse_seeds(modes["seeds"]), modes["jobs"] or max(1, cores // (1 + (run.vec == "procs")))
            return seeds_cmd(run, hp, out, seeds, jobs, modes["overwrite"])
        return 130 if train(Trainer(run, hp), out, overwrite=modes["overwrite"])["interrupted"] else 0
    except (UsageError, RunError, OSError, MemoryError) as e:  # a failed write or read: one line, exit 1
        print(f"minipg: error: {e or type(e).__name__}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python minipg.py ... | head` ends quietly
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C that comes while the interpreter exits changes nothing
    sys.exit(code)
