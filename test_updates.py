"""Exact tests of every update in algos.py (issue 12): one update, in float64, on a small fixed batch, against a
plain reference written here the way the notes write it.

Each reference recomputes everything itself, with per-sample and per-step loops and explicit sums: the episodes and
the reward-to-go, GAE as the backward recursion per env, the normalisation, the per-sample objectives and their
gradients with respect to the head's outputs z, the minibatch order, the gradient-norm clip, Adam and RMSprop, the
critic regression, conjugate gradient on an explicit Fisher matrix, the line search and the beta rule. It calls none
of algos.py's helpers (prepare, normalise, gae, policy_gradient, dz_*, cg, fit_value, ...), and of nets.py only the
networks' forward, backward and jvp. Each test then checks that the features it switches on really took effect
(a grad-norm clip that clipped, a value loss that was clipped, an early stop, a backtrack, a beta that moved).
Relative error = max|a - b| / max(max|b|, tiny), b the reference; every update must agree to REL_TOL.

Where a reference follows a choice of the code that departs from a note (the 1/2 in the value loss, the lambda-return
as the critic's target, the step of the natural gradient, ...), its docstring says so and names the test of the last
section, "Where the code departs from the notes", that computes the note's version too (docs/notes.md lists them).

Run: python -m pytest -q test_updates.py. This file imports only numpy, pytest, nets and algos.
"""
import itertools
import math
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster (as minipg.py sets)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import algos  # noqa: E402
import nets  # noqa: E402

TINY = 1e-300
REL_TOL = 1e-10   # the code and the reference compute the same numbers in a different order
OBS_DIM, HIDDEN = 3, (5,)
T, E = 10, 3      # steps per env, envs: N = 30 samples
HEADS = {"categorical": lambda: nets.Categorical(3), "gaussian": lambda: nets.DiagGaussian(2)}

# The done pattern of every batch, (t, env). env 0: terminated at 2, truncated at 6, then an unfinished tail 7-9;
# env 1: truncated at 1, terminated at 5, truncated at the last step 9 (final_val, not last_val, bootstraps it);
# env 2: terminated at 3, then an unfinished tail 4-9 (bootstrapped from last_val).
TERMINATED = [(2, 0), (5, 1), (3, 2)]
TRUNCATED = [(6, 0), (1, 1), (9, 1)]


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), TINY))


def assert_same_update(agent, info, theta, phi, ref_info):
    """The new theta and phi, and every info value, agree with the reference (integers exactly)."""
    assert set(info) == set(ref_info), (sorted(info), sorted(ref_info))
    assert rel_err(agent.pi.theta, theta) <= REL_TOL
    assert rel_err(agent.v.theta, phi) <= REL_TOL
    for k, want in ref_info.items():
        if isinstance(want, int):
            assert info[k] == want and isinstance(info[k], int), (k, info[k], want)
        else:
            assert rel_err(info[k], want) <= REL_TOL, (k, info[k], want)


# ---------------------------------------------------------------------------------------------------------------
# The fixed setting: an agent perturbed off its init, and a rollout with terminations, truncations and a cut
# ---------------------------------------------------------------------------------------------------------------

def hyper(**fields):
    """algos.Hyper with the learning rates of make_agent's optimisers (the updates read alpha from hp)."""
    return algos.Hyper(**{"lr_pi": 0.02, "lr_v": 0.05, **fields})


def make_agent(head_name, seed=0, optimiser="adam", lr_pi=0.02, lr_v=0.05):
    """Agent(3, head, (5,)) with every parameter (biases, log-std) perturbed, so nothing is trivially zero. lr_v
    differs from lr_pi, so that a joint-loss update (A2C, PPO) must step the critic with lr_pi."""
    rng = np.random.default_rng(seed)
    agent = nets.Agent(OBS_DIM, HEADS[head_name](), HIDDEN, rng=rng, optimiser=optimiser, lr_pi=lr_pi, lr_v=lr_v,
                       eps=1e-5)
    agent.pi.theta = agent.pi.theta + 0.5 * rng.standard_normal(agent.pi.n_params)
    agent.v.theta[:] += 0.5 * rng.standard_normal(agent.v.theta.size)
    return agent


