"""algos.py -- the policy-gradient algorithms of the notes, one update function each.

Read next to the lecture notes in shared/seeds (000 Spinning-Up intro, 001 PG as policy iteration,
002 PG and A2C, 003 CS285-style notes). Every equation cites "NNN §section"; `grep -n "003 §5.3.4" *.py` finds it.

Glossary (code name -> symbol in the notes)
  obs, act      s_t, a_t                      logp        log pi_theta(a_t|s_t)
  rew           r_t = R(s_t, a_t, s_{t+1})    ret         R_hat_t, reward-to-go / critic target
  R_tau         R(tau), the whole return      phi         Phi_t, the weight on grad log pi (000 §Other Forms)
  val           V_phi(s_t)                    adv         A_hat_t, advantage estimate
  gamma, lam    gamma, lambda (GAE)           td          r_t + gamma V(s_{t+1}) - V(s_t), the TD error
  ratio         r_t(theta) = pi_theta / pi_theta_old           clip_eps    epsilon (PPO-Clip)
  max_kl        delta, the KL bound (TRPO/NPG; 001 §Method 2 calls it epsilon)
  target_kl     d_targ, the KL target (PPO-Penalty; 001 §Method 1's epsilon)      beta, beta_lr   beta, alpha (001 §Method 1)
  g             the policy (surrogate) gradient; in pg_estimate g_tau = 003's g(tau) = sum_t grad log pi(a_t|s_t)
  x             ~ (F + damping I)^{-1} g after cg_iters steps of conjugate gradient
  F v           fisher_vector_product(...): the Fisher matrix times a vector, never F itself
  z             the head's distribution parameters (logits, or mean and log-std)
  n_tau         N_tau, the number of whole episodes (003's N)
R_hat_t and R(tau) are discounted by gamma; the notes' undiscounted sums are --gamma 1.
`b` is the Batch in an update, the baseline in pg_estimate, and the right-hand side in cg.
Shapes: rollouts arrive as (T, E) = (steps per env, envs); `flat` turns them into (N,) with N = E*T, env-major,
so each env's episodes are contiguous. dz (N, D) are gradients (or, in F v, tangents) w.r.t. z.

Every update has the signature update(agent, b, hp, rng, frac) -> info dict, and lives in UPDATES.
frac is the fraction of training left (1 -> 0), for annealing. This file imports only numpy, numba and nets.
"""
from dataclasses import dataclass, field

import numpy as np
from numba import njit

import nets


def _hp(default, sym, doc, group="common"):
    return field(default=default, metadata={"sym": sym, "help": doc, "group": group})


