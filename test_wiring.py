"""The runner's wiring, proven like the maths (issue 20, item 6):

    python -m pytest -q test_wiring.py

  every field of Run and Hyper changes what it should (a table with one row per field, for every algorithm that
  the field's used_by names); the batch holds what the policy sampled and the env got it clipped to its own
  bounds; the logged returns are the env's raw rewards under every normalisation; REINFORCE's episodes begin at a
  reset; every schedule is right at its start, middle and end; a restored checkpoint continues exactly.

What the env received and emitted is recorded by a Recorder wrapped around each env minipg makes; what the
policy was given, by a recorder on agent.act. The test envs are registered as test_wiring:Bounds-v0 (Box actions
in [-3, 0.5] x [1, 2]) and test_wiring:Shifted-v0 (Discrete(3) numbered from -1).
"""
import contextlib
import copy
import dataclasses
import glob
import io
import os
import re
from dataclasses import dataclass, field
from typing import Callable
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest

import algos
import cli
import minipg
import runs


# ---------------------------------------------------------------------------------------------------------------
# Test envs, and the recorders
# ---------------------------------------------------------------------------------------------------------------

class BoundsEnv(gym.Env):
    """A small task whose actions are transformed on the way in. kind='box': a in [-3, 0.5] x [1, 2], bounds that
    are neither ±1 nor symmetric (the second does not even hold 0, a fresh Gaussian policy's mean), so samples fall
    outside on every side. kind='discrete': Discrete(3) numbered -1, 0, 1 (start=-1). obs = [x, t]; x moves with
    the action, the reward -(x - 1/2)^2 + u/10 differs at every step; an episode terminates at random from its
    second step on (the env's own seeded np_random), or a TimeLimit of 7 cuts it."""

    def __init__(self, kind="box"):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        if kind == "box":
            self.action_space = gym.spaces.Box(np.array([-3.0, 1.0]), np.array([0.5, 2.0]), dtype=np.float64)
        else:
            self.action_space = gym.spaces.Discrete(3, start=-1)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.normal()), 0
        return np.array([self.x, 0.0]), {}

    def step(self, action):
        u = float(np.sum(action))
        self.x = 0.8 * self.x + 0.3 * u + 0.1 * float(self.np_random.normal())
        self.t += 1
        terminated = self.t >= 2 and self.np_random.random() < 0.25
        return np.array([self.x, float(self.t)]), -(self.x - 0.5) ** 2 + 0.1 * u, terminated, False, {}


for _name, _kind in (("Bounds-v0", "box"), ("Shifted-v0", "discrete")):
    if _name not in gym.registry:
        gym.register(_name, entry_point=BoundsEnv, kwargs=dict(kind=_kind), max_episode_steps=7)

BOX_ENVS = ("Pendulum-v1", "test_wiring:Bounds-v0")  # Pendulum's bounds are ±2


class Recorder(gym.Wrapper):
    """One env as minipg drives it; what it received and emitted goes into `log`: ("reset", obs) and
    ("step", action, obs, reward, terminated, truncated)."""

    def __init__(self, env, log):
        super().__init__(env)
        self.log = log

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.log.append(("reset", np.array(obs, np.float64)))
        return obs, info

    def step(self, action):
        obs, r, terminated, truncated, info = self.env.step(action)
        self.log.append(("step", np.array(action), np.array(obs, np.float64), float(r), bool(terminated),
                         bool(truncated)))
        return obs, r, terminated, truncated, info


def record_envs(monkeypatch):
    """Every env minipg makes from here on is a Recorder. Returns their logs, one list per env, in the order made
    (make the Trainer first: then the envs of its start() are logs[0], ..., logs[E-1])."""
    logs, make_env = [], minipg.make_env

    def recorded(env_id, render_mode=None):
        logs.append([])
        return Recorder(make_env(env_id, render_mode), logs[-1])
    monkeypatch.setattr(minipg, "make_env", recorded)
    return logs


def mark_batches(tr, logs):
    """A ("batch",) event in every env's log as each collect begins."""
    name = "collect_episodes" if tr.episodic else "collect"
    collect = getattr(tr, name)

    def marked():
        for log in logs:
            log.append(("batch",))
        return collect()
    setattr(tr, name, marked)


def record_batches(tr):
    """The batches tr's update is given, in order."""
    batches, update = [], tr.update

    def recorded(agent, b, hp, rng, frac):
        batches.append(copy.deepcopy(b))
        return update(agent, b, hp, rng, frac)
    tr.update = recorded
    return batches


def three_recorded_iterations(tr, monkeypatch):
    """Run tr for three iterations with its envs and its update recorded: (each env's log, the batches updated on)."""
    logs = record_envs(monkeypatch)
    mark_batches(tr, logs)
    batches = record_batches(tr)
    tr.start()
    for _ in range(3):
        tr.iteration()
    tr.close()
    return logs, batches


