"""algos.py -- the policy-gradient algorithms of the notes, one update function each.

Read next to the four lecture notes (000 Spinning-Up intro, 001 PG as policy iteration, 002 PG and A2C,
003 CS285-style notes; README.md says where to get them). Every equation cites "NNN §section";
`grep -n "003 §5.3.4" *.py` finds it. Where the code departs from a note, the line says so, and
docs/notes.md lists every departure with the test that asserts it.

Glossary (code name -> symbol in the notes)
  obs, act      s_t, a_t                      logp        log pi_theta(a_t|s_t); logp_old at theta_old
  rew           r_t = R(s_t, a_t, s_{t+1})    rtg         R_hat_t = sum_{t'>=t} gamma^(t'-t) r_t', reward-to-go
  R_tau         R(tau), the whole return      phi         Phi_t, the weight on grad log pi (000 §Other Forms)
  b             the baseline b(s_t)           val         V_phi(s_t), the critic (its parameters: agent.v.theta)
  adv           A_hat_t, advantage (GAE)      v_target    A_hat_t + V_phi(s_t), the lambda-return: the critic's target
  gamma, lam    gamma, lambda (GAE)           td          r_t + gamma V(s_{t+1}) - V(s_t), the TD error
  ratio         r_t(theta) = pi_theta / pi_theta_old      clip_eps    epsilon (PPO-Clip)
  L, dL_dz      a policy objective and its gradient w.r.t. z (the head's distribution parameters)
  max_kl        delta, the KL bound (TRPO/NPG; 001 §Method 2 calls it epsilon)
  target_kl     PPO-Clip's early stop: the epochs end once mean KL > 1.5 target_kl (000 §PPO, Spinning Up)
  d_targ        PPO-Penalty's KL target (001 §Method 1's epsilon);  beta, beta_lr: beta, alpha (001 §Method 1)
  g             the policy (surrogate) gradient; in pg_estimate g_tau = 003's g(tau) = sum_t grad log pi(a_t|s_t)
  x             ~ (F + damping I)^{-1} g after cg_iters steps of conjugate gradient;  rhs: CG's right-hand side
  fvp           F v: fisher_vector_product(...), the Fisher matrix times a vector, never F itself
  grad_v        the gradient of the critic's loss w.r.t. its parameters phi
  n_tau         N_tau, the number of whole episodes (003's N)
R_hat_t and R(tau) are discounted by gamma; the notes' undiscounted sums are --gamma 1.
Shapes: rollouts arrive as (T, E) = (steps per env, envs); `flat` turns them into (N,) with N = E*T, env-major,
so each env's episodes are contiguous. dL_dz (N, D) are gradients (or, in F v, tangents) w.r.t. z.

Every update has the signature update(agent, batch, hp, rng, frac) -> info dict, and lives in UPDATES; BATCHES
says which batch each reads: an algos.Batch of E*T steps (a time-limit cut bootstraps from V), or, for
REINFORCE, algos.Episodes, whole episodes from reset. frac is the fraction of training left (1 -> 0), for
annealing. make_agent builds the agent a Hyper describes. This file imports only numpy, numba and nets.
"""
from dataclasses import dataclass, field

import numpy as np
from numba import njit

import nets

ALL = ("reinforce", "vpg", "a2c", "npg", "trpo", "ppo", "ppo-penalty")
PPOS = ("ppo", "ppo-penalty")
FITS_V = ("reinforce", "vpg", "npg", "trpo")  # a critic fitted by its own regression (fit_value)
GAE = ("vpg", "a2c", "npg", "trpo", "ppo", "ppo-penalty")


def _hp(default, sym, doc, used_by=ALL, range=None):
    return field(default=default, metadata={"sym": sym, "help": doc, "used_by": used_by, "range": range})