@dataclass
class Hyper:
    """Algorithm hyperparameters. Every field is a command-line flag of minipg.py (--clip-eps, ...)."""
    gamma: float = _hp(0.99, "γ", "discount factor, in (0, 1]; typical 0.95-0.999")
    lam: float = _hp(0.95, "λ", "GAE parameter, in [0, 1]: 0 = TD error, 1 = discounted return - V; typical 0.9-1")
    lr_pi: float = _hp(3e-4, "α", "policy learning rate (Adam/RMSprop), > 0; typical 1e-4-1e-2")
    lr_v: float = _hp(1e-3, "α_φ", "critic V_φ learning rate for VPG, NPG, TRPO, REINFORCE, > 0 (PPO and A2C step "
                      "actor and critic on one joint loss with lr_pi); typical 1e-4-1e-2")
    anneal_lr: bool = _hp(False, "", "anneal learning rates linearly to 0 over training")
    optimiser: str = _hp("adam", "", "adam | rmsprop (A2C's classic choice)")
    adam_eps: float = _hp(1e-5, "ε_adam", "optimiser epsilon; typical 1e-8-1e-5")
    max_grad_norm: float = _hp(0.5, "", "global gradient-norm clip for PPO/A2C (0 = off); typical 0.5")
    ent_coef: float = _hp(0.0, "c₂", "entropy bonus coefficient; typical 0-0.01")
    norm_adv: bool = _hp(True, "", "normalise advantages per (mini)batch to mean 0, std 1")
    v_iters: int = _hp(20, "", "critic epochs per batch (VPG, NPG, TRPO, REINFORCE with V); typical 5-80")
    v_minibatch: int = _hp(128, "", "critic minibatch size for those epochs")
    # PPO / PPO-Penalty
    epochs: int = _hp(10, "K", "epochs over each batch; typical 3-30", "ppo")
    minibatch: int = _hp(64, "M", "minibatch size; typical 32-4096", "ppo")
    clip_eps: float = _hp(0.2, "ε", "PPO clip range for r_t(θ), > 0; typical 0.1-0.3", "ppo")
    anneal_clip: bool = _hp(False, "", "anneal ε linearly to 0 over training", "ppo")
    clip_vloss: bool = _hp(False, "", "clip the value loss around the old values, with the same ε", "ppo")
    vf_coef: float = _hp(0.5, "c₁", "value-loss coefficient (PPO, A2C)", "ppo")
    target_kl: float = _hp(0.0, "d_targ", "PPO: stop the epochs once mean KL > 1.5 d_targ (0 = never); "
                           "PPO-Penalty: the KL that β steers to", "ppo")
    beta: float = _hp(1.0, "β₀", "initial KL penalty coefficient", "ppo-penalty")
    beta_rule: str = _hp("ppo", "", "ppo: β×2 if KL > 1.5 d_targ, β/2 if KL < d_targ/1.5 | additive: β += α_β (KL - d_targ) (001 §Method 1)", "ppo-penalty")
    beta_lr: float = _hp(10.0, "α_β", "step size of the additive β rule", "ppo-penalty")
    # NPG / TRPO
    max_kl: float = _hp(0.01, "δ", "KL bound of the natural-gradient step, > 0; typical 0.001-0.05", "trpo")
    cg_iters: int = _hp(10, "", "conjugate-gradient iterations", "trpo")
    cg_damping: float = _hp(0.1, "", "damping added to F inside CG: (F + damping I) x = g", "trpo")
    backtrack_coef: float = _hp(0.8, "", "line-search step shrink factor, in (0, 1)", "trpo")
    backtrack_iters: int = _hp(10, "", "line-search steps before giving up (TRPO)", "trpo")
    # REINFORCE
    phi: str = _hp("rtg", "Φ_t", "return: R(τ) | rtg: reward-to-go R̂_t", "reinforce")
    baseline: str = _hp("v", "b", "none | mean | optimal (003 §5.3.4, per parameter) | v (learned V_φ)", "reinforce")


@dataclass
class Batch:
    """One rollout of E envs for T steps: what every update reads. minipg.collect fills it; so can your own loop."""
    obs: np.ndarray         # (T, E, obs_dim) s_t
    act: np.ndarray         # (T, E) int, or (T, E, A) float (unclipped, as sampled)
    logp: np.ndarray        # (T, E) log pi_theta_old(a_t|s_t)
    val: np.ndarray         # (T, E) V_phi(s_t)
    rew: np.ndarray         # (T, E) r_t
    terminated: np.ndarray  # (T, E) bool: the episode ended for good at t
    truncated: np.ndarray   # (T, E) bool: a time limit cut the episode at t
    final_val: np.ndarray   # (T, E) V_phi(final obs) where truncated, else 0
    last_val: np.ndarray    # (E,) V_phi(s_T), to bootstrap the cut at the end of the rollout


# ---------------------------------------------------------------------------------------------------------------
# Advantage kernels (numba). Each reads like the loop in the notes; .py_func is the reference.
# A terminated step has no future; a truncated step (time limit) bootstraps from V(final obs) = final_val;
# the cut at the end of the rollout bootstraps from last_val = V(s_T).
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def discount_cumsum(rew, done, gamma):
    """Reward-to-go R_hat_t = sum_{t' >= t} gamma^(t'-t) r_t' within each episode
    (000 §Don't Let the Past Distract You; 003 §5.2, causality: an action cannot change the rewards before it).
    rew, done: (T, E); done ends an episode (no bootstrap). Returns (T, E)."""
    T, E = rew.shape
    ret = np.zeros_like(rew)
    running = np.zeros(E)  # (E,) the return from t on; time outside, envs inside: rows are contiguous in memory
    for t in range(T - 1, -1, -1):
        for e in range(E):
            if done[t, e]:
                running[e] = 0.0
            running[e] = rew[t, e] + gamma * running[e]
            ret[t, e] = running[e]
    return ret


