"""Math tests for nets.py and algos.py: each test is one claim from the lecture notes, checked in float64
with fixed seeds. Derivatives are checked against central finite differences, estimators against their
definitions written out as plain loops. Relative error = max|a - b| / max(max|b|, tiny), b the reference.
"""
import os
import re
import types

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster (as minipg.py sets)

import numpy as np  # noqa: E402
import pytest

import algos
import nets

TINY = 1e-300
EPS = 1e-6          # finite-difference step
FD_TOL = 1e-7       # relative error allowed between an analytic derivative and central differences
EXACT_TOL = 1e-12   # the same quantity computed two ways, no finite differences involved
KINK = 1e-4         # no relu pre-activation / PPO ratio may sit this close to a kink
OBS_DIM = 4
HEADS = {"categorical": lambda: nets.Categorical(3), "gaussian": lambda: nets.DiagGaussian(2)}


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), TINY))


def fd_grad(f, x, eps=EPS):
    """Central differences of a scalar function: g_i = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps); x any shape."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def fd_dir(f, x, v, eps=EPS):
    """Central difference of an array-valued function along a direction: (f(x + eps v) - f(x - eps v)) / (2 eps)."""
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


def preacts(net, hs):
    """The hidden pre-activations a_l = h_{l-1} W_l + b_l, from a forward cache."""
    return [hs[l] @ net.W[l] + net.b[l] for l in range(len(net.W) - 1)]


def relu_pattern(net, x):
    return np.concatenate([(a > 0).ravel() for a in preacts(net, net.forward(x)[1])])


def kink_margin(net, x):
    """Distance of the nearest hidden pre-activation from 0 (the relu kink)."""
    return min(float(np.abs(a).min()) for a in preacts(net, net.forward(x)[1]))


def make_mlp(activation, hidden, n_in=4, n_out=3, n=7, seed=0):
    """An MLP with every parameter (biases included) perturbed off the init, and inputs x. For relu, reseed until
    no pre-activation is within KINK of 0, so that an EPS-perturbation cannot cross a kink."""
    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        net = nets.MLP((n_in, *hidden, n_out), activation, rng=rng)
        net.theta[:] += 0.5 * rng.standard_normal(net.theta.size)
        x = rng.standard_normal((n, n_in))
        if activation == "tanh" or kink_margin(net, x) > KINK:
            return net, x, rng
    raise AssertionError("no seed without a pre-activation near the relu kink")


def make_policy(head_name, hidden=(5, 6), obs_dim=OBS_DIM, seed=0, scale=0.5):
    """A Policy with theta perturbed randomly, so the last layer is not ~0 and log-std != 0."""
    rng = np.random.default_rng(seed)
    pi = nets.Policy(obs_dim, HEADS[head_name](), hidden, rng=rng)
    pi.theta = pi.theta + scale * rng.standard_normal(pi.n_params)
    return pi, rng


def dist_at(pi, theta, obs):
    """(z, cache) at theta for obs; leaves pi at theta."""
    pi.theta = theta
    return pi.dist(obs)


def random_z(head, rng, n):
    return rng.standard_normal((n, head.D))  # (n, D)


def fake_batch(agent, rng, T=16, E=4, obs_dim=3):
    """A Batch-like rollout (T, E): random observations, actions sampled from the agent's policy, random rewards,
    a few terminations and truncations."""
    obs = rng.standard_normal((T, E, obs_dim))
    a, logp, val = agent.act(obs.reshape(T * E, obs_dim), rng)
    terminated = rng.random((T, E)) < 0.1
    truncated = (rng.random((T, E)) < 0.1) & ~terminated
    return algos.Batch(
        obs=obs, act=a.reshape(T, E, *a.shape[1:]), logp=logp.reshape(T, E), val=val.reshape(T, E),
        rew=rng.standard_normal((T, E)), terminated=terminated, truncated=truncated,
        final_val=rng.standard_normal((T, E)), last_val=rng.standard_normal(E))


# ---------------------------------------------------------------------------------------------------------------
# 1-2. The MLP: backward is J^T u, jvp is J v
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden", [(5,), (5, 6), (5, 6, 4)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_backward_is_the_gradient_of_u_dot_y_wrt_theta_and_x(activation, hidden):
    net, x, rng = make_mlp(activation, hidden)
    u = rng.standard_normal((len(x), net.sizes[-1]))
    theta0, pattern0 = net.theta.copy(), relu_pattern(net, x)

    def loss(theta, x):
        net.theta[:] = theta
        if activation == "relu":  # honest finite differences: the perturbation did not cross a kink
            assert np.array_equal(relu_pattern(net, x), pattern0)
        return float(np.sum(u * net.forward(x)[0]))

    fd_theta = fd_grad(lambda th: loss(th, x), theta0)
    fd_x = fd_grad(lambda xx: loss(theta0, xx), x)
    net.theta[:] = theta0
    dtheta, dx = net.backward(u, net.forward(x)[1])
    assert rel_err(dtheta, fd_theta) <= FD_TOL
    assert rel_err(dx, fd_x) <= FD_TOL


@pytest.mark.parametrize("hidden", [(5,), (5, 6), (5, 6, 4)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_jvp_is_the_directional_derivative_of_forward(activation, hidden):
    net, x, rng = make_mlp(activation, hidden, seed=10)
    theta0, pattern0 = net.theta.copy(), relu_pattern(net, x)
    v = rng.standard_normal(theta0.size)

    def y(theta):
        net.theta[:] = theta
        if activation == "relu":
            assert np.array_equal(relu_pattern(net, x), pattern0)
        return net.forward(x)[0]

    fd = fd_dir(y, theta0, v)
    net.theta[:] = theta0
    assert rel_err(net.jvp(v, net.forward(x)[1]), fd) <= FD_TOL


# ---------------------------------------------------------------------------------------------------------------
# 3. Heads: d log pi / dz, dH / dz, d KL(pi_old || pi) / dz, alone and carried through the Policy to theta
# ---------------------------------------------------------------------------------------------------------------

QUANTITIES = {  # name -> (scalar of z, its gradient w.r.t. z); ctx holds the actions and z_old
    "log_prob": (lambda h, z, c: h.log_prob(z, c.act).sum(), lambda h, z, c: h.dlogp(z, c.act)),
    "entropy": (lambda h, z, c: h.entropy(z).sum(), lambda h, z, c: h.dentropy(z)),
    "kl": (lambda h, z, c: h.kl(c.z_old, z).sum(), lambda h, z, c: h.dkl(c.z_old, z)),
}


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("head_name", HEADS)
def test_head_gradients_wrt_z_match_finite_differences(head_name, quantity):
    rng = np.random.default_rng(1)
    head = HEADS[head_name]()
    z, z_old = random_z(head, rng, 6), random_z(head, rng, 6)
    ctx = types.SimpleNamespace(act=head.sample(z, rng), z_old=z_old)
    value, grad = QUANTITIES[quantity]
    assert rel_err(grad(head, z, ctx), fd_grad(lambda zz: value(head, zz, ctx), z)) <= FD_TOL


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("head_name", HEADS)
def test_policy_backward_carries_head_gradients_to_theta(head_name, quantity):
    pi, rng = make_policy(head_name)
    obs = rng.standard_normal((8, OBS_DIM))
    theta0 = pi.theta
    z_old = dist_at(pi, theta0 + 0.3 * rng.standard_normal(pi.n_params), obs)[0]  # from a different theta
    z, hs = dist_at(pi, theta0, obs)
    if head_name == "gaussian":
        assert np.all(np.abs(pi.extra) > 0.05)  # log-std really is off 0
    ctx = types.SimpleNamespace(act=pi.head.sample(z, rng), z_old=z_old)
    value, grad = QUANTITIES[quantity]
    g = pi.backward(grad(pi.head, z, ctx), hs)
    fd = fd_grad(lambda th: value(pi.head, dist_at(pi, th, obs)[0], ctx), theta0)
    assert rel_err(g, fd) <= FD_TOL


# ---------------------------------------------------------------------------------------------------------------
# 4. The Fisher-vector product is the Hessian of the mean KL at theta_old
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_name", HEADS)
def test_fvp_is_the_hessian_of_mean_kl_at_theta_old_times_v(head_name):
    pi, rng = make_policy(head_name, seed=2)
    obs = rng.standard_normal((16, OBS_DIM))
    theta_old = pi.theta
    z_old, hs_old = pi.dist(obs)
    v = rng.standard_normal(pi.n_params)

    def kl_grad(theta):  # grad_theta mean KL(pi_old || pi_theta)
        z, hs = dist_at(pi, theta, obs)
        return pi.backward(pi.head.dkl(z_old, z), hs) / len(obs)

    assert np.max(np.abs(kl_grad(theta_old))) <= 1e-14  # KL has its minimum at theta_old
    hv = fd_dir(kl_grad, theta_old, v, eps=1e-5)
    pi.theta = theta_old
    assert rel_err(algos.fisher_vector_product(pi, z_old, hs_old, v, 0.0), hv) <= FD_TOL


@pytest.mark.parametrize("head_name", HEADS)
def test_fvp_damping_adds_damping_times_v(head_name):
    pi, rng = make_policy(head_name, seed=3)
    obs = rng.standard_normal((16, OBS_DIM))
    z, hs = pi.dist(obs)
    v = rng.standard_normal(pi.n_params)
    f0 = algos.fisher_vector_product(pi, z, hs, v, 0.0)
    for d in (1e-3, 0.1, 2.0):
        assert rel_err(algos.fisher_vector_product(pi, z, hs, v, d) - f0, d * v) <= EXACT_TOL


# ---------------------------------------------------------------------------------------------------------------
# 5. Per-sample gradients: row i is grad_theta of sample i alone, and the rows add up to the batch gradient
# ---------------------------------------------------------------------------------------------------------------

def per_sample_grads_loop(pi, obs, dz):
    """The definition, one sample at a time: forward, backprop the deltas, write outer(h, d) and d per layer."""
    net, n_out = pi.net, pi.head.n_out
    L = len(net.W)
    f = (lambda a: np.tanh(a)) if net.activation == "tanh" else (lambda a: np.maximum(a, 0.0))
    df = (lambda h: 1.0 - h * h) if net.activation == "tanh" else (lambda h: (h > 0).astype(float))
    rows = []
    for i in range(len(obs)):
        hs = [obs[i]]
        for l in range(L - 1):
            hs.append(f(hs[-1] @ net.W[l] + net.b[l]))
        d, parts = dz[i, :n_out], [None] * L
        for l in range(L - 1, -1, -1):
            parts[l] = [np.outer(hs[l], d).ravel(), d.copy()]
            if l > 0:
                d = (net.W[l] @ d) * df(hs[l])
        rows.append(np.concatenate([p for layer in parts for p in layer] + [dz[i, n_out:]]))
    return np.array(rows)


@pytest.mark.parametrize("head_name", HEADS)
def test_per_sample_grads_rows_are_one_sample_backwards_and_sum_to_the_batch_gradient(head_name):
    pi, rng = make_policy(head_name, seed=4)
    obs = rng.standard_normal((9, OBS_DIM))
    z, hs = pi.dist(obs)
    dz = pi.head.dlogp(z, pi.head.sample(z, rng))
    G = nets.per_sample_grads(pi, hs, dz)
    assert G.shape == (len(obs), pi.n_params)
    for i in range(len(obs)):
        _, hs_i = pi.dist(obs[i:i + 1])
        assert rel_err(G[i], pi.backward(dz[i:i + 1], hs_i)) <= EXACT_TOL
    assert rel_err(G.sum(0), pi.backward(dz, hs)) <= EXACT_TOL


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("head_name", HEADS)
def test_per_sample_grads_equal_a_plain_loop_for_three_hidden_layers(head_name, activation):
    rng = np.random.default_rng(5)
    pi = nets.Policy(OBS_DIM, HEADS[head_name](), (5, 6, 4), activation, rng=rng)
    pi.theta = pi.theta + 0.5 * rng.standard_normal(pi.n_params)
    obs = rng.standard_normal((11, OBS_DIM))
    z, hs = pi.dist(obs)
    dz = pi.head.dlogp(z, pi.head.sample(z, rng))
    assert rel_err(nets.per_sample_grads(pi, hs, dz), per_sample_grads_loop(pi, obs, dz)) <= EXACT_TOL


# ---------------------------------------------------------------------------------------------------------------
# 6. Sampling: the analytic entropy, KL and moments are what the samples show (within 4 standard errors)
# ---------------------------------------------------------------------------------------------------------------

Z_ROWS = {
    "categorical": np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.3], [2.0, -1.0, 0.0]]),
    "gaussian": np.array([[0.0, 0.0, 0.0, 0.0], [0.5, -1.0, 0.3, -0.7], [-2.0, 1.0, -0.5, 0.4]]),
}
N_SAMPLES = 200_000


def within_4se(samples, expected):
    """|mean - expected| <= 4 standard errors of the mean (plus round-off, for samples that are all equal:
    -log p of a uniform categorical is log A for every action)."""
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    return abs(samples.mean() - expected) <= 4 * se + 1e-12 * abs(expected)


@pytest.mark.parametrize("head_name", HEADS)
def test_sampling_mean_neg_log_prob_is_entropy_and_mean_log_ratio_is_kl(head_name):
    rng = np.random.default_rng(6)
    head = HEADS[head_name]()
    z_old = Z_ROWS[head_name]
    z_new = z_old + 0.4 * rng.standard_normal(z_old.shape)
    H, kl = head.entropy(z_old), head.kl(z_old, z_new)
    for r in range(len(z_old)):
        zo, zn = np.repeat(z_old[r:r + 1], N_SAMPLES, 0), np.repeat(z_new[r:r + 1], N_SAMPLES, 0)
        a = head.sample(zo, rng)
        assert within_4se(-head.log_prob(zo, a), H[r])
        assert within_4se(head.log_prob(zo, a) - head.log_prob(zn, a), kl[r])


@pytest.mark.parametrize("head_name", HEADS)
def test_sample_frequencies_and_moments_match_the_distribution(head_name):
    rng = np.random.default_rng(7)
    head = HEADS[head_name]()
    for z in Z_ROWS[head_name]:
        a = head.sample(np.repeat(z[None], N_SAMPLES, 0), rng)
        if head_name == "categorical":
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            assert a.dtype.kind == "i" and set(np.unique(a)) <= set(range(head.n))
            for k in range(head.n):  # frequency of action k = softmax(z)_k
                assert within_4se((a == k).astype(float), p[k])
        else:
            mu, sigma = z[:head.A], np.exp(z[head.A:])
            assert a.shape == (N_SAMPLES, head.A)
            for k in range(head.A):
                assert abs(a[:, k].mean() - mu[k]) <= 4 * sigma[k] / np.sqrt(N_SAMPLES)
                assert abs(a[:, k].std(ddof=1) - sigma[k]) <= 4 * sigma[k] / np.sqrt(2 * N_SAMPLES)


# ---------------------------------------------------------------------------------------------------------------
# 7. GAE and the reward-to-go
# ---------------------------------------------------------------------------------------------------------------

def random_rollout(seed, T=50, E=4):
    """Rewards and values on E envs for T steps, with terminations and truncations (one of each on the last step:
    env 0 is truncated there, env 1 terminated; envs 2, 3 run into the end of the rollout)."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, E)) < 0.08
    truncated = (rng.random((T, E)) < 0.08) & ~terminated
    terminated[T - 1], truncated[T - 1] = [False, True, False, False], [True, False, False, False]
    assert terminated[:T - 1].any() and truncated[:T - 1].any()
    return dict(rew=rng.standard_normal((T, E)), val=rng.standard_normal((T, E)), terminated=terminated,
                truncated=truncated, final_val=rng.standard_normal((T, E)), last_val=rng.standard_normal(E))