@dataclass
class Hyper:
    """Algorithm hyperparameters: everything the updates (and make_agent) read, and only that. Every field is a
    command-line flag of minipg.py (--clip-eps, ...); `used_by` names the algorithms that read it."""
    gamma: float = _hp(0.99, "γ", "discount factor; typical 0.95-0.999", range="(0, 1]")
    lam: float = _hp(0.95, "λ", "GAE parameter: 0 = TD error, 1 = discounted return - V; typical 0.9-1", GAE, "[0, 1]")
    lr_pi: float = _hp(3e-4, "α", "policy learning rate (Adam/RMSprop); PPO and A2C step the critic with it too, "
                       "on one joint loss; typical 1e-4-1e-2", ("reinforce", "vpg", "a2c", "ppo", "ppo-penalty"), "> 0")
    lr_v: float = _hp(1e-3, "α_φ", "critic V_φ learning rate; typical 1e-4-1e-2", FITS_V, "> 0")
    anneal_lr: bool = _hp(False, "", "anneal learning rates linearly to 0 over training (by frac)")
    optimiser: str = _hp("adam", "", "adam | rmsprop (A2C's classic choice)")
    adam_eps: float = _hp(1e-5, "ε_adam", "optimiser epsilon; typical 1e-8-1e-5", range="> 0")
    max_grad_norm: float = _hp(0.5, "", "global gradient-norm clip (0 = off); typical 0.5", ("a2c", *PPOS), ">= 0")
    ent_coef: float = _hp(0.0, "c₂", "entropy bonus coefficient; typical 0-0.01", ("vpg", "a2c", *PPOS), ">= 0")
    norm_adv: bool = _hp(True, "", "normalise advantages per (mini)batch to mean 0, std 1", GAE)
    v_iters: int = _hp(20, "", "critic epochs per batch; typical 5-80", FITS_V, ">= 0")
    v_minibatch: int = _hp(128, "", "critic minibatch size for those epochs", FITS_V, ">= 1")
    # PPO / PPO-Penalty
    epochs: int = _hp(10, "K", "epochs over each batch; typical 3-30", PPOS, ">= 1")
    minibatch: int = _hp(64, "M", "minibatch size; typical 32-4096", PPOS, ">= 1")
    clip_eps: float = _hp(0.2, "ε", "PPO clip range for r_t(θ); typical 0.1-0.3", ("ppo",), "> 0")
    anneal_clip: bool = _hp(False, "", "anneal ε linearly to 0 over training", ("ppo",))
    clip_vloss: bool = _hp(False, "", "clip the value loss around the old values, with the same ε", ("ppo",))
    vf_coef: float = _hp(0.5, "c₁", "weight of the value loss ½(V - V_target)² in the joint loss", ("a2c", *PPOS), ">= 0")
    target_kl: float = _hp(0.0, "", "stop the epochs once mean KL > 1.5 target_kl (0 = never)", ("ppo",), ">= 0")
    d_targ: float = _hp(0.01, "d_targ", "the KL that β steers to (001 §Method 1's ε)", ("ppo-penalty",), "> 0")
    beta: float = _hp(1.0, "β₀", "initial KL penalty coefficient", ("ppo-penalty",), ">= 0")
    beta_rule: str = _hp("ppo", "", "ppo: β×2 if KL > 1.5 d_targ, β/2 if KL < d_targ/1.5 | additive: "
                         "β += α_β (KL - d_targ) (001 §Method 1)", ("ppo-penalty",))
    beta_lr: float = _hp(10.0, "α_β", "step size of the additive β rule", ("ppo-penalty",), "> 0")
    # NPG / TRPO
    max_kl: float = _hp(0.01, "δ", "KL bound of the natural-gradient step; typical 0.001-0.05", ("npg", "trpo"), "> 0")
    cg_iters: int = _hp(10, "", "conjugate-gradient iterations", ("npg", "trpo"), ">= 1")
    cg_damping: float = _hp(0.1, "", "damping added to F inside CG: (F + damping I) x = g", ("npg", "trpo"), ">= 0")
    backtrack_coef: float = _hp(0.8, "", "line-search step shrink factor", ("trpo",), "(0, 1)")
    backtrack_iters: int = _hp(10, "", "line-search steps before giving up", ("trpo",), ">= 1")
    # REINFORCE
    phi: str = _hp("rtg", "Φ_t", "return: R(τ) | rtg: reward-to-go R̂_t (at γ < 1 they estimate different "
                   "gradients: docs/notes.md)", ("reinforce",))
    baseline: str = _hp("v", "b", "none | mean | optimal (003 §5.3.4, per parameter) | v (learned V_φ)", ("reinforce",))


# The values that solve CartPole-v1 with minipg.py's batches (README, bench/seeds.md); the batch shape and the
# budget are minipg.RUN_DEFAULTS. Your own loop: Hyper(**DEFAULTS["ppo"]).
_PPO = dict(minibatch=256, epochs=20, gamma=0.98, lam=0.8, lr_pi=1e-3, anneal_lr=True)
_TRPO = dict(lam=0.98, cg_damping=1e-3, max_kl=0.01, v_iters=20, v_minibatch=512)
DEFAULTS = {
    "ppo": dict(_PPO, anneal_clip=True),  # rl-zoo's tuned CartPole PPO
    "ppo-penalty": dict(_PPO, d_targ=0.02, beta=1.0),  # docs/results.md: why 0.02, not the PPO paper's 0.01
    "trpo": _TRPO,
    "npg": dict(_TRPO, max_kl=0.005),  # no line search: the full step overshoots delta (docs/results.md)
    "vpg": dict(lr_pi=3e-3, v_iters=20, v_minibatch=256),
    "a2c": dict(lam=1.0, optimiser="rmsprop", lr_pi=7e-4, norm_adv=False),
    "reinforce": dict(lr_pi=3e-3, v_iters=20, v_minibatch=256),
}

# The update's part of minipg.py's presets (one per task family; docs/results.md says where each comes from).
PRESETS = {
    "mujoco": dict(minibatch=64, epochs=10, lr_pi=3e-4, lr_v=1e-3, anneal_lr=True, anneal_clip=False, gamma=0.99,
                   lam=0.95, max_grad_norm=0.5, max_kl=0.04, cg_damping=0.1, cg_iters=15, v_iters=20, v_minibatch=128),
    "lunarlander": dict(minibatch=64, epochs=4, gamma=0.999, lam=0.98, ent_coef=0.01, lr_pi=3e-4, anneal_lr=False,
                        anneal_clip=False),
    "pendulum": dict(minibatch=64, epochs=10, gamma=0.9, lam=0.95, lr_pi=1e-3),
}


