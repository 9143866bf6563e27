"""The variance lab (lab.py): each test is a claim of the notes, measured on CartPole-v1 with fixed seeds and a
small budget. "Within k standard errors" compares paired batch estimates along the reference gradient."""
import numpy as np
import pytest

import algos
import lab

ENV = "CartPole-v1"
Z_MAX = 4.0        # standard errors allowed between two means that the notes say are equal
KL_REL_TOL = 0.10  # "for small steps, KL and 1/2 dtheta^T F dtheta agree to within 10%"
SMALL_QUADS = (1e-6, 1e-5)  # 1/2 dtheta^T F dtheta of a "small" step, smallest first
BASELINES = ("rtg - mean b (fixed)", "rtg - optimal b (fixed)", "rtg - V_phi")  # fixed before the batches are drawn


@pytest.fixture(scope="module")
def untrained():
    return lab.snapshot(ENV, 0, 0)[:2]


@pytest.fixture(scope="module")
def measured(untrained):
    """200 batches of 10 episodes of the untrained policy (about 45k env steps); V_phi and b from 500 others."""
    agent, norm = untrained
    r = lab.measure_estimators(agent, norm, ENV, np.random.default_rng(0), n_traj=10, n_batches=200, n_fit=500)
    return r, lab.estimator_stats(r["g"], r["ref"])


def test_the_lab_estimators_are_algos_pg_estimate(untrained):
    """The lab measures the library's estimator: each row equals algos.pg_estimate on the same batch, and GAE with
    lambda = 1 is the reward-to-go minus V (gamma = 1, the time limit is the horizon)."""
    agent, norm = untrained
    d = lab.rollout_episodes(agent, norm, ENV, 10, np.random.default_rng(1))
    ret, val = d.rtg(), agent.value(d.obs)
    b_opt = np.random.default_rng(2).standard_normal(agent.pi.n_params)
    phis = lab.phi_forms(d, val, 7.0, (1.0,))
    g = lab.batch_estimates(agent.pi, d, phis, b_opt)
    pi, ep = agent.pi, d.ep
    expected = {"R(tau)": algos.pg_estimate(pi, d.obs, d.act, phis["R(tau)"], ep, "none"),
                "reward-to-go": algos.pg_estimate(pi, d.obs, d.act, ret, ep, "none"),
                "rtg - mean b (fixed)": algos.pg_estimate(pi, d.obs, d.act, ret - 7.0, ep, "none"),
                "rtg - mean b (batch)": algos.pg_estimate(pi, d.obs, d.act, ret, ep, "mean"),
                "rtg - optimal b (batch)": algos.pg_estimate(pi, d.obs, d.act, ret, ep, "optimal"),
                "rtg - V_phi": algos.pg_estimate(pi, d.obs, d.act, ret, ep, "v", val),
                "GAE lam=1": algos.pg_estimate(pi, d.obs, d.act, ret, ep, "v", val)}
    g_tau = np.array([algos.pg_estimate(pi, d.obs[ep == i], d.act[ep == i], np.ones((ep == i).sum()),
                                        np.zeros((ep == i).sum(), int), "none") for i in range(10)])  # (n, P)
    expected["rtg - optimal b (fixed)"] = expected["reward-to-go"] - b_opt * g_tau.mean(0)
    for name, want in expected.items():
        assert np.max(np.abs(g[name] - want)) <= 1e-10 * np.max(np.abs(want)), name


def test_reward_to_go_and_baselines_leave_the_mean_gradient_unchanged(untrained, measured):
    """000 §Baselines in Policy Gradients, 003 §5.3.2: E[grad log pi(a_t|s_t) b(s_t)] = 0, so the mean of every
    estimator with a baseline fixed in advance equals reward-to-go's within 4 standard errors; so does R(tau)'s
    (000 §Don't Let the Past Distract You). The check can fail: a 'baseline' that looks at the future,
    b_t = R_hat_{t+1}, depends on a_t and leaves Phi_t = r_t, whose mean gradient is zero."""
    r, s = measured
    z = dict(zip(r["names"], s["z"]))
    for name in ("R(tau)",) + BASELINES:
        assert abs(z[name]) < Z_MAX, (name, z[name])
    pi, n = untrained[0].pi, 10
    future = np.array([algos.pg_estimate(pi, e.obs, e.act, e.rew, e.ep, "none")  # Phi_t = R_hat_t - R_hat_{t+1}
                       for e in (r["lab"].take(m * n, (m + 1) * n) for m in range(len(r["g"])))])  # (M, P)
    z_future = lab.estimator_stats(np.stack([future, r["g"][:, 1]], 1), r["ref"])["z"][0]
    assert abs(z_future) > Z_MAX, z_future