def make_batch(agent, seed=1, rewards=None):
    """A real algos.Batch (T, E), as a rollout of this agent would fill it: actions sampled from pi_theta, their
    log-probabilities and V_phi(s_t); final_val nonzero exactly where truncated; last_val nonzero."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((T, E, OBS_DIM))
    a, logp, val = agent.act(obs.reshape(T * E, OBS_DIM), rng)
    terminated, truncated = np.zeros((T, E), bool), np.zeros((T, E), bool)
    for t, e in TERMINATED:
        terminated[t, e] = True
    for t, e in TRUNCATED:
        truncated[t, e] = True
    b = algos.Batch(obs=obs, act=a.reshape(T, E, *a.shape[1:]), logp=logp.reshape(T, E), val=val.reshape(T, E),
                    rew=rng.standard_normal((T, E)), terminated=terminated, truncated=truncated,
                    final_val=np.where(truncated, rng.standard_normal((T, E)), 0.0), last_val=rng.standard_normal(E))
    if rewards is not None:
        b.rew = rewards(agent, b)
    assert np.all(b.final_val[truncated] != 0) and np.all(b.last_val != 0)
    assert not (terminated | truncated)[-1].all()  # some episodes run into the cut at the end
    return b


# ---------------------------------------------------------------------------------------------------------------
# The reference's pieces, written out. Heads: the per-sample formulas of 000 §Policies, one row z (D,) at a time.
# ---------------------------------------------------------------------------------------------------------------

class CategoricalRef:
    """000 §Policies (categorical): pi(a|s) = softmax(z)_a, for one row of logits z (A,)."""

    def probs(self, z):
        e = np.exp(z - z.max())
        return e / e.sum()

    def log_prob(self, z, a):
        return z[a] - z.max() - math.log(np.exp(z - z.max()).sum())

    def dlogp(self, z, a):  # d log pi(a|s) / dz = onehot(a) - p
        g = -self.probs(z)
        g[a] += 1.0
        return g

    def entropy(self, z):  # H = -sum_j p_j log p_j
        p = self.probs(z)
        return -float(np.sum(p * np.log(p)))

    def dentropy(self, z):  # dH/dz_j = -p_j (log p_j + H)
        p = self.probs(z)
        return -p * (np.log(p) + self.entropy(z))

    def kl(self, z_old, z):  # KL(pi_old || pi) = sum_j p_old_j (log p_old_j - log p_j); 001 writes KL(new || old)
        p_old = self.probs(z_old)
        return float(np.sum(p_old * (np.log(p_old) - np.log(self.probs(z)))))

    def dkl(self, z_old, z):  # d KL(pi_old || pi) / dz = p - p_old
        return self.probs(z) - self.probs(z_old)

    def fisher(self, z):  # 001 §Method 2: M = E_a[(e_a - p)(e_a - p)^T] = diag(p) - p p^T
        p = self.probs(z)
        return np.diag(p) - np.outer(p, p)


class GaussianRef:
    """000 §Policies (diagonal Gaussian): pi(a|s) = N(mu, diag sigma^2), one row z = [mu (A,), log sigma (A,)]."""

    def __init__(self, A=2):
        self.A = A

    def split(self, z):
        return z[:self.A], z[self.A:], np.exp(z[self.A:])  # mu, log sigma, sigma

    def log_prob(self, z, a):  # sum_k -1/2 ((a_k - mu_k) / sigma_k)^2 - log sigma_k - 1/2 log 2 pi
        mu, log_std, std = self.split(z)
        return float(sum(-0.5 * ((a[k] - mu[k]) / std[k]) ** 2 - log_std[k] - 0.5 * math.log(2 * math.pi)
                         for k in range(self.A)))

    def dlogp(self, z, a):  # [u / sigma, u^2 - 1], u = (a - mu) / sigma (003 §2.5's 1/2 is wrong: test_003_2_5s_...)
        mu, log_std, std = self.split(z)
        u = (a - mu) / std
        return np.concatenate([u / std, u * u - 1.0])

    def entropy(self, z):  # H = sum_k log sigma_k + 1/2 log(2 pi e)
        return float(sum(self.split(z)[1]) + self.A * 0.5 * math.log(2 * math.pi * math.e))

    def dentropy(self, z):
        return np.concatenate([np.zeros(self.A), np.ones(self.A)])

    def kl(self, z_old, z):  # sum_k log(s_k / s_old_k) + (s_old_k^2 + (mu_old_k - mu_k)^2) / (2 s_k^2) - 1/2, s = sigma
        (mu0, ls0, s0), (mu, ls, s) = self.split(z_old), self.split(z)
        return float(sum(ls[k] - ls0[k] + (s0[k] ** 2 + (mu0[k] - mu[k]) ** 2) / (2 * s[k] ** 2) - 0.5
                         for k in range(self.A)))

    def dkl(self, z_old, z):
        (mu0, ls0, s0), (mu, ls, s) = self.split(z_old), self.split(z)
        return np.concatenate([(mu - mu0) / s ** 2, 1.0 - (s0 ** 2 + (mu0 - mu) ** 2) / s ** 2])

    def fisher(self, z):  # 001 §Method 2, in (mu, log sigma): diag(1 / sigma^2, 2)
        return np.diag(np.concatenate([1.0 / self.split(z)[2] ** 2, np.full(self.A, 2.0)]))


REF_HEADS = {"categorical": CategoricalRef, "gaussian": GaussianRef}


class RefAdam:
    """Adam as Kingma & Ba 2015 write it (003 §7 recommends Adam): m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    theta <- theta - lr mhat / (sqrt(vhat) + eps), mhat = m / (1 - b1^t), vhat = v / (1 - b2^t). It minimises."""

    def __init__(self, n, lr, eps, b1=0.9, b2=0.999):
        self.lr, self.eps, self.b1, self.b2 = lr, eps, b1, b2
        self.m, self.v, self.t = np.zeros(n), np.zeros(n), 0

    def step(self, theta, g):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mhat, vhat = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        return theta - self.lr * mhat / (np.sqrt(vhat) + self.eps)


class RefRMSprop:
    """RMSprop as torch.optim.RMSprop (A2C's optimiser): v <- a v + (1 - a) g^2, theta <- theta - lr g / (sqrt v + eps)
    (no bias correction)."""

    def __init__(self, n, lr, eps, alpha=0.99):
        self.lr, self.eps, self.alpha, self.v = lr, eps, alpha, np.zeros(n)

    def step(self, theta, g):
        self.v = self.alpha * self.v + (1 - self.alpha) * g * g
        return theta - self.lr * g / (np.sqrt(self.v) + self.eps)


class Twin:
    """The reference's copy of the agent: the same networks, used only to evaluate z = pi_theta(s) and V_phi(s) and to
    backprop a dz or dV built sample by sample (nets' proven forward/backward/jvp), with the per-sample head formulas
    and its own optimisers. theta and phi are the parameters before the update."""

    def __init__(self, head_name, seed=0, optimiser="adam", lr_pi=0.02, lr_v=0.05):
        agent = make_agent(head_name, seed, optimiser, lr_pi, lr_v)
        self.pi, self.v, self.head = agent.pi, agent.v, REF_HEADS[head_name]()
        self.theta, self.phi = agent.pi.theta, agent.v.theta.copy()
        self.optimiser, self.lr_pi, self.lr_v, self.eps = optimiser, lr_pi, lr_v, 1e-5

    def dist(self, theta, obs):
        """z (n, D) and the cache, at theta."""
        self.pi.theta = theta
        return self.pi.dist(obs)

    def value(self, phi, obs):
        """V_phi(s) (n,) and the cache, at phi."""
        self.v.theta[:] = phi
        out, hv = self.v.forward(obs)
        return out[:, 0], hv

    def new_optimiser(self, n, lr):
        return (RefAdam if self.optimiser == "adam" else RefRMSprop)(n, lr, self.eps)


def rows(x):
    """(T, E, ...) -> the samples in the order env by env, step by step: [x[0, 0], x[1, 0], ..., x[T-1, E-1]]."""
    return np.array([x[t, e] for e in range(x.shape[1]) for t in range(x.shape[0])])


def ref_gae(b, gamma, lam):
    """GAE-lambda (000 §Other Forms of the Policy Gradient) as the backward recursion per env:
    td_t = r_t + gamma V(s_{t+1}) - V(s_t),  A_t = td_t + gamma lam A_{t+1},
    with V(s_{t+1}) = 0 after a termination, final_val after a truncation, last_val after the last step, and
    A_{t+1} = 0 across the end of an episode (the next row starts a new one)."""
    adv = np.zeros(b.rew.shape)
    for e in range(E):
        A_next = 0.0
        for t in range(T - 1, -1, -1):
            if b.terminated[t, e]:
                V_next, A_next = 0.0, 0.0
            elif b.truncated[t, e]:
                V_next, A_next = b.final_val[t, e], 0.0
            elif t == T - 1:
                V_next = b.last_val[e]
            else:
                V_next = b.val[t + 1, e]
            td = b.rew[t, e] + gamma * V_next - b.val[t, e]
            A_next = adv[t, e] = td + gamma * lam * A_next
    return adv


def ref_nstep_returns(b, gamma):
    """002 §actor-critic method, n-step form (A2C): R_hat_t = sum_{k=t}^{end} gamma^(k-t) r_k + gamma^(end+1-t) V_end,
    end the last step of t's episode inside the rollout; V_end = 0 if it terminated there, final_val if it was
    truncated, last_val = V(s_T) if it ran into the cut."""
    ret = np.zeros(b.rew.shape)
    for e in range(E):
        for t in range(T):
            end = next(k for k in range(t, T) if b.terminated[k, e] or b.truncated[k, e] or k == T - 1)
            V_end = 0.0 if b.terminated[end, e] else b.final_val[end, e] if b.truncated[end, e] else b.last_val[e]
            ret[t, e] = sum(gamma ** (k - t) * b.rew[k, e] for k in range(t, end + 1)) + gamma ** (end + 1 - t) * V_end
    return ret


def ref_normalise(x):
    """(x - mean) / (std + 1e-8), mean = 1/n sum x_i, std = sqrt(1/n sum (x_i - mean)^2)."""
    n = len(x)
    mean = sum(x) / n
    std = math.sqrt(sum((xi - mean) ** 2 for xi in x) / n)
    return np.array([(xi - mean) / (std + 1e-8) for xi in x])


def ref_var(x):
    mean = sum(x) / len(x)
    return sum((xi - mean) ** 2 for xi in x) / len(x)


def ref_diagnostics(tw, theta_new, obs, z_old, val_old, ret, **info):
    """STYLE §9's fixed diagnostics on the whole batch: kl = 1/N sum_i KL(pi_old || pi_new)(s_i) (001 writes
    KL(new || old): test_kl_old_new_and_001s_kl_new_old_differ_at_a_finite_step_and_agree_to_second_order), entropy =
    1/N sum_i H(pi_new)(s_i), explained_var = 1 - Var[R_hat - V_old] / Var[R_hat] (1/N variances)."""
    z_new, _ = tw.dist(theta_new, obs)
    N = len(obs)
    return dict(info, kl=sum(tw.head.kl(z_old[i], z_new[i]) for i in range(N)) / N,
                entropy=sum(tw.head.entropy(z_new[i]) for i in range(N)) / N,
                explained_var=1.0 - ref_var(ret - val_old) / ref_var(ret))


def ref_fit_value(tw, obs, ret, hp, rng):
    """Critic regression, 002 §actor-critic method / 000 §Baselines in Policy Gradients: phi <- argmin
    E[(V_phi(s_t) - R_hat_t)^2], as hp.v_iters epochs of Adam (lr_v) on shuffled minibatches of
    1/2 mean (V - R_hat)^2, whose gradient w.r.t. V_i is (V_i - R_hat_i) / n: the code's 1/2, half the note's mean
    square (test_the_value_loss_is_half_the_notes_mean_squared_error). ret, the target, is the caller's (the
    lambda-return for the actor-critic updates). Returns phi and the loss after."""
    phi, N = tw.phi.copy(), len(obs)
    opt = tw.new_optimiser(phi.size, tw.lr_v)
    for _ in range(hp.v_iters):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.v_minibatch)):
            V, hv = tw.value(phi, obs[mb])
            dV = np.array([[(V[k] - ret[i]) / len(mb)] for k, i in enumerate(mb)])  # (n, 1)
            dphi, _ = tw.v.backward(dV, hv)
            phi = opt.step(phi, dphi)
    V, _ = tw.value(phi, obs)
    return phi, 0.5 * sum((V[i] - ret[i]) ** 2 for i in range(N)) / N


def ref_actor_critic_inputs(b, hp):
    """GAE advantages and the critic's target, as samples. The target is the code's lambda-return A_t + V(s_t), which is
    000's R_hat_t (plus bootstrap) only at lam = 1
    (test_the_critics_target_is_the_lambda_return_which_is_the_reward_to_go_only_at_lambda_1)."""
    adv = ref_gae(b, hp.gamma, hp.lam)
    return rows(b.obs), rows(b.act), rows(b.logp), rows(adv), rows(adv + b.val), rows(b.val)


# ---------------------------------------------------------------------------------------------------------------
# REINFORCE
# ---------------------------------------------------------------------------------------------------------------

EPISODE_LENGTHS = (3, 5, 2, 4, 6, 1)  # six whole episodes, 21 steps


def make_episodes(agent, seed=1, lengths=EPISODE_LENGTHS):
    """A real algos.Episodes, as minipg.collect_episodes fills it: whole episodes from reset, each episode's steps
    together and in time order; actions sampled from pi_theta, their log-probabilities and V_phi(s_t)."""
    rng = np.random.default_rng(seed)
    ep = np.repeat(np.arange(len(lengths)), lengths)
    obs = rng.standard_normal((len(ep), OBS_DIM))
    a, logp, val = agent.act(obs, rng)
    return algos.Episodes(obs=obs, act=a, logp=logp, val=val, rew=rng.standard_normal(len(ep)), ep=ep)


def ref_reinforce(tw, d, hp, seed):
    """REINFORCE (003 §3; 000 §Deriving the Simplest Policy Gradient) on N_tau whole episodes:
    g = 1/N_tau sum_tau sum_t grad log pi(a_t|s_t) (Phi_t - b), Phi_t = R(tau) or the reward-to-go
    R_hat_t = sum_{t'>=t} gamma^(t'-t) r_t' (000 §Don't Let the Past Distract You; at the gamma = 0.9 used here the
    two estimate different gradients: test_at_gamma_below_1_return_and_reward_to_go_estimate_different_gradients),
    and b one of: none; the batch mean of Phi (003 §5.3.1; the code's, over steps, where the note averages R(tau) over
    episodes: test_the_mean_baseline_averages_over_steps_where_003_5_3_1_averages_over_episodes); V_phi(s_t)
    (002 §baselines); or the optimal baseline per parameter k (003 §5.3.4), b_k = sum_tau g_k h_k / sum_tau g_k^2 with
    g(tau) = sum_t grad log pi, h(tau) = sum_t grad log pi Phi_t (h = g R(tau) for Phi = R(tau): the note's formula;
    for the reward-to-go the code's generalisation:
    test_with_reward_to_go_the_codes_optimal_baseline_has_less_variance_than_003_5_3_4s).
    theta <- theta + alpha g by Adam; with b = V, V_phi is then fitted to R_hat."""
    episodes = [[i for i in range(len(d.ep)) if d.ep[i] == k] for k in range(int(d.ep.max()) + 1)]
    n_tau = len(episodes)
    obs, act, val, ret, R_tau, ep = [], [], [], [], [], []
    for k, steps in enumerate(episodes):
        rtg = [sum(hp.gamma ** (j2 - j) * d.rew[steps[j2]] for j2 in range(j, len(steps))) for j in range(len(steps))]
        for j, i in enumerate(steps):
            obs.append(d.obs[i]), act.append(d.act[i]), val.append(d.val[i])
            ret.append(rtg[j]), R_tau.append(rtg[0]), ep.append(k)
    obs, act, val, ret, R_tau = np.array(obs), np.array(act), np.array(val), np.array(ret), np.array(R_tau)
    N = len(obs)
    phi = R_tau if hp.phi == "return" else ret
    # grad log pi(a_i|s_i), one sample at a time
    z_old, _ = tw.dist(tw.theta, obs)
    grads = [tw.pi.backward(tw.head.dlogp(z_old[i], act[i])[None], tw.dist(tw.theta, obs[i:i + 1])[1])
             for i in range(N)]
    if hp.baseline == "optimal":
        g_tau = [sum(grads[i] for i in range(N) if ep[i] == k) for k in range(n_tau)]
        h_tau = [sum(grads[i] * phi[i] for i in range(N) if ep[i] == k) for k in range(n_tau)]
        P = len(tw.theta)
        base = np.zeros(P)
        for p in range(P):
            num = sum(g_tau[k][p] * h_tau[k][p] for k in range(n_tau))
            den = sum(g_tau[k][p] ** 2 for k in range(n_tau))
            base[p] = num / den if den > 0 else 0.0
        g = sum(h_tau[k] - base * g_tau[k] for k in range(n_tau)) / n_tau
    else:
        base = {"none": np.zeros(N), "mean": np.full(N, sum(phi) / N), "v": val}[hp.baseline]
        g = sum(grads[i] * (phi[i] - base[i]) for i in range(N)) / n_tau
    theta = tw.new_optimiser(len(tw.theta), tw.lr_pi).step(tw.theta, -g)  # ascent on J: descend -g
    phi_v, loss_v = ref_fit_value(tw, obs, ret, hp, np.random.default_rng(seed)) if hp.baseline == "v" \
        else (tw.phi, 0.0)
    # the 003 §7.1 pseudo-loss at theta_old, -1/N_tau sum_t log pi(a_t|s_t) Phi_t (Phi before the baseline)
    loss_pi = -sum(tw.head.log_prob(z_old[i], act[i]) * phi[i] for i in range(N)) / n_tau
    info = ref_diagnostics(tw, theta, obs, z_old, val, ret, loss_pi=loss_pi, loss_v=loss_v, episodes=n_tau)
    return theta, phi_v, info, dict(kept=N, grads=grads, phi=phi)


@pytest.mark.parametrize("baseline", ["none", "mean", "optimal", "v"])
@pytest.mark.parametrize("phi", ["return", "rtg"])
@pytest.mark.parametrize("head_name", HEADS)
def test_reinforce_update_equals_the_monte_carlo_gradient_on_whole_episodes(head_name, phi, baseline):
    hp = hyper(gamma=0.9, phi=phi, baseline=baseline, v_iters=2, v_minibatch=8)
    agent, tw = make_agent(head_name), Twin(head_name)
    d = make_episodes(agent)
    info = algos.update_reinforce(agent, d, hp, np.random.default_rng(5))
    theta, phi_v, ref_info, stats = ref_reinforce(tw, d, hp, seed=5)
    assert ref_info["episodes"] == 6 and stats["kept"] == sum(EPISODE_LENGTHS)
    assert_same_update(agent, info, theta, phi_v, ref_info)
    if baseline == "v":
        assert rel_err(phi_v, tw.phi) > 1e-3  # the critic was fitted


def test_reinforce_refuses_a_rollout_of_fixed_length_and_an_empty_batch():
    """Your own loop gets a clear error, not a silent estimate: a Batch (fixed T steps, whose tails are not whole
    episodes) is a TypeError, and Episodes without a single episode a ValueError; neither changes the agent."""
    agent = make_agent("categorical")
    theta, phi = agent.pi.theta, agent.v.theta.copy()
    with pytest.raises(TypeError, match="takes algos.Episodes"):
        algos.update_reinforce(agent, make_batch(agent), hyper(), np.random.default_rng(5))
    d = make_episodes(agent)
    empty = algos.Episodes(obs=d.obs[:0], act=d.act[:0], logp=d.logp[:0], val=d.val[:0], rew=d.rew[:0], ep=d.ep[:0])
    with pytest.raises(ValueError, match="at least one whole episode"):
        algos.update_reinforce(agent, empty, hyper(), np.random.default_rng(5))
    assert np.array_equal(agent.pi.theta, theta) and np.array_equal(agent.v.theta, phi)


# ---------------------------------------------------------------------------------------------------------------
# VPG and A2C
# ---------------------------------------------------------------------------------------------------------------

def ref_vpg(tw, b, hp, seed):
    """VPG, 000 §Vanilla Policy Gradient (VPG): g = 1/N sum_t grad log pi(a_t|s_t) A_t (+ c2 grad H(s_t), the
    entropy bonus) with GAE advantages, normalised if hp.norm_adv (000 does not:
    test_normalised_advantages_rescale_000s_gradient_and_subtract_a_batch_baseline); theta_{k+1} = theta_k + alpha g
    (Adam), then V_phi fitted to the lambda-return. loss_pi is the pseudo-loss -1/N sum_t log pi_old(a_t|s_t) A_t
    (003 §7.1)."""
    obs, act, logp_old, adv, ret, val = ref_actor_critic_inputs(b, hp)
    N = len(obs)
    A = ref_normalise(adv) if hp.norm_adv else adv
    z_old, hs = tw.dist(tw.theta, obs)
    dz = np.array([tw.head.dlogp(z_old[i], act[i]) * A[i] + hp.ent_coef * tw.head.dentropy(z_old[i])
                   for i in range(N)])
    g = tw.pi.backward(dz, hs) / N
    theta = tw.new_optimiser(len(tw.theta), tw.lr_pi).step(tw.theta, -g)
    phi, loss_v = ref_fit_value(tw, obs, ret, hp, np.random.default_rng(seed))
    loss_pi = -sum(logp_old[i] * A[i] for i in range(N)) / N
    return theta, phi, ref_diagnostics(tw, theta, obs, z_old, val, ret, loss_pi=loss_pi, loss_v=loss_v)


@pytest.mark.parametrize("norm_adv,ent_coef,frac", [(True, 0.0, None), (False, 0.05, 0.4)])
@pytest.mark.parametrize("head_name", HEADS)
def test_vpg_update_equals_one_ascent_step_on_the_gae_gradient_then_the_critic_regression(head_name, norm_adv,
                                                                                          ent_coef, frac):
    """frac given: the learning rates are annealed, alpha = lr * frac for the policy and for the critic."""
    hp = hyper(gamma=0.9, lam=0.8, norm_adv=norm_adv, ent_coef=ent_coef, v_iters=3, v_minibatch=8,
               anneal_lr=frac is not None)
    scale = 1.0 if frac is None else frac
    agent, tw = make_agent(head_name), Twin(head_name, lr_pi=0.02 * scale, lr_v=0.05 * scale)
    b = make_batch(agent)
    info = algos.update_vpg(agent, b, hp, np.random.default_rng(6), 1.0 if frac is None else frac)
    assert_same_update(agent, info, *ref_vpg(tw, b, hp, seed=6))


def ref_a2c(tw, b, hp):
    """A2C, 002 §actor-critic method: A_t = R_hat_t - V(s_t) with the n-step return R_hat_t (GAE with lam = 1), which
    bootstraps as Q^pi's r_t + gamma V(s_{t+1}), not 002's max form
    (test_002s_max_over_actions_gives_q_star_not_q_pi_which_a2c_uses);
    one step on the joint loss -1/N sum_t [log pi(a_t|s_t) A_t + c2 H(s_t)] + c1 1/2 1/N sum_t (V_phi(s_t) - R_hat_t)^2
    (the code's 1/2: test_the_value_loss_is_half_the_notes_mean_squared_error):
    its gradient [-g, dphi] clipped to global norm hp.max_grad_norm, then one optimiser on [theta, phi] with lr_pi."""
    assert hp.lam == 1.0
    obs, act, logp_old, val = rows(b.obs), rows(b.act), rows(b.logp), rows(b.val)
    ret = rows(ref_nstep_returns(b, hp.gamma))
    N = len(obs)
    A = ref_normalise(ret - val) if hp.norm_adv else ret - val
    z_old, hs = tw.dist(tw.theta, obs)
    dz = np.array([tw.head.dlogp(z_old[i], act[i]) * A[i] + hp.ent_coef * tw.head.dentropy(z_old[i])
                   for i in range(N)])
    g = tw.pi.backward(dz, hs) / N
    V, hv = tw.value(tw.phi, obs)
    dphi, _ = tw.v.backward(np.array([[hp.vf_coef * (V[i] - ret[i]) / N] for i in range(N)]), hv)
    grad = np.concatenate([-g, dphi])
    norm = math.sqrt(sum(x * x for x in grad))
    if hp.max_grad_norm > 0 and norm > hp.max_grad_norm:
        grad = grad * hp.max_grad_norm / norm
    params = tw.new_optimiser(len(grad), tw.lr_pi).step(np.concatenate([tw.theta, tw.phi]), grad)
    theta, phi = params[:len(tw.theta)], params[len(tw.theta):]
    info = ref_diagnostics(tw, theta, obs, z_old, val, ret, loss_pi=-sum(logp_old[i] * A[i] for i in range(N)) / N,
                           loss_v=0.5 * sum((V[i] - ret[i]) ** 2 for i in range(N)) / N)
    return theta, phi, info, dict(norm=norm)


@pytest.mark.parametrize("optimiser,norm_adv,ent_coef,max_grad_norm", [("rmsprop", False, 0.01, 0.1),
                                                                       ("adam", True, 0.0, 0.0)])
@pytest.mark.parametrize("head_name", HEADS)
def test_a2c_update_equals_one_clipped_joint_step_on_the_n_step_advantage(head_name, optimiser, norm_adv, ent_coef,
                                                                         max_grad_norm):
    hp = hyper(gamma=0.9, lam=1.0, norm_adv=norm_adv, ent_coef=ent_coef, max_grad_norm=max_grad_norm)
    agent, tw = make_agent(head_name, optimiser=optimiser), Twin(head_name, optimiser=optimiser)
    b = make_batch(agent)
    info = algos.update_a2c(agent, b, hp, np.random.default_rng(7))
    theta, phi, ref_info, stats = ref_a2c(tw, b, hp)
    if max_grad_norm:
        assert stats["norm"] > 2 * max_grad_norm  # the clip really clips
    assert_same_update(agent, info, theta, phi, ref_info)


# ---------------------------------------------------------------------------------------------------------------
# NPG and TRPO
# ---------------------------------------------------------------------------------------------------------------

def ref_fisher(tw, theta, obs):
    """The explicit Fisher matrix F = 1/N sum_i J_i^T M_i J_i (001 §Method 2: F = E[grad log pi grad log pi^T], in
    Gauss-Newton form), J_i = dz_i/dtheta (D, P) column by column from the network's jvp, M_i the head's metric."""
    z, hs = tw.dist(theta, obs)
    P = len(theta)
    J = np.stack([tw.pi.jvp(np.eye(P)[p], hs) for p in range(P)], axis=2)  # (N, D, P): J[i][:, p] = dz_i/dtheta_p
    return sum(J[i].T @ tw.head.fisher(z[i]) @ J[i] for i in range(len(obs))) / len(obs)


def ref_cg(A, b, iters, tol=1e-10):
    """Conjugate gradient for A x = b (000 §Proximal Policy Optimization: "solved using the conjugate gradient
    algorithm"), from x = 0, stopping after iters steps or once r^T r <= tol."""
    x, r = np.zeros(len(b)), b.copy()
    p, rr = r.copy(), r @ r
    for _ in range(iters):
        if rr <= tol:
            break
        alpha = rr / (p @ A @ p)
        x = x + alpha * p
        r = r - alpha * (A @ p)
        rr_new = r @ r
        p = r + rr_new / rr * p
        rr = rr_new
    return x


def ref_trpo(tw, b, hp, seed, search):
    """TRPO (000 §Proximal Policy Optimization): maximise L(theta) = 1/N sum_t r_t(theta) A_t (no gamma^t, unlike 001:
    test_the_trpo_surrogate_drops_001s_gamma_t_weights) subject to 1/N sum_t KL(pi_old || pi_theta)(s_t) <= delta
    (000's batch mean, where 001 bounds every state: test_trpo_bounds_the_batch_mean_kl_not_the_kl_at_every_state).
    g = 1/N sum_t grad log pi A_t; x solves (F + damping I) x = g by CG on the explicit F; the code's step
    sqrt(2 delta / x^T F x) x, where 001 §Method 2 writes sqrt(2 eps / g^T F^-1 g) F^-1 g
    (test_the_natural_gradient_step_is_001s_times_sqrt_gx_over_xFx_and_meets_the_kl_bound_exactly); then the
    backtracking line search:
    theta_j = theta_old + coef^j step for j = 0, 1, ..., the first with KL <= delta and L(theta_j) > L(theta_old),
    else theta_old. NPG (001 §Method 2) takes the full step. Then V_phi is fitted to the lambda-return."""
    obs, act, logp_old, adv, ret, val = ref_actor_critic_inputs(b, hp)
    N, P = len(obs), len(tw.theta)
    A = ref_normalise(adv) if hp.norm_adv else adv
    z_old, hs = tw.dist(tw.theta, obs)
    g = tw.pi.backward(np.array([tw.head.dlogp(z_old[i], act[i]) * A[i] for i in range(N)]), hs) / N
    F = ref_fisher(tw, tw.theta, obs)
    x = ref_cg(F + hp.cg_damping * np.eye(P), g, hp.cg_iters)
    step = math.sqrt(2 * hp.max_kl / (x @ F @ x)) * x

    def surrogate_and_kl(theta):  # L(theta) = 1/N sum_t pi_theta(a_t|s_t) / pi_old(a_t|s_t) A_t, and the mean KL
        z, _ = tw.dist(theta, obs)
        L = sum(math.exp(tw.head.log_prob(z[i], act[i]) - logp_old[i]) * A[i] for i in range(N)) / N
        return L, sum(tw.head.kl(z_old[i], z[i]) for i in range(N)) / N

    L_old, _ = surrogate_and_kl(tw.theta)
    theta, backtracks, tried = tw.theta + step, 0, []
    if search:
        theta, backtracks = tw.theta, hp.backtrack_iters  # if no step is accepted
        for j in range(hp.backtrack_iters):
            L, kl = surrogate_and_kl(tw.theta + hp.backtrack_coef ** j * step)
            tried.append((L > L_old, kl <= hp.max_kl))
            if kl <= hp.max_kl and L > L_old:
                theta, backtracks = tw.theta + hp.backtrack_coef ** j * step, j
                break
    L_new, _ = surrogate_and_kl(theta)
    phi, loss_v = ref_fit_value(tw, obs, ret, hp, np.random.default_rng(seed))
    info = ref_diagnostics(tw, theta, obs, z_old, val, ret, loss_pi=-L_new, loss_v=loss_v, backtracks=backtracks,
                           surr_gain=L_new - L_old)
    return theta, phi, info, dict(tried=tried, quad_kl=0.5 * step @ F @ step)


@pytest.mark.parametrize("head_name", HEADS)
def test_npg_update_equals_the_natural_gradient_step_on_the_explicit_fisher_matrix(head_name):
    hp = hyper(gamma=0.9, lam=0.8, max_kl=0.01, cg_iters=6, cg_damping=0.05, v_iters=2, v_minibatch=8)
    agent, tw = make_agent(head_name), Twin(head_name)
    b = make_batch(agent)
    info = algos.update_npg(agent, b, hp, np.random.default_rng(8))
    theta, phi, ref_info, stats = ref_trpo(tw, b, hp, seed=8, search=False)
    assert abs(stats["quad_kl"] - hp.max_kl) <= 1e-12  # 1/2 step^T F step = delta: the code's step, not 001's
    assert_same_update(agent, info, theta, phi, ref_info)


def overshooting_rewards(agent, b):
    """Rewards whose natural-gradient step overshoots delta: categorical, reward action 0 (its logit rises);
    Gaussian, reward actions near the mean (sigma shrinks)."""
    if isinstance(agent.pi.head, nets.Categorical):
        return (b.act == 0).astype(float)
    mu = agent.pi.dist(b.obs.reshape(T * E, OBS_DIM))[0][:, :agent.pi.head.A].reshape(b.act.shape)
    return -((b.act - mu) ** 2).sum(-1)


def spreading_rewards(agent, b):
    """The opposite: the step flattens the policy (categorical) or widens sigma (Gaussian), and undershoots delta."""
    return -overshooting_rewards(agent, b)


TRPO_CASES = {  # the true KL of the full step is below delta (j = 0), or above it (backtracking)
    "accepted-at-j0": (dict(max_kl=0.1, norm_adv=False, backtrack_coef=0.8), spreading_rewards),
    "backtracked": (dict(max_kl=0.3, norm_adv=True, backtrack_coef=0.9), None),
}


@pytest.mark.parametrize("case", TRPO_CASES)
@pytest.mark.parametrize("head_name", HEADS)
def test_trpo_update_equals_the_backtracking_line_search_of_the_notes(head_name, case):
    fields, rewards = TRPO_CASES[case]
    hp = hyper(gamma=0.9, lam=0.8, cg_iters=8, cg_damping=0.05, v_iters=2, v_minibatch=8, **fields)
    agent, tw = make_agent(head_name), Twin(head_name)
    b = make_batch(agent, rewards=rewards)
    info = algos.update_trpo(agent, b, hp, np.random.default_rng(9))
    theta, phi, ref_info, stats = ref_trpo(tw, b, hp, seed=9, search=True)
    if case == "accepted-at-j0":
        assert ref_info["backtracks"] == 0
    else:  # rejected for its KL, then accepted
        assert 1 <= ref_info["backtracks"] < hp.backtrack_iters and not stats["tried"][0][1], stats["tried"]
    assert_same_update(agent, info, theta, phi, ref_info)


# ---------------------------------------------------------------------------------------------------------------
# PPO-Clip and PPO-Penalty
# ---------------------------------------------------------------------------------------------------------------

def ref_ppo(tw, b, hp, seed, frac, objective, beta=0.0, stop_kl=0.0):
    """PPO (000 §Proximal Policy Optimization): hp.epochs passes over the batch in shuffled minibatches (the
    permutations drawn from an rng seeded as the update's), each one optimiser step with lr_pi on [theta, phi] for
    the minibatch loss 1/n sum_t [-obj_t - c2 H(s_t) + c1 1/2 lv_t], its gradient clipped to global norm
    hp.max_grad_norm. Per sample:
      clip:    obj_t = min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t),  r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t);
      penalty: obj_t = r_t A_t - beta KL(pi_old || pi_theta)(s_t)  (001 §Method 1, with KL(old || new) as PPO:
               test_kl_old_new_and_001s_kl_new_old_differ_at_a_finite_step_and_agree_to_second_order);
      lv_t = (V - R_hat)^2, or with clip_vloss max((V - R_hat)^2, (V_old + clip(V - V_old, -eps, eps) - R_hat)^2)
      (c1 1/2 lv_t: the code's 1/2, test_the_value_loss_is_half_the_notes_mean_squared_error).
    A_t is normalised per minibatch if hp.norm_adv; eps = hp.clip_eps, times frac if hp.anneal_clip. Early
    stopping (000 §Proximal Policy Optimization, Spinning Up): after an epoch, stop once the mean KL > 1.5 stop_kl
    (the code's check, once an epoch, not before every step:
    test_ppo_clip_checks_the_kl_early_stop_only_at_the_end_of_an_epoch)."""
    obs, act, logp_old, adv, ret, val_old = ref_actor_critic_inputs(b, hp)
    N, P = len(obs), len(tw.theta)
    eps = hp.clip_eps * frac if hp.anneal_clip else hp.clip_eps
    z_old, _ = tw.dist(tw.theta, obs)
    theta, phi = tw.theta, tw.phi
    opt = tw.new_optimiser(P + len(phi), tw.lr_pi)
    rng = np.random.default_rng(seed)
    stats = dict(norms=[], clipped=0, pessimistic=0, vclipped=0, vclipped_inside=0, entropy_part=0.0, epochs=0,
                 eps=eps)
    for epoch in range(hp.epochs):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.minibatch)):
            n = len(mb)
            A = ref_normalise(adv[mb]) if hp.norm_adv else adv[mb]
            z, hs = tw.dist(theta, obs[mb])
            V, hv = tw.value(phi, obs[mb])
            dz, dV = np.zeros((n, z.shape[1])), np.zeros((n, 1))
            for k, i in enumerate(mb):
                r = math.exp(tw.head.log_prob(z[k], act[i]) - logp_old[i])
                dr = r * tw.head.dlogp(z[k], act[i])  # d r_t / dz = r_t d log pi / dz
                if objective == "clip":
                    # d/dr of min(r A, clip(r) A): the min is r A, or clip(r) A, whose slope is A inside the range
                    # and 0 outside
                    if r * A[k] <= min(max(r, 1 - eps), 1 + eps) * A[k]:
                        dobj = A[k] * dr
                        stats["pessimistic"] += not (1 - eps <= r <= 1 + eps)
                    else:
                        dobj = A[k] * dr if 1 - eps < r < 1 + eps else 0.0 * dr
                        stats["clipped"] += 1
                else:
                    dobj = A[k] * dr - beta * tw.head.dkl(z_old[i], z[k])
                dz[k] = (-dobj - hp.ent_coef * tw.head.dentropy(z[k])) / n
                stats["entropy_part"] = max(stats["entropy_part"], np.abs(hp.ent_coef * tw.head.dentropy(z[k])).max())
                # d/dV of 1/2 lv_t
                dlv = V[k] - ret[i]
                if hp.clip_vloss and objective == "clip":  # PPO-Penalty does not read clip_vloss (used_by)
                    V_clip = val_old[i] + min(max(V[k] - val_old[i], -eps), eps)
                    if (V_clip - ret[i]) ** 2 > (V[k] - ret[i]) ** 2:  # the max is the clipped term
                        inside = -eps < V[k] - val_old[i] < eps  # then V_clip = V but for round-off
                        dlv = (V_clip - ret[i]) if inside else 0.0
                        stats["vclipped"] += 1
                        stats["vclipped_inside"] += inside
                dV[k, 0] = hp.vf_coef * dlv / n
            grad = np.concatenate([tw.pi.backward(dz, hs), tw.v.backward(dV, hv)[0]])
            norm = math.sqrt(sum(x * x for x in grad))
            stats["norms"].append(norm)
            if hp.max_grad_norm > 0 and norm > hp.max_grad_norm:
                grad = grad * hp.max_grad_norm / norm
            params = opt.step(np.concatenate([theta, phi]), grad)
            theta, phi = params[:P], params[P:]
        stats["epochs"] += 1
        if stop_kl > 0:
            z, _ = tw.dist(theta, obs)
            if sum(tw.head.kl(z_old[i], z[i]) for i in range(N)) / N > 1.5 * stop_kl:
                break
    # after the update, on the whole batch: the objective optimised (clip: and the fraction of ratios outside
    # [1-eps, 1+eps]; penalty: its own objective, with the beta of this update)
    z, _ = tw.dist(theta, obs)
    r = [math.exp(tw.head.log_prob(z[i], act[i]) - logp_old[i]) for i in range(N)]
    A = ref_normalise(adv) if hp.norm_adv else adv
    V, _ = tw.value(phi, obs)
    loss_v = 0.5 * sum((V[i] - ret[i]) ** 2 for i in range(N)) / N
    if objective == "clip":
        loss_pi = -sum(min(r[i] * A[i], min(max(r[i], 1 - eps), 1 + eps) * A[i]) for i in range(N)) / N
        info = ref_diagnostics(tw, theta, obs, z_old, val_old, ret, loss_pi=loss_pi, epochs=stats["epochs"],
                               loss_v=loss_v, clipfrac=sum(abs(r[i] - 1) > eps for i in range(N)) / N)
    else:
        loss_pi = -sum(r[i] * A[i] - beta * tw.head.kl(z_old[i], z[i]) for i in range(N)) / N
        info = ref_diagnostics(tw, theta, obs, z_old, val_old, ret, loss_pi=loss_pi, epochs=stats["epochs"],
                               loss_v=loss_v, beta=beta)
    stats["clipfrac_unannealed"] = sum(abs(r[i] - 1) > hp.clip_eps for i in range(N)) / N
    return theta, phi, info, stats