def make_agent(obs_dim, head, hp, rng, hidden=(64, 64), activation="tanh", init_log_std=0.0, dtype=np.float64):
    """The agent a Hyper describes: pi_theta and V_phi, each with hp.optimiser at hp.lr_pi / hp.lr_v."""
    return nets.Agent(obs_dim, head, hidden, activation, rng, hp.optimiser, hp.lr_pi, hp.lr_v, hp.adam_eps,
                      init_log_std, dtype)


def set_learning_rates(agent, hp, frac):
    """Every update starts here: alpha = lr_pi (and lr_v), times frac (the training left) when annealed."""
    scale = frac if hp.anneal_lr else 1.0
    agent.opt_pi.lr = hp.lr_pi * scale
    agent.opt_v.lr = hp.lr_v * scale


@dataclass
class Batch:
    """One rollout of E envs for T steps: what every update but REINFORCE reads. minipg's Trainer.collect fills it; so can
    your own loop (gymnasium's vector envs with autoreset_mode=SAME_STEP give final_obs for final_val)."""
    obs: np.ndarray         # (T, E, obs_dim) s_t
    act: np.ndarray         # (T, E) int, or (T, E, A) float (unclipped, as sampled)
    logp: np.ndarray        # (T, E) log pi_theta_old(a_t|s_t)
    val: np.ndarray         # (T, E) V_phi(s_t)
    rew: np.ndarray         # (T, E) r_t
    terminated: np.ndarray  # (T, E) bool: the episode ended for good at t
    truncated: np.ndarray   # (T, E) bool: a time limit cut the episode at t
    final_val: np.ndarray   # (T, E) V_phi(final obs) where truncated, else 0
    last_val: np.ndarray    # (E,) V_phi(s_T), to bootstrap the cut at the end of the rollout

    @property
    def n_steps(self):
        return self.rew.size

    def check(self):
        """One clear error for a batch of the wrong shapes: every array (T, E), obs (T, E, obs_dim), last_val (E,)."""
        if not isinstance(self.rew, np.ndarray) or self.rew.ndim != 2:
            raise ValueError("Batch.rew must be a (T, E) array: T steps of E envs")
        T, E = self.rew.shape
        for name in ("logp", "val", "terminated", "truncated", "final_val"):
            x = getattr(self, name)
            if not isinstance(x, np.ndarray) or x.shape != (T, E):
                raise ValueError(f"Batch.{name} must have shape (T, E) = {(T, E)} like rew, got "
                                 f"{getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(self.obs, np.ndarray) or self.obs.shape[:2] != (T, E) or self.obs.ndim != 3:
            raise ValueError(f"Batch.obs must have shape (T, E, obs_dim) = ({T}, {E}, obs_dim), got "
                             f"{getattr(self.obs, 'shape', None)} (arrays are time-major: (T, E), not (E, T))")
        if not isinstance(self.act, np.ndarray) or self.act.shape[:2] != (T, E):
            raise ValueError(f"Batch.act must have shape (T, E) or (T, E, A), got {getattr(self.act, 'shape', None)}")
        if not isinstance(self.last_val, np.ndarray) or self.last_val.shape != (E,):
            transposed = isinstance(self.last_val, np.ndarray) and self.last_val.shape == (T,)
            raise ValueError(f"Batch.last_val must be V_phi(s_T) of shape (E,) = ({E},), got "
                             f"{getattr(self.last_val, 'shape', repr(self.last_val))}: "
                             + ("the arrays look (E, T); they must be (T, E), time first" if transposed else
                                "the cut at the end of the rollout bootstraps from it"))


@dataclass
class Episodes:
    """N_tau whole episodes, each from reset to its end, drawn i.i.d. from pi_theta: what REINFORCE reads
    (000 §Deriving the Simplest Policy Gradient: the mean over a set of trajectories D = {tau_i}). Rows are steps,
    each episode's rows contiguous and in time order. minipg's Trainer.collect_episodes fills it; so can your own
    loop."""
    obs: np.ndarray   # (N, obs_dim) s_t
    act: np.ndarray   # (N,) int, or (N, A) float
    logp: np.ndarray  # (N,) log pi_theta_old(a_t|s_t)
    val: np.ndarray   # (N,) V_phi(s_t)
    rew: np.ndarray   # (N,) r_t
    ep: np.ndarray    # (N,) int: the episode of each row, 0, ..., 0, 1, ..., N_tau - 1

    @property
    def n_steps(self):
        return len(self.rew)

    @property
    def n_tau(self):
        return int(self.ep[-1]) + 1

    @property
    def done(self):
        """(N,) bool: the last step of each episode."""
        return np.r_[self.ep[1:] != self.ep[:-1], True]

    def check(self):
        if not isinstance(self.ep, np.ndarray) or self.ep.ndim != 1 or len(self.ep) == 0:
            raise ValueError("Episodes.ep must be a non-empty (N,) array of episode indices: REINFORCE needs at "
                             "least one whole episode")
        N = len(self.ep)
        for name in ("logp", "val", "rew"):
            if getattr(self, name).shape != (N,):
                raise ValueError(f"Episodes.{name} must have shape (N,) = ({N},), got {getattr(self, name).shape}")
        if len(self.obs) != N or len(self.act) != N:
            raise ValueError(f"Episodes.obs and .act must have N = {N} rows")
        if self.ep[0] != 0 or np.any(np.diff(self.ep) < 0) or np.any(np.diff(self.ep) > 1):
            raise ValueError("Episodes.ep must count episodes 0, 1, ... in order, each episode's rows together")


BATCHES = {"reinforce": Episodes, "vpg": Batch, "a2c": Batch, "npg": Batch, "trpo": Batch, "ppo": Batch,
           "ppo-penalty": Batch}


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
    rtg = np.zeros_like(rew)
    running = np.zeros(E)  # (E,) the return from t on; time outside, envs inside: rows are contiguous in memory
    for t in range(T - 1, -1, -1):
        for e in range(E):
            if done[t, e]:
                running[e] = 0.0
            running[e] = rew[t, e] + gamma * running[e]
            rtg[t, e] = running[e]
    return rtg


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


def explained_variance(val, target):
    """1 - Var[target - V] / Var[target]: 1 is a perfect critic, 0 no better than a constant, and below 0 worse
    than one (as happens when the returns change faster than the critic: a policy that just got much better)."""
    var = _var(target)
    return float("nan") if var == 0 else float(1.0 - _var(target - val) / var)


def _var(x):
    d = x - x.mean()
    return d @ d / len(d)  # the population variance, as np.var


# ---------------------------------------------------------------------------------------------------------------
# Small pure numerical pieces
# ---------------------------------------------------------------------------------------------------------------

def cg(f_Ax, rhs, iters=10, tol=1e-10):
    """Conjugate gradient for A x = rhs with A symmetric positive definite, given only v -> A v: how TRPO solves
    F x = g without forming F (000 §Proximal Policy Optimization: "solved using the conjugate gradient
    algorithm"). Stops after `iters` steps or once the squared residual r^T r <= tol (absolute, as in
    modular_rl / Spinning Up). Returns x."""
    x = np.zeros_like(rhs)
    r = rhs.copy()  # residual rhs - A x with x = 0
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


def fit_value(agent, obs, v_target, hp, rng):
    """Critic regression, 002 §actor-critic method: phi <- argmin_phi E[(V_phi(s_t) - V_target_t)^2], by
    hp.v_iters epochs of the critic's optimiser on minibatches. Returns the loss 1/2 mean (V - V_target)^2 after."""
    N = len(obs)
    for _ in range(hp.v_iters):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.v_minibatch)):
            out, hs = agent.v.forward(obs[mb])
            grad_v, _ = agent.v.backward((out - v_target[mb, None]) / len(mb), hs)
            agent.v.theta[:] = agent.opt_v.step(agent.v.theta, grad_v)
    return float(0.5 * np.mean((agent.value(obs) - v_target) ** 2))