def test_reward_to_go_and_every_baseline_lower_the_total_variance(measured):
    """003 §5.2, §5.3.3; 000 §Baselines: tr Cov of reward-to-go < R(tau)'s, and every baseline lowers it further."""
    r, s = measured
    trcov = dict(zip(r["names"], s["trcov"]))
    assert trcov["reward-to-go"] < trcov["R(tau)"]
    for name in r["names"]:
        if name.startswith("rtg - "):
            assert trcov[name] < trcov["reward-to-go"] < trcov["R(tau)"], name


def test_optimal_baseline_variance_is_at_most_the_mean_baselines_per_parameter(measured):
    """003 §5.3.4: b_k = E[g_k^2 r] / E[g_k^2] minimises Var[g_hat_k] for each parameter k. Per parameter, the
    variance with the optimal baseline is not larger than with the mean baseline by more than 4 standard errors
    (both estimated from the batch, as algos.pg_estimate does), and in total it is smaller, for the batch and
    the fixed (from 500 other episodes) versions."""
    r, s = measured
    ix, g = r["names"].index, r["g"]
    _, z = lab.compare_variance(g[:, ix("rtg - optimal b (batch)")], g[:, ix("rtg - mean b (batch)")])
    assert z.max() <= Z_MAX, (int(z.argmax()), float(z.max()))
    for kind in ("batch", "fixed"):
        assert s["trcov"][ix(f"rtg - optimal b ({kind})")] < s["trcov"][ix(f"rtg - mean b ({kind})")], kind


@pytest.mark.parametrize("steps", [0, 6400])
def test_kl_is_half_dtheta_F_dtheta_for_small_natural_gradient_steps(steps):
    """001 §Method 2: KL(pi_old || pi_new) ~ 1/2 dtheta^T F dtheta. Along the natural gradient (CG as TRPO's), for
    steps with 1/2 dtheta^T F dtheta <= 1e-5 the true mean KL agrees with it to within 10%, untrained and after
    PPO, and the agreement improves as the step shrinks (the remainder is O(|dtheta|^3))."""
    agent, norm, _ = lab.snapshot(ENV, steps, 0)
    d = lab.rollout_episodes(agent, norm, ENV, 100, np.random.default_rng(0))
    ret = d.rtg()
    rows, _ = lab.kl_scan(agent.pi, d, ret - ret.mean(), quads=SMALL_QUADS)
    err = [abs(kl / q - 1) for q, kl, _, _ in rows]
    assert max(err) < KL_REL_TOL, err
    assert err[0] < err[1], err


def test_the_header_of_a_snapshot_counts_steps_and_episodes_on_pendulum(capsys):
    """Off CartPole the sum of the returns is not the number of steps (Pendulum's returns are negative): the header
    reports the episodes and their steps as counted (200 steps each), and the return apart."""
    agent, norm, _ = lab.snapshot("Pendulum-v1", 0, 0)
    r = lab.measure_estimators(agent, norm, "Pendulum-v1", np.random.default_rng(0), n_traj=2, n_batches=3, n_fit=4,
                               lams=(0.9,), v_iters=1)
    lab.report_estimators("untrained", 0, r, 2, 4)
    out = capsys.readouterr()
    header = next(line for line in out.out.splitlines() if "PPO 0 env steps" in line)
    assert "(6 episodes, 1200 steps)" in header and "return -" in header, header
    assert "collecting 3 batches of 2 episodes" in out.err  # progress on long work, on stderr