PPO_CASES = {
    # everything on: clipped value loss, entropy bonus, per-minibatch normalisation, eps and the learning rates
    # annealed (the update sets alpha = lr * frac for anneal_lr), a grad-norm clip that clips
    "all-features": dict(hp=dict(norm_adv=True, clip_vloss=True, ent_coef=0.02, anneal_clip=True, anneal_lr=True,
                                 max_grad_norm=0.3, epochs=3, minibatch=8), frac=0.5),
    # raw advantages, no grad clip, and early stopping on KL before hp.epochs
    # (the mean KL passes 1.5 d_targ after epoch 5 of 6 for the categorical head, after epoch 2 for the Gaussian one)
    "early-stop": dict(hp=dict(norm_adv=False, max_grad_norm=0.0, target_kl=0.025, epochs=6, minibatch=10), frac=1.0),
}


@pytest.mark.parametrize("case", PPO_CASES)
@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_clip_update_equals_the_per_sample_min_of_the_notes(head_name, case):
    hp = hyper(gamma=0.9, lam=0.8, **PPO_CASES[case]["hp"])
    frac = PPO_CASES[case]["frac"]
    lr_pi, lr_v = (0.02 * frac, 0.05 * frac) if hp.anneal_lr else (0.02, 0.05)
    agent, tw = make_agent(head_name), Twin(head_name, lr_pi=lr_pi, lr_v=lr_v)
    b = make_batch(agent)
    info = algos.update_ppo(agent, b, hp, np.random.default_rng(10), frac)
    theta, phi, ref_info, stats = ref_ppo(tw, b, hp, 10, frac, "clip", stop_kl=hp.target_kl)
    assert stats["clipped"] > 0  # the min took the clipped term outside the range: no gradient from that sample
    if case == "all-features":
        assert stats["pessimistic"] > 0  # and the unclipped term outside the range, where it is the smaller
        assert max(stats["norms"]) > hp.max_grad_norm  # the grad-norm clip clipped
        assert stats["vclipped"] - stats["vclipped_inside"] > 0  # the clipped value loss won somewhere
        assert stats["entropy_part"] > 1e-3
        assert stats["eps"] < hp.clip_eps and stats["clipfrac_unannealed"] != ref_info["clipfrac"]  # annealing mattered
    else:
        assert 1 < stats["epochs"] < hp.epochs  # stopped early, but not at once
    assert_same_update(agent, info, theta, phi, ref_info)