def normalise(adv):
    """(A - mean A) / (std A + 1e-8). 000 uses A_hat as is; this adds a batch baseline (docs/notes.md)."""
    d = adv - adv.sum() / len(adv)
    return d / (np.sqrt(d @ d / len(d)) + 1e-8)


def policy_gradient(pi, z, hs, act, A, ent_coef=0.0):
    """g = 1/N sum_t grad log pi(a_t|s_t) A_t (+ c2 grad H, the entropy bonus), 000 §Other Forms of the Policy
    Gradient: weight the head's d log pi/dz by A_t and backprop once (003 §7.1's pseudo-loss, without autograd)."""
    dz = pi.head.dlogp(z, act) * A[:, None]  # (N, D)
    if ent_coef:
        dz += ent_coef * pi.head.dentropy(z)
    return pi.backward(dz, hs) / len(A)


@dataclass
class Samples:
    """A Batch as (N,) samples, with what every actor-critic update computes from it first."""
    obs: np.ndarray       # (N, obs_dim)
    act: np.ndarray       # (N,) or (N, A)
    logp_old: np.ndarray  # (N,) log pi_theta_old(a_t|s_t)
    adv: np.ndarray       # (N,) A_hat_t, GAE
    v_target: np.ndarray  # (N,) A_hat_t + V_phi_old(s_t), the lambda-return
    val_old: np.ndarray   # (N,) V_phi_old(s_t)


def prepare(batch, hp):
    """The shared input of every actor-critic update: the flat samples, GAE advantages and critic targets."""
    batch.check()
    adv = gae(batch.rew, batch.val, batch.terminated, batch.truncated, batch.final_val, batch.last_val, hp.gamma,
              hp.lam)  # (T, E)
    # the critic's target is the lambda-return A_hat_t + V(s_t) (the notes' R_hat_t when lam = 1)
    dtype = batch.obs.dtype
    return Samples(obs=flat(batch.obs), act=flat(batch.act), logp_old=flat(batch.logp), adv=flat(adv).astype(dtype),
                   v_target=flat(adv + batch.val).astype(dtype), val_old=flat(batch.val))