def record_policy_inputs(tr):
    """The observations agent.act is given, one (E, obs_dim) array per vector step."""
    inputs, act = [], tr.agent.act

    def recorded(obs, rng, deterministic=False):
        inputs.append(obs.copy())
        return act(obs, rng, deterministic)
    tr.agent.act = recorded
    return inputs


def timeline(log):
    """One env's steps in order, each a dict: the batch it fell in, the observation the env had emitted before it
    and whether a reset emitted it, the action the env received, and the reward and flags it returned."""
    steps, obs, from_reset, batch = [], None, False, -1
    for event in log:
        if event[0] == "batch":
            batch += 1
        elif event[0] == "reset":
            obs, from_reset = event[1], True
        else:
            _, action, next_obs, r, terminated, truncated = event
            steps.append(dict(batch=batch, obs=obs, reset=from_reset, action=action, rew=r, term=terminated,
                              trunc=truncated))
            obs, from_reset = next_obs, False
    return steps


def whole_episodes(steps):
    """(batch, index of the first step, of the last step, return, length) of each episode of one env's steps that
    ran from a reset to its end; an episode cut by a reset (a new REINFORCE batch) is not one."""
    out, first = [], None
    for k, s in enumerate(steps):
        if s["reset"]:
            first = k
        if (s["term"] or s["trunc"]) and first is not None:
            ret = 0.0
            for x in steps[first:k + 1]:
                ret += x["rew"]  # in the order the runner adds them
            out.append((steps[first]["batch"], first, k, ret, k - first + 1))
            first = None
    return out


def shares(num_episodes, E):
    """REINFORCE: the whole episodes env i runs, N_tau // E, one more for the first N_tau % E envs."""
    return [num_episodes // E + (i < num_episodes % E) for i in range(E)]


def stored_steps(b, E, num_episodes=None):
    """Each step a batch holds as (t, i, obs, act, logp, rew): the batch's step t of env i. A Batch is (T, E);
    Episodes are env-major, env i's episodes numbered after those of envs 0..i-1, its rows its steps 0, 1, ..."""
    if isinstance(b, algos.Batch):
        T = b.rew.shape[0]
        return [(t, i, b.obs[t, i], b.act[t, i], b.logp[t, i], b.rew[t, i]) for t in range(T) for i in range(E)]
    first = np.cumsum([0] + shares(num_episodes, E))
    out = []
    for i in range(E):
        rows = np.flatnonzero((b.ep >= first[i]) & (b.ep < first[i + 1]))
        assert np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))  # contiguous
        out += [(t, i, b.obs[k], b.act[k], b.logp[k], b.rew[k]) for t, k in enumerate(rows)]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Trainers in float64 with tiny networks and batches
# ---------------------------------------------------------------------------------------------------------------

def shape(algo):
    """The small batch each algorithm takes here: 2 envs x 16 steps, or 2 whole episodes; a critic and PPO's
    minibatches that fit it."""
    given = dict(num_envs=2, **(dict(num_episodes=2) if algo == "reinforce" else dict(num_steps=16)))
    if algo in algos.FITS_V:
        given.update(v_iters=2, v_minibatch=16)
    if algo in algos.PPOS:
        given.update(epochs=2, minibatch=16)
    return given


def trainer(env_id="CartPole-v1", **given):
    run, hp = minipg.CONFIG.resolve({"env": env_id, "dtype": "float64", "hidden": "8", **given})
    return minipg.Trainer(run, hp)


def same(x, y):
    """x and y are the same observation: equal dicts, sequences, arrays (dtype and shape too) or values."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(same, x, y))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    return type(x) is type(y) and x == y


# ---------------------------------------------------------------------------------------------------------------
# 1. Every field of Run and Hyper changes what it should
# ---------------------------------------------------------------------------------------------------------------
# Each observable takes a config (run, hp) and a folder of its own, and returns named things that can be compared.

def batch(run, hp, tmp):
    """The first batch the trainer collects, the policy's initial parameters and the dtypes of everything."""
    tr = minipg.Trainer(run, hp)
    tr.start()
    b = tr.collect_episodes() if tr.episodic else tr.collect()
    tr.close()
    arrays = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    state = tr.state()
    return {**arrays, "first_obs": b.obs[0], "theta_pi": tr.agent.pi.theta,
            "dtypes": [x.dtype.name for x in (*arrays.values(), state["theta_pi"], state["theta_v"],
                                              *(state[k] for k in state if k.startswith("opt_") and state[k].ndim))]}