@njit(cache=True)
def gae(rew, val, terminated, truncated, final_val, last_val, gamma, lam):
    """GAE-lambda (000 §Other Forms of the Policy Gradient; Schulman et al. 2016):
        td_t = r_t + gamma V(s_{t+1}) - V(s_t),    A_hat_t = sum_l (gamma lam)^l td_{t+l}   (within an episode)
    rew, val, terminated, truncated, final_val: (T, E); last_val: (E,). Returns adv (T, E)."""
    T, E = rew.shape
    adv = np.zeros_like(rew)
    running = np.zeros(E)  # (E,) A_hat_{t+1}, carried backwards in time
    for t in range(T - 1, -1, -1):
        for e in range(E):
            next_val = last_val[e] if t == T - 1 else val[t + 1, e]
            if terminated[t, e]:
                next_val = 0.0              # the episode is over: nothing after it
            elif truncated[t, e]:
                next_val = final_val[t, e]  # cut by a time limit: the future still counts
            if terminated[t, e] or truncated[t, e]:
                running[e] = 0.0            # the next row belongs to a new episode
            td = rew[t, e] + gamma * next_val - val[t, e]
            running[e] = td + gamma * lam * running[e]
            adv[t, e] = running[e]
    return adv


@njit(cache=True)
def trajectory_sums(G, ep, phi):
    """Per episode: g(tau) = sum_t grad log pi(a_t|s_t) and h(tau) = sum_t grad log pi(a_t|s_t) Phi_t (003 §5.3.4),
    in one pass over G (N, P), the per-sample gradients; ep (N,) episode index 0..n-1, phi (N,). Returns (n, P) each."""
    N, P = G.shape
    g_tau, h_tau = np.zeros((ep[-1] + 1, P), G.dtype), np.zeros((ep[-1] + 1, P), G.dtype)
    for t in range(N):
        k = ep[t]
        for p in range(P):
            g_tau[k, p] += G[t, p]
            h_tau[k, p] += G[t, p] * phi[t]
    return g_tau, h_tau


def flat(x):
    """(T, E, ...) -> (E*T, ...), env-major so that each env's episodes stay contiguous."""
    return x.swapaxes(0, 1).reshape(-1, *x.shape[2:])


def whole_episodes(done):
    """(T, E) -> (T, E) bool: the steps that belong to an episode that ended inside this rollout
    (the rollout started from reset). The unfinished tail of each env is dropped."""
    last = np.where(done.any(0), done.shape[0] - 1 - np.argmax(done[::-1], 0), -1)  # (E,)
    return np.arange(done.shape[0])[:, None] <= last[None, :]


def explained_variance(val, ret):
    """1 - Var[ret - V] / Var[ret]: 1 is a perfect critic, 0 no better than a constant."""
    var = _var(ret)
    return float("nan") if var == 0 else float(1.0 - _var(ret - val) / var)


def _var(x):
    d = x - x.mean()
    return d @ d / len(d)  # np.var, without its overhead on small arrays


# ---------------------------------------------------------------------------------------------------------------
# Small pure numerical pieces
# ---------------------------------------------------------------------------------------------------------------