def diagnostics(agent, obs, z_old, val_old, v_target, **info):
    """The fixed diagnostics, measured on the whole batch after the update: mean KL(pi_old || pi_new),
    entropy of pi_new, and how much of the target's variance the *old* critic explained."""
    z, _ = agent.pi.dist(obs)
    head = agent.pi.head
    return dict(info, kl=float(head.kl(z_old, z).mean()), entropy=float(head.entropy(z).mean()),
                explained_var=explained_variance(val_old, v_target))


# ---------------------------------------------------------------------------------------------------------------
# REINFORCE (000 §Deriving the Simplest Policy Gradient, 003 §3): whole episodes, Phi_t = R(tau) or R_hat_t,
# minus one of four baselines. pg_estimate is also what the variance lab measures.
# ---------------------------------------------------------------------------------------------------------------

def pg_estimate(pi, obs, act, phi, ep, baseline, val=None):
    """The Monte Carlo policy gradient g = 1/N_tau sum_tau sum_t grad log pi(a_t|s_t) (Phi_t - b),
    000 §Other Forms of the Policy Gradient, 002 §basic policy gradient, 003 §5.3. It rests on the
    log-derivative trick grad p_theta(tau) = p_theta(tau) grad log p_theta(tau)
    (003 §2.2, 000 §Deriving the Simplest Policy Gradient), and any fixed b(s_t) leaves its mean unchanged since
    E[grad log pi] = 0 (000 §Baselines in Policy Gradients, 002 §baselines, 003 §5.3.2). On i.i.d. whole episodes
    (algos.Episodes) it is unbiased for 'none' and 'v' (V fixed during the batch) and any fixed b(s). Baselines
    estimated from the same batch ('mean', 'optimal') see the return of the episode they weigh, so they are
    biased: E[g] ~ (1 - c/N_tau) grad J, the gradient shrunk towards 0; on test_estimators.py's tasks c ~ 0.7-0.9
    for 'mean' and 1.9-2.6 for 'optimal' with reward-to-go (more with R(tau)), so at N_tau = 64 they lose about
    1% and 3-4% of the gradient (bench/estimators.md).
    Without autograd, the weighted "pseudo-loss" of 003 §7.1, sum_t log pi(a_t|s_t) Q_t, becomes: weight
    d log pi/dz by Q_t, then backprop. obs (N, obs_dim), phi (N,), ep (N,) episode index (sorted,
    0..N_tau-1), val (N,) = V_phi(s_t) for baseline 'v'. Returns g (P,)."""
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


def update_reinforce(agent, episodes, hp, rng, frac=1.0):
    """REINFORCE (003 §3): with Phi_t = R(tau) (hp.phi='return') or the reward-to-go (hp.phi='rtg'), minus a
    baseline, on N_tau whole episodes drawn i.i.d. from pi_theta (an algos.Episodes)."""
    if not isinstance(episodes, Episodes):
        raise TypeError(f"update_reinforce takes algos.Episodes (whole episodes, each from reset), not "
                        f"{type(episodes).__name__}: a rollout of fixed length would score the tail of an episode "
                        "as a whole one, and keeping only the episodes that end in it favours the short ones")
    episodes.check()
    set_learning_rates(agent, hp, frac)
    obs, act, val, ep = episodes.obs, episodes.act, episodes.val, episodes.ep
    # 000 §Don't Let the Past Distract You: R_hat_t = sum_{t'=t}^T gamma^(t'-t) r_t'; R(tau) = R_hat_0 of its
    # episode (the notes have gamma = 1: --gamma 1; at gamma < 1, R(tau) discounts from t = 0 and R_hat_t from t,
    # so the two estimate different gradients: docs/notes.md)
    rtg = discount_cumsum(episodes.rew[:, None], episodes.done[:, None], hp.gamma)[:, 0]  # (N,)
    R_tau = rtg[np.r_[0, np.flatnonzero(np.diff(ep)) + 1]][ep]                          # (N,)
    phi = R_tau if hp.phi == "return" else rtg
    z_old, _ = agent.pi.dist(obs)
    g = pg_estimate(agent.pi, obs, act, phi, ep, hp.baseline, val)
    # 000 §Deriving the Simplest Policy Gradient: theta_{k+1} = theta_k + alpha g  (the optimiser descends -g)
    agent.pi.theta = agent.opt_pi.step(agent.pi.theta, -g)
    loss_v = fit_value(agent, obs, rtg, hp, rng) if hp.baseline == "v" else 0.0
    # loss_pi: the 003 §7.1 pseudo-loss -1/N_tau sum_t log pi(a_t|s_t) Phi_t at theta_old (its value means little)
    loss_pi = -float(np.sum(agent.pi.head.log_prob(z_old, act) * phi) / episodes.n_tau)
    return diagnostics(agent, obs, z_old, val, rtg, loss_pi=loss_pi, loss_v=loss_v, episodes=episodes.n_tau)


# ---------------------------------------------------------------------------------------------------------------
# VPG and A2C: one policy-gradient step on A_hat_t
# ---------------------------------------------------------------------------------------------------------------