def update(iterations=1):
    """The agent after `iterations` whole iterations (and the first batch's observations and rewards)."""
    def after(run, hp, tmp):
        tr = minipg.Trainer(run, hp)
        name = tr.update.__name__
        batches = record_batches(tr)
        tr.start()
        for _ in range(iterations):
            tr.iteration()
        tr.close()
        s = tr.state()
        return {"update": name, "theta_pi": s["theta_pi"], "theta_v": s["theta_v"],
                "theta": np.concatenate([s["theta_pi"], s["theta_v"]]), "beta": s["beta"],
                "obs": batches[0].obs, "rew": batches[0].rew}
    after.__name__ = f"update_after_{iterations}"
    return after


def schedule(run, hp, tmp):
    """The number of iterations and the fraction of training left after the first."""
    tr = minipg.Trainer(run, hp)
    tr.start()
    tr.iteration()
    tr.close()
    return {"iters": tr.iters, "frac": tr.frac()}


def envs(run, hp, tmp):
    """The vector env start() makes, the ids of its envs, and the observations of its first reset."""
    tr = minipg.Trainer(run, hp)
    tr.start()
    made = {"class": type(tr.envs).__name__, "raw_obs": tr.raw_obs.copy(),
            "ids": [e.spec.id for e in tr.envs.envs] if isinstance(tr.envs, minipg.vecenv.SyncEnvs) else None}
    tr.close()
    return made


def two_iterations(run, hp, tmp):
    """The vector env start() makes, and everything else of two iterations: the batches and the state after them
    (agent, optimisers, normaliser, episodes, RNG)."""
    tr = minipg.Trainer(run, hp)
    batches = record_batches(tr)
    tr.start()
    kind = type(tr.envs).__name__
    for _ in range(2):
        tr.iteration()
    tr.close()
    return {"class": kind, "batches": [vars(b) for b in batches],
            "state": {k: x for k, x in tr.state().items() if k != "seconds"}}


def network(run, hp, tmp):
    tr = minipg.Trainer(run, hp)
    return {"pi": tr.agent.pi.net.sizes, "v": tr.agent.v.sizes}


def resolved(run, hp, tmp):
    """The config the flags resolve to (all but the preset's name) and the agent after one iteration."""
    config = {**dataclasses.asdict(run), **dataclasses.asdict(hp)}
    config.pop("preset")
    return {"config": config, **update(1)(run, hp, tmp)}


def main(run, hp, tmp):
    """minipg.main with this config's flags, run in the folder tmp: the files it wrote there (a default folder's
    time stamp left out, so that only --out can tell two runs' folders apart), the iterations its console lines
    show, how many checkpoints it wrote, and what its summary.json says."""
    argv = minipg.CONFIG.argv(run, hp) + ["--seed", str(run.seed)] + (["--out", run.out] if run.out else [])
    os.makedirs(tmp)
    printed = io.StringIO()
    with mock.patch.object(runs, "write_checkpoint", wraps=runs.write_checkpoint) as writes, \
            contextlib.redirect_stdout(printed), contextlib.chdir(tmp):
        assert minipg.main(argv) == 0
    [summary_path] = glob.glob(os.path.join(tmp, "**", "summary.json"), recursive=True)
    summary = runs.read_summary(summary_path)
    files = (os.path.relpath(p, tmp) for p in glob.glob(os.path.join(tmp, "**"), recursive=True))
    return {"files": sorted(re.sub(r"-\d{8}-\d{6}", "-<time>", f) for f in files),  # a default folder's stamp
            "console": [int(m.group(1)) for m in re.finditer(r"^ +(\d+) ", printed.getvalue(), re.M)],
            "checkpoints": writes.call_count, "eval_episodes": summary["eval_episodes"],
            "threshold": summary["threshold"]}


@dataclass
class Row:
    """values: the field's values, the first the reference; observe: what each config gives; differs: the names
    of what every other value must change; equal: what it must leave alone; given: what the configs share so that
    the field can act (a Gaussian policy for init_log_std), less the flags an algorithm does not read; algos: the
    algorithms to check, where used_by's would cost too much (default: every algorithm the field's used_by names;
    for a Run field that all read, ppo and reinforce)."""
    values: tuple
    observe: Callable
    differs: tuple
    equal: tuple = ()
    given: dict = field(default_factory=dict)
    algos: tuple = None


