"""The runner's numerics (minipg.py): envs and collect, the Normaliser, the Trainer's state and its round trip,
annealing, evaluation, and the learning tests that train every algorithm end to end. The command line, the files
and interrupts are test_cli.py's."""
import csv
import os

import gymnasium as gym
import numpy as np
import pytest

import algos
import minipg
import runs
import vecenv

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


class MixedEndEnv(CounterEnv):
    """Seeded even, it terminates every 3 steps; seeded odd, it never does (a TimeLimit of 5 cuts it). Two of them,
    seeded 0 and 1, end an episode on the same step 15, one by termination and one by truncation."""

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.every = 3 if seed % 2 == 0 else 10 ** 9
        return super().reset(seed=seed)

    def step(self, action):
        obs, r, _, trunc, info = super().step(action)
        return obs, r, self.t % self.every == 0, trunc, info


class RaisesEnv(CounterEnv):
    """A broken env: seeded odd (even, with parity=0), its third step raises."""
    def __init__(self, parity=1):
        super().__init__()
        self.parity = parity

    def reset(self, seed=None, options=None):
        self.broken = seed is not None and seed % 2 == self.parity
        return super().reset(seed=seed)

    def step(self, action):
        if self.broken and self.t == 2:
            raise ValueError("boom at step 3")
        return super().step(action)


class DictObsEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (1,))})


for _name, _kw, _limit in [("Counter5Trunc-v0", dict(terminal=False), 5), ("Counter5Term-v0", dict(terminal=True), 50),
                           ("MultiDiscreteAct-v0", dict(space="multidiscrete"), 5),
                           ("MultiBinaryAct-v0", dict(space="multibinary"), 5)]:
    if _name not in gym.registry:
        gym.register(_name, entry_point=CounterEnv, kwargs=_kw, max_episode_steps=_limit)
if "RaisesEven-v0" not in gym.registry:
    gym.register("RaisesEven-v0", entry_point=RaisesEnv, kwargs=dict(parity=0), max_episode_steps=5)
for _name, _cls in [("DictObs-v0", DictObsEnv), ("NanReward-v0", NanRewardEnv), ("MixedEnd-v0", MixedEndEnv),
                   ("Raises-v0", RaisesEnv)]:
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=5)




def trainer(env_id="CartPole-v1", **given):
    """A Trainer in float64 with small networks, for the runner's numerics (a critic's minibatch no larger than
    the small batches here)."""
    if given.get("algo") in ("vpg", "npg", "trpo") and "num_steps" in given:
        given.setdefault("v_minibatch", given["num_envs"] * given["num_steps"])
    run, hp = minipg.CONFIG.resolve({"env": env_id, "dtype": "float64", "hidden": "8", **given})
    return minipg.Trainer(run, hp)


# ---------------------------------------------------------------------------------------------------------------
# collect: the truncation rule end to end, and the envs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, terminal", [("Counter5Trunc-v0", False), ("Counter5Term-v0", True)])
def test_truncation_bootstraps_and_termination_does_not(env_id, terminal):
    """End to end through collect: at a time-limit cut, final_val = V(true final obs [5]) and the advantage is
    r + gamma V(s_5) - V(s_4); at a termination, final_val = 0 and the advantage is r - V(s_4)."""
    tr = trainer(env_id, algo="vpg", num_envs=2, num_steps=12, steps=24, gamma=0.9, norm_obs="off", norm_reward="off")
    agent = tr.agent
    agent.v.theta[:] += np.random.default_rng(1).standard_normal(agent.v.theta.size)  # a V that is far from 0
    tr.start()
    b = tr.collect()
    tr.close()
    ends = b.terminated | b.truncated
    assert np.array_equal(np.flatnonzero(ends[:, 0]), [4, 9])           # episodes end after 5 steps
    assert b.truncated[4, 0] != terminal and b.terminated[4, 0] == terminal
    v_final = agent.value(np.array([[5.0]]))[0]
    assert b.final_val[4, 0] == pytest.approx(0.0 if terminal else v_final, abs=1e-12)
    assert np.all(b.final_val[~b.truncated] == 0.0)
    adv = algos.gae(b.rew, b.val, b.terminated, b.truncated, b.final_val, b.last_val, 0.9, 0.95)
    expected = 1.0 + (0.0 if terminal else 0.9 * v_final) - agent.value(np.array([[4.0]]))[0]
    assert adv[4, 0] == pytest.approx(expected, abs=1e-12)
    assert b.obs[5, 0, 0] == 0.0                                        # the next row is the reset observation
    assert b.last_val[0] == pytest.approx(agent.value(np.array([[2.0]]))[0], abs=1e-12)  # s_12 = 2 steps in


