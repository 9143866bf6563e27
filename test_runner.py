"""The runner (minipg.py): envs, collect, the files a run writes, the command line, checkpoints, interrupts and
resume, and the learning tests that train every algorithm end to end."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

import algos
import minipg
import nets

HERE = os.path.dirname(os.path.abspath(__file__))


class CounterEnv(gym.Env):
    """A tiny env for the truncation claim: obs = [t], reward 1 per step; after 5 steps it either terminates
    (terminal=True) or is cut by a TimeLimit (terminal=False)."""

    def __init__(self, terminal=False, space="box"):
        self.terminal = terminal
        self.observation_space = gym.spaces.Box(-100, 100, (1,), np.float64)
        self.action_space = {"box": gym.spaces.Discrete(2), "multidiscrete": gym.spaces.MultiDiscrete([2, 2]),
                             "multibinary": gym.spaces.MultiBinary(2)}[space]
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0]), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)]), 1.0, self.terminal and self.t >= 5, False, {}


class NanRewardEnv(CounterEnv):
    """A buggy env: after 300 steps in total its reward is NaN."""
    def __init__(self):
        super().__init__()
        self.total = 0

    def step(self, action):
        self.total += 1
        obs, r, term, trunc, info = super().step(action)
        return obs, (float("nan") if self.total > 300 else r), term, trunc, info


class DictObsEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (1,))})


for _name, _kw, _limit in [("Counter5Trunc-v0", dict(terminal=False), 5), ("Counter5Term-v0", dict(terminal=True), 50),
                           ("MultiDiscreteAct-v0", dict(space="multidiscrete"), 5),
                           ("MultiBinaryAct-v0", dict(space="multibinary"), 5)]:
    if _name not in gym.registry:
        gym.register(_name, entry_point=CounterEnv, kwargs=_kw, max_episode_steps=_limit)
for _name, _cls in [("DictObs-v0", DictObsEnv), ("NanReward-v0", NanRewardEnv)]:
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=5)


@pytest.mark.parametrize("env_id, terminal", [("Counter5Trunc-v0", False), ("Counter5Term-v0", True)])
def test_truncation_bootstraps_and_termination_does_not(env_id, terminal):
    """End to end through collect: at a time-limit cut, final_val = V(true final obs [5]) and the advantage is
    r + gamma V(s_5) - V(s_4); at a termination, final_val = 0 and the advantage is r - V(s_4)."""
    envs = minipg.make_envs(env_id, 2)
    norm = minipg.Normaliser(1, 2, False, False, 10.0, 0.9)
    agent = nets.Agent(1, nets.Categorical(2), hidden=(8,), rng=np.random.default_rng(0))
    agent.v.theta[:] += np.random.default_rng(1).standard_normal(agent.v.theta.size)  # a V that is far from 0
    b = minipg.collect(agent, minipg.Rollout(envs, norm, seed=0), 12, np.random.default_rng(0))
    envs.close()
    ends = b.terminated | b.truncated
    assert np.array_equal(np.flatnonzero(ends[:, 0]), [4, 9])           # episodes end after 5 steps
    assert b.truncated[4, 0] != terminal and b.terminated[4, 0] == terminal
    v_final = agent.value(np.array([[5.0]]))[0]
    assert b.final_val[4, 0] == pytest.approx(0.0 if terminal else v_final, abs=1e-12)
    adv = algos.gae(b.rew, b.val, b.terminated, b.truncated, b.final_val, b.last_val, 0.9, 0.95)
    expected = 1.0 + (0.0 if terminal else 0.9 * v_final) - agent.value(np.array([[4.0]]))[0]
    assert adv[4, 0] == pytest.approx(expected, abs=1e-12)
    assert b.obs[5, 0, 0] == 0.0                                        # the next row is the reset observation


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Counter5Trunc-v0"])
def test_sync_envs_step_exactly_as_gymnasium_sync_vector_env(env_id):
    """minipg.SyncEnvs replaces gymnasium's SyncVectorEnv (SAME_STEP autoreset) for speed: for the same seeds and
    actions, every observation, reward, terminated and truncated flag and final observation is the same."""
    E = 3
    ours = minipg.make_envs(env_id, E)
    theirs = gym.vector.SyncVectorEnv([lambda: minipg.make_env(env_id) for _ in range(E)],
                                      autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    theirs.single_action_space.seed(18)
    assert np.array_equal(ours.reset(seed=7)[0], theirs.reset(seed=7)[0])
    ends = 0
    for _ in range(300):
        a = np.array([theirs.single_action_space.sample() for _ in range(E)])
        o1, r1, te1, tr1, i1 = ours.step(a)
        o2, r2, te2, tr2, i2 = theirs.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
        assert np.array_equal(te1, te2) and np.array_equal(tr1, tr2)
        for i in np.flatnonzero(te2 | tr2):
            assert np.array_equal(i1["final_obs"][i], i2["final_obs"][i])
            ends += 1
    ours.close(), theirs.close()
    assert ends > 0  # episodes did end, so the autoreset path was compared


def _run(*args, timeout=240, **kw):
    return subprocess.run([sys.executable, os.path.join(HERE, "minipg.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.get("cwd", HERE))


TINY_RUN = ["--algo", "ppo", "--steps", "1024", "--num-envs", "2", "--num-steps", "128", "--eval-episodes", "2",
        "--epochs", "2", "--minibatch", "64"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "a")
    r = _run(*TINY_RUN, "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


def test_default_run_writes_the_four_files_and_a_summary(tiny_run):
    out, r = tiny_run
    assert sorted(os.listdir(out)) == ["config.json", "policy.npz", "progress.csv", "summary.json"]
    s = json.load(open(os.path.join(out, "summary.json")))
    for k in ("algo", "env", "seed", "total_steps", "wall_s", "eval_return_mean", "eval_return_std", "eval_episodes",
              "threshold", "steps_to_threshold"):
        assert k in s
    assert (s["algo"], s["env"], s["total_steps"], s["eval_episodes"], s["threshold"]) == ("ppo", "CartPole-v1", 1024, 2, 475.0)
    rows = list(csv.DictReader(open(os.path.join(out, "progress.csv"))))
    assert len(rows) == 4 and tuple(rows[0]) == minipg.PROGRESS_COLUMNS and rows[-1]["steps"] == "1024"
    assert "evaluation (2 deterministic episodes)" in r.stdout and out in r.stdout


def test_same_seed_gives_the_same_progress_csv(tiny_run, tmp_path):
    out, _ = tiny_run
    r = _run(*TINY_RUN, "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr

    def rows(d):
        return [{k: v for k, v in row.items() if k not in minipg.TIMING_COLUMNS}
                for row in csv.DictReader(open(os.path.join(d, "progress.csv")))]
    assert rows(out) == rows(str(tmp_path / "b"))


def test_eval_of_the_saved_policy_reproduces_the_summary(tiny_run):
    out, _ = tiny_run
    s = json.load(open(os.path.join(out, "summary.json")))
    r = _run("--eval", os.path.join(out, "policy.npz"), "--episodes", "2")
    assert r.returncode == 0, r.stderr
    assert f"{s['eval_return_mean']:.2f} ± {s['eval_return_std']:.2f}" in r.stdout


@pytest.mark.parametrize("args, says", [
    (["--env", "CartPol-v1"], "did you mean CartPole-v1"),
    (["--env", "Blackjack-v1"], "Tuple observation space"),
    (["--env", "FrozenLake-v1"], "Discrete observation space"),
    (["--env", "test_runner:DictObs-v0"], "Dict observation space"),
    (["--env", "test_runner:MultiDiscreteAct-v0"], "MultiDiscrete action space"),
    (["--env", "test_runner:MultiBinaryAct-v0"], "MultiBinary action space"),
    (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    (["--gamma", "0"], "--gamma must be in (0, 1]"),
    (["--lam", "-0.1"], "--lam must be in [0, 1]"),
    (["--lr-pi", "0"], "--lr-pi must be > 0"),
    (["--clip-eps", "-0.2"], "--clip-eps must be > 0"),
    (["--steps", "100"], "smaller than one batch"),
    (["--hidden", "64,,64"], "--hidden must be positive layer sizes"),
    (["--hidden", "64,-1"], "--hidden must be positive layer sizes"),
    (["--algo", "dqn"], "unknown --algo"),
    (["--gamma", "abc"], "invalid float value"),
    (["--eval", "no/such/policy.npz"], "no such policy file"),
    (["--resume", "."], "not a minipg run folder"),
])
def test_bad_input_is_one_line_exit_2_and_no_files(args, says, tmp_path):
    r = _run(*args, "--out", str(tmp_path / "out"), cwd=str(tmp_path), timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "other_env"])
def test_eval_of_a_damaged_or_foreign_policy_is_exit_2(damage, tiny_run, tmp_path):
    out, _ = tiny_run
    good = open(os.path.join(out, "policy.npz"), "rb").read()
    path = str(tmp_path / "p.npz")
    open(path, "wb").write({"truncated": good[:len(good) // 2], "corrupt": b"not a zip" * 100, "other_env": good}[damage])
    r = _run("--eval", path, *(["--env", "Pendulum-v1"] if damage == "other_env" else []), timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    """Each env turns NaN after its 300th step, which falls in iteration 5 (64 steps per env per iteration): the run
    stops with a one-line message naming the iteration and the quantity, and policy.npz holds iteration 4's weights."""
    out = str(tmp_path / "nan")
    r = _run("--algo", "vpg", "--env", "test_runner:NanReward-v0", "--steps", "1280", "--num-envs", "2",
             "--num-steps", "64", "--save-every-s", "0", "--out", out, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "loss_pi is not finite at iteration 5" in r.stderr and "last good checkpoint is kept" in r.stderr
    ck = minipg.load_checkpoint(os.path.join(out, "policy.npz"))
    assert np.all(np.isfinite(ck["theta_pi"])) and np.all(np.isfinite(ck["theta_v"])) and int(ck["iteration"]) == 4


def test_sigint_leaves_a_checkpoint_and_resume_continues(tmp_path):
    out = str(tmp_path / "int")
    args = ["--algo", "ppo", "--steps", "400000", "--eval-episodes", "1", "--out", out, "--save-every-s", "1000"]
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "minipg.py"), *args], cwd=HERE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(out, "progress.csv")):
        time.sleep(0.1)
    while time.time() < deadline and sum(1 for _ in open(os.path.join(out, "progress.csv"))) < 4:
        time.sleep(0.1)  # a few iterations in
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "--resume" in err and "Traceback" not in err, err
    ck = minipg.load_checkpoint(os.path.join(out, "policy.npz"))
    it = int(ck["iteration"])
    assert it >= 3 and json.load(open(os.path.join(out, "summary.json")))["interrupted"]
    # resume with a smaller budget, so the test stays short: continue from `it` and finish
    cfg = json.loads(str(ck["config"]))
    run = minipg.Run(**{**cfg["run"], "steps": (it + 2) * 256, "eval_episodes": 1})
    summary = minipg.train(run, algos.Hyper(**cfg["hyper"]), resume_dir=out, quiet=True)
    rows = list(csv.DictReader(open(os.path.join(out, "progress.csv"))))
    assert [int(r["iter"]) for r in rows] == list(range(1, it + 3)) and summary["total_steps"] == (it + 2) * 256