def cg(f_Ax, b, iters=10, tol=1e-10):
    """Conjugate gradient for A x = b with A symmetric positive definite, given only v -> A v: how TRPO solves
    F x = g without forming F (000 §Proximal Policy Optimization: "solved using the conjugate gradient
    algorithm"). Stops after `iters` steps or once the squared residual r^T r <= tol (absolute, as in
    modular_rl / Spinning Up). Returns x."""
    x = np.zeros_like(b)
    r = b.copy()  # residual b - A x with x = 0
    p = r.copy()
    rr = r @ r
    for _ in range(iters):
        if rr <= tol:
            break
        Ap = f_Ax(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(pi, z, hs, v, damping=0.0):
    """F v + damping v, with F = 1/N sum_i J_i^T M_i J_i the Fisher matrix of the policy at the batch
    (001 §Method 2: F = E[grad log pi grad log pi^T]; Gauss-Newton form, M = the head's Fisher metric).
    J v by forward mode (pi.jvp), J^T u by backprop (pi.backward): no matrix is ever built."""
    return pi.backward(pi.head.fisher(z, pi.jvp(v, hs)), hs) / len(z) + damping * v


def line_search(f, theta_old, step, max_kl, coef=0.8, iters=10):
    """Backtracking line search (TRPO, 000 §Proximal Policy Optimization: the step must satisfy the KL
    constraint, mean KL <= delta): try theta_old + coef^j step, j = 0, 1, ...; accept the first with
    mean KL <= max_kl and an improved surrogate. f(theta) -> (surrogate, kl). Returns (theta, j) and
    (theta_old, iters) when no step is accepted."""
    surr_old, _ = f(theta_old)
    for j in range(iters):
        theta = theta_old + coef ** j * step
        surr, kl = f(theta)
        if kl <= max_kl and surr > surr_old:
            return theta, j
    return theta_old, iters


def fit_value(agent, obs, ret, hp, rng):
    """Critic regression, 002 §actor-critic method: phi <- argmin_phi E[(V_phi(s_t) - R_hat_t)^2], by
    hp.v_iters epochs of Adam on minibatches. Returns the loss 1/2 mean (V - R_hat)^2 after fitting."""
    N = len(obs)
    for _ in range(hp.v_iters):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.v_minibatch)):
            out, hs = agent.v.forward(obs[mb])
            dphi, _ = agent.v.backward((out - ret[mb, None]) / len(mb), hs)
            agent.v.theta[:] = agent.opt_v.step(agent.v.theta, dphi)
    return float(0.5 * np.mean((agent.value(obs) - ret) ** 2))


def normalise(adv):
    """(A - mean A) / (std A + 1e-8). (np.mean and np.std cost several times this on a minibatch: bench/steps.md.)"""
    d = adv - adv.sum() / len(adv)
    return d / (np.sqrt(d @ d / len(d)) + 1e-8)


def policy_gradient(pi, z, hs, act, A, ent_coef=0.0):
    """g = 1/N sum_t grad log pi(a_t|s_t) A_t (+ c2 grad H, the entropy bonus), 000 §Other Forms of the Policy
    Gradient: weight the head's d log pi/dz by A_t and backprop once (003 §7.1's pseudo-loss, without autograd)."""
    dz = pi.head.dlogp(z, act) * A[:, None]  # (N, D)
    if ent_coef:
        dz += ent_coef * pi.head.dentropy(z)
    return pi.backward(dz, hs) / len(A)


def prepare(b, hp):
    """The shared input of every actor-critic update: flat (N,) arrays of obs, act, logp_old, GAE advantages,
    critic targets ret = adv + V (the lambda-return), and the old values."""
    adv = gae(b.rew, b.val, b.terminated, b.truncated, b.final_val, b.last_val, hp.gamma, hp.lam)  # (T, E)
    return flat(b.obs), flat(b.act), flat(b.logp), flat(adv).astype(b.obs.dtype), flat(adv + b.val).astype(b.obs.dtype), flat(b.val)


def diagnostics(agent, obs, act, z_old, val_old, ret, **info):
    """The fixed diagnostics, measured on the whole batch after the update: mean KL(pi_old || pi_new),
    entropy of pi_new, and how much of the return's variance the *old* critic explained."""
    z, _ = agent.pi.dist(obs)
    head = agent.pi.head
    return dict(info, kl=float(head.kl(z_old, z).mean()), entropy=float(head.entropy(z).mean()),
                explained_var=explained_variance(val_old, ret))


# ---------------------------------------------------------------------------------------------------------------
# REINFORCE (000 §Deriving the Simplest Policy Gradient, 003 §3): whole episodes, Phi_t = R(tau) or R_hat_t,
# minus one of four baselines. pg_estimate is also what the variance lab measures.
# ---------------------------------------------------------------------------------------------------------------