def test_on_a_step_where_one_env_terminates_and_another_is_cut_only_the_cut_bootstraps():
    tr = trainer("test_runner:MixedEnd-v0", algo="vpg", num_envs=2, num_steps=15, steps=30, norm_obs="off")
    tr.agent.v.theta[:] += np.random.default_rng(1).standard_normal(tr.agent.v.theta.size)
    tr.start()
    b = tr.collect()
    tr.close()
    assert b.terminated[14, 0] and not b.truncated[14, 0] and b.truncated[14, 1] and not b.terminated[14, 1]
    assert b.final_val[14, 0] == 0.0 and b.final_val[14, 1] == pytest.approx(tr.agent.value(np.array([[5.0]]))[0])


def test_a_truncated_step_bootstraps_from_v_of_the_normalised_final_observation():
    """With observation normalisation on, final_val = V(normalise(final obs)), with the statistics of that moment:
    the reset observations and the four steps before, 0 0 1 1 2 2 3 3 4 4 over the two envs."""
    tr = trainer("Counter5Trunc-v0", algo="vpg", num_envs=2, num_steps=6, steps=12, norm_obs="on", norm_reward="off")
    tr.agent.v.theta[:] += np.random.default_rng(1).standard_normal(tr.agent.v.theta.size)
    tr.start()
    b = tr.collect()
    tr.close()
    mean, var = numpy_statistics(np.repeat(np.arange(5.0), 2)[:, None])
    want = tr.agent.value(np.clip((np.array([[5.0]]) - mean) / np.sqrt(var + 1e-8), -10, 10))[0]
    assert b.truncated[4].all() and b.final_val[4] == pytest.approx([want, want], abs=1e-12)
    assert abs(want - tr.agent.value(np.array([[5.0]]))[0]) > 1e-3  # normalising made a difference


def test_collect_counts_steps_and_episodes_and_each_observation_enters_the_statistics_once():
    """Over two batches of E x T steps, the observation statistics see the reset observations and every next
    observation exactly once (E * (2T + 1) rows), and each finished episode is logged at the env step it ended."""
    tr = trainer("Counter5Trunc-v0", algo="vpg", num_envs=2, num_steps=7, steps=28, norm_obs="on")
    tr.start()
    for _ in range(2):
        tr.collect()
        tr.it += 1
        tr.steps += tr.batch
    tr.close()
    assert tr.norm.obs_rms.count == pytest.approx(1e-4 + 2 * (2 * 7 + 1), abs=1e-9)
    assert [s for s, _, _ in tr.episodes] == [10, 10, 20, 20] and all(n == 5 for _, _, n in tr.episodes)
    assert all(r == 5.0 for _, r, _ in tr.episodes)  # unscaled returns, whatever the reward scale


def test_a_reinforce_batch_is_n_tau_whole_episodes_from_reset_each_env_its_share():
    """algos.Episodes from collect_episodes: every episode starts at a reset (obs [0]) and ends at its own end,
    each env runs its share of N_tau whatever the lengths, and steps past an env's share are not kept. Env 0 of
    MixedEnd ends an episode every 3 steps, env 1 every 5 (a time limit); with 2 episodes each the batch is
    episodes of lengths 3, 3 (env 0) and 5, 5 (env 1), though env 0 runs 10 steps while env 1 finishes."""
    tr = trainer("test_runner:MixedEnd-v0", algo="reinforce", num_envs=2, num_episodes=4, steps=100, norm_obs="off")
    tr.start()
    tr.collect_episodes()  # a first batch, so that the second one must start from a reset, not carry on
    d = tr.collect_episodes()
    tr.close()
    lengths = np.bincount(d.ep)
    assert d.n_tau == 4 and list(lengths) == [3, 3, 5, 5] and d.n_steps == 16
    starts = np.r_[0, np.flatnonzero(np.diff(d.ep)) + 1]
    assert np.all(d.obs[starts, 0] == 0.0) and np.array_equal(d.obs[:6, 0], [0, 1, 2, 0, 1, 2])
    assert np.array_equal(d.done, np.isin(np.arange(16), starts[1:] - 1) | (np.arange(16) == 15))
    # the log, in the order the episodes ended (env 0 at steps 3 and 6, env 1 at 5 and 10), with the raw returns
    assert [(r, n) for _, r, n in tr.episodes[-4:]] == [(3.0, 3), (5.0, 5), (3.0, 3), (5.0, 5)]