def update_vpg(agent, batch, hp, rng, frac=1.0):
    """Vanilla policy gradient, 000 §Vanilla Policy Gradient (VPG): GAE-lambda advantages, one ascent step,
    then V_phi fitted by regression over hp.v_iters epochs."""
    set_learning_rates(agent, hp, frac)
    s = prepare(batch, hp)
    pi = agent.pi
    A = normalise(s.adv) if hp.norm_adv else s.adv
    z_old, hs = pi.dist(s.obs)
    # 000 §Vanilla Policy Gradient (VPG): g = 1/N sum_t grad log pi(a_t|s_t) A_hat_t  (+ c2 grad H, the entropy bonus)
    g = policy_gradient(pi, z_old, hs, s.act, A, hp.ent_coef)
    # 000 §Vanilla Policy Gradient (VPG): theta_{k+1} = theta_k + alpha g
    pi.theta = agent.opt_pi.step(pi.theta, -g)
    loss_v = fit_value(agent, s.obs, s.v_target, hp, rng)
    return diagnostics(agent, s.obs, z_old, s.val_old, s.v_target, loss_v=loss_v,
                       loss_pi=-float(np.mean(s.logp_old * A)))  # the pseudo-loss at theta_old (003 §7.1)


def update_a2c(agent, batch, hp, rng, frac=1.0):
    """Advantage actor-critic, 002 §actor-critic method: n-step rollouts (T = n) from E parallel envs;
    A_hat_t = sum_{l < n-t} gamma^l r_{t+l} + gamma^(n-t) V(s_T) - V(s_t) (GAE with lam = 1, A2C's default);
    one step for the actor on sum_t grad log pi A_hat_t and one for the critic on (V_phi(s_t) - V_target_t)^2.
    (002 writes Q^pi(s_t, a_t) = r_t + gamma max_a Q^pi(s_{t+1}, a): that is Q*'s Bellman equation; for Q^pi it is
    r_t + gamma V^pi(s_{t+1}), as here: docs/notes.md.)"""
    set_learning_rates(agent, hp, frac)
    s = prepare(batch, hp)
    pi, N = agent.pi, len(s.obs)
    A = normalise(s.adv) if hp.norm_adv else s.adv
    z_old, hs = pi.dist(s.obs)
    # 002 §actor-critic method: g_hat = 1/|D| sum_t grad log pi(a_t|s_t) (Q(s_t,a_t) - V(s_t))
    g = policy_gradient(pi, z_old, hs, s.act, A, hp.ent_coef)
    out, hv = agent.v.forward(s.obs)
    # critic: minimise c1 * 1/2 mean (V_phi(s_t) - V_target_t)^2 (000 and SB3 have no 1/2: c1 weighs half as much)
    grad_v, _ = agent.v.backward(hp.vf_coef * (out - s.v_target[:, None]) / N, hv)
    grad, _ = nets.clip_grad_norm(np.concatenate([-g, grad_v]), hp.max_grad_norm)  # one global norm, as in A2C
    pi.theta = agent.opt_pi.step(pi.theta, grad[:pi.n_params])
    agent.v.theta[:] = agent.opt_v.step(agent.v.theta, grad[pi.n_params:], lr=agent.opt_pi.lr)  # one joint loss
    return diagnostics(agent, s.obs, z_old, s.val_old, s.v_target, loss_pi=-float(np.mean(s.logp_old * A)),
                       loss_v=float(0.5 * np.mean((out[:, 0] - s.v_target) ** 2)))


# ---------------------------------------------------------------------------------------------------------------
# Natural gradient and TRPO: one code path; NPG is TRPO without the line search
# ---------------------------------------------------------------------------------------------------------------

def trpo_surrogate(head, z, act, logp_old, A):
    """000 §Proximal Policy Optimization (TRPO): L(theta) = 1/N sum_t r_t(theta) A_t, r_t = pi_theta / pi_theta_old,
    003 §6's first-order (per-decision) importance weight. Returns L and dL/dz (N, D): r_t A_t dlogp / N."""
    # 001 weights the terms by gamma^t; we average them unweighted, as 000 §PPO and TRPO do (docs/notes.md)
    ratio = np.exp(head.log_prob(z, act) - logp_old)  # (N,) r_t
    L = float(np.mean(ratio * A))
    dL_dz = (ratio * A)[:, None] * head.dlogp(z, act) / len(A)
    return L, dL_dz