def next_value(ro, t, e):
    """V(s_{t+1}) as the notes bootstrap it: 0 after a termination, V(final obs) after a truncation,
    V(s_T) = last_val after the last step of the rollout."""
    if ro["terminated"][t, e]:
        return 0.0
    if ro["truncated"][t, e]:
        return ro["final_val"][t, e]
    return ro["last_val"][e] if t == len(ro["rew"]) - 1 else ro["val"][t + 1, e]


def td_errors(ro, gamma):
    T, E = ro["rew"].shape
    return np.array([[ro["rew"][t, e] + gamma * next_value(ro, t, e) - ro["val"][t, e] for e in range(E)]
                     for t in range(T)])


def gae_loop(ro, gamma, lam):
    """A_t = sum_{l >= 0} (gamma lam)^l td_{t+l}, the sum stopping after the step that ends the episode."""
    T, E = ro["rew"].shape
    td, adv = td_errors(ro, gamma), np.zeros((T, E))
    for e in range(E):
        for t in range(T):
            weight = 1.0
            for k in range(t, T):
                adv[t, e] += weight * td[k, e]
                if ro["terminated"][k, e] or ro["truncated"][k, e]:
                    break
                weight *= gamma * lam
    return adv


def run_gae(ro, gamma, lam, kernel=algos.gae):
    return kernel(ro["rew"], ro["val"], ro["terminated"], ro["truncated"], ro["final_val"], ro["last_val"],
                  gamma, lam)