FILES = dict(eval_episodes=1)  # four iterations of PPO, one evaluation episode
ONE, TWO = update(1), update(2)  # an annealed value differs from its start only from the second iteration on
TABLE = {
    # Run: what to run
    "algo": Row(("vpg", "reinforce", "a2c", "npg", "trpo", "ppo", "ppo-penalty"), ONE, ("update", "theta_pi"),
                given=dict(num_steps=32)),  # 64 steps: PPO's default minibatch
    "env": Row(("CartPole-v1", "test_wiring:Shifted-v0"), envs, ("ids", "raw_obs")),
    "steps": Row((128, 256), schedule, ("frac",)),
    "seed": Row((3, 4), batch, ("first_obs", "theta_pi")),  # the envs' seeds and the agent's
    "num_envs": Row((2, 1), batch, ("obs",)),
    "num_steps": Row((16, 8), batch, ("obs",)),
    "num_episodes": Row((2, 3), batch, ("ep",)),
    # the class, and nothing else: with truncations, terminations and both normalisations, the same batches
    "vec": Row(("sync", "procs", "async"), two_iterations, ("class",), ("batches", "state"),
               dict(env="test_wiring:Bounds-v0", num_envs=3, num_episodes=4, norm_obs="on", norm_reward="on")),
    "hidden": Row(("8", "8,8"), network, ("pi", "v")),
    "activation": Row(("tanh", "relu"), batch, ("logp", "val")),
    "dtype": Row(("float64", "float32"), batch, ("dtypes",)),
    "init_log_std": Row((0.0, -1.0), batch, ("act",), given=dict(env="test_wiring:Bounds-v0")),
    "norm_obs": Row(("off", "on"), batch, ("obs",), ("rew",)),
    "obs_clip": Row((10.0, 0.1), batch, ("obs",), given=dict(norm_obs="on")),
    "norm_reward": Row(("off", "on"), batch, ("rew",), ("obs", "act")),
    "out": Row(("run-a", "run-b"), main, ("files",), ("console", "checkpoints"), FILES, ("ppo",)),
    "eval_episodes": Row((1, 3), main, ("eval_episodes",), ("console", "checkpoints"), FILES, ("ppo",)),
    "target": Row((None, 10.0), main, ("threshold",), ("console",), FILES, ("ppo",)),
    "save_every_s": Row((1e6, 0.0), main, ("checkpoints",), ("console",), FILES, ("ppo",)),
    "log_every": Row((1, 3), main, ("console",), ("checkpoints",), FILES, ("ppo",)),
    "preset": Row(("", "pendulum"), resolved, ("config", "theta")),
    # Hyper: what the update reads
    "gamma": Row((0.99, 0.5), ONE, ("theta_pi", "rew"), given=dict(norm_reward="on")),  # and the reward scale's
    "lam": Row((0.95, 0.5), ONE, ("theta_pi",)),
    "lr_pi": Row((1e-3, 1e-2), ONE, ("theta_pi",)),
    "lr_v": Row((1e-3, 1e-2), ONE, ("theta_v",), ("theta_pi",)),  # the policy steps before the critic is fitted
    "anneal_lr": Row((False, True), TWO, ("theta",)),
    "optimiser": Row(("adam", "rmsprop"), ONE, ("theta",)),
    "adam_eps": Row((1e-5, 1e-1), ONE, ("theta",)),
    "max_grad_norm": Row((0.0, 1e-3), ONE, ("theta",)),  # off, and a norm every gradient here exceeds
    "ent_coef": Row((0.0, 0.5), ONE, ("theta_pi",), given=dict(env="test_wiring:Bounds-v0")),  # dH/d log sigma = 1
    "norm_adv": Row((True, False), ONE, ("theta_pi",)),
    "v_iters": Row((2, 3), ONE, ("theta_v",), ("theta_pi",)),
    "v_minibatch": Row((32, 4), ONE, ("theta_v",), ("theta_pi",)),
    "epochs": Row((1, 2), ONE, ("theta_pi",)),
    "minibatch": Row((32, 8), ONE, ("theta_pi",)),
    "clip_eps": Row((0.2, 0.01), ONE, ("theta_pi",), given=dict(lr_pi=1e-2)),
    "anneal_clip": Row((False, True), TWO, ("theta_pi",), given=dict(lr_pi=1e-2, clip_eps=0.02)),
    "clip_vloss": Row((False, True), ONE, ("theta_v",), given=dict(clip_eps=0.01)),
    "vf_coef": Row((0.5, 2.0), ONE, ("theta_v",)),
    "target_kl": Row((0.0, 1e-6), ONE, ("theta_pi",)),
    "d_targ": Row((1e-9, 100.0), ONE, ("beta",), ("theta_pi",)),  # beta x 2 after the batch, or / 2
    "beta": Row((1.0, 10.0), ONE, ("theta_pi",)),
    "beta_rule": Row(("ppo", "additive"), ONE, ("beta",), ("theta_pi",)),
    "beta_lr": Row((10.0, 1.0), ONE, ("beta",), ("theta_pi",), dict(beta_rule="additive")),
    "max_kl": Row((0.01, 0.05), ONE, ("theta_pi",)),
    "cg_iters": Row((10, 1), ONE, ("theta_pi",)),
    "cg_damping": Row((0.1, 1.0), ONE, ("theta_pi",)),
    "backtrack_coef": Row((0.8, 0.5), ONE, ("theta_pi",), given=dict(max_kl=1.0)),  # a step the search shortens
    "backtrack_iters": Row((10, 1), ONE, ("theta_pi",), given=dict(max_kl=1.0)),
    "phi": Row(("rtg", "return"), ONE, ("theta_pi",)),
    "baseline": Row(("v", "none", "mean", "optimal"), ONE, ("theta_pi",)),
}
RUN_FIELDS = {f.name: f for f in dataclasses.fields(minipg.Run)}
FIELDS = {**RUN_FIELDS, **{f.name: f for f in dataclasses.fields(algos.Hyper)}}