@pytest.mark.parametrize("vec", ["sync", "procs"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "test_runner:Counter5Trunc-v0"])
def test_vector_envs_step_exactly_as_gymnasium_sync_vector_env(env_id, vec):
    """vecenv.SyncEnvs and ProcEnvs (half the envs in a child process) replace gymnasium's SyncVectorEnv (SAME_STEP
    autoreset) for speed: for the same seeds and actions, every observation, reward, terminated and truncated flag
    and final observation is the same."""
    E = 3
    ours = minipg.make_envs(env_id, E, vec)
    assert type(ours).__name__ == {"sync": "SyncEnvs", "procs": "ProcEnvs"}[vec]
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


def test_training_with_procs_envs_is_training_with_sync_envs():
    """The trainer cannot tell the two vector envs apart: the same run with vec=procs ends with the same theta,
    phi, normaliser and episodes as with vec=sync (Pendulum: truncations, normalised observations and rewards)."""
    ends = []
    for vec in ("sync", "procs"):
        tr = trainer("Pendulum-v1", algo="ppo", num_envs=4, num_steps=100, steps=1600, norm_obs="on",
                     norm_reward="on", vec=vec)
        tr.start()
        for _ in range(tr.iters):
            tr.iteration()
        tr.close()
        ends.append(tr.state())
    assert len(ends[0]["episodes"]) == 8  # 4 envs x 400 steps, episodes of 200
    for k in ends[0]:
        if k != "seconds":
            assert np.array_equal(ends[0][k], ends[1][k]), k


def test_procs_envs_report_a_failing_env_as_one_error():
    """An env that raises in ProcEnvs' child process becomes vecenv.EnvError with its message, not a hang."""
    envs = minipg.make_envs("test_runner:Raises-v0", 2, "procs")
    envs.reset(seed=0)
    a = np.zeros((2,) + envs.single_action_space.shape, envs.single_action_space.dtype)
    envs.step(a), envs.step(a)
    with pytest.raises(vecenv.EnvError, match="ValueError: boom at step 3"):
        envs.step(a)  # env 1, seeded 1, is the child's
    envs.close()


@pytest.mark.parametrize("env_id, error", [("test_runner:Raises-v0", vecenv.EnvError),  # the child's env raises
                                           ("test_runner:RaisesEven-v0", ValueError)])  # this process's env raises
def test_procs_envs_stay_in_step_after_an_error_in_either_half(env_id, error):
    """After an env raises, in the child's half or in this process's, both halves have answered: a reset and the
    steps after it give what SyncEnvs gives, not an answer left over from before."""
    envs = minipg.make_envs(env_id, 2, "procs")
    a = np.zeros((2,) + envs.single_action_space.shape, envs.single_action_space.dtype)
    for _ in range(2):
        envs.reset(seed=0)
        envs.step(a), envs.step(a)
        with pytest.raises(error, match="boom at step 3"):
            envs.step(a)
    assert np.array_equal(envs.reset(seed=1)[0], [[0.0], [0.0]])  # seeded 1 and 2: env 0 odd, env 1 even
    assert np.array_equal(envs.step(a)[0], [[1.0], [1.0]]) and np.array_equal(envs.step(a)[0], [[2.0], [2.0]])
    envs.close()




# ---------------------------------------------------------------------------------------------------------------
# The Normaliser: NumPy's statistics over the stream; the reward scale is 1/std of the discounted return
# ---------------------------------------------------------------------------------------------------------------

def numpy_statistics(stream, c0=1e-4):
    """np.mean and np.var of the whole stream, pooled once with the normaliser's prior (mean 0, var 1, weight c0)."""
    m, v, n = stream.mean(0), stream.var(0), len(stream)
    return n * m / (n + c0), (c0 + n * v + c0 * n * m ** 2 / (n + c0)) / (n + c0)


def test_observation_statistics_equal_numpys_over_the_same_stream():
    """Row by row (Chan et al.'s update) and all at once (NumPy) give the same mean and variance."""
    rng = np.random.default_rng(0)
    norm = minipg.Normaliser(3, 4, True, False, 10.0, 0.99)
    rows = [rng.normal([1.0, -2.0, 5.0], [0.5, 3.0, 0.1], (4, 3)) for _ in range(500)]
    for x in rows:
        norm.obs(x, update=True)
    mean, var = numpy_statistics(np.concatenate(rows))                  # over (2000, 3)
    assert np.allclose(norm.obs_rms.mean, mean, rtol=1e-10) and np.allclose(norm.obs_rms.var, var, rtol=1e-9)
    x = rng.normal(size=(5, 3))
    assert np.allclose(norm.obs(x), np.clip((x - mean) / np.sqrt(var + 1e-8), -10, 10), rtol=1e-9)