GAMMA_LAM = [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0), (0.97, 0.0)]


@pytest.mark.parametrize("gamma,lam", GAMMA_LAM)
def test_gae_kernel_equals_py_func_equals_the_definition(gamma, lam):
    ro = random_rollout(0)
    adv = run_gae(ro, gamma, lam)
    assert np.array_equal(adv, run_gae(ro, gamma, lam, algos.gae.py_func))
    assert rel_err(adv, gae_loop(ro, gamma, lam)) <= EXACT_TOL


@pytest.mark.parametrize("gamma", [0.99, 0.9])
def test_gae_with_lambda_0_is_the_td_error(gamma):
    ro = random_rollout(1)
    assert rel_err(run_gae(ro, gamma, 0.0), td_errors(ro, gamma)) <= EXACT_TOL


@pytest.mark.parametrize("gamma", [0.99, 0.9, 1.0])
def test_gae_with_lambda_1_is_the_bootstrapped_discounted_return_minus_v(gamma):
    ro = random_rollout(2)
    T, E = ro["rew"].shape
    ret = np.zeros((T, E))
    for e in range(E):
        for t in range(T - 1, -1, -1):
            ends = ro["terminated"][t, e] or ro["truncated"][t, e] or t == T - 1
            ret[t, e] = ro["rew"][t, e] + gamma * (next_value(ro, t, e) if ends else ret[t + 1, e])
    assert rel_err(run_gae(ro, gamma, 1.0), ret - ro["val"]) <= EXACT_TOL