def algos_of(name):
    row, used_by = TABLE[name], FIELDS[name].metadata.get("used_by")
    if name == "algo":
        return (row.values[0],)
    return row.algos or used_by or ("ppo", "reinforce")


def base(algo):
    return {"algo": algo, "env": "CartPole-v1", "dtype": "float64", "hidden": "8", "steps": 128, "seed": 3,
            **shape(algo)}


def configs(name, algo):
    """The configs of a row, as the command line makes them: the same flags but for `name`. (--algo changes the
    defaults the other flags take, so the algo row replaces only that field of one config.)"""
    row = TABLE[name]
    if name == "algo":
        run, hp = minipg.CONFIG.resolve({**base(algo), **row.given})
        made = [(dataclasses.replace(run, algo=a), hp) for a in row.values]
        for run, hp in made:
            minipg.CONFIG.validate(run, hp)
        return made
    shared = {k: v for k, v in row.given.items() if minipg.CONFIG.uses(minipg.CONFIG.field(k), algo)}
    return [minipg.CONFIG.resolve({**base(algo), **shared, name: v}) for v in row.values]


def test_the_table_has_a_row_for_every_field_of_run_and_hyper_and_checks_only_algorithms_that_read_it():
    assert set(TABLE) == set(FIELDS)
    for name in TABLE:
        used_by = FIELDS[name].metadata.get("used_by") or algos.ALL
        assert set(algos_of(name)) <= set(used_by), name