@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_clipped_value_loss_inside_the_clip_range_keeps_the_value_gradient(head_name):
    """With eps = 1e3 no clip can bind: max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2) = (V - R)^2, so
    clip_vloss must change nothing. 8 epochs move V far enough from V_old (the rollout's values) for the round-off."""
    hp = hyper(gamma=0.9, lam=0.8, epochs=8, minibatch=10, clip_eps=1e3, max_grad_norm=0.0, clip_vloss=True)
    agent, tw = make_agent(head_name), Twin(head_name)
    b = make_batch(agent)
    info = algos.update_ppo(agent, b, hp, np.random.default_rng(12))
    theta, phi, ref_info, stats = ref_ppo(tw, b, hp, 12, 1.0, "clip")
    if not (stats["vclipped_inside"] > 0 and stats["vclipped"] == stats["vclipped_inside"]):
        raise RuntimeError("the data no longer has a round-off tie inside the clip range, and no real clip")
    assert_same_update(agent, info, theta, phi, ref_info)


def ref_beta_rule(beta, kl, hp):
    """001 §Method 1: beta <- beta + alpha (KL - d_targ) (kept >= 0, as the code does and 001 does not say:
    test_the_additive_beta_rule_is_kept_at_0_where_001s_rule_goes_negative) for hp.beta_rule = 'additive'; the PPO
    paper's rule otherwise: beta * 2 if KL > 1.5 d_targ, beta / 2 if KL < d_targ / 1.5, else unchanged."""
    if hp.beta_rule == "additive":
        return max(0.0, beta + hp.beta_lr * (kl - hp.d_targ))
    if kl > 1.5 * hp.d_targ:
        return beta * 2
    if kl < hp.d_targ / 1.5:
        return beta / 2
    return beta


