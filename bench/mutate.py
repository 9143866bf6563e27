"""bench/mutate.py -- mutation testing: does the fast test selection notice when the maths is wrong?

    python bench/mutate.py                     # the default set, os.cpu_count() at a time; about 8 min on 2 cores
    python bench/mutate.py --list              # the mutants, checked against the source, nothing run
    python bench/mutate.py --extra             # the deeper run: the EXTRA mutants too (about 3 min more)
    python bench/mutate.py --only gae-td-sign normalise-std-no-1/N   # some of them (shell patterns allowed)
    python bench/mutate.py --jobs 1 --min-score 0.95 --timeout 300 --show
    python bench/mutate.py --all-failures --only prepare-adv-int64   # every test that catches it, not the first

A mutant is one deliberate bug: one exact string replacement in one file (MUTANTS below). For each mutant the
harness copies the project (the files `git ls-files` lists, plus untracked ones that are not ignored, from the
working tree) into a temporary folder, applies the replacement there, and runs that file's fast test
selection (SELECTION) as `python -m pytest -q -x -p no:cacheprovider`, with NUMBA_CACHE_DIR pointing at a fresh
empty folder, so that a mutated numba kernel really is compiled. The mutant is caught when pytest fails (or
runs past --timeout, which counts as caught and says so). The files in /work/main are never touched.

It cannot rot silently: every target string must occur exactly once in its file, and the mutated file must
still compile, or the harness stops before running anything and names the mutants to fix. The unmutated
selection runs first; if it fails the harness stops too (a baseline that fails proves nothing).

Output: one line per mutant as it finishes,
    caught   algos.py  ppo-adv-unnormalised                 (test_updates.py::test_ppo..., 14.2 s)
    SURVIVED nets.py   adam-no-bias-correction              (21.0 s)
then the survivors (with a warning for any that bench/mutants.md does not explain), and last
    mutants: X of N caught
Exit code 0 when X/N >= --min-score (default 0.95), 1 when below, 2 when the harness itself cannot run.
bench/mutants.md lists every survivor with the reason it survives.
"""
import argparse
import fnmatch
import os
import re
import shutil
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "bench" / "mutants.md"

# The fast selection per mutated file: the maths tests for the core, the runner's fast tests for minipg.py.
# A test file that does not exist (yet) is left out of the selection, with a note. The order only sets how soon
# pytest -x stops: test_minipg.py first catches the networks' bugs soonest (test_updates.py's references share
# the MLP's forward and backward), test_updates.py first catches the algorithms' bugs soonest.
SELECTION = {
    "nets.py": ["test_minipg.py", "test_updates.py"],
    "algos.py": ["test_updates.py", "test_minipg.py"],
    "minipg.py": ["test_runner.py", "-m", "not slow"],
}


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the project root
    name: str  # unique, kebab-case; what --only and bench/mutants.md refer to
    old: str   # must occur exactly once in the file
    new: str
    doc: str   # the bug, in a few words


def mutants(file, *rows):
    return [Mutant(file, *row) for row in rows]


# ---------------------------------------------------------------------------------------------------------------
# nets.py
# ---------------------------------------------------------------------------------------------------------------