def test_gae_bootstraps_from_final_val_at_truncations_only():
    gamma, lam = 0.99, 0.95
    ro = random_rollout(3)
    adv = run_gae(ro, gamma, lam)
    for t, e in zip(*np.nonzero(ro["truncated"])):  # d A_t / d final_val_t = gamma
        bumped = dict(ro, final_val=ro["final_val"].copy())
        bumped["final_val"][t, e] += 1.0
        assert abs(run_gae(bumped, gamma, lam)[t, e] - adv[t, e] - gamma) <= 1e-12
    not_truncated = dict(ro, final_val=np.where(ro["truncated"], ro["final_val"], ro["final_val"] + 5.0))
    assert ro["terminated"].any()
    assert np.array_equal(run_gae(not_truncated, gamma, lam), adv)


def discount_cumsum_loop(rew, done, gamma):
    """R_hat_t = sum_{k=t}^{end} gamma^(k-t) r_k, end = the first step >= t that ends the episode (or T-1)."""
    T, E = rew.shape
    ret = np.zeros((T, E))
    for e in range(E):
        for t in range(T):
            for k in range(t, T):
                ret[t, e] += gamma ** (k - t) * rew[k, e]
                if done[k, e]:
                    break
    return ret


@pytest.mark.parametrize("gamma", [0.99, 0.9, 1.0])
def test_discount_cumsum_kernel_equals_py_func_equals_the_definition(gamma):
    ro = random_rollout(4)
    done = ro["terminated"] | ro["truncated"]
    ret = algos.discount_cumsum(ro["rew"], done, gamma)
    assert np.array_equal(ret, algos.discount_cumsum.py_func(ro["rew"], done, gamma))
    assert rel_err(ret, discount_cumsum_loop(ro["rew"], done, gamma)) <= EXACT_TOL


# ---------------------------------------------------------------------------------------------------------------
# 8. Shapes that do not fit are refused, naming the expected shape
# ---------------------------------------------------------------------------------------------------------------

def test_wrong_shapes_raise_value_error_naming_the_expected_shape():
    net = nets.MLP((3, 5, 2), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        net.forward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        net.forward(np.zeros(3))
    _, hs = net.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        net.backward(np.zeros((4, 3)), hs)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        net.backward(np.zeros((5, 2)), hs)
    pi = nets.Policy(3, nets.DiagGaussian(2), (4,), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=rf"\({pi.n_params},\)"):
        pi.theta = np.zeros(pi.n_params - 1)
    with pytest.raises(ValueError, match=rf"\({pi.n_params},\)"):
        pi.theta = np.zeros((1, pi.n_params))


# ---------------------------------------------------------------------------------------------------------------
# 9. Conjugate gradient solves A x = b; with the FVP it solves (F + damping I) x = g
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_solves_a_random_spd_system(seed):
    rng = np.random.default_rng(seed)
    n = 20
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.logspace(0, 2, n)) @ Q.T  # condition number 100
    b = rng.standard_normal(n)
    # cg's tol is on r^T r (absolute), so ask for a relative residual of 1e-13; 2n iterations cover round-off.
    x = algos.cg(lambda v: A @ v, b, iters=2 * n, tol=(1e-13 * np.linalg.norm(b)) ** 2)
    assert np.linalg.norm(b - A @ x) / np.linalg.norm(b) <= 1e-12
    assert rel_err(x, np.linalg.solve(A, b)) <= 1e-11


def tiny_fisher(head_name, seed=8, n=32, scale=0.5):
    """Policy(3, head, (4,)) with theta perturbed by scale * N(0, 1), a batch, and the explicit Fisher matrix,
    F e_j column by column."""
    pi, rng = make_policy(head_name, hidden=(4,), obs_dim=3, seed=seed, scale=scale)
    obs = rng.standard_normal((n, 3))
    z, hs = pi.dist(obs)
    F = np.stack([algos.fisher_vector_product(pi, z, hs, e) for e in np.eye(pi.n_params)], 1)  # (P, P)
    return pi, rng, obs, z, hs, F