PENALTY_CASES = {  # name -> (Hyper fields, the beta carried by the agent from an earlier update, expected direction)
    "ppo-rule-kl-above-1.5-dtarg": (dict(beta_rule="ppo", d_targ=1e-4), None, "up"),
    "ppo-rule-kl-below-dtarg/1.5": (dict(beta_rule="ppo", d_targ=1.0), 0.3, "down"),
    "additive-kl-above-dtarg": (dict(beta_rule="additive", d_targ=1e-4, beta_lr=10.0), None, "up"),
    "additive-kl-below-dtarg": (dict(beta_rule="additive", d_targ=0.2, beta_lr=1.0), 0.4, "down"),
    "additive-kept-at-0": (dict(beta_rule="additive", d_targ=1.0, beta_lr=10.0), 0.4, "to 0"),
}


@pytest.mark.parametrize("case", PENALTY_CASES)
@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_penalty_update_and_its_beta_rule_equal_001_method_1(head_name, case):
    fields, beta0, direction = PENALTY_CASES[case]
    hp = hyper(gamma=0.9, lam=0.8, beta=0.7, epochs=2, minibatch=10, ent_coef=0.01,
                     max_grad_norm=0.5, **fields)
    agent, tw = make_agent(head_name), Twin(head_name)
    agent.beta = beta0  # None: a first update, which starts from hp.beta
    b = make_batch(agent)
    info = algos.update_ppo_penalty(agent, b, hp, np.random.default_rng(11))
    beta = hp.beta if beta0 is None else beta0
    theta, phi, ref_info, stats = ref_ppo(tw, b, hp, 11, 1.0, "penalty", beta=beta)
    new_beta = ref_beta_rule(beta, ref_info["kl"], hp)
    assert {"up": new_beta > beta, "down": 0 < new_beta < beta, "to 0": new_beta == 0}[direction]
    assert_same_update(agent, info, theta, phi, ref_info)
    assert rel_err(agent.beta, new_beta) <= REL_TOL


# ---------------------------------------------------------------------------------------------------------------
# Unit tests: the line search
# ---------------------------------------------------------------------------------------------------------------

def test_line_search_rejects_a_step_whose_kl_is_too_big():
    """KL = |theta|^2 and a surrogate that improves along the step: j = 0, 1 overshoot delta, j = 2 is accepted."""
    f = lambda theta: (float(theta.sum()), float(theta @ theta))  # noqa: E731
    theta_old, step = np.zeros(2), np.array([0.3, 0.4])  # |step|^2 = 0.25; 0.8^2 -> 0.16, 0.8^4 -> 0.1024
    theta, j = algos.line_search(f, theta_old, step, max_kl=0.11, coef=0.8, iters=10)
    assert j == 2 and np.array_equal(theta, theta_old + 0.8 ** 2 * step)


def test_line_search_rejects_a_step_whose_surrogate_does_not_improve():
    """KL = 0; L(theta) = -(theta - 0.3)^2 from theta_old = 0 along step 1: L(0.8^j) > L(0) only once 0.8^j < 0.6."""
    f = lambda theta: (float(-(theta[0] - 0.3) ** 2), 0.0)  # noqa: E731
    theta, j = algos.line_search(f, np.zeros(1), np.ones(1), max_kl=0.01, coef=0.8, iters=10)
    assert j == 3 and np.array_equal(theta, np.array([0.8 ** 3]))


def test_line_search_returns_theta_old_when_no_step_is_accepted():
    """A surrogate that is flat (equal is not an improvement) or worse everywhere: theta_old, with j = iters."""
    theta_old, step = np.array([0.5, -1.0]), np.array([1.0, -2.0])  # away from 0
    for f in (lambda theta: (1.0, 0.0), lambda theta: (-float(theta @ theta), 0.0)):
        theta, j = algos.line_search(f, theta_old, step, max_kl=0.01, coef=0.5, iters=7)
        assert j == 7 and np.array_equal(theta, theta_old)


@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_penalty_ppo_rule_keeps_beta_while_the_kl_is_within_a_factor_1_5_of_the_target(head_name):
    """The PPO paper's rule moves beta only once the KL leaves [d_targ / 1.5, 1.5 d_targ]. The KL of the update
    does not depend on d_targ (PPO-Penalty does not stop early), so measure it once, then put d_targ around it:
    just above KL / 1.5, at KL, and just below 1.5 KL."""
    fields = dict(beta_rule="ppo", epochs=2, minibatch=10, ent_coef=0.01)
    probe = make_agent(head_name)
    probe.beta = 0.3  # carried from an earlier update
    kl = algos.update_ppo_penalty(probe, make_batch(probe), hyper(d_targ=1.0, **fields),
                                  np.random.default_rng(11))["kl"]
    assert kl > 0
    for target in (kl / 1.45, kl, 1.45 * kl):
        agent = make_agent(head_name)
        agent.beta = 0.3
        info = algos.update_ppo_penalty(agent, make_batch(agent), hyper(d_targ=target, **fields),
                                        np.random.default_rng(11))
        assert rel_err(info["kl"], kl) <= REL_TOL and info["beta"] == 0.3
        assert agent.beta == 0.3, (target, kl)


# ---------------------------------------------------------------------------------------------------------------
# Where the code departs from the notes (docs/notes.md: one row per departure, naming the test here). Each test
# computes the note's version and the code's, and asserts the relation the row states.
# ---------------------------------------------------------------------------------------------------------------