@pytest.mark.parametrize("name, algo", [(name, algo) for name in TABLE for algo in algos_of(name)])
def test_every_field_of_run_and_hyper_changes_what_it_should(name, algo, tmp_path):
    """For each other value of the field, a config that differs from the reference in that field alone changes
    every observable the row names, and none of those it says the field leaves alone."""
    row = TABLE[name]
    made = configs(name, algo)
    values = [{**dataclasses.asdict(run), **dataclasses.asdict(hp)} for run, hp in made]
    for v in values[1:]:
        if name != "preset":  # a preset is a set of values; the others differ in the field alone
            assert {k for k in v if v[k] != values[0][k]} == {name}
    seen = [row.observe(run, hp, str(tmp_path / f"value{k}")) for k, (run, hp) in enumerate(made)]
    for value, s in zip(row.values[1:], seen[1:]):
        for k in row.differs:
            assert not same(seen[0][k], s[k]), f"{name}={value!r} does not change {k} ({row.observe.__name__})"
        for k in row.equal:
            assert same(seen[0][k], s[k]), f"{name}={value!r} changes {k} ({row.observe.__name__})"


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_log_every_0_prints_about_40_progress_lines_whatever_the_batch(algo, tmp_path):
    """log_every's default, 0, means about 40 lines per run (its doc), for a fixed batch (80 iterations here) and
    for whole episodes, whose iterations the runner cannot count in advance (58 here)."""
    shape = dict(num_episodes=2) if algo == "reinforce" else dict(num_steps=8, minibatch=16, epochs=1)
    tr = trainer(algo=algo, num_envs=2, **shape, steps=1280 if algo == "ppo" else 3000, eval_episodes=1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        minipg.train(tr, str(tmp_path / "run"))
    lines = re.findall(r"^ +\d+ ", printed.getvalue(), re.M)
    assert tr.it >= 50 and 35 <= len(lines) <= 45, (tr.it, len(lines))


@pytest.mark.parametrize("algo", algos.ALL)
def test_the_fields_an_algorithm_does_not_read_change_nothing_for_it(algo):
    """The converse of the table, so that used_by is exact both ways (the command line refuses these flags): every
    field whose used_by leaves the algorithm out, changed at once to another of its values, leaves two iterations'
    batches and the whole state after them as they were. (state() holds hp.beta for every algorithm; only
    PPO-Penalty reads it.)"""
    run, hp = minipg.CONFIG.resolve(base(algo))
    unread = [name for name, f in FIELDS.items() if not minipg.CONFIG.uses(f, algo)]
    other = {name: next(v for v in (*TABLE[name].values[1:], TABLE[name].values[0])  # the row's acting values first
                        if v != getattr(run if name in RUN_FIELDS else hp, name)) for name in unread}
    changed = (dataclasses.replace(run, **{k: v for k, v in other.items() if k in RUN_FIELDS}),
               dataclasses.replace(hp, **{k: v for k, v in other.items() if k not in RUN_FIELDS}))
    minipg.CONFIG.validate(*changed)
    assert len(unread) >= 2
    seen = [two_iterations(*config, None) for config in ((run, hp), changed)]
    if algo != "ppo-penalty":
        for s in seen:
            s["state"].pop("beta")
    assert same(seen[0], seen[1])


# ---------------------------------------------------------------------------------------------------------------
# 2. The batch is what the env saw and what the policy sampled
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_obs", ["off", "on"])
@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "test_wiring:Shifted-v0", *BOX_ENVS])
def test_the_batch_holds_the_policys_samples_and_the_env_got_them_clipped_to_its_bounds(env_id, algo, norm_obs,
                                                                                       monkeypatch):
    """From collect and collect_episodes, at theta_old after one update: each stored s_t is the observation the
    policy was given (with normalisation off, the one the env emitted); each stored a_t is what the policy's head
    samples there from the run's RNG, unclipped; the stored logp is log pi_theta_old(a_t|s_t) exactly; and the env
    received a_t clipped to its own bounds (Box) or numbered from its start (Discrete)."""
    E = 2
    tr = trainer(env_id, algo=algo, **shape(algo), steps=10 ** 4, norm_obs=norm_obs, norm_reward="off",
                 init_log_std=1.0)
    space = gym.make(cli.check_env_id(env_id)).action_space
    box = isinstance(space, gym.spaces.Box)
    logs = record_envs(monkeypatch)
    mark_batches(tr, logs)
    tr.start()
    tr.iteration()  # batch 0, and an update: theta_old is no longer the initial theta
    inputs = record_policy_inputs(tr)
    replay = np.random.default_rng()
    replay.bit_generator.state = copy.deepcopy(tr.rng.bit_generator.state)
    b = tr.collect_episodes() if tr.episodic else tr.collect()  # batch 1
    tr.close()
    pi, head = tr.agent.pi, tr.agent.pi.head
    sampled = []  # per vector step: the actions the head samples at the observations given, and their log pi
    for obs in inputs:
        z, _ = pi.dist(obs)
        a = head.sample(z, replay)
        sampled.append((a, head.log_prob(z, a)))
    held = stored_steps(b, E, tr.run.num_episodes)
    for t, i, obs, act, logp, _ in held:
        assert np.array_equal(obs, inputs[t][i]) and obs.dtype == inputs[t].dtype
        assert np.array_equal(act, sampled[t][0][i])
        assert logp == sampled[t][1][i] and logp.dtype == np.float64
    received = []
    for i in range(E):
        steps = [s for s in timeline(logs[i]) if s["batch"] == 1]
        assert len(steps) == len(inputs)  # the env stepped once per policy call
        for t, s in enumerate(steps):
            a = sampled[t][0][i]
            assert np.array_equal(s["action"], np.clip(a, space.low, space.high) if box else a + space.start)
            if norm_obs == "off":
                assert np.array_equal(s["obs"], inputs[t][i])  # the policy was given what the env emitted
            received.append(s["action"])
    received, acts = np.array(received), np.array([act for _, _, _, act, _, _ in held])
    if box:
        assert np.all(received >= space.low) and np.all(received <= space.high)
        assert np.any(acts < space.low) and np.any(acts > space.high)  # the batch keeps the samples outside
    else:
        assert set(np.unique(received)) == set(range(space.start, space.start + space.n))