NETS_MUTANTS = mutants(
    "nets.py",
    # MLP forward / backward / jvp
    ("mlp-bias-subtracted", "a = h @ W + b  # (N, n_{l+1})", "a = h @ W - b  # (N, n_{l+1})", "forward: h W - b (sign flip)"),
    ("mlp-bias-dropped", "a = h @ W + b  # (N, n_{l+1})", "a = h @ W  # (N, n_{l+1})", "forward drops + b"),
    ("backward-db-skips-sample-0", "db[l][:] = d.sum(0)", "db[l][:] = d[1:].sum(0)",
     "db = d.sum(0) misses sample 0 (off by one)"),
    ("dtanh-drops-square", "return 1 - h**2 if", "return 1 - h if", "tanh' = 1 - h (dropped square)"),
    ("drelu-inverted", "(h > 0).astype(h.dtype)", "(h <= 0).astype(h.dtype)", "relu' = [h <= 0] (inverted)"),
    ("mlp-output-activated", "h = self.f(a) if l < L - 1 else a", "h = self.f(a) if l < L else a",
     "f applied to the output layer too (off by one)"),
    ("deltas-df-wrong-layer", "d = (d @ self.W[l].T) * self.df(hs[l])", "d = (d @ self.W[l].T) * self.df(hs[l - 1])",
     "backprop multiplies by the previous layer's f' (off by one)"),
    ("backward-dW-skips-sample-0", "dW[l][:] = hs[l].T @ d", "dW[l][:] = hs[l][1:].T @ d[1:]",
     "dW = h^T d without sample 0 (off by one)"),
    ("backward-dx-dropped", "return self.grad.copy(), d @ self.W[0].T", "return self.grad.copy(), 0 * (d @ self.W[0].T)",
     "the input gradient dx is zero"),
    ("jvp-drops-dh-term", "da = dh @ self.W[l] + hs[l] @ dW[l] + db[l]", "da = hs[l] @ dW[l] + db[l]",
     "R-op forgets the earlier layers (dropped term)"),
    ("jvp-drops-db", "da = dh @ self.W[l] + hs[l] @ dW[l] + db[l]", "da = dh @ self.W[l] + hs[l] @ dW[l]",
     "R-op forgets the bias direction"),
    ("jvp-drops-df", "dh = self.df(hs[l + 1]) * da", "dh = da", "R-op forgets f' (dropped factor)"),
    ("views-transposed", "Ws.append(flat[k:k + i * o].reshape(i, o)); k += i * o",
     "Ws.append(flat[k:k + i * o].reshape(o, i).T); k += i * o", "W views of a flat vector column-major (transpose)"),
    ("init-gains-swapped", "out_gain if l == len(shapes) - 1 else hidden_gain",
     "hidden_gain if l == len(shapes) - 1 else out_gain", "orthogonal init: hidden and output gains swapped"),
    # Categorical
    ("log-softmax-sum-skips-0", "s = 0.0\n        for j in range(z.shape[1]):",
     "s = 0.0\n        for j in range(1, z.shape[1]):", "log-sum-exp misses logit 0 (off by one)"),
    ("log-softmax-sign", "out[i, j] = z[i, j] - log_norm", "out[i, j] = z[i, j] + log_norm",
     "log softmax = z + log Z (sign flip)"),
    ("log-softmax-min-shift", "m = max(m, z[i, j])", "m = min(m, z[i, j])",
     "log-sum-exp shifted by the smallest logit: overflows for logits far apart"),
    ("categorical-log-prob-wrong-action", "return _log_softmax(z)[np.arange(len(a)), a]",
     "return _log_softmax(z)[np.arange(len(a)), a - 1]", "log_prob of the wrong action"),
    ("inverse-cdf-no-cumsum", "c += p[i, j]", "c = p[i, j]", "sampling compares p_j, not the CDF, with u"),
    ("categorical-mode-argmin", "return z.argmax(1)", "return z.argmin(1)",
     "the greedy action is the least likely one"),
    ("categorical-dlogp-sign", "g = -_softmax(z)  # (N, A)", "g = _softmax(z)  # (N, A)",
     "d log pi/dz = onehot + p (sign flip)"),
    ("categorical-dlogp-onehot-off-by-one", "g[np.arange(len(a)), a] += 1", "g[np.arange(len(a)), a - 1] += 1",
     "onehot at the wrong action"),
    ("categorical-entropy-sign", "return -(np.exp(logp) * logp).sum(1)", "return (np.exp(logp) * logp).sum(1)",
     "H = +sum p log p"),
    ("categorical-dentropy-drops-H", "-p * (logp + self.entropy(z)[:, None])", "-p * logp",
     "dH/dz drops the + H term"),
    ("categorical-kl-swapped", "(np.exp(logp_old) * (logp_old - _log_softmax(z))).sum(1)",
     "(np.exp(_log_softmax(z)) * (_log_softmax(z) - logp_old)).sum(1)", "KL(pi || pi_old) (swapped arguments)"),
    ("categorical-dkl-sign", "return _softmax(z) - _softmax(z_old)", "return _softmax(z_old) - _softmax(z)",
     "dKL/dz = p_old - p"),
    ("categorical-fisher-drops-outer", "return p * dz - p * (p * dz).sum(1, keepdims=True)", "return p * dz",
     "M = diag(p), the - p p^T term dropped"),
    ("categorical-fisher-wrong-axis", "(p * dz).sum(1, keepdims=True)", "(p * dz).sum(0, keepdims=True)",
     "p^T dz summed over the batch instead of the actions"),
    # DiagGaussian
    ("gaussian-sample-variance", "return mu + np.exp(log_std) * eps", "return mu + np.exp(2 * log_std) * eps",
     "samples scaled by sigma^2"),
    ("gaussian-sample-float64", "eps = rng.standard_normal(mu.shape).astype(mu.dtype)",
     "eps = rng.standard_normal(mu.shape)", "float64 actions in a float32 run (wrong dtype)"),
    ("gaussian-mode-log-std", "return self._split(z)[0]", "return self._split(z)[1]",
     "the deterministic action is log sigma, not mu"),
    ("gaussian-log-prob-const-drops-A", "- 0.5 * self.A * math.log(2 * math.pi)", "- 0.5 * math.log(2 * math.pi)",
     "log-density constant without its factor A"),
    ("gaussian-log-prob-drops-log-std", "-0.5 * (u**2).sum(1) - log_std.sum(1) -", "-0.5 * (u**2).sum(1) -",
     "log-density without - log sigma"),
    ("gaussian-log-prob-sigma-sign", "u = (a - mu) / np.exp(log_std)  # (N, A)",
     "u = (a - mu) * np.exp(log_std)  # (N, A)", "u = (a - mu) sigma (sign flip in the exponent)"),
    ("gaussian-dlogp-mu-drops-factor", "np.concatenate([u / sigma, u**2 - 1], 1)", "np.concatenate([u, u**2 - 1], 1)",
     "d log pi/d mu = u, missing 1/sigma"),
    ("gaussian-dlogp-log-std-drops-1", "np.concatenate([u / sigma, u**2 - 1], 1)",
     "np.concatenate([u / sigma, u**2], 1)", "d log pi/d log_std = u^2, missing - 1"),
    ("gaussian-dlogp-float64", "sigma = np.exp(log_std)", "sigma = np.exp(log_std.astype(np.float64))",
     "d log pi/dz always float64 (wrong dtype)"),
    ("gaussian-entropy-drops-e", "0.5 * math.log(2 * math.pi * math.e)", "0.5 * math.log(2 * math.pi)",
     "entropy constant without e"),
    ("gaussian-dentropy-swapped", "[np.zeros_like(z[:, :self.A]), np.ones_like(z[:, self.A:])]",
     "[np.ones_like(z[:, :self.A]), np.zeros_like(z[:, self.A:])]", "dH/dmu and dH/dlog_std swapped"),
    ("gaussian-kl-log-ratio-sign", "(ls - ls0 + (np.exp(2 * ls0)", "(ls0 - ls + (np.exp(2 * ls0)",
     "KL with log(sigma_old/sigma)"),
    ("gaussian-kl-drops-2", "/ (2 * np.exp(2 * ls))", "/ np.exp(2 * ls)", "KL's quadratic term without 1/2"),
    ("gaussian-dkl-mu-sign", "[(mu - mu0) / var,", "[(mu0 - mu) / var,", "dKL/dmu sign flip"),
    ("gaussian-fisher-log-std-drops-2", "2.0 * dz[:, self.A:]", "dz[:, self.A:]",
     "Fisher of log sigma = 1 instead of 2"),
    ("gaussian-fisher-mean-sigma", "dz[:, :self.A] / np.exp(2 * log_std)", "dz[:, :self.A] / np.exp(log_std)",
     "Fisher of the mean = 1/sigma instead of 1/sigma^2"),
    # Policy: theta, backward, jvp, dist
    ("policy-theta-swapped", "np.concatenate([self.net.theta, self.extra])",
     "np.concatenate([self.extra, self.net.theta])", "theta = [extra, weights] (swapped arguments)"),
    ("policy-backward-extra-mean", "dz[:, self.head.n_out:].sum(0)", "dz[:, self.head.n_out:].mean(0)",
     "log-std gradient averaged over rows instead of summed (dropped factor N)"),
    ("policy-jvp-drops-extra", "np.broadcast_to(dtheta[n:], (len(dout), self.extra.size))",
     "np.zeros((len(dout), self.extra.size))", "J v ignores the log-std direction"),
    ("policy-dist-drops-extra", "z[:, self.head.n_out:] = out, self.extra", "z[:, self.head.n_out:] = out, 0.0",
     "log-std parameters never reach z"),
    # per_sample_grads
    ("outer-rows-kernel-bias-sign", "G[i, k] = d[i, m]", "G[i, k] = -d[i, m]", "per-sample bias gradient sign flip"),
    ("outer-rows-kernel-skips-last-input", "for j in range(n_in):", "for j in range(n_in - 1):",
     "per-sample dW misses the last input row (off by one)"),
    ("per-sample-grads-float64", "G = np.empty((N, policy.n_params), dtype=dz.dtype)",
     "G = np.empty((N, policy.n_params))", "per-sample gradients always float64 (wrong dtype)"),
    ("per-sample-grads-extra-summed", "G[:, net.theta.size:] = dz[:, policy.head.n_out:]",
     "G[:, net.theta.size:] = dz[:, policy.head.n_out:].sum(0)", "every row gets the batch's log-std gradient"),
    # Adam, RMSprop, clip_grad_norm, Agent
    ("adam-no-bias-correction", "mhat = self.m / (1 - b1**self.t)  # bias corrections: m and v start at 0\n"
     "        vhat = self.v / (1 - b2**self.t)", "mhat = self.m\n        vhat = self.v", "Adam without bias correction"),
    ("adam-bias-correction-off-by-one", "/ (1 - b1**self.t)", "/ (1 - b1**(self.t + 1))",
     "first-moment bias correction one step ahead"),
    ("adam-eps-inside-sqrt", "(np.sqrt(vhat) + self.eps)", "np.sqrt(vhat + self.eps)", "eps added under the root"),
    ("adam-ignores-lr-argument", "b1, b2, lr = *self.betas, self.lr if lr is None else lr",
     "b1, b2, lr = *self.betas, self.lr", "Adam.step(lr=...) ignored (the joint actor-critic step)"),
    ("adam-m-drops-factor", "self.m = b1 * self.m + (1 - b1) * g", "self.m = b1 * self.m + g",
     "m <- b1 m + g (dropped 1 - b1)"),
    ("adam-ascends", "return theta - lr * mhat", "return theta + lr * mhat", "optimiser steps up the gradient (sign flip)"),
    ("adam-betas-swapped", "b1, b2, lr = *self.betas,", "b2, b1, lr = *self.betas,", "b1 and b2 swapped (swapped arguments)"),
    ("adam-moments-float64", "self.m, self.v, self.t = np.zeros(n, dtype), np.zeros(n, dtype), 0",
     "self.m, self.v, self.t = np.zeros(n), np.zeros(n), 0", "moments always float64 (wrong dtype)"),
    ("rmsprop-alpha-swapped", "self.v = self.alpha * self.v + (1 - self.alpha) * g**2",
     "self.v = (1 - self.alpha) * self.v + self.alpha * g**2", "v <- (1 - a) v + a g^2"),
    ("rmsprop-ignores-lr-argument", "        lr = self.lr if lr is None else lr\n        g = np.asarray(g, self.v.dtype)",
     "        lr = self.lr\n        g = np.asarray(g, self.v.dtype)", "RMSprop.step(lr=...) ignored"),
    ("rmsprop-ascends", "return theta - lr * g / (np.sqrt(self.v) + self.eps)",
     "return theta + lr * g / (np.sqrt(self.v) + self.eps)", "RMSprop steps up the gradient (sign flip)"),
    ("clip-grad-norm-inverted", "norm > max_norm:", "norm < max_norm:", "clips the small gradients, not the large"),
    ("clip-grad-norm-no-sqrt", "norm = float(np.sqrt(grad @ grad))", "norm = float(grad @ grad)",
     "squared norm compared with max_norm"),
    ("clip-grad-norm-zero-not-off", "max_norm is not None and max_norm > 0 and",
     "max_norm is not None and max_norm >= 0 and",
     "max_grad_norm = 0 zeroes the gradient instead of switching the clip off"),
    ("agent-act-deterministic-inverted", "a = self.pi.head.mode(z) if deterministic else",
     "a = self.pi.head.mode(z) if not deterministic else",
     "acting samples when asked for the greedy action, and vice versa"),
    ("agent-v-lr-swapped", "(self.v.theta.size, lr=lr_v,", "(self.v.theta.size, lr=lr_pi,",
     "the critic's optimiser gets the policy's learning rate"),
)