FD_EPS = 1e-6   # central differences: truncation ~ eps^2, rounding ~ 1e-16 / eps
FD_TOL = 1e-7   # relative error allowed between a gradient and its central differences


class Recorder:
    """Stands in for an optimiser: keeps the gradient of every step and leaves the parameters where they are, so an
    update's gradient can be read off exactly (the updates descend, so the policy's grads[0] is -g)."""

    def __init__(self):
        self.lr, self.grads = 0.0, []

    def step(self, theta, grad, lr=None):
        self.grads.append(grad.copy())
        return theta.copy()


def record_steps(opt):
    """Wraps opt.step, so that the parameters after every step are kept, in order, in opt.taken."""
    step, opt.taken = opt.step, []

    def recorded(theta, grad, lr=None):
        opt.taken.append(step(theta, grad, lr).copy())
        return opt.taken[-1].copy()

    opt.step = recorded


def central_differences(f, x, eps=FD_EPS):
    """(f(x + eps e_k) - f(x - eps e_k)) / (2 eps) for every k."""
    E = np.eye(len(x))
    return np.array([(f(x + eps * E[k]) - f(x - eps * E[k])) / (2 * eps) for k in range(len(x))])


class Enumerated:
    """A task small enough to enumerate, for exact expectations: H = 3 steps, 3 actions, deterministic transitions.
    The state at step t is (t, a_{t-1}) (a_{-1} = 0), which the policy sees as a fixed random observation
    O[t, a_{t-1}]; the reward is R[t, a_{t-1}, a_t]. So an action changes the states and rewards after it; the 27
    action sequences are all the trajectories, and p_theta(tau) = prod_t pi_theta(a_t|s_t)."""
    H, A = 3, 3

    def __init__(self, seed=3):
        rng = np.random.default_rng(seed)
        self.O = rng.standard_normal((self.H, self.A, OBS_DIM))
        self.R = rng.standard_normal((self.H, self.A, self.A))
        self.paths = np.array(list(itertools.product(range(self.A), repeat=self.H)))  # (27, H) a_0 .. a_{H-1}
        self.prev = np.c_[np.zeros(len(self.paths), int), self.paths[:, :-1]]          # (27, H) a_{t-1}
        self.rew = self.R[np.arange(self.H), self.prev, self.paths]                      # (27, H) r_t

    def episode(self, k):
        """The trajectory of path k: obs (H, obs_dim), act (H,), rew (H,)."""
        return self.O[np.arange(self.H), self.prev[k]], self.paths[k], self.rew[k]

    def probs(self, pi):
        """p_theta(tau) of every path, (27,), from pi's softmax in each of the H * A states."""
        z, _ = pi.dist(self.O.reshape(-1, OBS_DIM))
        p = np.exp(z - z.max(1, keepdims=True))
        p = (p / p.sum(1, keepdims=True)).reshape(self.H, self.A, self.A)  # p[t, a_prev, a] = pi(a | (t, a_prev))
        return np.prod(p[np.arange(self.H), self.prev, self.paths], axis=1)

    def J(self, pi, gamma):
        """J_gamma(theta) = sum_tau p_theta(tau) sum_t gamma^t r_t, exactly."""
        return self.probs(pi) @ (self.rew @ gamma ** np.arange(self.H))

    def grad_J(self, pi, gamma):
        """grad J_gamma by central differences."""
        theta = pi.theta

        def J(th):
            pi.theta = th
            return self.J(pi, gamma)

        g = central_differences(J, theta)
        pi.theta = theta
        return g

    def expected_update_gradient(self, agent, hp):
        """E[g] = sum_tau p(tau) g(tau), g(tau) the gradient algos.update_reinforce ascends on the one episode tau."""
        agent.opt_pi = Recorder()
        for k in range(len(self.paths)):
            obs, act, rew = self.episode(k)
            z, _ = agent.pi.dist(obs)
            d = algos.Episodes(obs=obs, act=act, logp=agent.pi.head.log_prob(z, act), val=np.zeros(self.H), rew=rew,
                               ep=np.zeros(self.H, int))
            algos.update_reinforce(agent, d, hp, np.random.default_rng(0))
        return -sum(p * g for p, g in zip(self.probs(agent.pi), agent.opt_pi.grads))


def test_at_gamma_below_1_return_and_reward_to_go_estimate_different_gradients():
    """000 §Other Forms of the Policy Gradient: Phi_t = R(tau) and Phi_t = R_hat_t "lead to the same expected value",
    for the notes' undiscounted sums. At gamma < 1, R(tau) = sum_t gamma^t r_t discounts from t = 0 and R_hat_t from
    t: by causality E[sum_t grad log pi_t R(tau)] = E[sum_t gamma^t grad log pi_t R_hat_t] = grad J_gamma, while the
    reward-to-go drops the gamma^t (as every update on A_hat_t does). Exactly, on Enumerated, with the gradient
    update_reinforce ascends: at gamma = 1 both means are grad J; at gamma = 0.5 only R(tau)'s is grad J_gamma."""
    task, agent = Enumerated(), make_agent("categorical")
    assert abs(task.probs(agent.pi).sum() - 1) < 1e-12  # the 27 paths are every trajectory
    for gamma in (1.0, 0.5):
        grad_J = task.grad_J(agent.pi, gamma)
        mean_g = {phi: task.expected_update_gradient(agent, hyper(gamma=gamma, phi=phi, baseline="none"))
                  for phi in ("return", "rtg")}
        assert rel_err(mean_g["return"], grad_J) <= FD_TOL
        if gamma == 1.0:
            assert rel_err(mean_g["rtg"], grad_J) <= FD_TOL
        else:
            assert rel_err(mean_g["rtg"], grad_J) > 0.1, rel_err(mean_g["rtg"], grad_J)


def test_with_reward_to_go_the_codes_optimal_baseline_has_less_variance_than_003_5_3_4s():
    """003 §5.3.4 derives b = E[g(tau)^2 r(tau)] / E[g(tau)^2] for Phi = R(tau), g(tau) = sum_t grad log pi_t. With
    the reward-to-go the estimator is h - b g, h(tau) = sum_t grad log pi_t R_hat_t, and algos.pg_estimate takes, per
    parameter, b_k = E[g_k h_k] / E[g_k^2], the minimiser of Var[h_k - b_k g_k] (E[g] = 0). Exactly, on Enumerated
    (gamma = 1), for the reward-to-go the code's b has the smaller variance in every parameter, and both leave the
    mean alone. The code estimates its b from the batch: on the 27 paths as one batch, update_reinforce's gradient
    uses the sample b_k = sum g_k h_k / sum g_k^2, which for Phi = R(tau) (h = g R(tau)) is 003's
    sum g^2 R / sum g^2, and for the reward-to-go is not."""
    task, agent = Enumerated(), make_agent("categorical")
    pi, head = agent.pi, CategoricalRef()
    p, g, h, R = task.probs(pi), [], [], []
    for k in range(len(task.paths)):
        obs, act, rew = task.episode(k)
        z, hs = pi.dist(obs)
        dlogp = np.array([head.dlogp(z[t], act[t]) for t in range(task.H)])  # (H, A)
        rtg = np.cumsum(rew[::-1])[::-1]
        g.append(pi.backward(dlogp, hs))
        h.append(pi.backward(dlogp * rtg[:, None], hs))
        R.append(rtg[0])
    g, h, R = np.array(g), np.array(h), np.array(R)  # (27, P), (27, P), (27,)

    def E(x):  # the exact expectation over the 27 trajectories
        return np.tensordot(p, x, 1)

    assert np.max(np.abs(E(g))) < 1e-14  # E[grad log p(tau)] = 0: any constant b keeps the mean

    def var(h, b):  # per parameter: Var[h_k - b_k g_k] = E[(h_k - b_k g_k)^2] - E[h_k]^2
        return E((h - b * g) ** 2) - E(h) ** 2

    b_note = E(g ** 2 * R[:, None]) / E(g ** 2)
    b_code = E(g * h) / E(g ** 2)
    v_code, v_note = var(h, b_code), var(h, b_note)
    # Var is quadratic in b with its minimum at b_code: Var(b_note) - Var(b_code) = (b_note - b_code)^2 E[g^2] >= 0
    assert rel_err(v_note - v_code, (b_note - b_code) ** 2 * E(g ** 2)) <= 1e-8
    assert np.all(v_code <= v_note) and v_code.sum() < 0.99 * v_note.sum(), (v_code.sum(), v_note.sum())
    # the batch: update_reinforce's gradient is (sum h - b sum g) / N_tau with the code's sample b, which for
    # Phi = R(tau) (h = g R) is 003's sum g^2 R / sum g^2, and for the reward-to-go is not
    n_tau = len(task.paths)
    episodes = [task.episode(k) for k in range(n_tau)]
    obs, act = np.concatenate([e[0] for e in episodes]), np.concatenate([e[1] for e in episodes])
    d = algos.Episodes(obs=obs, act=act, logp=pi.head.log_prob(pi.dist(obs)[0], act), val=np.zeros(len(act)),
                       rew=np.concatenate([e[2] for e in episodes]), ep=np.repeat(np.arange(n_tau), task.H))
    b_note_batch = (g ** 2 * R[:, None]).sum(0) / (g ** 2).sum(0)
    for phi, h_phi in (("return", g * R[:, None]), ("rtg", h)):
        agent.opt_pi = Recorder()
        algos.update_reinforce(agent, d, hyper(gamma=1.0, phi=phi, baseline="optimal"), np.random.default_rng(0))
        g_code = -agent.opt_pi.grads[0]
        b_code_batch = (g * h_phi).sum(0) / (g ** 2).sum(0)
        assert rel_err(g_code, (h_phi.sum(0) - b_code_batch * g.sum(0)) / n_tau) <= REL_TOL
        note_err = rel_err(g_code, (h_phi.sum(0) - b_note_batch * g.sum(0)) / n_tau)
        assert note_err <= REL_TOL if phi == "return" else note_err > 1e-3, (phi, note_err)