def test_the_reward_scale_is_one_over_the_std_of_the_discounted_return():
    """r_t / std(R), R = gamma R + r running per env and restarted after each episode's end (terminated or
    truncated), over every R seen so far: not the std of the rewards."""
    rng, gamma, E = np.random.default_rng(1), 0.9, 3
    norm = minipg.Normaliser(1, E, False, True, 10.0, gamma)
    R, seen, ends = np.zeros(E), [], 0
    for t in range(300):
        rew, done = rng.normal(2.0, 1.0, E), rng.random(E) < 0.05
        ends += done.sum()
        scaled = norm.reward(rew, done)
        R = gamma * R + rew
        seen.append(R.copy())
        expected = rew / np.sqrt(numpy_statistics(np.concatenate(seen))[1] + 1e-8)
        R[done] = 0.0
        assert np.allclose(scaled, expected, rtol=1e-9), t
    assert ends > 10 and np.std(np.concatenate(seen)) > 2.0  # episodes restarted; std(R) is not std(r) = 1


def test_normaliser_state_round_trips():
    rng = np.random.default_rng(2)
    a, b = (minipg.Normaliser(3, 2, True, True, 5.0, 0.99) for _ in range(2))
    for _ in range(20):
        a.obs(rng.normal(size=(2, 3)), update=True), a.reward(rng.normal(size=2), rng.random(2) < 0.2)
    b.load(a.state())
    assert all(np.array_equal(a.state()[k], b.state()[k]) for k in a.state())
    x, r, d = rng.normal(size=(2, 3)), rng.normal(size=2), np.array([False, True])
    a.discounted[:] = 0.0  # the running return belongs to episodes in progress, which a resume starts afresh
    assert np.array_equal(a.obs(x, update=True), b.obs(x, update=True))
    assert np.array_equal(a.reward(r, d), b.reward(r, d))


# ---------------------------------------------------------------------------------------------------------------
# The Trainer: one owner of the training state, and state()/load() round-trip it exactly
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, algo", [("CartPole-v1", "ppo-penalty"), ("Pendulum-v1", "ppo")])
def test_trainer_state_round_trips_and_a_loaded_trainer_continues_as_the_original(env_id, algo):
    tr = trainer(env_id, algo=algo, num_envs=2, num_steps=128, steps=1280, epochs=2, minibatch=64, norm_obs="on",
                 norm_reward="on")
    tr.start()
    for _ in range(3):
        tr.iteration()
    tr.close()
    s = tr.state()
    twin = minipg.Trainer(tr.run, tr.hp)
    twin.load(s)
    assert set(twin.state()) == set(s)
    for k, x in twin.state().items():
        assert x.dtype == s[k].dtype and np.array_equal(x, s[k]), k
    assert twin.it == 3 and twin.agent.beta == tr.agent.beta and len(twin.episodes) == len(tr.episodes) > 0
    tr.start(), twin.start()  # both start afresh at iteration 3 (an env cannot be saved): the same from here on
    tr.iteration(), twin.iteration()
    tr.close(), twin.close()
    for k, x in twin.state().items():
        assert np.array_equal(x, tr.state()[k]) or k == "seconds", k  # (timing is the only thing that may differ)


def test_a_resumed_pendulum_run_scales_rewards_as_the_uninterrupted_one_would(tmp_path):
    """The return statistics behind the reward scale (mean, variance and count) survive the checkpoint file."""
    tr = trainer("Pendulum-v1", algo="ppo", num_envs=2, num_steps=128, steps=1024, epochs=1, norm_reward="on")
    tr.start()
    for _ in range(3):
        tr.iteration()
    tr.close()
    runs.write_checkpoint(str(tmp_path / "policy.npz"), tr)
    back = minipg.restore(str(tmp_path / "policy.npz"))
    assert back.norm.ret_rms.mean != 0.0 and back.norm.ret_rms.var != 1.0
    r, done = np.array([-3.0, -8.0]), np.array([False, False])
    tr.norm.discounted[:] = back.norm.discounted[:] = 0.0  # both at the start of fresh episodes
    for _ in range(5):
        assert np.array_equal(tr.norm.reward(r, done), back.norm.reward(r, done))
    assert tr.norm.ret_rms.mean == back.norm.ret_rms.mean and tr.norm.ret_rms.count == back.norm.ret_rms.count