@pytest.mark.parametrize("head_name", HEADS)
def test_explicit_fisher_is_symmetric_positive_semidefinite(head_name):
    pi, rng, obs, z, hs, F = tiny_fisher(head_name)
    assert rel_err(F, F.T) <= EXACT_TOL
    assert np.linalg.eigvalsh(F).min() >= -1e-12 * np.abs(F).max()


def test_categorical_fisher_is_the_expected_outer_product_of_scores():
    """001 §Method 2: F = E_{a ~ pi}[grad log pi grad log pi^T]; for a categorical head the expectation is a sum."""
    pi, rng, obs, z, hs, F = tiny_fisher("categorical")
    expected = np.zeros_like(F)
    for a in range(pi.head.n):
        act = np.full(len(z), a)
        G = nets.per_sample_grads(pi, hs, pi.head.dlogp(z, act))  # (N, P)
        p = np.exp(pi.head.log_prob(z, act))                     # (N,)
        expected += (G * p[:, None]).T @ G / len(z)
    assert rel_err(F, expected) <= EXACT_TOL


@pytest.mark.parametrize("scale,iters_per_param", [(0.0, 1), (0.5, 2)])
@pytest.mark.parametrize("head_name", HEADS)
def test_cg_with_the_fvp_solves_the_damped_fisher_system(head_name, scale, iters_per_param):
    """At the init (scale 0) P iterations suffice. With theta perturbed, cond(F + 1e-3 I) ~ 2e3 and the
    round-off lost orthogonality of the directions costs more than P steps (P give only ~1e-3): 2P."""
    pi, rng, obs, z, hs, F = tiny_fisher(head_name, scale=scale)
    damping, P = 1e-3, pi.n_params
    g = pi.backward(pi.head.dlogp(z, pi.head.sample(z, rng)) * rng.standard_normal(len(z))[:, None], hs) / len(z)
    x = algos.cg(lambda v: algos.fisher_vector_product(pi, z, hs, v, damping), g, iters=iters_per_param * P,
                 tol=(1e-14 * np.linalg.norm(g)) ** 2)
    assert rel_err(x, np.linalg.solve(F + damping * np.eye(P), g)) <= 1e-11


# ---------------------------------------------------------------------------------------------------------------
# 10. The PPO gradients are the gradients of the PPO losses
# ---------------------------------------------------------------------------------------------------------------

CLIP_EPS, BETA = 0.2, 0.7


def ratio(head, z, act, logp_old):
    return np.exp(head.log_prob(z, act) - logp_old)


def clip_objective(head, z, z_old, act, logp_old, A):
    """000 §Proximal Policy Optimization, as the note writes it: L = 1/n sum_t min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)."""
    r = ratio(head, z, act, logp_old)
    return np.mean(np.minimum(r * A, np.clip(r, 1 - CLIP_EPS, 1 + CLIP_EPS) * A))


def penalty_objective(head, z, z_old, act, logp_old, A):
    """000 §Proximal Policy Optimization (PPO-Penalty), 001 §Method 1: L = 1/n sum_t r_t A_t - beta mean KL."""
    return np.mean(ratio(head, z, act, logp_old) * A) - BETA * np.mean(head.kl(z_old, z))


def surrogate_objective(head, z, z_old, act, logp_old, A):
    """000 §Proximal Policy Optimization (TRPO): L = 1/n sum_t r_t A_t."""
    return np.mean(ratio(head, z, act, logp_old) * A)


OBJECTIVES = {  # the note's objective, and the code's function returning (L, dL/dz)
    "ppo-clip": (clip_objective, lambda head, z, z_old, act, logp_old, A:
                 algos.ppo_clip_objective(head, z, act, logp_old, A, CLIP_EPS)),
    "ppo-penalty": (penalty_objective, lambda head, z, z_old, act, logp_old, A:
                    algos.ppo_penalty_objective(head, z, z_old, act, logp_old, A, BETA)),
    "trpo-surrogate": (surrogate_objective, lambda head, z, z_old, act, logp_old, A:
                       algos.trpo_surrogate(head, z, act, logp_old, A)),
}


def check_ratios_away_from_kinks(r, A):
    """Some terms clipped, some not, none within KINK of 1 +- eps (where the clipped loss has a kink), and all
    four regions outside the clip range occur: r > 1+eps and r < 1-eps, each with A > 0 and with A < 0 (clipped
    where the clip would improve the objective, passed through where it would make it worse)."""
    clipped = ((r > 1 + CLIP_EPS) & (A > 0)) | ((r < 1 - CLIP_EPS) & (A < 0))
    assert clipped.any() and (~clipped).any()
    for above, positive in [(True, True), (True, False), (False, True), (False, False)]:
        outside = r > 1 + CLIP_EPS if above else r < 1 - CLIP_EPS
        assert (outside & ((A > 0) if positive else (A < 0))).any(), (above, positive)
    assert np.abs(r - (1 + CLIP_EPS)).min() > KINK and np.abs(r - (1 - CLIP_EPS)).min() > KINK


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("head_name", HEADS)
def test_each_policy_objective_is_the_notes_formula_and_dl_dz_its_gradient(head_name, name):
    rng = np.random.default_rng(9)
    head, n = HEADS[head_name](), 40
    z_old = random_z(head, rng, n)
    z = z_old + 0.3 * rng.standard_normal(z_old.shape)
    act = head.sample(z_old, rng)
    logp_old = head.log_prob(z_old, act)
    A = rng.standard_normal(n)
    check_ratios_away_from_kinks(ratio(head, z, act, logp_old), A)
    note, code = OBJECTIVES[name]
    L, dL_dz = code(head, z, z_old, act, logp_old, A)
    assert abs(L - note(head, z, z_old, act, logp_old, A)) <= 1e-12
    assert rel_err(dL_dz, fd_grad(lambda zz: note(head, zz, z_old, act, logp_old, A), z)) <= FD_TOL


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("head_name", HEADS)
def test_each_policy_objective_gradient_through_the_policy_wrt_theta(head_name, name):
    pi, rng = make_policy(head_name, seed=10)
    obs, head = rng.standard_normal((40, OBS_DIM)), pi.head
    theta = pi.theta
    z_old = dist_at(pi, theta + 0.15 * rng.standard_normal(pi.n_params), obs)[0]
    act = head.sample(z_old, rng)
    logp_old = head.log_prob(z_old, act)
    A = rng.standard_normal(len(obs))
    z, hs = dist_at(pi, theta, obs)
    check_ratios_away_from_kinks(ratio(head, z, act, logp_old), A)
    note, code = OBJECTIVES[name]
    g = pi.backward(code(head, z, z_old, act, logp_old, A)[1], hs)
    fd = fd_grad(lambda th: note(head, dist_at(pi, th, obs)[0], z_old, act, logp_old, A), theta)
    assert rel_err(g, fd) <= FD_TOL