# =================================================================================================================
# Every algorithm learns (issue 3): from an untrained policy (return ~20) to a mean of 195 over the last 20
# training episodes (CartPole-v0's "solved" bar, which an untrained policy never reaches), with its defaults.
# A budget must hold for every seed, not just the one tested: each is one that all of seeds 0-9 met when it
# was set (slowest seed in brackets), so the test does not rest on one lucky seed (at 16k, PPO's old budget,
# only 2 of 10 seeds made it: its learning rate anneals to zero over the budget), and a broken update still fails.
# =================================================================================================================

@pytest.mark.parametrize("algo, budget", [("ppo", 40_000),           # seeds 0-9: all reached 195 (slowest 24k)
                                          ("ppo-penalty", 40_000),   # all (26k)
                                          ("trpo", 26_000),          # all (15k)
                                          ("npg", 40_000),           # all (28k)
                                          ("vpg", 96_000),           # all (54k)
                                          ("a2c", 48_000),           # all (19k)
                                          ("reinforce", 80_000)])    # all (42k)
def test_every_algorithm_learns_cartpole(algo, budget, tmp_path):
    run, hp = minipg.resolve({"algo": algo, "steps": budget, "eval_episodes": 0, "target": 195.0,
                              "out": str(tmp_path / algo)})
    summary = minipg.train(run, hp, quiet=True)
    rows = list(csv.DictReader(open(tmp_path / algo / "progress.csv")))
    first = next(float(r["return_mean"]) for r in rows if r["return_mean"])
    assert first < 50, f"an untrained policy should score ~20, got {first}"
    assert summary["steps_to_threshold"] is not None, f"{algo} did not reach 195 in {budget} steps"