def pg_estimate(pi, obs, act, phi, ep, baseline, val=None):
    """The Monte Carlo policy gradient g = 1/N_tau sum_tau sum_t grad log pi(a_t|s_t) (Phi_t - b),
    000 §Other Forms of the Policy Gradient, 002 §basic policy gradient, 003 §5.3. It rests on the
    log-derivative trick grad p_theta(tau) = p_theta(tau) grad log p_theta(tau)
    (003 §2.2, 000 §Deriving the Simplest Policy Gradient), and any fixed b(s_t) leaves its mean unchanged since
    E[grad log pi] = 0 (000 §Baselines in Policy Gradients, 002 §baselines, 003 §5.3.2). Baselines estimated
    from the same batch ('mean', 'optimal') add a bias of order 1/N_tau. Without autograd, the weighted
    "pseudo-loss" of 003 §7.1, sum_t log pi(a_t|s_t) Q_t, becomes: weight d log pi/dz by Q_t, then backprop.
    obs (N, obs_dim), phi (N,), ep (N,) episode index (sorted, 0..N_tau-1), val (N,) = V_phi(s_t) for
    baseline 'v'. Returns g (P,)."""
    z, hs = pi.dist(obs)
    dlogp = pi.head.dlogp(z, act)                     # (N, D)
    n_tau = int(ep[-1]) + 1  # a Python int: a numpy int64 would turn float32 into float64
    if baseline == "optimal":
        # 003 §5.3.4 optimal baseline, per parameter k: b_k = E[g_k(tau)^2 r(tau)] / E[g_k(tau)^2],
        # g(tau) = sum_t grad log pi(a_t|s_t). With reward-to-go the estimator is h_k - b_k g_k with
        # h_k(tau) = sum_t grad_k log pi(a_t|s_t) Phi_t; since E[g_k] = 0 its variance is least at
        # b_k = E[g_k h_k] / E[g_k^2], the note's formula when Phi_t = R(tau) (h = g r). The note's b is a
        # constant; here it comes from the same batch (bias O(1/N_tau)).
        G = nets.per_sample_grads(pi, hs, dlogp)      # (N, P)
        g_tau, h_tau = trajectory_sums(G, ep, phi)    # (N_tau, P) each
        gh, gg = (g_tau * h_tau).sum(0), (g_tau * g_tau).sum(0)  # (P,)
        b = np.divide(gh, gg, out=np.zeros_like(gh), where=gg > 0)  # a parameter with no gradient gets b = 0
        return (h_tau.sum(0) - b * g_tau.sum(0)) / n_tau
    if baseline == "mean":
        phi = phi - phi.mean()   # 003 §5.3.1: b = the batch mean (over steps; the note averages over episodes)
    elif baseline == "v":
        phi = phi - val                               # 002 §baselines: b(s_t) = V_phi(s_t)
    return pi.backward(dlogp * phi[:, None], hs) / n_tau


def update_reinforce(agent, b, hp, rng, frac=1.0):
    """REINFORCE (003 §3): with Phi_t = R(tau) (hp.phi='return') or the reward-to-go (hp.phi='rtg'), minus a
    baseline, on whole episodes."""
    done = b.terminated | b.truncated      # the time limit is the horizon T of the notes: no bootstrap
    keep = flat(whole_episodes(done))      # (N,) only episodes that started and ended in this batch
    if not keep.any():
        return dict(loss_pi=0.0, loss_v=0.0, kl=0.0, entropy=float("nan"), explained_var=float("nan"), episodes=0)
    obs, act, val = flat(b.obs)[keep], flat(b.act)[keep], flat(b.val)[keep]
    ep = np.cumsum(np.r_[0, flat(done)[keep][:-1]])                       # (N,) episode index
    # 000 §Don't Let the Past Distract You: R_hat_t = sum_{t'=t}^T gamma^(t'-t) r_t'; R(tau) = R_hat_0 of its
    # episode (the notes have gamma = 1: --gamma 1)
    ret = flat(discount_cumsum(b.rew, done, hp.gamma))[keep]              # (N,)
    R_tau = ret[np.r_[0, np.flatnonzero(np.diff(ep)) + 1]][ep]            # (N,)
    phi = R_tau if hp.phi == "return" else ret
    z_old, _ = agent.pi.dist(obs)
    g = pg_estimate(agent.pi, obs, act, phi, ep, hp.baseline, val)
    # 000 §Deriving the Simplest Policy Gradient: theta_{k+1} = theta_k + alpha g  (the optimiser descends -g)
    agent.pi.theta = agent.opt_pi.step(agent.pi.theta, -g)
    loss_v = fit_value(agent, obs, ret, hp, rng) if hp.baseline == "v" else 0.0
    # loss_pi: the 003 §7.1 pseudo-loss -1/N_tau sum_t log pi(a_t|s_t) Phi_t at theta_old (its value means little)
    loss_pi = -float(np.sum(agent.pi.head.log_prob(z_old, act) * phi) / (ep[-1] + 1))
    return diagnostics(agent, obs, act, z_old, val, ret, loss_pi=loss_pi, loss_v=loss_v, episodes=int(ep[-1] + 1))