# ---------------------------------------------------------------------------------------------------------------
# 11. The natural-gradient step has 1/2 dtheta^T F dtheta = delta; TRPO's accepted step keeps mean KL <= delta
# ---------------------------------------------------------------------------------------------------------------

def make_agent(head_name, seed=0):
    return nets.Agent(3, HEADS[head_name](), hidden=(8,), rng=np.random.default_rng(seed))


@pytest.mark.parametrize("head_name", HEADS)
def test_npg_step_has_quadratic_kl_equal_to_delta(head_name):
    agent = make_agent(head_name)
    b = fake_batch(agent, np.random.default_rng(11))
    hp = algos.Hyper(v_iters=1, max_kl=0.01)
    pi, obs = agent.pi, algos.flat(b.obs)
    theta_old = pi.theta
    z_old, hs = pi.dist(obs)
    algos.update_npg(agent, b, hp, np.random.default_rng(1))
    dtheta = pi.theta - theta_old
    assert np.abs(dtheta).max() > 0
    pi.theta = theta_old  # F at theta_old: the FVP reads the weights from pi
    quad = 0.5 * dtheta @ algos.fisher_vector_product(pi, z_old, hs, dtheta, 0.0)
    assert rel_err(quad, hp.max_kl) <= 1e-9


def overshooting_rewards(agent, b):
    """Rewards for which the full natural-gradient step overshoots delta (the true KL grows faster than its
    quadratic model): categorical, reward the minority action 0, whose logit then rises; Gaussian, reward actions
    near the mean, so sigma shrinks."""
    T, E, obs_dim = b.obs.shape
    if isinstance(agent.pi.head, nets.Categorical):
        return (b.act == 0).astype(float)
    mu = agent.pi.head.mode(agent.pi.dist(b.obs.reshape(T * E, obs_dim))[0]).reshape(b.act.shape)
    return -((b.act - mu) ** 2).sum(-1)


@pytest.mark.parametrize("max_kl,rewards", [(0.01, "random"), (0.001, "random"), (0.01, "overshoot"),
                                            (0.1, "overshoot")])
@pytest.mark.parametrize("head_name", HEADS)
def test_trpo_accepted_step_has_mean_kl_at_most_delta(head_name, max_kl, rewards):
    hp = algos.Hyper(v_iters=1, max_kl=max_kl)
    agent, twin = make_agent(head_name), make_agent(head_name)
    b = fake_batch(agent, np.random.default_rng(12))
    if rewards == "overshoot":
        b.rew = overshooting_rewards(agent, b)
    pi, obs = agent.pi, algos.flat(b.obs)
    theta_old = pi.theta
    z_old, _ = pi.dist(obs)
    info = algos.update_trpo(agent, b, hp, np.random.default_rng(1))
    kl = float(pi.head.kl(z_old, pi.dist(obs)[0]).mean())
    assert info["backtracks"] < hp.backtrack_iters and kl > 0  # a step was accepted
    assert kl <= hp.max_kl
    assert rel_err(info["kl"], kl) <= EXACT_TOL
    # the accepted step is the natural-gradient step shrunk by backtrack_coef ** backtracks
    assert np.array_equal(twin.pi.theta, theta_old)
    algos.update_npg(twin, b, hp, np.random.default_rng(1))
    shrink = hp.backtrack_coef ** info["backtracks"]
    assert rel_err(pi.theta - theta_old, shrink * (twin.pi.theta - theta_old)) <= 1e-10
    if rewards == "overshoot":  # the KL bound is what made the line search back off
        assert pi.head.kl(z_old, twin.pi.dist(obs)[0]).mean() > hp.max_kl and info["backtracks"] >= 1