# ---------------------------------------------------------------------------------------------------------------
# 3. Logged episode returns are the env's raw rewards under every normalisation
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_reward", ["off", "on"])
@pytest.mark.parametrize("norm_obs", ["off", "on"])
@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_logged_returns_are_the_sums_of_the_envs_raw_rewards_under_every_normalisation(algo, norm_obs, norm_reward,
                                                                                      monkeypatch):
    """tr.episodes holds, in the order they ended, each whole episode the runner keeps (REINFORCE: env i's first
    share of each batch) with the sum of the rewards the env emitted and its length; the batch's rew is the env's
    reward with norm_reward off, and with it on the reward divided by one positive scale per step."""
    E = 2
    tr = trainer("test_wiring:Bounds-v0", algo=algo, **{**shape(algo), **({"num_episodes": 3} if algo == "reinforce"
                                                                           else {})},
                 steps=10 ** 4, norm_obs=norm_obs, norm_reward=norm_reward)
    logs, batches = three_recorded_iterations(tr, monkeypatch)
    steps = [timeline(log) for log in logs]
    kept = []  # (last step, env, return, length), as the runner should log them
    for i in range(E):
        episodes = whole_episodes(steps[i])
        if tr.episodic:
            episodes = [e for e in episodes if sum(f[0] == e[0] and f[1] < e[1] for f in episodes)
                        < shares(tr.run.num_episodes, E)[i]]
        kept += [(last, i, ret, n) for _, _, last, ret, n in episodes]
    kept.sort()  # all envs step together, so the step index orders them in time
    assert len(kept) >= 6 and [(r, n) for _, r, n in tr.episodes] == [(r, n) for _, _, r, n in kept]
    if not tr.episodic:
        assert [s for s, _, _ in tr.episodes] == [(last + 1) * E for last, _, _, _ in kept]
    for k, b in enumerate(batches):
        mine = [[s for s in steps[i] if s["batch"] == k] for i in range(E)]
        scale = {}  # per step t: stored / raw, for every env
        for t, i, _, _, _, rew in stored_steps(b, E, tr.run.num_episodes):
            raw = mine[i][t]["rew"]
            if norm_reward == "off":
                assert rew == raw
            else:
                scale.setdefault(t, []).append(rew / raw)
        for ratios in scale.values():
            assert min(ratios) > 0 and np.allclose(ratios, ratios[0], rtol=1e-12, atol=0)
        if norm_reward == "on":
            assert not np.allclose([r for ratios in scale.values() for r in ratios], 1.0)


# ---------------------------------------------------------------------------------------------------------------
# 4. REINFORCE's batches begin at a reset
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["CartPole-v1", "test_wiring:Bounds-v0"])
def test_every_reinforce_episode_begins_at_an_observation_the_env_returned_from_reset(env_id, monkeypatch):
    """In each of three batches: exactly N_tau episodes, and env i's are the first whole episodes it ran in that
    batch, the first from the reset that begins the batch, each starting at the observation that reset returned
    and as long as the env's episode (so it ends where the env said it ended)."""
    E, N = 2, 3
    tr = trainer(env_id, algo="reinforce", num_envs=E, num_episodes=N, steps=10 ** 5, norm_obs="off")
    logs, batches = three_recorded_iterations(tr, monkeypatch)
    first = np.cumsum([0] + shares(N, E))
    for k, d in enumerate(batches):
        assert d.n_tau == N and np.array_equal(np.unique(d.ep), np.arange(N))
        for i in range(E):
            steps = [s for s in timeline(logs[i]) if s["batch"] == k]
            assert steps[0]["reset"]  # the batch does not carry on an episode of the last one
            ran = [(steps[f]["obs"], n) for b, f, _, _, n in whole_episodes(steps)][:first[i + 1] - first[i]]
            held = [(d.obs[d.ep == e][0], int(np.sum(d.ep == e))) for e in range(first[i], first[i + 1])]
            assert all(steps[f]["reset"] for _, f, _, _, _ in whole_episodes(steps)[:len(held)])
            assert len(ran) == len(held) and all(np.array_equal(o1, o2) and n1 == n2
                                                 for (o1, n1), (o2, n2) in zip(ran, held))