def update_trpo(agent, batch, hp, rng, frac=1.0, search=True):
    """TRPO (000 §Proximal Policy Optimization, the TRPO part): maximise the surrogate E[r_t(theta) A_hat_t]
    subject to mean KL(pi_old || pi_theta) <= delta, by the natural-gradient step and a backtracking line search."""
    set_learning_rates(agent, hp, frac)
    s = prepare(batch, hp)
    pi = agent.pi
    A = normalise(s.adv) if hp.norm_adv else s.adv
    theta_old = pi.theta
    z_old, hs = pi.dist(s.obs)
    # 000 §Proximal Policy Optimization: g = grad of the surrogate at theta_old (where r_t = 1)
    surr_old, dL_dz = trpo_surrogate(pi.head, z_old, s.act, s.logp_old, A)
    g = pi.backward(dL_dz, hs)
    # 001 §Method 2: KL ~ 1/2 dtheta^T F dtheta; x = F^{-1} g by CG on F v products. F is singular (for logits,
    # (diag p - p p^T) 1 = 0), so CG solves (F + damping I) x = g: the note's direction as damping -> 0.
    # 001 bounds KL(pi_1 || pi_0) at every s_t; TRPO bounds the batch mean of KL(pi_old || pi_new) (the same to
    # second order).
    x = cg(lambda v: fisher_vector_product(pi, z_old, hs, v, hp.cg_damping), g, hp.cg_iters)
    # 001 §Method 2: theta <- theta + sqrt(2 eps / g^T F^{-1} g) F^{-1} g  (001's eps is delta = max_kl here).
    # 001 and Spinning Up take g^T x for g^T F^{-1} g; we take x^T F x with the undamped F, so that
    # 1/2 dtheta^T F dtheta = delta exactly (the step is sqrt(g^T x / x^T F x) times theirs: docs/notes.md).
    step = np.sqrt(2 * hp.max_kl / (x @ fisher_vector_product(pi, z_old, hs, x) + 1e-12)) * x

    def surrogate_and_kl(theta):
        pi.theta = theta
        z, _ = pi.dist(s.obs)
        return trpo_surrogate(pi.head, z, s.act, s.logp_old, A)[0], float(pi.head.kl(z_old, z).mean())

    if search:
        theta, backtracks = line_search(surrogate_and_kl, theta_old, step, hp.max_kl, hp.backtrack_coef,
                                        hp.backtrack_iters)
    else:
        theta, backtracks = theta_old + step, 0
    surr_new, _ = surrogate_and_kl(theta)  # leaves pi at theta
    loss_v = fit_value(agent, s.obs, s.v_target, hp, rng)
    return diagnostics(agent, s.obs, z_old, s.val_old, s.v_target, loss_pi=-surr_new, loss_v=loss_v,
                       backtracks=backtracks, surr_gain=surr_new - surr_old)


def update_npg(agent, batch, hp, rng, frac=1.0):
    """Natural policy gradient, 001 §Method 2: the TRPO step without the line search."""
    return update_trpo(agent, batch, hp, rng, frac, search=False)


# ---------------------------------------------------------------------------------------------------------------
# PPO-Clip and PPO-Penalty: epochs of shuffled minibatches; they differ only in the policy objective
# ---------------------------------------------------------------------------------------------------------------

def ppo_clip_objective(head, z, act, logp_old, A, clip_eps):
    """000 §Proximal Policy Optimization: L = 1/n sum_t min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t), with
    r_t = exp(logp - logp_old), 003 §6's per-decision importance weight. Returns L and dL/dz (n, D):
    d r_t/dz = r_t dlogp, and the min passes it on only where the unclipped term is the smaller one."""
    ratio = np.exp(head.log_prob(z, act) - logp_old)                      # (n,)
    clipped = np.clip(ratio, 1 - clip_eps, 1 + clip_eps)
    L = float(np.mean(np.minimum(ratio * A, clipped * A)))
    unclipped = ratio * A <= clipped * A
    dL_dz = (unclipped * ratio * A)[:, None] * head.dlogp(z, act) / len(A)
    return L, dL_dz


def ppo_penalty_objective(head, z, z_old, act, logp_old, A, beta):
    """000 §Proximal Policy Optimization (PPO-Penalty), 001 §Method 1: L = 1/n sum_t [r_t A_t - beta KL(pi_old ||
    pi)(s_t)]. Returns L and dL/dz (n, D) = (r_t A_t dlogp - beta dKL/dz) / n. 001 writes KL(pi_new || pi_old);
    we use KL(pi_old || pi_new), as the PPO paper does: the two agree to second order (docs/notes.md)."""
    ratio = np.exp(head.log_prob(z, act) - logp_old)
    L = float(np.mean(ratio * A - beta * head.kl(z_old, z)))
    dL_dz = ((ratio * A)[:, None] * head.dlogp(z, act) - beta * head.dkl(z_old, z)) / len(A)
    return L, dL_dz