# ---------------------------------------------------------------------------------------------------------------
# 12. The optimal baseline, per parameter: b_k = sum_tau g_k(tau)^2 R(tau) / sum_tau g_k(tau)^2
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_name", HEADS)
def test_optimal_baseline_estimate_equals_the_per_parameter_formula(head_name):
    pi, rng = make_policy(head_name, seed=13)
    lengths = [3, 5, 2, 4, 6, 1]
    ep = np.repeat(np.arange(len(lengths)), lengths)
    R = rng.standard_normal(len(lengths)) + 1.0
    obs = rng.standard_normal((len(ep), OBS_DIM))
    z, _ = pi.dist(obs)
    act = pi.head.sample(z, rng)
    g_hat = algos.pg_estimate(pi, obs, act, R[ep], ep, "optimal")
    # the same estimate from one-sample backwards and plain loops
    g_tau = np.zeros((len(lengths), pi.n_params))
    for i in range(len(ep)):
        z_i, hs_i = pi.dist(obs[i:i + 1])
        g_tau[ep[i]] += pi.backward(pi.head.dlogp(z_i, act[i:i + 1]), hs_i)
    b = np.zeros(pi.n_params)
    for k in range(pi.n_params):
        num = sum(g_tau[tau, k] ** 2 * R[tau] for tau in range(len(lengths)))
        den = sum(g_tau[tau, k] ** 2 for tau in range(len(lengths)))
        b[k] = num / den
    expected = sum(g_tau[tau] * (R[tau] - b) for tau in range(len(lengths))) / len(lengths)
    assert np.ptp(b) > 0.1  # the baseline really is per parameter
    assert rel_err(g_hat, expected) <= 1e-10


# ---------------------------------------------------------------------------------------------------------------
# 13. Determinism: same seeds, same batch, same update -> the same parameters, bit for bit
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_update_is_deterministic_given_the_seeds(head_name):
    hp = algos.Hyper(epochs=3, minibatch=16)
    a1, a2 = make_agent(head_name, seed=14), make_agent(head_name, seed=14)
    b = fake_batch(a1, np.random.default_rng(15))
    theta0 = a1.pi.theta
    algos.update_ppo(a1, b, hp, np.random.default_rng(1))
    algos.update_ppo(a2, b, hp, np.random.default_rng(1))
    assert not np.array_equal(a1.pi.theta, theta0)
    assert np.array_equal(a1.pi.theta, a2.pi.theta)
    assert np.array_equal(a1.v.theta, a2.v.theta)


# ---------------------------------------------------------------------------------------------------------------
# 14. The optimisers are the published update rules, written out here in plain NumPy
# ---------------------------------------------------------------------------------------------------------------

def test_adam_is_kingma_and_ba_with_bias_correction():
    rng, lr, (b1, b2), eps = np.random.default_rng(16), 1e-2, (0.9, 0.999), 1e-8
    theta, opt = rng.standard_normal(7), nets.Adam(7, lr=lr, betas=(b1, b2), eps=eps)
    ref, m, v = theta.copy(), np.zeros(7), np.zeros(7)
    for t in range(1, 6):
        g = rng.standard_normal(7)
        theta = opt.step(theta, g)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        ref = ref - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        assert rel_err(theta, ref) <= EXACT_TOL


def test_rmsprop_is_the_torch_rule():
    rng, lr, alpha, eps = np.random.default_rng(17), 1e-2, 0.99, 1e-5
    theta, opt = rng.standard_normal(7), nets.RMSprop(7, lr=lr, alpha=alpha, eps=eps)
    ref, v = theta.copy(), np.zeros(7)
    for _ in range(5):
        g = rng.standard_normal(7)
        theta = opt.step(theta, g)
        v = alpha * v + (1 - alpha) * g * g
        ref = ref - lr * g / (np.sqrt(v) + eps)
        assert rel_err(theta, ref) <= EXACT_TOL


@pytest.mark.parametrize("opt_cls", [nets.Adam, nets.RMSprop])
@pytest.mark.parametrize("g_dtype", [np.float32, np.float64])
def test_optimisers_keep_float32(opt_cls, g_dtype):
    """A float32 run's moments stay float32, even if a caller hands the optimiser a float64 gradient."""
    opt = opt_cls(5, dtype=np.float32)
    theta = opt.step(np.ones(5, np.float32), np.full(5, 0.5, g_dtype))
    assert theta.dtype == np.float32 and all(x.dtype == np.float32 for x in opt.state().values() if x.ndim)


# ---------------------------------------------------------------------------------------------------------------
# 15. float32 keeps working where a parameter has no gradient
# ---------------------------------------------------------------------------------------------------------------

def test_optimal_baseline_is_finite_for_a_parameter_with_no_gradient_in_float32():
    """An observation feature that is always 0 gives its first-layer weights zero gradient on every sample;
    b_k = 0/0 there must not turn the float32 gradient into NaN."""
    rng = np.random.default_rng(0)
    pi = nets.Policy(2, nets.Categorical(2), (8,), rng=rng, dtype=np.float32)
    obs = np.c_[rng.standard_normal(40), np.zeros(40)].astype(np.float32)  # (40, 2), feature 1 always 0
    act = pi.head.sample(pi.dist(obs)[0], rng)
    g = algos.pg_estimate(pi, obs, act, rng.standard_normal(40).astype(np.float32), np.repeat(np.arange(4), 10),
                          "optimal")
    assert g.dtype == np.float32 and np.all(np.isfinite(g)) and np.any(g != 0)


# ---------------------------------------------------------------------------------------------------------------
# 16. float32 in, float32 out; logits far apart; the deterministic action is the mode
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_name", HEADS)
def test_float32_stays_float32_through_the_heads_the_policy_and_the_fvp(head_name):
    """nets.py: everything is float64 unless the caller passes float32 arrays. Then every array the maths returns
    is float32: one float64 temporary would turn the rest of a float32 update into float64."""
    rng = np.random.default_rng(18)
    pi = nets.Policy(OBS_DIM, HEADS[head_name](), (5,), rng=rng, dtype=np.float32)
    head, obs = pi.head, rng.standard_normal((6, OBS_DIM)).astype(np.float32)
    z, hs = pi.dist(obs)
    z_old = z + rng.standard_normal(z.shape).astype(np.float32)
    act = head.sample(z, rng)
    dz = head.dlogp(z, act)
    v = rng.standard_normal(pi.n_params).astype(np.float32)
    out = {"z": z, "log_prob": head.log_prob(z, act), "dlogp": dz, "entropy": head.entropy(z),
           "dentropy": head.dentropy(z), "kl": head.kl(z_old, z), "dkl": head.dkl(z_old, z),
           "fisher": head.fisher(z, dz), "backward": pi.backward(dz, hs), "jvp": pi.jvp(v, hs),
           "per_sample_grads": nets.per_sample_grads(pi, hs, dz), "fvp": algos.fisher_vector_product(pi, z, hs, v, 0.1)}
    assert {name: x.dtype for name, x in out.items() if x.dtype != np.float32} == {}
    assert act.dtype == (np.int64 if head_name == "categorical" else np.float32)