@pytest.mark.parametrize("lengths", [EPISODE_LENGTHS, (3,) * 6], ids=["unequal-lengths", "equal-lengths"])
def test_the_mean_baseline_averages_over_steps_where_003_5_3_1_averages_over_episodes(lengths):
    """003 §5.3.1: b = 1/N sum_i r(tau_i), the mean over the N episodes. The code's 'mean' baseline is the mean of
    Phi_t over the batch's steps, which for Phi = R(tau) weighs each episode by its length. With the gradient
    update_reinforce ascends: it is the step mean's; it differs from the note's when the lengths differ, and is
    the note's when they are equal."""
    agent, head = make_agent("categorical"), CategoricalRef()
    d = make_episodes(agent, lengths=lengths)
    agent.opt_pi = Recorder()
    algos.update_reinforce(agent, d, hyper(gamma=0.9, phi="return", baseline="mean"), np.random.default_rng(5))
    g_code = -agent.opt_pi.grads[0]
    n_tau, N = len(lengths), len(d.ep)
    R = [sum(0.9 ** j * d.rew[i] for j, i in enumerate(np.flatnonzero(d.ep == k))) for k in range(n_tau)]  # R(tau)
    R_t = np.array([R[k] for k in d.ep])  # (N,) the R(tau) of each step's episode
    z, _ = agent.pi.dist(d.obs)
    scores = [agent.pi.backward(head.dlogp(z[i], d.act[i])[None], agent.pi.dist(d.obs[i:i + 1])[1]) for i in range(N)]

    def g(b):  # 1/N_tau sum_tau sum_t grad log pi(a_t|s_t) (R(tau) - b)
        return sum(scores[i] * (R_t[i] - b) for i in range(N)) / n_tau

    b_steps, b_episodes = sum(R_t) / N, sum(R) / n_tau
    assert rel_err(g_code, g(b_steps)) <= REL_TOL
    if len(set(lengths)) == 1:
        assert rel_err(g_code, g(b_episodes)) <= REL_TOL
    else:
        assert abs(b_steps - b_episodes) > 0.05 and rel_err(g_code, g(b_episodes)) > 0.01


def test_normalised_advantages_rescale_000s_gradient_and_subtract_a_batch_baseline():
    """000 §Vanilla Policy Gradient: g = 1/N sum_t grad log pi(a_t|s_t) A_hat_t. With norm_adv (on by default, as in
    Spinning Up, SB3 and CleanRL) the code uses (A_hat - mean) / (std + 1e-8), so its g is the note's minus
    mean(A_hat) times 1/N sum_t grad log pi_t, over std + 1e-8: a batch baseline and a step size that follows
    the advantages' scale. With the gradient update_vpg ascends, against the note's written out."""
    hp = hyper(gamma=0.9, lam=0.8, v_iters=0)
    agent, head = make_agent("categorical"), CategoricalRef()
    b = make_batch(agent)
    obs, act, _, adv, _, _ = ref_actor_critic_inputs(b, hp)
    N = len(obs)
    z, hs = agent.pi.dist(obs)
    g_note = agent.pi.backward(np.array([head.dlogp(z[i], act[i]) * adv[i] for i in range(N)]), hs) / N
    g_ones = agent.pi.backward(np.array([head.dlogp(z[i], act[i]) for i in range(N)]), hs) / N
    mean, std = sum(adv) / N, math.sqrt(ref_var(adv))
    agent.opt_pi = Recorder()
    algos.update_vpg(agent, b, hp, np.random.default_rng(6))
    g_code = -agent.opt_pi.grads[0]
    assert rel_err(g_code, (g_note - mean * g_ones) / (std + 1e-8)) <= REL_TOL
    assert rel_err(g_code, g_note) > 0.1


def test_the_critics_target_is_the_lambda_return_which_is_the_reward_to_go_only_at_lambda_1():
    """000 §Baselines in Policy Gradients regresses V_phi on the reward-to-go R_hat_t (bootstrapped where a rollout
    cuts an episode: Spinning Up's target). The code's target is the lambda-return A_hat_t + V(s_t) (algos.prepare,
    as SB3 and CleanRL): the discounted reward-to-go plus bootstrap at lam = 1, and something else below."""
    agent = make_agent("categorical")
    b = make_batch(agent)
    rtg = rows(ref_nstep_returns(b, 0.9))
    at_1 = algos.prepare(b, hyper(gamma=0.9, lam=1.0)).v_target
    at_08 = algos.prepare(b, hyper(gamma=0.9, lam=0.8)).v_target
    assert rel_err(at_1, rtg) <= REL_TOL
    assert rel_err(at_08, rows(ref_gae(b, 0.9, 0.8) + b.val)) <= REL_TOL and rel_err(at_08, rtg) > 0.05


def test_the_value_loss_is_half_the_notes_mean_squared_error():
    """000 §Baselines in Policy Gradients: phi minimises E[(V_phi(s_t) - R_hat_t)^2] (002's code takes the sum). The
    code's loss_v, and the gradient its critic steps on, are those of 1/2 mean (V - R_hat)^2: half the note's (its
    gradient by central differences here), in A2C's joint loss (c1 = vf_coef = 1) and in fit_value. So one c1
    weighs the critic half as much here as in SB3 or the PPO paper, which have no 1/2 (CleanRL has it)."""
    b = make_batch(make_agent("categorical"))
    obs, R_hat = rows(b.obs), rows(ref_nstep_returns(b, 0.9))  # the target at lam = 1
    probe = make_agent("categorical")

    def note_loss(phi):
        probe.v.theta[:] = phi
        return float(np.mean((probe.value(obs) - R_hat) ** 2))

    phi0 = probe.v.theta.copy()
    d_note, L_note = central_differences(note_loss, phi0), note_loss(phi0)
    updates = {"a2c": (algos.update_a2c, hyper(gamma=0.9, lam=1.0, vf_coef=1.0, max_grad_norm=0.0)),
               "fit_value": (algos.update_vpg, hyper(gamma=0.9, lam=1.0, v_iters=1, v_minibatch=len(obs)))}
    for name, (update, hp) in updates.items():
        agent = make_agent("categorical")
        agent.opt_v = Recorder()  # phi stays at phi0: fit_value's loss_v, taken after its step, is at phi0 too
        info = update(agent, b, hp, np.random.default_rng(7))
        assert len(agent.opt_v.grads) == 1 and rel_err(agent.opt_v.grads[0], 0.5 * d_note) <= FD_TOL, name
        assert rel_err(info["loss_v"], 0.5 * L_note) <= REL_TOL, name


def test_002s_max_over_actions_gives_q_star_not_q_pi_which_a2c_uses():
    """002 §actor-critic method writes Q^pi(s_t, a_t) = r_t + gamma max_a Q^pi(s_{t+1}, a) = r_t + gamma V^pi(s_{t+1}).
    The max form is Q*'s Bellman equation (000 §Bellman Equations); Q^pi's is r + gamma E[V^pi(s')], the second form,
    which the code's target takes (algos.prepare, A2C's n-step return, here with n = 1). Exactly, on a random
    3-state, 2-action MDP and a stochastic policy: the code's target, averaged over s', is Q^pi (solved as a linear
    system); 002's max form applied to Q^pi exceeds it; iterated, it converges to Q*, not Q^pi."""
    rng = np.random.default_rng(6)
    S, A, gamma = 3, 2, 0.9
    P = rng.random((S, A, S))
    P /= P.sum(2, keepdims=True)  # P[s, a, s'] = p(s'|s, a)
    r = rng.standard_normal((S, A))
    pi = rng.random((S, A))
    pi /= pi.sum(1, keepdims=True)
    # Q^pi(s, a) = r(s, a) + gamma sum_s' p(s'|s, a) sum_a' pi(a'|s') Q^pi(s', a'): linear in the S*A values
    P_pi = (P[:, :, :, None] * pi[None, None]).reshape(S * A, S * A)
    Q_pi = np.linalg.solve(np.eye(S * A) - gamma * P_pi, r.ravel()).reshape(S, A)
    V_pi = (pi * Q_pi).sum(1)
    # the code's target after one step from every (s, a, s'): a rollout of T = 1 step in S*A*S envs, V = V^pi
    s, a, s_next = (x.ravel() for x in np.meshgrid(range(S), range(A), range(S), indexing="ij"))
    n = len(s)
    b = algos.Batch(obs=np.zeros((1, n, OBS_DIM)), act=a[None], logp=np.zeros((1, n)), val=V_pi[s][None],
                    rew=r[s, a][None], terminated=np.zeros((1, n), bool), truncated=np.zeros((1, n), bool),
                    final_val=np.zeros((1, n)), last_val=V_pi[s_next])
    target = algos.prepare(b, hyper(gamma=gamma, lam=1.0)).v_target.reshape(S, A, S)  # r + gamma V^pi(s')
    assert rel_err((P * target).sum(2), Q_pi) <= 1e-12
    Q_max = r + gamma * P @ Q_pi.max(1)  # 002's right-hand side, at Q^pi
    assert np.all(Q_max >= Q_pi - 1e-12) and np.max(Q_max - Q_pi) > 0.05
    Q = np.zeros((S, A))
    for _ in range(400):  # 002's equation as a fixed-point iteration (value iteration): gamma^400 ~ 5e-19
        Q = r + gamma * P @ Q.max(1)
    assert rel_err(r + gamma * P @ Q.max(1), Q) <= 1e-12 and rel_err(Q, Q_pi) > 0.05  # Q*, not Q^pi


def test_003_2_5s_gaussian_score_is_half_the_true_one_which_the_code_computes():
    """003 §2.5: log pi = -1/2 ||f(s) - a||^2_Sigma + const, so grad_theta log pi = -1/2 Sigma^-1 (f(s) - a) df/dtheta.
    The 1/2 should have gone: d/df of -1/2 (f - a)^T Sigma^-1 (f - a) is -Sigma^-1 (f - a). nets.DiagGaussian.dlogp
    (u / sigma on the mean, u = (a - mu) / sigma) is right: carried to the mean's parameters by backprop, it matches
    central differences of log pi (the reference formula); the note's, carried the same way, is exactly half."""
    agent, ref = make_agent("gaussian"), GaussianRef()
    pi, n_net = agent.pi, agent.pi.net.theta.size  # the MLP's parameters: those of the mean f(s)
    rng = np.random.default_rng(5)
    obs = rng.standard_normal((4, OBS_DIM))
    z, hs = pi.dist(obs)
    a = pi.head.sample(z, rng)
    code = pi.backward(pi.head.dlogp(z, a), hs)[:n_net]  # sum over the 4 samples
    mu, var = z[:, :ref.A], np.exp(2 * z[:, ref.A:])
    note = pi.backward(np.concatenate([-0.5 * (mu - a) / var, np.zeros_like(mu)], 1), hs)[:n_net]
    theta = pi.theta

    def log_pi(w):  # sum_i log pi(a_i|s_i) as a function of the mean's parameters
        pi.theta = np.r_[w, theta[n_net:]]
        z_w, _ = pi.dist(obs)
        return sum(ref.log_prob(z_w[i], a[i]) for i in range(len(obs)))

    fd = central_differences(log_pi, theta[:n_net])
    assert rel_err(code, fd) <= FD_TOL
    assert rel_err(note, 0.5 * code) <= 1e-13 and rel_err(note, fd) > 0.4