@pytest.mark.parametrize("algo", list(algos.UPDATES))
def test_float32_training_stays_float32(algo):
    """Training runs in float32 for speed: no update may silently promote parameters or optimiser state."""
    run, hp = minipg.resolve({"algo": algo, "num_envs": 2, "num_steps": 300, "steps": 600})
    envs = minipg.make_envs("CartPole-v1", 2)
    agent = minipg.build_agent(run, hp, 4, nets.Categorical(2), np.random.default_rng(0))
    ro = minipg.Rollout(envs, minipg.Normaliser(4, 2, False, False, 10.0, hp.gamma), seed=0)
    b = minipg.collect(agent, ro, 300, np.random.default_rng(0))
    envs.close()
    algos.UPDATES[algo](agent, b, hp, np.random.default_rng(0))
    for x in (agent.pi.theta, agent.v.theta, agent.opt_pi.m, agent.opt_pi.v, agent.opt_v.m, agent.opt_v.v, b.obs):
        assert x.dtype == np.float32




def test_resume_after_a_hard_kill_does_not_repeat_progress_rows(tmp_path):
    """A run killed without warning (SIGKILL) may have written progress rows past its last checkpoint; --resume
    continues from the checkpoint and keeps exactly one row per iteration."""
    out = str(tmp_path / "kill")
    args = ["--algo", "ppo", "--steps", "400000", "--out", out, "--save-every-s", "1000", "--eval-episodes", "1"]
    r = _run(*args[:-2], "--steps", "2560", "--save-every-s", "0", "--eval-episodes", "0")  # 10 iterations
    assert r.returncode == 0, r.stderr
    ck = os.path.join(out, "policy.npz")
    shutil.copy(ck, ck + ".at10")
    r = _run(*args[:4], "--steps", "5120", "--out", out + "2", "--eval-episodes", "0")  # rows 11..20 to append
    rows = open(os.path.join(out + "2", "progress.csv")).read().splitlines()[11:]
    with open(os.path.join(out, "progress.csv"), "a") as f:  # as if iterations 11-20 ran, then SIGKILL
        f.write("\n".join(rows) + "\n")
    cfg = json.loads(str(minipg.load_checkpoint(ck)["config"]))
    run = minipg.Run(**{**cfg["run"], "steps": 12 * 256})
    minipg.train(run, algos.Hyper(**cfg["hyper"]), resume_dir=out, quiet=True)
    iters = [int(r["iter"]) for r in csv.DictReader(open(os.path.join(out, "progress.csv")))]
    assert iters == list(range(1, 13))