def test_categorical_log_prob_entropy_and_kl_are_exact_for_logits_a_thousand_apart():
    """_log_softmax subtracts the largest logit before exponentiating (log-sum-exp), so log pi, H and KL stay
    finite and exact where exp(z) alone overflows (exp(710) = inf)."""
    head = nets.Categorical(3)
    z = np.array([[0.0, 1000.0, -1000.0], [-800.0, 0.0, 800.0], [750.0, 749.0, -750.0], [1e3, 1e3 - 1e-3, 1e3]])
    z_old = z[:, ::-1].copy()

    def log_softmax(z):  # log-sum-exp by NumPy's pairwise logaddexp
        return z - np.logaddexp.reduce(z, axis=1, keepdims=True)

    def close(a, b):  # elementwise: 1e-12 relative, or absolute below 1
        return np.all(np.isfinite(a)) and np.all(np.abs(a - b) <= 1e-12 * np.maximum(np.abs(b), 1.0))

    logp, logp_old = log_softmax(z), log_softmax(z_old)
    for a in range(3):
        assert close(head.log_prob(z, np.full(len(z), a)), logp[:, a])
    assert close(head.entropy(z), -(np.exp(logp) * logp).sum(1))
    assert close(head.kl(z_old, z), (np.exp(logp_old) * (logp_old - logp)).sum(1))
    assert close(head.dlogp(z, np.zeros(len(z), int)), np.eye(3)[[0] * len(z)] - np.exp(logp))


@pytest.mark.parametrize("head_name", HEADS)
def test_the_deterministic_action_is_the_mode_of_pi(head_name):
    """head.mode, the action of a deterministic evaluation, is the most probable action: no action is more
    probable (categorical), and for the Gaussian the density there is its peak, prod_k 1/(sqrt(2 pi) sigma_k)."""
    rng = np.random.default_rng(19)
    head = HEADS[head_name]()
    z = random_z(head, rng, 8)
    logp_mode = head.log_prob(z, head.mode(z))
    if head_name == "categorical":
        every = np.stack([head.log_prob(z, np.full(len(z), a)) for a in range(head.n)], 1)  # (N, A)
        assert np.array_equal(logp_mode, every.max(1))
    else:
        peak = -z[:, head.A:].sum(1) - head.A / 2 * np.log(2 * np.pi)
        assert rel_err(logp_mode, peak) <= EXACT_TOL
    for _ in range(20):
        assert np.all(head.log_prob(z, head.sample(z, rng)) <= logp_mode)


# ---------------------------------------------------------------------------------------------------------------
# 15. A batch that is not what an update reads is one clear error, not a silent estimate or a numba trace
# ---------------------------------------------------------------------------------------------------------------

def batch_swapped(b):
    """The same rollout laid out (E, T) instead of (T, E): a plausible mistake in an own loop."""
    return algos.Batch(**{k: (v.swapaxes(0, 1) if k != "last_val" else v) for k, v in vars(b).items()})


@pytest.mark.parametrize("damage, says", [
    ("(E, T) arrays", "the arrays look (E, T); they must be (T, E), time first"),
    ("no last_val", "last_val must be V_phi(s_T) of shape (E,)"),
    ("obs without obs_dim", "Batch.obs must have shape (T, E, obs_dim)"),
])
@pytest.mark.parametrize("algo", ["vpg", "a2c", "trpo", "ppo", "ppo-penalty"])
def test_an_update_refuses_a_batch_of_the_wrong_shapes_with_one_clear_error(algo, damage, says):
    agent = make_agent("categorical")
    b = fake_batch(agent, np.random.default_rng(3), T=6, E=4)
    theta = agent.pi.theta
    if damage == "(E, T) arrays":
        b = batch_swapped(b)  # last_val stays V(s_T) of each of the 4 envs
    elif damage == "no last_val":
        b.last_val = None
    else:
        b.obs = b.obs[..., 0]
    with pytest.raises(ValueError, match=re.escape(says)):
        algos.UPDATES[algo](agent, b, algos.Hyper(epochs=1, minibatch=8, v_iters=1, v_minibatch=8), np.random.default_rng(0))
    assert np.array_equal(agent.pi.theta, theta)


def test_the_agent_gives_each_optimiser_its_own_learning_rate_and_epsilon():
    """nets.Agent(lr_pi, lr_v, eps): the policy's optimiser takes lr_pi, the critic's lr_v (an own loop that does
    not go through algos.set_learning_rates relies on it), both the optimiser and eps asked for."""
    for name, cls in nets.OPTIMISERS.items():
        agent = nets.Agent(3, nets.Categorical(2), hidden=(4,), optimiser=name, lr_pi=0.01, lr_v=0.2, eps=1e-3)
        assert type(agent.opt_pi) is cls and type(agent.opt_v) is cls
        assert (agent.opt_pi.lr, agent.opt_v.lr, agent.opt_pi.eps, agent.opt_v.eps) == (0.01, 0.2, 1e-3, 1e-3)