@pytest.mark.parametrize("algo", ["ppo", "trpo"])
def test_annealing_passes_the_fraction_left_and_the_update_scales_its_learning_rates(algo):
    """frac = 1 - it/iters reaches the update at every iteration, and the update sets alpha = lr * frac (PPO: both
    nets step with lr_pi; TRPO: the critic with lr_v): checked at the start, the middle and the end of training."""
    given = dict(num_envs=2, num_steps=16, steps=160, anneal_lr=True)
    tr = trainer(algo=algo, **given, **(dict(minibatch=32, epochs=1, lr_pi=1e-2) if algo == "ppo" else dict(lr_v=2e-2)))
    seen, update = [], tr.update

    def recording(agent, b, hp, rng, frac):
        info = update(agent, b, hp, rng, frac)
        seen.append((frac, agent.opt_pi.lr, agent.opt_v.lr))
        return info
    tr.update = recording
    tr.start()
    while not tr.done():
        tr.iteration()
    tr.close()
    assert tr.iters == 5 and len(seen) == 5
    for it in (0, 2, 4):  # start, middle, end
        frac, lr_pi, lr_v = seen[it]
        assert frac == pytest.approx(1 - it / 5, abs=1e-15)
        if algo == "ppo":
            assert lr_pi == pytest.approx(1e-2 * frac, abs=1e-15)
        else:
            assert lr_v == pytest.approx(2e-2 * frac, abs=1e-15)


def test_evaluation_with_normalisation_reproduces_a_hand_normalised_rollout():
    tr = trainer("Pendulum-v1", algo="ppo", num_envs=2, num_steps=128, steps=512, epochs=1, norm_obs="on", obs_clip=2.0)
    tr.start()
    for _ in range(2):
        tr.iteration()
    tr.close()
    mean, var = tr.norm.obs_rms.mean.copy(), tr.norm.obs_rms.var.copy()
    returns = minipg.evaluate(tr, 2, 123)
    env, pi, hand = gym.make("Pendulum-v1"), tr.agent.pi, []
    for i in range(2):
        raw, _ = env.reset(seed=123 + i)
        total, done = 0.0, False
        while not done:
            s = np.clip((raw - mean) / np.sqrt(var + 1e-8), -2.0, 2.0)[None]  # frozen statistics
            z, _ = pi.dist(s)
            raw, r, term, trunc, _ = env.step(np.clip(z[0, :1], -2.0, 2.0))
            total, done = total + r, term or trunc
        hand.append(total)
    assert returns == hand and np.array_equal(tr.norm.obs_rms.mean, mean)  # and the statistics stayed frozen
    assert np.any(np.abs(mean) > 0.01) and np.any(np.abs(var - 1) > 0.01)  # they were not the identity


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
@pytest.mark.slow
def test_every_algorithm_learns_cartpole(algo, budget, tmp_path):
    run, hp = minipg.CONFIG.resolve({"algo": algo, "steps": budget, "eval_episodes": 1, "target": 195.0})
    summary = minipg.train(minipg.Trainer(run, hp), str(tmp_path / algo), quiet=True)
    rows = list(csv.DictReader(open(tmp_path / algo / "progress.csv")))
    first = next(float(r["return_mean"]) for r in rows if r["return_mean"])
    assert first < 50, f"an untrained policy should score ~20, got {first}"
    assert summary["steps_to_threshold"] is not None, f"{algo} did not reach 195 in {budget} steps"


@pytest.mark.parametrize("algo", list(algos.UPDATES))
def test_float32_training_stays_float32(algo):
    """Training runs in float32 for speed: no update may silently promote parameters or optimiser state."""
    shape = dict(num_episodes=2) if algo == "reinforce" else dict(num_steps=300, **({"v_minibatch": 600} if algo in (
        "vpg", "npg", "trpo") else {}))
    run, hp = minipg.CONFIG.resolve({"algo": algo, "num_envs": 2, "steps": 600, **shape})
    tr = minipg.Trainer(run, hp)
    tr.start()
    b = tr.collect_episodes() if tr.episodic else tr.collect()
    tr.close()
    algos.UPDATES[algo](tr.agent, b, hp, np.random.default_rng(0))
    a = tr.agent
    moments = [x for o in (a.opt_pi, a.opt_v) for x in o.state().values() if x.ndim]  # m and v (RMSprop: v)
    for x in (a.pi.theta, a.v.theta, *moments, b.obs):
        assert x.dtype == np.float32