update_reinforce.whole_episodes = True  # minipg.py resets the envs before each batch


# ---------------------------------------------------------------------------------------------------------------
# VPG and A2C: one policy-gradient step on A_hat_t
# ---------------------------------------------------------------------------------------------------------------

def update_vpg(agent, b, hp, rng, frac=1.0):
    """Vanilla policy gradient, 000 §Vanilla Policy Gradient (VPG): GAE-lambda advantages, one ascent step,
    then V_phi fitted by regression over hp.v_iters epochs."""
    obs, act, logp_old, adv, ret, val = prepare(b, hp)
    pi = agent.pi
    A = normalise(adv) if hp.norm_adv else adv
    z_old, hs = pi.dist(obs)
    # 000 §Vanilla Policy Gradient (VPG): g = 1/N sum_t grad log pi(a_t|s_t) A_hat_t  (+ c2 grad H, the entropy bonus)
    g = policy_gradient(pi, z_old, hs, act, A, hp.ent_coef)
    # 000 §Vanilla Policy Gradient (VPG): theta_{k+1} = theta_k + alpha g
    pi.theta = agent.opt_pi.step(pi.theta, -g)
    loss_v = fit_value(agent, obs, ret, hp, rng)
    return diagnostics(agent, obs, act, z_old, val, ret, loss_v=loss_v,
                       loss_pi=-float(np.mean(logp_old * A)))  # the pseudo-loss at theta_old (003 §7.1)


def update_a2c(agent, b, hp, rng, frac=1.0):
    """Advantage actor-critic, 002 §actor-critic method: n-step rollouts (T = n) from E parallel envs;
    A_hat_t = sum_{l<n} gamma^l r_{t+l} + gamma^(n-t) V(s_T) - V(s_t) (GAE, with lam = 1 in A2C's defaults);
    one step for the actor on sum_t grad log pi A_hat_t and one for the critic on (V_phi(s_t) - R_hat_t)^2."""
    obs, act, logp_old, adv, ret, val = prepare(b, hp)
    pi, N = agent.pi, len(obs)
    A = normalise(adv) if hp.norm_adv else adv
    z_old, hs = pi.dist(obs)
    # 002 §actor-critic method: g_hat = 1/|D| sum_t grad log pi(a_t|s_t) (Q(s_t,a_t) - V(s_t))
    g = policy_gradient(pi, z_old, hs, act, A, hp.ent_coef)
    out, hv = agent.v.forward(obs)
    # critic: minimise c1 * 1/2 mean (V_phi(s_t) - R_hat_t)^2
    dphi, _ = agent.v.backward(hp.vf_coef * (out - ret[:, None]) / N, hv)
    grad, _ = nets.clip_grad_norm(np.concatenate([-g, dphi]), hp.max_grad_norm)  # one global norm, as in A2C
    pi.theta = agent.opt_pi.step(pi.theta, grad[:pi.n_params])
    agent.v.theta[:] = agent.opt_v.step(agent.v.theta, grad[pi.n_params:], lr=agent.opt_pi.lr)  # one joint loss
    return diagnostics(agent, obs, act, z_old, val, ret, loss_pi=-float(np.mean(logp_old * A)),
                       loss_v=float(0.5 * np.mean((out[:, 0] - ret) ** 2)))


# ---------------------------------------------------------------------------------------------------------------
# Natural gradient and TRPO: one code path; NPG is TRPO without the line search
# ---------------------------------------------------------------------------------------------------------------