# ---------------------------------------------------------------------------------------------------------------
# 5. Every schedule at its start, middle and end
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["ppo", "trpo", "reinforce"])
def test_every_schedule_is_right_at_the_start_the_middle_and_the_end(algo, monkeypatch):
    """At the first, the middle and the last iteration: the Trainer passes frac = 1 - it/iters (REINFORCE, whose
    batches vary: 1 - steps/run.steps); the update sets alpha = lr_pi frac and alpha_phi = lr_v frac through
    algos.set_learning_rates, and every optimiser step uses them (PPO's critic steps with lr_pi, on one joint
    loss); PPO's objective uses epsilon = clip_eps frac."""
    given = dict(anneal_lr=True, **({"lr_pi": 1e-2} if algo != "trpo" else {}),
                 **({"lr_v": 2e-2} if algo in algos.FITS_V else {}),
                 **({"anneal_clip": True, "clip_eps": 0.3, "clip_vloss": True} if algo == "ppo" else {}))
    tr = trainer(algo=algo, **shape(algo), steps=160, **given)
    hp = tr.hp
    iterations = []  # per update: the frac passed, the iteration and steps before it, and what it did
    update = tr.update

    def recorded_update(agent, b, hp, rng, frac):
        iterations.append(dict(frac=frac, it=tr.it, steps=tr.steps, rates=[], opt_pi=[], opt_v=[], eps=[]))
        return update(agent, b, hp, rng, frac)
    tr.update = recorded_update
    set_learning_rates = algos.set_learning_rates

    def recorded_rates(agent, hp, frac):
        set_learning_rates(agent, hp, frac)
        iterations[-1]["rates"].append((frac, agent.opt_pi.lr, agent.opt_v.lr))
    monkeypatch.setattr(algos, "set_learning_rates", recorded_rates)
    objective = algos.ppo_clip_objective

    def recorded_objective(head, z, act, logp_old, A, clip_eps):
        iterations[-1]["eps"].append(clip_eps)
        return objective(head, z, act, logp_old, A, clip_eps)
    monkeypatch.setattr(algos, "ppo_clip_objective", recorded_objective)
    for name in ("opt_pi", "opt_v"):
        opt = getattr(tr.agent, name)

        def recorded_step(theta, g, lr=None, opt=opt, step=opt.step, name=name):
            iterations[-1][name].append(opt.lr if lr is None else lr)  # the rate the step uses
            return step(theta, g, lr)
        opt.step = recorded_step
    tr.start()
    while not tr.done():
        tr.iteration()
    tr.close()
    assert len(iterations) >= 4 and (tr.episodic or len(iterations) == tr.iters == 5)
    critic_rate = hp.lr_pi if algo in ("a2c", *algos.PPOS) else hp.lr_v
    for it in (iterations[0], iterations[len(iterations) // 2], iterations[-1]):  # start, middle, end
        frac = 1.0 - (it["steps"] / tr.run.steps if tr.episodic else it["it"] / tr.iters)
        assert it["frac"] == frac
        assert it["rates"] == [(frac, hp.lr_pi * frac, hp.lr_v * frac)]
        assert it["opt_v"] and all(lr == critic_rate * frac for lr in it["opt_v"])
        assert all(lr == hp.lr_pi * frac for lr in it["opt_pi"]) and (algo == "trpo" or it["opt_pi"])
        assert (algo != "ppo") == (not it["eps"]) and all(eps == hp.clip_eps * frac for eps in it["eps"])
    assert iterations[0]["frac"] == 1.0 and 0 < iterations[-1]["frac"] < iterations[-2]["frac"]


# ---------------------------------------------------------------------------------------------------------------
# 6. A restored checkpoint continues exactly
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, algo, given", [
    ("CartPole-v1", "ppo-penalty", dict(beta_rule="additive", beta_lr=1e3, d_targ=1.0)),  # beta driven to 0
    ("CartPole-v1", "ppo-penalty", dict()),  # beta adapted by the PPO paper's rule
    ("test_wiring:Bounds-v0", "ppo", dict(norm_obs="on", norm_reward="on", anneal_lr=True)),
    ("Pendulum-v1", "trpo", dict(norm_obs="on", norm_reward="on", anneal_lr=True)),
    ("CartPole-v1", "a2c", dict(anneal_lr=True)),  # RMSprop
    ("test_wiring:Bounds-v0", "reinforce", dict(norm_obs="on", norm_reward="on", anneal_lr=True)),
], ids=["ppo-penalty-beta-0", "ppo-penalty", "ppo-box", "trpo-pendulum", "a2c", "reinforce-box"])
def test_a_restored_checkpoint_continues_exactly_as_the_trainer_it_was_written_from(env_id, algo, given, tmp_path):
    """write_checkpoint mid-run, restore: every array of the state comes back, and after two more iterations from a
    fresh start() the parameters, optimiser moments, normaliser statistics, RNG, episodes and beta of the restored
    trainer are those of the one it was written from (which moved them)."""
    tr = trainer(env_id, algo=algo, **shape(algo), steps=10 ** 4, **given)
    tr.start()
    for _ in range(2):
        tr.iteration()
    tr.close()
    if given.get("beta_rule") == "additive":
        assert tr.hp.beta == 1.0 and tr.agent.beta == 0.0  # beta + beta_lr (KL - d_targ) < 0, kept at 0
    path = str(tmp_path / "policy.npz")
    runs.write_checkpoint(path, tr)
    back = minipg.restore(path)
    written = tr.state()
    assert same(back.state(), written)
    for t in (tr, back):
        t.start()  # both begin their envs afresh at iteration 2 (an env cannot be saved)
        for _ in range(2):
            t.iteration()
        t.close()
    after, resumed = tr.state(), back.state()
    for k in after:
        assert k == "seconds" or same(resumed[k], after[k]), k
    moved = ["theta_pi", "theta_v", "rng_state", *(k for k in after if k.startswith("opt_v_"))]
    if algo != "trpo":
        moved += [k for k in after if k.startswith("opt_pi_")]
    if given.get("norm_obs") == "on":
        moved += [k for k in after if k.startswith("norm_")]
    if algo == "ppo-penalty" and not given:
        moved.append("beta")
    assert [k for k in moved if same(written[k], after[k])] == []
    if algo == "ppo-penalty":
        assert back.agent.beta == tr.agent.beta == float(after["beta"])