# ---------------------------------------------------------------------------------------------------------------
# algos.py
# ---------------------------------------------------------------------------------------------------------------

ALGOS_MUTANTS = mutants(
    "algos.py",
    ('anneal-lr-v-constant', 'agent.opt_v.lr = hp.lr_v * scale',
     'agent.opt_v.lr = hp.lr_v',
     "the critic's rate is not annealed"),
    ('anneal-lr-pi-constant', 'agent.opt_pi.lr = hp.lr_pi * scale',
     'agent.opt_pi.lr = hp.lr_pi',
     "the policy's rate is not annealed"),
    # discount_cumsum, gae, trajectory_sums (numba kernels)
    ("discount-cumsum-reset-after-reward",
     "            if done[t, e]:\n                running[e] = 0.0\n"
     "            running[e] = rew[t, e] + gamma * running[e]",
     "            running[e] = rew[t, e] + gamma * running[e]\n"
     "            if done[t, e]:\n                running[e] = 0.0",
     "reward-to-go reset after adding r_t, so done steps get 0"),
    ("discount-cumsum-no-gamma", "running[e] = rew[t, e] + gamma * running[e]", "running[e] = rew[t, e] + running[e]",
     "reward-to-go undiscounted (dropped factor)"),
    ("gae-next-val-off-by-one", "else val[t + 1, e]", "else val[t, e]", "V(s_{t+1}) read as V(s_t)"),
    ("gae-truncation-not-bootstrapped", "next_val = final_val[t, e]", "next_val = 0.0",
     "a time-limit cut treated as a termination"),
    ("gae-no-reset-at-truncation", "if terminated[t, e] or truncated[t, e]:\n                running[e] = 0.0",
     "if terminated[t, e]:\n                running[e] = 0.0", "advantages leak across a truncation"),
    ("gae-truncated-condition-inverted", "elif truncated[t, e]:", "elif not truncated[t, e]:",
     "bootstraps from final_val everywhere except at truncations"),
    ("gae-drops-lambda", "running[e] = td + gamma * lam * running[e]", "running[e] = td + gamma * running[e]",
     "GAE with lambda = 1 always"),
    ("gae-td-sign", "td = rew[t, e] + gamma * next_val - val[t, e]", "td = rew[t, e] + gamma * next_val + val[t, e]",
     "td = r + gamma V' + V"),
    ("trajectory-sums-h-drops-phi", "h_tau[k, p] += G[t, p] * phi[t]", "h_tau[k, p] += G[t, p]",
     "h(tau) = g(tau) (dropped factor Phi_t)"),
    ("trajectory-sums-episode-off-by-one", "k = ep[t]", "k = ep[t - 1]",
     "sample t added to the previous one's episode"),
    # flat, whole_episodes, explained_variance
    ("flat-time-major", "return x.swapaxes(0, 1).reshape(-1, *x.shape[2:])", "return x.reshape(-1, *x.shape[2:])",
     "flat is time-major: episodes interleave across envs (transpose)"),
    ('explained-variance-swapped', 'var = _var(target)',
     'var = _var(val)',
     '1 - Var[target - V] / Var[V]'),
    ("var-not-centred", "d = x - x.mean()", "d = x", "variance without the mean subtracted"),
    # cg, fisher_vector_product, line_search
    ("cg-residual-sign", "r -= alpha * Ap", "r += alpha * Ap", "residual updated with the wrong sign"),
    ("cg-beta-inverted", "p = r + (rr_new / rr) * p", "p = r + (rr / rr_new) * p", "beta = r^T r / r'^T r'"),
    ("cg-steepest-descent", "p = r + (rr_new / rr) * p", "p = r", "conjugate directions dropped"),
    ("cg-tol-inverted", "if rr <= tol:", "if rr > tol:", "stops while the residual is large"),
    ("fvp-drops-1/N", "hs) / len(z) + damping * v", "hs) + damping * v", "F summed over the batch, not averaged"),
    ("fvp-damping-sign", "/ len(z) + damping * v", "/ len(z) - damping * v", "F - damping I"),
    ("fvp-drops-metric", "pi.backward(pi.head.fisher(z, pi.jvp(v, hs)), hs)", "pi.backward(pi.jvp(v, hs), hs)",
     "J^T J instead of J^T M J"),
    ("line-search-drops-surrogate-clause", "if kl <= max_kl and surr > surr_old:", "if kl <= max_kl:",
     "accepts a step that makes the surrogate worse"),
    ("line-search-kl-inverted", "if kl <= max_kl and surr > surr_old:", "if kl >= max_kl and surr > surr_old:",
     "accepts only steps that break the KL bound"),
    ("line-search-shrink-off-by-one", "theta = theta_old + coef ** j * step",
     "theta = theta_old + coef ** (j + 1) * step",
     "the full step is never tried"),
    ("line-search-failure-keeps-last", "    return theta_old, iters", "    return theta, iters",
     "no step accepted, but the last (rejected) one is kept"),
    # fit_value, normalise, policy_gradient, prepare
    ('fit-value-sign', 'agent.v.backward((out - v_target[mb, None]) / len(mb), hs)',
     'agent.v.backward((v_target[mb, None] - out) / len(mb), hs)',
     'critic regression climbs the loss'),
    ("fit-value-no-shuffle", "np.array_split(rng.permutation(N), max(1, N // hp.v_minibatch))",
     "np.array_split(np.arange(N), max(1, N // hp.v_minibatch))",
     "critic minibatches in rollout order, never shuffled"),
    ("fit-value-one-minibatch-more", "max(1, N // hp.v_minibatch)", "max(1, N // hp.v_minibatch + 1)",
     "critic minibatches one more than N // v_minibatch"),
    ("normalise-std-no-1/N", "np.sqrt(d @ d / len(d))", "np.sqrt(d @ d)", "std without its 1/N"),
    ("normalise-not-centred", "d = adv - adv.sum() / len(adv)", "d = adv", "advantages scaled but not centred"),
    ("policy-gradient-drops-A", "dz = pi.head.dlogp(z, act) * A[:, None]", "dz = pi.head.dlogp(z, act)",
     "policy gradient without the advantage weight"),
    ("policy-gradient-entropy-sign", "dz += ent_coef * pi.head.dentropy(z)", "dz -= ent_coef * pi.head.dentropy(z)",
     "entropy penalty instead of bonus (VPG, A2C)"),
    ("policy-gradient-drops-1/N", "return pi.backward(dz, hs) / len(A)", "return pi.backward(dz, hs)",
     "gradient summed, not averaged"),
    ('prepare-adv-int64', 'adv=flat(adv).astype(dtype)',
     'adv=flat(adv).astype(np.int64)',
     'advantages truncated to integers (wrong dtype cast)'),
    ('prepare-ret-drops-val', 'v_target=flat(adv + batch.val).astype(dtype)',
     'v_target=flat(adv).astype(dtype)',
     'critic target = A instead of A + V'),
    ('prepare-gamma-lam-swapped', 'batch.last_val, hp.gamma,\n              hp.lam)  # (T, E)',
     'batch.last_val, hp.lam,\n              hp.gamma)  # (T, E)',
     'gae(..., lam, gamma) (swapped arguments)'),
    # pg_estimate, update_reinforce
    ("pg-estimate-optimal-b-sign", "(h_tau.sum(0) - b * g_tau.sum(0))", "(h_tau.sum(0) + b * g_tau.sum(0))",
     "optimal baseline added, not subtracted"),
    ("pg-estimate-optimal-b-swapped", "b = np.divide(gh, gg, out=", "b = np.divide(gg, gh, out=",
     "b = E[g^2] / E[g h] (swapped arguments)"),
    ("pg-estimate-optimal-where-inverted", "where=gg > 0)", "where=gg < 0)", "optimal baseline never applied"),
    ("pg-estimate-n-tau-off-by-one", "n_tau = int(ep[-1]) + 1", "n_tau = int(ep[-1])", "N_tau one too small"),
    ("pg-estimate-n-tau-numpy-int", "n_tau = int(ep[-1]) + 1", "n_tau = ep[-1] + 1",
     "N_tau a numpy int64: float32 gradients become float64 (wrong dtype)"),
    ("pg-estimate-mean-baseline-dropped", "phi = phi - phi.mean()", "phi = phi", "baseline 'mean' does nothing"),
    ("pg-estimate-v-baseline-sign", "phi = phi - val", "phi = phi + val", "Phi + V instead of Phi - V"),
    ('reinforce-ep-index-off-by-one', 'return np.r_[self.ep[1:] != self.ep[:-1], True]',
     'return np.r_[True, self.ep[1:] != self.ep[:-1]]',
     "an episode's end marked at its first step, not its last"),
    ("reinforce-R-tau-off-by-one", "np.flatnonzero(np.diff(ep)) + 1]", "np.flatnonzero(np.diff(ep))]",
     "R(tau) read from the previous episode's last step"),
    ('reinforce-phi-inverted', 'phi = R_tau if hp.phi == "return" else rtg',
     'phi = R_tau if hp.phi != "return" else rtg',
     "phi='rtg' uses R(tau) and vice versa"),
    ("reinforce-ascent-sign", "agent.opt_pi.step(agent.pi.theta, -g)", "agent.opt_pi.step(agent.pi.theta, g)",
     "REINFORCE descends the gradient"),
    ('reinforce-critic-condition-inverted', 'fit_value(agent, obs, rtg, hp, rng) if hp.baseline == "v"',
     'fit_value(agent, obs, rtg, hp, rng) if hp.baseline != "v"',
     'critic fitted only when it is not used'),
    # update_vpg, update_a2c
    ("vpg-ascent-sign", "pi.theta = agent.opt_pi.step(pi.theta, -g)", "pi.theta = agent.opt_pi.step(pi.theta, g)",
     "VPG descends the gradient"),
    ('vpg-ignores-norm-adv', 'A = normalise(s.adv) if hp.norm_adv else s.adv\n    z_old, hs = pi.dist(s.obs)\n    # 000',
     'A = s.adv\n    z_old, hs = pi.dist(s.obs)\n    # 000',
     'VPG never normalises the advantages'),
    ('a2c-critic-drops-vf-coef', 'agent.v.backward(hp.vf_coef * (out - s.v_target[:, None]) / N, hv)',
     'agent.v.backward((out - s.v_target[:, None]) / N, hv)',
     "A2C's value loss without c1"),
    ('a2c-actor-sign', 'np.concatenate([-g, grad_v])',
     'np.concatenate([g, grad_v])',
     "A2C's actor descends"),
    ('a2c-no-grad-clip', 'np.concatenate([-g, grad_v]), hp.max_grad_norm)',
     'np.concatenate([-g, grad_v]), 0)',
     'A2C ignores max_grad_norm'),
    ("a2c-critic-own-lr", "grad[pi.n_params:], lr=agent.opt_pi.lr)  # one joint loss",
     "grad[pi.n_params:])  # one joint loss", "A2C's critic stepped with lr_v, not the joint lr"),
    # update_trpo / update_npg
    ("trpo-step-no-sqrt", "step = np.sqrt(2 * hp.max_kl / (", "step = (2 * hp.max_kl / (",
     "natural-gradient step without the square root"),
    ("trpo-step-drops-2", "np.sqrt(2 * hp.max_kl /", "np.sqrt(hp.max_kl /", "step size sqrt(delta / x^T F x)"),
    ("trpo-step-damped-fvp", "x @ fisher_vector_product(pi, z_old, hs, x)",
     "x @ fisher_vector_product(pi, z_old, hs, x, hp.cg_damping)", "step scaled with the damped F"),
    ("trpo-cg-undamped", "fisher_vector_product(pi, z_old, hs, v, hp.cg_damping), g",
     "fisher_vector_product(pi, z_old, hs, v), g", "CG on the singular undamped F"),
    ('trpo-ratio-inverted', 'ratio = np.exp(head.log_prob(z, act) - logp_old)  # (N,) r_t',
     'ratio = np.exp(logp_old - head.log_prob(z, act))  # (N,) r_t',
     'surrogate with pi_old / pi'),
    ("trpo-kl-swapped", "float(pi.head.kl(z_old, z).mean())", "float(pi.head.kl(z, z_old).mean())",
     "line search bounds KL(pi || pi_old) (swapped arguments)"),
    ('npg-search-inverted', '    if search:\n        theta, backtracks = line_search(',
     '    if not search:\n        theta, backtracks = line_search(',
     'NPG line-searches and TRPO does not'),
    ("diagnostics-kl-swapped", "kl=float(head.kl(z_old, z).mean())", "kl=float(head.kl(z, z_old).mean())",
     "the logged kl is KL(pi_new || pi_old)"),
    ('diagnostics-explained-var-swapped', 'explained_var=explained_variance(val_old, v_target))',
     'explained_var=explained_variance(v_target, val_old))',
     'explained_variance(target, V): the two arguments swapped'),
    # dz_clip, dz_penalty
    ('dz-clip-min-inverted', 'unclipped = ratio * A <= clipped * A',
     'unclipped = ratio * A >= clipped * A',
     'gradient passed where the clipped term is the smaller'),
    ('dz-clip-bounds-swapped', 'clipped = np.clip(ratio, 1 - clip_eps, 1 + clip_eps)',
     'clipped = np.clip(ratio, 1 + clip_eps, 1 - clip_eps)',
     'np.clip(r, 1 + eps, 1 - eps) (swapped arguments)'),
    ('dz-clip-drops-ratio', 'dL_dz = (unclipped * ratio * A)[:, None]',
     'dL_dz = (unclipped * A)[:, None]',
     'd r/dz = dlogp, missing the factor r'),
    ('dz-clip-drops-1/n', 'dL_dz = (unclipped * ratio * A)[:, None] * head.dlogp(z, act) / len(A)',
     'dL_dz = (unclipped * ratio * A)[:, None] * head.dlogp(z, act)',
     'PPO-Clip gradient summed, not averaged'),
    ('dz-penalty-kl-sign', '- beta * head.dkl(z_old, z)) / len(A)',
     '+ beta * head.dkl(z_old, z)) / len(A)',
     'KL rewarded, not penalised'),
    ("dz-penalty-dkl-swapped", "beta * head.dkl(z_old, z)", "beta * head.dkl(z, z_old)",
     "d KL(pi || pi_old) (swapped arguments)"),
    # ppo_epochs
    ('ppo-adv-unnormalised', 'A = normalise(s.adv[mb]) if hp.norm_adv else s.adv[mb]',
     'A = s.adv[mb]',
     "PPO's minibatch advantages never normalised"),
    ('ppo-adv-normalised-per-batch', 'A = normalise(s.adv[mb]) if hp.norm_adv else s.adv[mb]',
     'A = normalise(s.adv)[mb] if hp.norm_adv else s.adv[mb]',
     'normalised over the batch, not the minibatch'),
    ("ppo-minibatch-count-swapped", "np.array_split(rng.permutation(N), max(1, N // hp.minibatch))",
     "np.array_split(rng.permutation(N), hp.minibatch)", "minibatch size used as the number of minibatches"),
    ("ppo-entropy-sign", "dz -= hp.ent_coef * head.dentropy(z) / len(mb)",
     "dz += hp.ent_coef * head.dentropy(z) / len(mb)",
     "PPO penalises entropy"),
    ("ppo-entropy-drops-1/n", "dz -= hp.ent_coef * head.dentropy(z) / len(mb)", "dz -= hp.ent_coef * head.dentropy(z)",
     "entropy bonus summed over the minibatch"),
    ('ppo-clip-vloss-inverted', '(v_clip - s.v_target[mb]) ** 2 > dv ** 2',
     '(v_clip - s.v_target[mb]) ** 2 < dv ** 2',
     'the clipped value loss takes the min, not the max'),
    ('ppo-clip-vloss-inside-inverted', 'inside = np.abs(v[:, 0] - s.val_old[mb]) < clip_v',
     'inside = np.abs(v[:, 0] - s.val_old[mb]) > clip_v',
     'd V_clip/dV = 1 outside the clip range, 0 inside'),
    ('ppo-clip-vloss-bounds-swapped', 'np.clip(v[:, 0] - s.val_old[mb], -clip_v, clip_v)',
     'np.clip(v[:, 0] - s.val_old[mb], clip_v, -clip_v)',
     'value clip with its bounds swapped'),
    ("ppo-drops-vf-coef", "agent.v.backward(hp.vf_coef * dv[:, None] / len(mb), hv)",
     "agent.v.backward(dv[:, None] / len(mb), hv)", "PPO's value loss without c1"),
    ('ppo-no-grad-clip', 'np.concatenate([pi.backward(dz, hs), grad_v]), hp.max_grad_norm)',
     'np.concatenate([pi.backward(dz, hs), grad_v]), 0.0)',
     'PPO ignores max_grad_norm'),
    ("ppo-critic-own-lr", "grad[pi.n_params:], lr=agent.opt_pi.lr)  # joint loss", "grad[pi.n_params:])  # joint loss",
     "PPO's critic stepped with lr_v, not the joint lr"),
    ("ppo-early-stop-when-off", "if stop_kl > 0 and", "if stop_kl >= 0 and",
     "target_kl = 0 stops after the first epoch instead of never"),
    ("ppo-early-stop-inverted", ".mean() > 1.5 * stop_kl:", ".mean() < 1.5 * stop_kl:", "stops while the KL is small"),
    ("ppo-early-stop-drops-1.5", ".mean() > 1.5 * stop_kl:", ".mean() > stop_kl:", "stops at d_targ, not 1.5 d_targ"),
    ("ppo-anneal-clip-inverted", "(frac if hp.anneal_clip else 1.0)", "(1.0 if hp.anneal_clip else frac)",
     "eps annealed exactly when anneal_clip is off"),
    ('ppo-loss-pi-max', 'L = float(np.mean(np.minimum(ratio * A, clipped * A)))',
     'L = float(np.mean(np.maximum(ratio * A, clipped * A)))',
     'the PPO-Clip objective (and the logged loss_pi) takes the max'),
    ("ppo-clipfrac-drops-1", "np.abs(ratio - 1) > clip_eps", "np.abs(ratio) > clip_eps",
     "clipfrac of |r|, not |r - 1|"),
    # update_ppo_penalty
    ('ppo-penalty-beta-rule-inverted', '        return beta * 2.0\n    if kl < hp.d_targ / 1.5:\n        return beta / 2.0',
     '        return beta / 2.0\n    if kl < hp.d_targ / 1.5:\n        return beta * 2.0',
     'beta halved when the KL is too large, doubled when too small'),
    ('ppo-penalty-additive-sign', 'beta + hp.beta_lr * (kl - hp.d_targ)',
     'beta + hp.beta_lr * (hp.d_targ - kl)',
     'additive rule steps beta the wrong way'),
    ('ppo-penalty-additive-no-floor', 'max(0.0, beta + hp.beta_lr * (kl - hp.d_targ))',
     '(beta + hp.beta_lr * (kl - hp.d_targ))',
     'the additive rule can make beta negative'),
    ('ppo-penalty-halving-threshold', '    if kl < hp.d_targ / 1.5:',
     '    if kl < hp.d_targ:',
     'beta halved as soon as KL < d_targ, not d_targ / 1.5'),
    ('ppo-penalty-loss-uses-beta0', '    beta = agent.beta\n',
     '    beta = hp.beta\n',
     'the loss always uses beta_0, never the adapted beta'),
)

