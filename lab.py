"""lab.py -- the variance lab (python minipg.py --lab variance, which runs this file as a program).

The variance lab: what the notes claim about the policy-gradient estimator, measured on a real task.

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

Design. Snapshots are minipg's PPO after 0 and 6400 env steps (a return of ~170 on CartPole: a trained policy's
500-step episodes would cost 3x more). Per snapshot, three independent sets of whole episodes: n_fit episodes fit a
fresh V_phi to R_hat_t and give the fixed baselines (mean and per-parameter optimal b) and the reference gradient
(rtg - optimal b over all of them); n_batches batches of n_traj episodes give every estimator once per batch, all
from one (N, P) matrix of per-sample gradients (nets.per_sample_grads, numba). "(batch)" baselines are estimated
from the batch itself, as algos.pg_estimate does, and so depend on its actions: an O(1/n) bias.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

import algos
import minipg
import nets


TINY = 1e-300
LAB_SNAPSHOTS = (("untrained", 0), ("partly trained", 6400))  # PPO env steps; 6400 reaches a return of ~170
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
    envs = minipg.make_envs(env_id, min(num_envs, n_episodes))
    E, spaces = envs.num_envs, minipg.Spaces(envs.single_observation_space, envs.single_action_space)
    quota = n_episodes // E + (np.arange(E) < n_episodes % E)  # (E,)
    finished = np.zeros(E, dtype=np.int64)
    obs_l, act_l, rew_l, done_l, keep_l = [], [], [], [], []
    try:
        raw = envs.reset(seed=int(rng.integers(2 ** 31)))[0]
        while (finished < quota).any():
            obs = norm.obs(raw.astype(np.float64).reshape(E, -1))                     # (E, obs_dim), frozen stats
            a = agent.pi.head.sample(agent.pi.dist(obs)[0], rng)
            raw, rew, term, trunc, _ = envs.step(spaces.to_env(a))
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


def snapshot(env_id, steps, seed):
    """The policy after `steps` env steps of minipg's PPO (0 = the untrained initial policy), in float64 so that
    tiny steps and variances are exact: the runner's Trainer, in memory. Returns (agent, norm, spaces)."""
    given = {"algo": "ppo", "env": env_id, "seed": seed, "dtype": "float64"}
    run, hp = minipg.CONFIG.resolve(given)
    tr = minipg.Trainer(minipg.CONFIG.resolve({**given, "steps": max(steps, run.num_envs * run.num_steps)})[0], hp)
    if steps > 0:
        tr.start()
        try:
            while not tr.done():
                tr.iteration()
        finally:
            tr.close()
    return tr.agent, tr.norm, tr.spaces


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
    say(f"  collecting {n_fit} episodes to fit V_phi and the fixed baselines ...")
    fit = rollout_episodes(agent, norm, env_id, n_fit, rng)
    agent.v = nets.MLP(agent.v.sizes, agent.v.activation, out_gain=1.0, rng=rng)
    agent.opt_v = nets.Adam(agent.v.theta.size, lr=lr_v)
    algos.fit_value(agent, fit.obs, fit.rtg(), algos.Hyper(v_iters=v_iters, v_minibatch=256), rng)
    b_opt, ref, ref_rel_se = fit_statistics(agent.pi, fit)
    say(f"  collecting {n_batches} batches of {n_traj} episodes ...")
    lab = rollout_episodes(agent, norm, env_id, n_traj * n_batches, rng)
    phis = phi_forms(lab, agent.value(lab.obs), float(fit.rtg().mean()), lams)
    names = ["R(tau)", "reward-to-go", "rtg - mean b (fixed)", "rtg - mean b (batch)", "rtg - optimal b (fixed)",
             "rtg - optimal b (batch)", "rtg - V_phi"] + [f"GAE lam={lam:g}" for lam in lams]
    g = np.zeros((n_batches, len(names), agent.pi.n_params))                       # (M, K, P)
    for m in range(n_batches):
        if m % 50 == 0:
            say(f"  estimators on batch {m + 1} of {n_batches} ...")
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
                f"{len(r['lab'].obs)} steps). V_phi fitted on {n_fit} other episodes: explained variance "
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
    for name, steps in snapshots:
        say(f"[{name}] training PPO for {steps} env steps ({time.time() - t0:.0f} s so far) ...")
        agent, norm, _ = snapshot(env_id, steps, seed)
        r = measure_estimators(agent, norm, env_id, rng, n_traj, n_batches, n_fit, lams)
        out["snapshots"].append(report_estimators(name, steps, r, n_traj, n_fit))
    # the last snapshot, its V_phi and its lab episodes (independent of V_phi)
    d = r["lab"].take(0, n_ng)
    say(f"[{name}] the natural-gradient scan and the true improvements ({time.time() - t0:.0f} s so far) ...")
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


def say(text):
    """Progress on long work, on stderr, so that stdout holds only the tables."""
    print(text, file=sys.stderr, flush=True)


def main(argv=None):
    """python lab.py --env ENV --seed S --out DIR: what python minipg.py --lab variance runs, once it has checked
    the env and the folder."""
    p = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".")
    args = p.parse_args(argv)
    try:
        lab_variance(args.env, args.seed, args.out)
    except minipg.UsageError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