@pytest.mark.parametrize("head_name", HEADS)
def test_kl_old_new_and_001s_kl_new_old_differ_at_a_finite_step_and_agree_to_second_order(head_name):
    """001 §Method 1 penalises KL(pi_new || pi_old); the code (head.kl(z_old, z): PPO-Penalty, TRPO's line search, the
    diagnostics), the PPO paper and 000 §Proximal Policy Optimization use KL(pi_old || pi_new). Both are
    1/2 dz^T M dz + O(|dz|^3) (001 §Method 2), so their ratio -> 1 as the step dz shrinks, linearly in its size; at a
    finite step they differ, and so do the penalty objectives. The note's direction: the reference kl, swapped."""
    head, ref = HEADS[head_name](), REF_HEADS[head_name]()
    rng = np.random.default_rng(4)
    z_old, dz = rng.standard_normal((4, head.D)), rng.standard_normal((4, head.D))
    quad = np.array([0.5 * dz[i] @ ref.fisher(z_old[i]) @ dz[i] for i in range(4)])
    dev = []
    for step in (1.0, 1e-1, 1e-2, 1e-3):
        z = z_old + step * dz
        old_new = np.array([ref.kl(z_old[i], z[i]) for i in range(4)])
        new_old = np.array([ref.kl(z[i], z_old[i]) for i in range(4)])
        assert rel_err(head.kl(z_old, z), old_new) <= 1e-9
        dev.append(np.max(np.abs(new_old / old_new - 1)))
        if step == 1e-3:
            assert rel_err(old_new, step ** 2 * quad) < 1e-2 and rel_err(new_old, step ** 2 * quad) < 1e-2
    assert dev[0] > 0.05 and all(later < 0.2 * earlier for earlier, later in zip(dev, dev[1:])) and dev[-1] < 1e-2, dev
    # PPO-Penalty's objective L = 1/n sum_t [r_t A_t - beta KL(s_t)], at the finite step
    z = z_old + dz
    act = head.sample(z_old, rng)
    logp_old, A, beta = head.log_prob(z_old, act), rng.standard_normal(4), 0.7
    L, _ = algos.ppo_penalty_objective(head, z, z_old, act, logp_old, A, beta)
    surr = np.mean(np.exp(head.log_prob(z, act) - logp_old) * A)
    L_old_new = surr - beta * np.mean([ref.kl(z_old[i], z[i]) for i in range(4)])
    L_new_old = surr - beta * np.mean([ref.kl(z[i], z_old[i]) for i in range(4)])
    assert rel_err(L, L_old_new) <= 1e-12 and abs(L - L_new_old) > 1e-2


def test_the_additive_beta_rule_is_kept_at_0_where_001s_rule_goes_negative():
    """001 §Method 1: beta <- beta + alpha (KL - eps), with nothing to stop beta < 0, where the penalty would reward
    moving away from pi_old. algos.next_beta keeps beta >= 0: 0 where the note's rule goes negative, the note's
    value elsewhere."""
    hp = hyper(beta_rule="additive", d_targ=0.05, beta_lr=10.0)
    for beta, kl in ((0.3, 0.01), (0.3, 0.04), (0.3, 0.2)):
        note = beta + hp.beta_lr * (kl - hp.d_targ)
        assert algos.next_beta(beta, kl, hp) == (0.0 if note < 0 else note)
    assert 0.3 + hp.beta_lr * (0.01 - hp.d_targ) < 0  # the first case is one where the note's beta goes below 0


@pytest.mark.parametrize("head_name", HEADS)
def test_the_natural_gradient_step_is_001s_times_sqrt_gx_over_xFx_and_meets_the_kl_bound_exactly(head_name):
    """001 §Method 2: theta <- theta + sqrt(2 eps / g^T F^-1 g) F^-1 g. With x ~ (F + damping I)^-1 g from CG, 001's
    g^T F^-1 g becomes g^T x (as in Spinning Up); the code takes x^T F x with the undamped F, so that
    1/2 step^T F step = delta exactly. CG's iterates have g^T x = x^T (F + damping I) x >= x^T F x, so the code's
    step is the note's times sqrt(g^T x / x^T F x) >= 1, in the same direction. The note's step from the explicit F."""
    hp = hyper(gamma=0.9, lam=0.8, max_kl=0.01, cg_iters=6, cg_damping=0.05, v_iters=0)
    agent, tw = make_agent(head_name), Twin(head_name)
    b = make_batch(agent)
    obs, act, _, adv, _, _ = ref_actor_critic_inputs(b, hp)
    A, N, P = ref_normalise(adv), len(obs), len(tw.theta)
    z_old, hs = tw.dist(tw.theta, obs)
    g = tw.pi.backward(np.array([tw.head.dlogp(z_old[i], act[i]) * A[i] for i in range(N)]), hs) / N
    F = ref_fisher(tw, tw.theta, obs)
    x = ref_cg(F + hp.cg_damping * np.eye(P), g, hp.cg_iters)
    note_step = math.sqrt(2 * hp.max_kl / (g @ x)) * x
    algos.update_npg(agent, b, hp, np.random.default_rng(8))
    code_step = agent.pi.theta - tw.theta
    assert abs(g @ x - x @ (F + hp.cg_damping * np.eye(P)) @ x) <= 1e-10 * (g @ x)
    ratio = math.sqrt((g @ x) / (x @ F @ x))
    assert ratio > 1.01 and rel_err(code_step, ratio * note_step) <= 1e-9
    assert abs(0.5 * code_step @ F @ code_step - hp.max_kl) <= 1e-12
    assert 0.5 * note_step @ F @ note_step < hp.max_kl / ratio ** 2 * (1 + 1e-9)


@pytest.mark.parametrize("head_name", HEADS)
def test_trpo_bounds_the_batch_mean_kl_not_the_kl_at_every_state(head_name):
    """001 §Optimization With Constraints bounds KL(pi_1 || pi_0)(s_t) <= eps at every state s_t; TRPO (000 §Proximal
    Policy Optimization, the TRPO paper) bounds the batch mean of KL(pi_old || pi_new). The step the line search
    accepts (after backtracking: the bound binds) meets the mean bound, and breaks the note's per-state bound, in
    either direction, at some state."""
    fields, rewards = TRPO_CASES["backtracked"]
    hp = hyper(gamma=0.9, lam=0.8, cg_iters=8, cg_damping=0.05, v_iters=0, **fields)
    agent, ref = make_agent(head_name), REF_HEADS[head_name]()
    b = make_batch(agent, rewards=rewards)
    obs = rows(b.obs)
    z_old, _ = agent.pi.dist(obs)
    info = algos.update_trpo(agent, b, hp, np.random.default_rng(9))
    z, _ = agent.pi.dist(obs)
    old_new = [ref.kl(z_old[i], z[i]) for i in range(len(obs))]
    new_old = [ref.kl(z[i], z_old[i]) for i in range(len(obs))]
    assert info["backtracks"] >= 1 and sum(old_new) / len(obs) <= hp.max_kl
    assert max(old_new) > 2 * hp.max_kl and max(new_old) > 2 * hp.max_kl


def test_the_trpo_surrogate_drops_001s_gamma_t_weights():
    """001 §Policy Gradient as Policy Iteration: J(theta_1) - J(theta_0) ~ sum_t gamma^t E[A(s_t, a_t) r_t(theta_1)];
    000 §Proximal Policy Optimization, TRPO, PPO and the code average r_t A_hat_t over the batch without gamma^t: the
    reward-to-go form of test_at_gamma_below_1_return_and_reward_to_go_estimate_different_gradients (000 §VPG:
    discounted advantages "despite otherwise using the finite-horizon undiscounted policy gradient formula"). The
    code's surrogate gradient at theta_old is the unweighted mean; 001's, t counted from each episode's start (each
    env of make_batch starts from a reset), differs from it."""
    hp = hyper(gamma=0.9, lam=0.8)
    agent, ref = make_agent("categorical"), CategoricalRef()
    b = make_batch(agent)
    obs, act, logp_old, adv, _, _ = ref_actor_critic_inputs(b, hp)
    steps_in = np.zeros((T, E), int)  # t: the steps since the start of the episode
    for e in range(E):
        for k in range(1, T):
            steps_in[k, e] = 0 if b.terminated[k - 1, e] or b.truncated[k - 1, e] else steps_in[k - 1, e] + 1
    t = rows(steps_in)
    N = len(obs)
    z_old, hs = agent.pi.dist(obs)
    _, dL_dz = algos.trpo_surrogate(agent.pi.head, z_old, act, logp_old, adv)
    g_code = agent.pi.backward(dL_dz, hs)
    dlogp = [ref.dlogp(z_old[i], act[i]) for i in range(N)]
    g_mean = agent.pi.backward(np.array([dlogp[i] * adv[i] for i in range(N)]), hs) / N
    g_001 = agent.pi.backward(np.array([0.9 ** t[i] * dlogp[i] * adv[i] for i in range(N)]), hs) / N
    assert rel_err(g_code, g_mean) <= REL_TOL and rel_err(g_code, g_001) > 0.1


@pytest.mark.parametrize("head_name", HEADS)
def test_ppo_clip_checks_the_kl_early_stop_only_at_the_end_of_an_epoch(head_name):
    """000 §Proximal Policy Optimization (Spinning Up): once the mean KL passes a threshold (1.5 target_kl), stop
    taking gradient steps. Spinning Up's steps are whole-batch and it checks before each (SB3 checks every
    minibatch); the code checks after each epoch of minibatch steps. A probe run records the mean KL(old || new)
    after every step; the threshold is put between steps 3 and 4, the first of epoch 2's three minibatches: a check
    after every step would stop after 4 steps, the code stops after 6 (two whole epochs), past the threshold."""
    fields = dict(gamma=0.9, lam=0.8, norm_adv=False, max_grad_norm=0.0, epochs=6, minibatch=10)  # 3 minibatches
    probe, ref = make_agent(head_name), REF_HEADS[head_name]()
    b = make_batch(probe)
    obs = rows(b.obs)
    z_old, _ = probe.pi.dist(obs)
    record_steps(probe.opt_pi)
    algos.update_ppo(probe, b, hyper(**fields), np.random.default_rng(10))  # target_kl = 0: all 18 steps

    def mean_kl(theta):
        probe.pi.theta = theta
        z, _ = probe.pi.dist(obs)
        return sum(ref.kl(z_old[i], z[i]) for i in range(len(obs))) / len(obs)

    kl = [mean_kl(theta) for theta in probe.opt_pi.taken]
    assert len(kl) == 18 and max(kl[:3]) < kl[3], kl
    threshold = (max(kl[:3]) + kl[3]) / 2
    per_step_stop = next(k + 1 for k in range(len(kl)) if kl[k] > threshold)
    agent = make_agent(head_name)
    record_steps(agent.opt_pi)
    info = algos.update_ppo(agent, make_batch(agent), hyper(target_kl=threshold / 1.5, **fields),
                            np.random.default_rng(10))
    assert per_step_stop == 4 and len(agent.opt_pi.taken) == 6 == 3 * info["epochs"]
    assert rel_err(agent.pi.theta, probe.opt_pi.taken[5]) <= REL_TOL and info["kl"] > threshold