# ---------------------------------------------------------------------------------------------------------------
# minipg.py: the runner's numerics (normaliser, reward scaling, collect's bootstrap of truncated steps, the
# training loop's annealing, the episode log), run with SELECTION["minipg.py"].
# ---------------------------------------------------------------------------------------------------------------

RUNNER_MUTANTS = mutants(
    "minipg.py",
    # REINFORCE's batch: N_tau whole episodes from reset, each env its share (the tail drop and the length bias)
    ('episodes-beyond-share', 'for i in np.flatnonzero(finished < share):',
     'for i in range(E):',
     "an env past its share keeps its steps: more (short) episodes from fast envs, and an unfinished tail"),
    ('episodes-stop-at-first-share', 'while np.any(finished < share):',
     'while np.all(finished < share):',
     'the batch ends when the first env has its share: the other envs end in an unfinished tail'),
    ('episodes-no-reset', '        self.begin(self.envs.reset()[0])\n        finished',
     '        finished',
     'a batch of episodes continues the episodes in progress instead of starting from reset'),
    ('norm-obs-divides-by-var', '(raw - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)',
     '(raw - self.obs_rms.mean) / (self.obs_rms.var + 1e-8)',
     'observations divided by the variance, not the std'),
    ('norm-obs-clip-halved', '-self.obs_clip, self.obs_clip)',
     '-self.obs_clip / 2, self.obs_clip / 2)',
     'normalised observations clipped to half the bound'),
    ('rms-mean-unweighted', 'self.mean = self.mean + delta * n / total',
     'self.mean = self.mean + delta',
     'running mean jumps to the batch mean'),
    ('rms-var-no-between-term', 'delta ** 2 * self.count * n / total) / total',
     '0 * self.count * n / total) / total',
     'the pooled variance drops the between-batch term'),
    ('rms-var-no-1/n', 'v = (d * d).sum(0) / n',
     'v = (d * d).sum(0)',
     'the batch variance misses its 1/n'),
    ('reward-scale-by-reward-std', 'self.ret_rms.update(self.discounted)',
     'self.ret_rms.update(rew)',
     'rewards scaled by the std of the rewards, not of the discounted return'),
    ('reward-return-undiscounted', 'self.discounted = self.discounted * self.gamma + rew',
     'self.discounted = self.discounted + rew',
     'the running return forgets gamma'),
    ('reward-return-never-reset', '        self.discounted[done] = 0.0\n',
     '',
     'the running return runs on across episodes'),
    ('reward-scaled-by-var', 'return rew / np.sqrt(self.ret_rms.var + 1e-8)',
     'return rew / (self.ret_rms.var + 1e-8)',
     'rewards divided by the variance'),
    ('bootstrap-from-current-obs', 'b.final_val[t, rows] = agent.value(norm.obs(final).astype(dt))',
     'b.final_val[t, rows] = agent.value(obs[rows])',
     'a truncated step bootstraps from V(s_t), not V(final obs)'),
    ('bootstrap-terminated-too', 'rows = np.flatnonzero(b.truncated[t])',
     'rows = np.flatnonzero(done)',
     'a terminated step bootstraps too'),
    ('bootstrap-unnormalised-final-obs', 'agent.value(norm.obs(final).astype(dt))',
     'agent.value(final.astype(dt))',
     'the final observation is not normalised before V'),
    ('last-val-zero', 'b.last_val = agent.value(obs)',
     'b.last_val = 0 * agent.value(obs)',
     'the cut at the end of the batch does not bootstrap'),
    ('obs-counted-twice', 'obs = norm.obs(self.raw_obs).astype(dt)\n        for t in range(T):',
     'obs = norm.obs(self.raw_obs, update=True).astype(dt)\n        for t in range(T):',
     'the first observation of a batch enters the statistics twice'),
    ('anneal-frac-off-by-one', 'if self.episodic else self.it / self.iters)',
     'if self.episodic else (self.it + 1) / self.iters)',
     'annealing one iteration ahead'),
    ('episode-step-off-by-one', 'self.steps + (t + 1) * E',
     'self.steps + t * E',
     'an episode is logged one vector step early'),
)