def update_trpo(agent, b, hp, rng, frac=1.0, search=True):
    """TRPO (000 §Proximal Policy Optimization, the TRPO part): maximise the surrogate E[r_t(theta) A_hat_t]
    subject to mean KL(pi_old || pi_theta) <= delta, by the natural-gradient step and a backtracking line search."""
    obs, act, logp_old, adv, ret, val = prepare(b, hp)
    pi = agent.pi
    A = normalise(adv) if hp.norm_adv else adv
    theta_old = pi.theta
    z_old, hs = pi.dist(obs)
    # 000 §Proximal Policy Optimization: g = grad of the surrogate at theta_old = 1/N sum_t grad log pi A_hat_t
    # (the ratio is 1 there)
    g = policy_gradient(pi, z_old, hs, act, A)
    # 001 §Method 2: KL ~ 1/2 dtheta^T F dtheta; x = F^{-1} g by CG on F v products. F is singular (for logits,
    # (diag p - p p^T) 1 = 0), so CG solves (F + damping I) x = g: the note's direction as damping -> 0.
    # 001 bounds KL(pi_1 || pi_0) at every s_t; TRPO bounds the batch mean of KL(pi_old || pi_new) (the same to
    # second order), and drops the note's gamma^t weights.
    x = cg(lambda v: fisher_vector_product(pi, z_old, hs, v, hp.cg_damping), g, hp.cg_iters)
    # 001 §Method 2: theta <- theta + sqrt(2 eps / g^T F^{-1} g) F^{-1} g  (001's eps is delta = max_kl here).
    # With x for F^{-1} g and x^T F x for g^T F^{-1} g (undamped F), the step has 1/2 dtheta^T F dtheta = delta exactly.
    step = np.sqrt(2 * hp.max_kl / (x @ fisher_vector_product(pi, z_old, hs, x) + 1e-12)) * x

    def surrogate_and_kl(theta):
        # 003 §6 first-order (per-decision) importance weight: L(theta) = 1/N sum_t r_t(theta) A_hat_t
        pi.theta = theta
        z, _ = pi.dist(obs)
        ratio = np.exp(pi.head.log_prob(z, act) - logp_old)
        return float(np.mean(ratio * A)), float(pi.head.kl(z_old, z).mean())

    surr_old, _ = surrogate_and_kl(theta_old)
    theta, backtracks = (line_search(surrogate_and_kl, theta_old, step, hp.max_kl, hp.backtrack_coef,
                                     hp.backtrack_iters) if search else (theta_old + step, 0))
    surr_new, _ = surrogate_and_kl(theta)  # leaves pi at theta
    loss_v = fit_value(agent, obs, ret, hp, rng)
    return diagnostics(agent, obs, act, z_old, val, ret, loss_pi=-surr_new, loss_v=loss_v,
                       backtracks=backtracks, surr_gain=surr_new - surr_old)


def update_npg(agent, b, hp, rng, frac=1.0):
    """Natural policy gradient, 001 §Method 2: the TRPO step without the line search."""
    return update_trpo(agent, b, hp, rng, frac, search=False)


# ---------------------------------------------------------------------------------------------------------------
# PPO-Clip and PPO-Penalty: epochs of shuffled minibatches; they differ only in the policy objective
# ---------------------------------------------------------------------------------------------------------------

def dz_clip(head, z, z_old, act, logp_old, A, hp, clip_eps, beta):
    """Gradient w.r.t. z of the PPO-Clip loss  -1/n sum_t min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)
    (000 §Proximal Policy Optimization). r_t = exp(logp - logp_old) is 003 §6's per-decision importance
    weight. d r_t / dz = r_t dlogp; the min passes it on only where the unclipped term is the smaller one."""
    ratio = np.exp(head.log_prob(z, act) - logp_old)                      # (n,)
    unclipped = ratio * A <= np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * A
    return -(unclipped * ratio * A)[:, None] * head.dlogp(z, act) / len(A)


def dz_penalty(head, z, z_old, act, logp_old, A, hp, clip_eps, beta):
    """Gradient w.r.t. z of the PPO-Penalty loss  -1/n sum_t [r_t A_t - beta KL(pi_old || pi)(s_t)]
    (000 §Proximal Policy Optimization, PPO-Penalty; 001 §Method 1: J~ = E[A pi/pi_old] - beta KL). 001 writes
    KL(pi_new || pi_old); we use KL(pi_old || pi_new), as the PPO paper does: equal to second order."""
    ratio = np.exp(head.log_prob(z, act) - logp_old)
    return (-(ratio * A)[:, None] * head.dlogp(z, act) + beta * head.dkl(z_old, z)) / len(A)