def ppo_epochs(agent, batch, hp, rng, frac, objective, clip_v=0.0, stop_kl=0.0):
    """The shared PPO loop: hp.epochs passes of shuffled minibatches, each one optimiser step on
    -L - c2 entropy + c1 value loss, with one global gradient-norm clip. objective(z, z_old, act, logp_old, A) ->
    (L, dL/dz); clip_v > 0 clips the value loss around the old values by that much. Returns the flat samples,
    z_old and how many epochs ran."""
    set_learning_rates(agent, hp, frac)
    s = prepare(batch, hp)
    pi, head, N = agent.pi, agent.pi.head, len(s.obs)
    z_old, _ = pi.dist(s.obs)
    epochs_run = 0
    for epoch in range(hp.epochs):
        for mb in np.array_split(rng.permutation(N), max(1, N // hp.minibatch)):
            z, hs = pi.dist(s.obs[mb])
            A = normalise(s.adv[mb]) if hp.norm_adv else s.adv[mb]
            _, dL_dz = objective(z, z_old[mb], s.act[mb], s.logp_old[mb], A)
            dz = -dL_dz                                                   # the optimiser descends the loss -L
            if hp.ent_coef:
                dz -= hp.ent_coef * head.dentropy(z) / len(mb)            # entropy bonus c2 H
            v, hv = agent.v.forward(s.obs[mb])
            dv = v[:, 0] - s.v_target[mb]                                 # d/dV of 1/2 (V - V_target)^2
            if clip_v > 0:  # max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, -eps, eps)
                v_clip = s.val_old[mb] + np.clip(v[:, 0] - s.val_old[mb], -clip_v, clip_v)
                inside = np.abs(v[:, 0] - s.val_old[mb]) < clip_v  # there d V_clip / dV = 1, outside 0
                dv = np.where((v_clip - s.v_target[mb]) ** 2 > dv ** 2, (v_clip - s.v_target[mb]) * inside, dv)
            grad_v, _ = agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)
            grad, _ = nets.clip_grad_norm(np.concatenate([pi.backward(dz, hs), grad_v]), hp.max_grad_norm)
            pi.theta = agent.opt_pi.step(pi.theta, grad[:pi.n_params])
            agent.v.theta[:] = agent.opt_v.step(agent.v.theta, grad[pi.n_params:], lr=agent.opt_pi.lr)  # joint loss
        epochs_run += 1
        # Spinning Up's early stopping (000 §Proximal Policy Optimization): stop once mean KL passes 1.5 target_kl.
        # Checked once per epoch (Spinning Up: before each whole-batch step; SB3: each minibatch): docs/notes.md
        if stop_kl > 0 and head.kl(z_old, pi.dist(s.obs)[0]).mean() > 1.5 * stop_kl:
            break
    return s, z_old, epochs_run


def annealed_clip(hp, frac):
    """epsilon, annealed linearly to 0 with the training left when hp.anneal_clip."""
    return hp.clip_eps * (frac if hp.anneal_clip else 1.0)


def update_ppo(agent, batch, hp, rng, frac=1.0):
    """PPO-Clip (000 §Proximal Policy Optimization): maximise E_t[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)]."""
    clip_eps = annealed_clip(hp, frac)

    def objective(z, z_old, act, logp_old, A):
        return ppo_clip_objective(agent.pi.head, z, act, logp_old, A, clip_eps)

    clip_v = clip_eps if hp.clip_vloss else 0.0
    s, z_old, epochs = ppo_epochs(agent, batch, hp, rng, frac, objective, clip_v, stop_kl=hp.target_kl)
    z, _ = agent.pi.dist(s.obs)
    A = normalise(s.adv) if hp.norm_adv else s.adv
    L, _ = ppo_clip_objective(agent.pi.head, z, s.act, s.logp_old, A, clip_eps)
    ratio = np.exp(agent.pi.head.log_prob(z, s.act) - s.logp_old)
    return diagnostics(agent, s.obs, z_old, s.val_old, s.v_target, loss_pi=-L, epochs=epochs,
                       loss_v=float(0.5 * np.mean((agent.value(s.obs) - s.v_target) ** 2)),
                       clipfrac=float(np.mean(np.abs(ratio - 1) > clip_eps)))


def update_ppo_penalty(agent, batch, hp, rng, frac=1.0):
    """PPO-Penalty (000 §Proximal Policy Optimization, 001 §Method 1): maximise E_t[r_t A_t] - beta KL, then adapt
    beta to the measured KL."""
    if getattr(agent, "beta", None) is None:
        agent.beta = hp.beta
    beta = agent.beta

    def objective(z, z_old, act, logp_old, A):
        return ppo_penalty_objective(agent.pi.head, z, z_old, act, logp_old, A, beta)

    s, z_old, epochs = ppo_epochs(agent, batch, hp, rng, frac, objective)
    z, _ = agent.pi.dist(s.obs)
    A = normalise(s.adv) if hp.norm_adv else s.adv
    L, _ = ppo_penalty_objective(agent.pi.head, z, z_old, s.act, s.logp_old, A, beta)
    info = diagnostics(agent, s.obs, z_old, s.val_old, s.v_target, loss_pi=-L, epochs=epochs, beta=beta,
                       loss_v=float(0.5 * np.mean((agent.value(s.obs) - s.v_target) ** 2)))
    agent.beta = next_beta(beta, info["kl"], hp)
    return info


def next_beta(beta, kl, hp):
    """The adaptive KL coefficient after a batch whose mean KL was kl."""
    if hp.beta_rule == "additive":
        # 001 §Method 1: beta <- beta + alpha (KL - eps), kept >= 0 (001 does not say; a negative beta would
        # reward moving away from pi_old: docs/notes.md)
        return max(0.0, beta + hp.beta_lr * (kl - hp.d_targ))
    if kl > 1.5 * hp.d_targ:  # the PPO paper's rule (Schulman et al. 2017, §4)
        return beta * 2.0
    if kl < hp.d_targ / 1.5:
        return beta / 2.0
    return beta


UPDATES = {
    "reinforce": update_reinforce,
    "vpg": update_vpg,
    "a2c": update_a2c,
    "npg": update_npg,
    "trpo": update_trpo,
    "ppo": update_ppo,
    "ppo-penalty": update_ppo_penalty,
}