MUTANTS = NETS_MUTANTS + ALGOS_MUTANTS + RUNNER_MUTANTS

# The deeper run's extra mutants (--extra): each repeats a kind of bug that a default mutant already plants in the
# same function, and the same test catches it. They stay out of the default run to keep CI within its time, but
# every run checks that their targets still fit the source, like the others'.
EXTRA = {
    "mlp-bias-dropped", "backward-dx-dropped", "jvp-drops-db", "log-softmax-sign",
    "categorical-dlogp-onehot-off-by-one", "categorical-fisher-wrong-axis", "gaussian-log-prob-sigma-sign",
    "gaussian-kl-drops-2", "gaussian-fisher-mean-sigma", "adam-m-drops-factor", "clip-grad-norm-no-sqrt",
    "mlp-output-activated", "backward-dW-skips-sample-0", "jvp-drops-df", "deltas-df-wrong-layer",
    "gaussian-dlogp-log-std-drops-1", "policy-dist-drops-extra",
    "per-sample-grads-extra-summed", "adam-bias-correction-off-by-one",
    "gae-truncated-condition-inverted", "diagnostics-explained-var-swapped", "cg-beta-inverted",
    "policy-gradient-drops-1/N", "pg-estimate-optimal-b-swapped", "reinforce-ascent-sign", "a2c-actor-sign",
    "trpo-step-no-sqrt", "dz-clip-drops-1/n", "ppo-entropy-drops-1/n", "ppo-clip-vloss-bounds-swapped",
    "ppo-drops-vf-coef", "ppo-early-stop-inverted", "ppo-loss-pi-max", "gae-td-sign",
    "var-not-centred", "cg-residual-sign", "fvp-damping-sign", "fit-value-one-minibatch-more",
    "pg-estimate-n-tau-off-by-one", "reinforce-critic-condition-inverted", "vpg-ignores-norm-adv",
    "trpo-step-damped-fvp", "dz-penalty-kl-sign", "ppo-critic-own-lr", "fit-value-no-shuffle",
}