def ppo_epochs(agent, b, hp, rng, frac, dz_objective, beta=0.0, stop_kl=0.0):
    """The shared PPO loop: hp.epochs passes of shuffled minibatches, each one Adam step on
    policy loss - c2 entropy + c1 value loss, with one global gradient-norm clip. Returns diagnostics."""
    obs, act, logp_old, adv, ret, val_old = prepare(b, hp)
    pi, head, N = agent.pi, agent.pi.head, len(obs)
    clip_eps = hp.clip_eps * (frac if hp.anneal_clip else 1.0)
    z_old, _ = pi.dist(obs)
    epochs_run = 0
    for epoch in range(hp.epochs):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.minibatch)):
            z, hs = pi.dist(obs[mb])
            A = normalise(adv[mb]) if hp.norm_adv else adv[mb]
            dz = dz_objective(head, z, z_old[mb], act[mb], logp_old[mb], A, hp, clip_eps, beta)
            if hp.ent_coef:
                dz -= hp.ent_coef * head.dentropy(z) / len(mb)            # entropy bonus c2 H
            v, hv = agent.v.forward(obs[mb])
            dv = v[:, 0] - ret[mb]                                        # d/dV of 1/2 (V - R_hat)^2
            if hp.clip_vloss:  # max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, -eps, eps)
                v_clip = val_old[mb] + np.clip(v[:, 0] - val_old[mb], -clip_eps, clip_eps)
                inside = np.abs(v[:, 0] - val_old[mb]) < clip_eps  # there d V_clip / dV = 1, outside 0
                dv = np.where((v_clip - ret[mb]) ** 2 > dv ** 2, (v_clip - ret[mb]) * inside, dv)  # d/dV of the larger
            dphi, _ = agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)
            grad, _ = nets.clip_grad_norm(np.concatenate([pi.backward(dz, hs), dphi]), hp.max_grad_norm)
            pi.theta = agent.opt_pi.step(pi.theta, grad[:pi.n_params])
            agent.v.theta[:] = agent.opt_v.step(agent.v.theta, grad[pi.n_params:], lr=agent.opt_pi.lr)  # joint loss
        epochs_run += 1
        # Spinning Up's early stopping (000 §Proximal Policy Optimization): stop once mean KL passes 1.5 d_targ
        if stop_kl > 0 and head.kl(z_old, pi.dist(obs)[0]).mean() > 1.5 * stop_kl:
            break
    z, _ = pi.dist(obs)
    ratio = np.exp(head.log_prob(z, act) - logp_old)
    A = normalise(adv) if hp.norm_adv else adv
    loss_pi = -np.mean(np.minimum(ratio * A, np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * A))
    return diagnostics(agent, obs, act, z_old, val_old, ret, loss_pi=float(loss_pi), epochs=epochs_run,
                       loss_v=float(0.5 * np.mean((agent.value(obs) - ret) ** 2)),
                       clipfrac=float(np.mean(np.abs(ratio - 1) > clip_eps)))


def update_ppo(agent, b, hp, rng, frac=1.0):
    """PPO-Clip (000 §Proximal Policy Optimization): maximise E_t[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)]."""
    return ppo_epochs(agent, b, hp, rng, frac, dz_clip, stop_kl=hp.target_kl)


def update_ppo_penalty(agent, b, hp, rng, frac=1.0):
    """PPO-Penalty: maximise E_t[r_t A_t] - beta KL, then adapt beta to the measured KL (000, 001 §Method 1)."""
    if getattr(agent, "beta", None) is None:
        agent.beta = hp.beta
    info = ppo_epochs(agent, b, hp, rng, frac, dz_penalty, beta=agent.beta)
    info["beta"] = agent.beta
    kl, target = info["kl"], hp.target_kl
    if hp.beta_rule == "additive":
        # 001 §Method 1: beta <- beta + alpha (KL - eps)
        agent.beta = max(0.0, agent.beta + hp.beta_lr * (kl - target))
    elif kl > 1.5 * target:  # the PPO paper's rule (Schulman et al. 2017, §4)
        agent.beta *= 2.0
    elif kl < target / 1.5:
        agent.beta /= 2.0
    return info


UPDATES = {
    "reinforce": update_reinforce,
    "vpg": update_vpg,
    "a2c": update_a2c,
    "npg": update_npg,
    "trpo": update_trpo,
    "ppo": update_ppo,
    "ppo-penalty": update_ppo_penalty,
}