# ---------------------------------------------------------------------------------------------------------------
# the harness
# ---------------------------------------------------------------------------------------------------------------

def die(message):
    """A harness that cannot run must not look like one that ran: message on stderr, exit code 2."""
    print(f"bench/mutate.py: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def check(mutant_list):
    """Every target occurs exactly once, every mutated file still compiles, names are unique; else exit 2."""
    errors = [f"{name}: in EXTRA but not a mutant" for name in sorted(EXTRA - {m.name for m in mutant_list})]
    seen = set()
    for m in mutant_list:
        if m.name in seen:
            errors.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        if m.file not in SELECTION:
            errors.append(f"{m.name}: no test selection for {m.file} (add it to SELECTION)")
            continue
        path = ROOT / m.file
        if not path.exists():
            errors.append(f"{m.name}: {m.file} does not exist")
            continue
        src = path.read_text()
        n = src.count(m.old)
        if n != 1:
            errors.append(f"{m.name}: target found {n} times in {m.file} (must be exactly once): {m.old!r}")
        elif m.old == m.new:
            errors.append(f"{m.name}: the replacement is the target itself")
        else:
            try:
                compile(src.replace(m.old, m.new), m.file, "exec")
            except SyntaxError as e:
                errors.append(f"{m.name}: the mutated {m.file} does not compile: {e}")
    if errors:
        die("the mutants no longer fit the source; fix or remove them:\n  " + "\n  ".join(errors))


def project_files():
    """The files `git ls-files` lists, plus untracked files that are not ignored, that exist in the working tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"cannot list the project's files with git ls-files: {e}")
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


def selection_for(file):
    """SELECTION[file] without the test files that do not exist."""
    return [a for a in SELECTION[file] if not a.endswith(".py") or (ROOT / a).exists()]


@dataclass
class Result:
    mutant: Mutant  # None for a baseline
    caught: bool
    detail: str     # first failing test, or "timeout after N s"
    seconds: float
    output: str


def run_pytest(files, mutant, args, selection):
    """Copy the project into a temporary folder, apply the mutant (if any), run the selection there."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minipg-mutant-") as tmp:
        tmp = Path(tmp)
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, tmp / f)
        if mutant is not None:
            path = tmp / mutant.file
            path.write_text(path.read_text().replace(mutant.old, mutant.new, 1))
        cache = tmp / ".numba-cache-fresh"
        cache.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "NUMBA_DISABLE_JIT")}
        env.update(NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1", OPENBLAS_NUM_THREADS="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
        stop = [] if args.all_failures else ["-x"]
        cmd = [sys.executable, "-m", "pytest", "-q", *stop, "-p", "no:cacheprovider", "-rfE", "--tb=short", *selection]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and anything it started; the session is its own
            out, _ = proc.communicate()
            return Result(mutant, True, f"timeout after {args.timeout:.0f} s", time.perf_counter() - t0, out)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    detail = failed[0] if failed else f"pytest exit {proc.returncode}"
    if args.all_failures and len(failed) > 1:
        detail = f"{len(failed)} tests: " + " ".join(failed)
    return Result(mutant, proc.returncode != 0, detail, time.perf_counter() - t0, out)


def line(r):
    m = r.mutant
    head = f"{'caught' if r.caught else 'SURVIVED':<8} {m.file:<9} {m.name:<38}"
    return f"{head} ({r.detail}, {r.seconds:.1f} s)" if r.caught else f"{head} ({r.seconds:.1f} s)"


def tail(text, n=40):
    return "\n".join("    | " + s for s in text.rstrip().splitlines()[-n:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants run at once (default: cpu count)")
    p.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                   help="run only these mutants, EXTRA ones included (names or shell patterns such as 'ppo-*')")
    p.add_argument("--list", action="store_true", help="list the mutants (after checking them) and exit")
    p.add_argument("--extra", action="store_true", help="also run the EXTRA mutants (a deeper, longer run)")
    p.add_argument("--min-score", type=float, default=0.95, help="fraction caught needed for exit code 0")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant; a timeout counts as caught")
    p.add_argument("--show", action="store_true", help="print the end of pytest's output for every mutant")
    p.add_argument("--all-failures", action="store_true",
                   help="run the whole selection (no -x) and list every test that fails, not just the first")
    args = p.parse_args(argv)

    check(MUTANTS)
    chosen = [m for m in MUTANTS if args.extra or m.name not in EXTRA]
    if args.only:
        chosen = [m for m in MUTANTS if any(fnmatch.fnmatchcase(m.name, pat) for pat in args.only)]
        unknown = [pat for pat in args.only if not any(fnmatch.fnmatchcase(m.name, pat) for m in MUTANTS)]
        if unknown:
            die(f"no mutant matches {', '.join(unknown)} (see --list)")
    if args.list:
        for m in chosen:
            print(f"{m.file:<9} {m.name:<38} {'(extra) ' if m.name in EXTRA else ''}{m.doc}")
        counts = {f: sum(m.file == f for m in chosen) for f in SELECTION}
        print("mutants: " + ", ".join(f"{n} in {f}" for f, n in counts.items()) + f"; {len(chosen)} in all"
              + ("" if args.extra or args.only else f" (and {len(EXTRA)} more with --extra)"))
        return 0

    t0 = time.perf_counter()
    files = project_files()
    selections = {f: selection_for(f) for f in sorted({m.file for m in chosen})}
    for f, sel in selections.items():
        missing = [a for a in SELECTION[f] if a not in sel]
        if missing:
            print(f"note: {', '.join(missing)} not found; {f} mutants run {' '.join(sel)}", flush=True)

    # The unmutated selections first: a harness whose baseline fails proves nothing.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        distinct = {}  # one baseline per set of test files and options: the files' order cannot change pass/fail
        for sel in selections.values():
            distinct.setdefault((frozenset(a for a in sel if a.endswith(".py")),
                                 tuple(a for a in sel if not a.endswith(".py"))), sel)
        baselines = list(distinct.values())
        for r, sel in zip(pool.map(lambda s: run_pytest(files, None, args, s), baselines), baselines):
            if r.caught:
                die(f"the unmutated selection fails ({shlex.join(sel)}: {r.detail}), so no mutant can be judged:\n"
                    + tail(r.output))
            print(f"baseline {shlex.join(sel)}: passes ({r.seconds:.1f} s)", flush=True)

        results = []
        futures = [pool.submit(run_pytest, files, m, args, selections[m.file]) for m in chosen]
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            print(line(r), flush=True)
            if args.show:
                print(tail(r.output, 15), flush=True)

    survivors = sorted((r.mutant for r in results if not r.caught), key=MUTANTS.index)
    documented = DOC.read_text() if DOC.exists() else ""
    if survivors:
        print("survivors: " + ", ".join(m.name for m in survivors))
        undocumented = [m.name for m in survivors if f"`{m.name}`" not in documented]
        if undocumented:
            print("warning: bench/mutants.md gives no reason for " + ", ".join(undocumented))
    caught = sum(r.caught for r in results)
    print(f"time: {time.perf_counter() - t0:.0f} s with {args.jobs} jobs")
    print(f"mutants: {caught} of {len(results)} caught")
    return 0 if results and caught / len(results) >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
