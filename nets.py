"""nets.py -- hand-written NumPy networks for policy gradients. No autograd.

What is here, top to bottom:
  MLP            forward (with a cache), backward (J^T u), jvp (J v, the "R-op"), one flat parameter vector
  Categorical    policy head over logits                    } one interface: sample, mode, log_prob, dlogp,
  DiagGaussian   mean from the MLP, state-independent log-std } entropy, dentropy, kl, dkl, fisher
  Policy         MLP + head; its parameters theta are one flat vector
  per_sample_grads  grad_theta log pi(a_i|s_i) for every sample i, as an (N, P) array (numba)
  Adam, RMSprop, clip_grad_norm   hand-written optimisers (they *minimise*; algorithms pass minus the ascent direction)
  Agent          the policy pi_theta and the critic V_phi, with their optimisers

Conventions: a trailing shape comment `# (N, D)` where an array is made. N = samples, D = head parameters
(D = A logits, or 2A for mean and log-std), P = number of parameters. Everything is float64 unless the
caller passes float32 arrays. This file imports only numpy, numba and (if installed) threadpoolctl, so it can be
copied into coursework.

The MLP, the heads and the optimisers are written as their equations, in NumPy; matrix products go to BLAS.
Numba compiles only what is a loop in the maths: log-sum-exp, inverse-CDF sampling and the per-sample gradients.

BLAS threads: the matrices here are small (batch x 64), where threads cost far more than they save, so importing
this file limits BLAS to one thread, wherever it is imported from and whatever was imported first (threadpoolctl;
without it, the environment variables below, which work only if numpy is not loaded yet). Set
MINIPG_BLAS_THREADS=N before importing to choose N threads, or 0 to leave BLAS alone.
"""
import math
import os

_BLAS_THREADS = int(os.environ.get("MINIPG_BLAS_THREADS", "1"))
if _BLAS_THREADS > 0:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_BLAS_THREADS))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

try:
    from threadpoolctl import threadpool_limits  # made for this; scikit-learn uses it the same way
except ImportError:
    threadpool_limits = None
if _BLAS_THREADS > 0 and threadpool_limits is not None:
    threadpool_limits(limits=_BLAS_THREADS, user_api="blas")

ACTIVATIONS = ("tanh", "relu")


def orthogonal(rng, n_in, n_out, gain):
    """Orthogonal init (Saxe et al. 2014), as in Spinning Up / CleanRL / SB3. Returns W: (n_in, n_out)."""
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the decomposition unique, so the init is uniform over orthogonal matrices
    W = q if n_in >= n_out else q.T
    return gain * W[:n_in, :n_out]


class MLP:
    """y = W_L f(... f(x W_1 + b_1) ...) + b_L with f = tanh or relu.

    All weights live in one flat vector `theta` (P,); `W[l]` (n_in, n_out) and `b[l]` (n_out,) are views into it,
    so get/set of the flat vector (natural gradient, TRPO) and per-layer code see the same numbers.
    Flat order: W_1 row-major, b_1, W_2, b_2, ...
    """

    def __init__(self, sizes, activation="tanh", out_gain=1.0, rng=None, hidden_gain=math.sqrt(2), dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes must be (in, hidden..., out) with positive ints, got {sizes}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.sizes, self.activation = tuple(int(s) for s in sizes), activation
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.theta = np.zeros(sum(i * o + o for i, o in shapes), dtype)  # (P,)
        self.W, self.b, k = [], [], 0
        for i, o in shapes:
            self.W.append(self.theta[k:k + i * o].reshape(i, o)); k += i * o
            self.b.append(self.theta[k:k + o]); k += o
        self.grad = np.zeros_like(self.theta)  # (P,) backward's buffer, laid out like theta, with its views:
        self.dW, self.db = self._views(self.grad)  # made once, not on every backward call
        for l, (i, o) in enumerate(shapes):  # gains: sqrt(2) hidden, out_gain (0.01 policy, 1.0 value) last
            self.W[l][:] = orthogonal(rng, i, o, out_gain if l == len(shapes) - 1 else hidden_gain)

    def f(self, a):
        """The activation f(a): tanh or relu."""
        return np.tanh(a) if self.activation == "tanh" else np.maximum(a, 0)

    def df(self, h):
        """f'(a) written in terms of h = f(a): tanh' = 1 - h^2, relu' = [h > 0]."""
        return 1 - h**2 if self.activation == "tanh" else (h > 0).astype(h.dtype)

    def forward(self, x):
        """x: (N, n_in) -> y: (N, n_out), cache = the input of every layer [x, h_1, ..., h_{L-1}]."""
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"MLP input must have shape (N, {self.sizes[0]}), got {x.shape}")
        h, hs, L = x, [], len(self.W)
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            hs.append(h)
            a = h @ W + b  # (N, n_{l+1})
            h = self.f(a) if l < L - 1 else a  # the last layer is linear
        return h, hs

    def deltas(self, dy, hs):
        """Backprop dy (N, n_out) through the layers; yields (l, d_l) with d_l = dLoss/d(pre-activation of layer l)."""
        if dy.shape != (hs[0].shape[0], self.sizes[-1]):
            raise ValueError(f"output gradient must have shape ({hs[0].shape[0]}, {self.sizes[-1]}), got {dy.shape}")
        d = dy
        for l in range(len(self.W) - 1, -1, -1):
            yield l, d
            if l > 0:
                d = (d @ self.W[l].T) * self.df(hs[l])  # (N, n_l): d_{l-1} = (d_l W_l^T) * f'(a_{l-1})

    def backward(self, dy, hs):
        """Returns (dtheta (P,), dx (N, n_in)): the gradient of sum_i <dy_i, y_i> w.r.t. parameters and inputs."""
        dW, db = self.dW, self.db  # views into self.grad
        for l, d in self.deltas(dy, hs):
            dW[l][:] = hs[l].T @ d  # (n_in, n_out)
            db[l][:] = d.sum(0)  # (n_out,)
        return self.grad.copy(), d @ self.W[0].T  # dtheta (P,), dx (N, n_in)

    def jvp(self, dtheta, hs):
        """Forward-mode derivative (the R-op): dy = J dtheta, (N, n_out), for a parameter direction dtheta (P,)."""
        dW, db = self._views(dtheta)
        dh = np.zeros_like(hs[0])  # the input does not depend on theta
        for l in range(len(self.W)):
            da = dh @ self.W[l] + hs[l] @ dW[l] + db[l]  # product rule on a = h W + b
            if l < len(self.W) - 1:
                dh = self.df(hs[l + 1]) * da  # dh = f'(a) da
        return da

    def _views(self, flat):
        """The (W, b) views of any flat vector laid out like theta."""
        Ws, bs, k = [], [], 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            Ws.append(flat[k:k + i * o].reshape(i, o)); k += i * o
            bs.append(flat[k:k + o]); k += o
        return Ws, bs


# ---------------------------------------------------------------------------------------------------------------
# Policy heads. z (N, D) are the distribution's parameters; every method is vectorised over the N rows.
# Gradients are with respect to z; the Policy carries them on to theta.
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _log_softmax(z):
    """log softmax of each row of z (N, A): z_j - m - log sum_k exp(z_k - m), with m = max_k z_k for stability
    (log-sum-exp), as the loop it is: NumPy's reductions along a short last axis cost more than the arithmetic."""
    out = np.empty_like(z)  # (N, A)
    for i in range(z.shape[0]):
        m = z[i, 0]
        for j in range(1, z.shape[1]):
            m = max(m, z[i, j])
        s = 0.0
        for j in range(z.shape[1]):
            s += math.exp(z[i, j] - m)
        log_norm = m + math.log(s)
        for j in range(z.shape[1]):
            out[i, j] = z[i, j] - log_norm
    return out


def _softmax(z):
    return np.exp(_log_softmax(z))  # (N, A)


@njit(cache=True)
def _inverse_cdf(p, u):
    """Inverse-CDF sampling: a_i = the first j with p_i1 + ... + p_ij >= u_i (the last action if rounding
    leaves the total below u_i). p (N, A), u (N,) uniform on [0, 1) -> a (N,) ints."""
    a = np.empty(p.shape[0], np.int64)
    for i in range(p.shape[0]):
        a[i], c = p.shape[1] - 1, 0.0
        for j in range(p.shape[1] - 1):
            c += p[i, j]
            if c >= u[i]:
                a[i] = j
                break
    return a


class Categorical:
    """pi(a|s) = softmax(z)_a over logits z (N, A), for Discrete(A) actions. 000 §Policies (categorical)."""

    def __init__(self, n):
        self.n_out, self.D = n, n  # the MLP gives all D = A parameters; no state-independent ones

    def sample(self, z, rng):
        return _inverse_cdf(_softmax(z), rng.random(z.shape[0]))  # (N,)

    @property
    def n(self):
        return self.D

    def mode(self, z):
        return z.argmax(1)

    def log_prob(self, z, a):
        """log pi(a|s) = z_a - log sum_j exp z_j."""
        return _log_softmax(z)[np.arange(len(a)), a]  # (N,)

    def dlogp(self, z, a):
        """d log pi(a|s) / dz = onehot(a) - p."""
        g = -_softmax(z)  # (N, A)
        g[np.arange(len(a)), a] += 1
        return g

    def entropy(self, z):
        """H = -sum_j p_j log p_j."""
        logp = _log_softmax(z)
        return -(np.exp(logp) * logp).sum(1)  # (N,)

    def dentropy(self, z):
        """dH/dz_j = -p_j (log p_j + H)."""
        p, logp = _softmax(z), _log_softmax(z)
        return -p * (logp + self.entropy(z)[:, None])  # (N, A)

    def kl(self, z_old, z):
        """KL(pi_old || pi) = sum_j p_old_j (log p_old_j - log p_j)."""
        logp_old = _log_softmax(z_old)
        return (np.exp(logp_old) * (logp_old - _log_softmax(z))).sum(1)  # (N,)

    def dkl(self, z_old, z):
        """d KL(pi_old || pi) / dz = p - p_old."""
        return _softmax(z) - _softmax(z_old)  # (N, A)

    def fisher(self, z, dz):
        """Fisher metric of the logits applied to dz: M dz = (diag(p) - p p^T) dz (001 §Method 2), since
        M = E_a[(e_a - p)(e_a - p)^T] with d log pi/dz = e_a - p. M 1 = 0: M is singular."""
        p = _softmax(z)
        return p * dz - p * (p * dz).sum(1, keepdims=True)  # (N, A)


class DiagGaussian:
    """pi(a|s) = N(mu, diag(sigma^2)), z = [mu (N, A), log_std (N, A)]; mu from the MLP, log_std a free
    state-independent parameter (000 §Policies, diagonal Gaussian; 003 §2.5)."""

    def __init__(self, act_dim):
        self.A = act_dim
        self.n_out, self.D = act_dim, 2 * act_dim  # the MLP gives mu; log_std are A extra parameters

    def _split(self, z):
        return z[:, :self.A], z[:, self.A:]

    def sample(self, z, rng):
        mu, log_std = self._split(z)
        eps = rng.standard_normal(mu.shape).astype(mu.dtype)  # (N, A); in z's dtype, so float32 stays float32
        return mu + np.exp(log_std) * eps  # a = mu + sigma * eps

    def mode(self, z):
        return self._split(z)[0]

    def log_prob(self, z, a):
        """log pi(a|s) = -1/2 sum_k u_k^2 - sum_k log sigma_k - A/2 log(2 pi), with u = (a - mu)/sigma."""
        mu, log_std = self._split(z)
        u = (a - mu) / np.exp(log_std)  # (N, A)
        return -0.5 * (u**2).sum(1) - log_std.sum(1) - 0.5 * self.A * math.log(2 * math.pi)  # (N,)

    def dlogp(self, z, a):
        """d log pi / d mu = u / sigma,  d log pi / d log_std = u^2 - 1, with u = (a - mu)/sigma."""
        mu, log_std = self._split(z)
        sigma = np.exp(log_std)
        u = (a - mu) / sigma  # (N, A)
        # 003 §2.5 writes -1/2 Sigma^-1 (f(s) - a) df/dtheta: the 1/2 is wrong, d log pi/d mu = u/sigma (docs/notes.md)
        return np.concatenate([u / sigma, u**2 - 1], 1)  # (N, 2A)

    def entropy(self, z):
        """H = sum_k (log sigma_k + 1/2 log(2 pi e))."""
        return (self._split(z)[1] + 0.5 * math.log(2 * math.pi * math.e)).sum(1)  # (N,)

    def dentropy(self, z):
        """dH/dmu = 0, dH/dlog_std = 1."""
        return np.concatenate([np.zeros_like(z[:, :self.A]), np.ones_like(z[:, self.A:])], 1)  # (N, 2A)

    def kl(self, z_old, z):
        """KL(pi_old || pi) = sum_k log(sigma_k/sigma_old_k) + (sigma_old_k^2 + (mu_old_k - mu_k)^2)/(2 sigma_k^2) - 1/2."""
        (mu0, ls0), (mu, ls) = self._split(z_old), self._split(z)
        return (ls - ls0 + (np.exp(2 * ls0) + (mu0 - mu) ** 2) / (2 * np.exp(2 * ls)) - 0.5).sum(1)  # (N,)

    def dkl(self, z_old, z):
        """dKL/dmu = (mu - mu_old)/sigma^2,  dKL/dlog_std = 1 - (sigma_old^2 + (mu_old - mu)^2)/sigma^2."""
        (mu0, ls0), (mu, ls) = self._split(z_old), self._split(z)
        var = np.exp(2 * ls)
        return np.concatenate([(mu - mu0) / var, 1.0 - (np.exp(2 * ls0) + (mu0 - mu) ** 2) / var], 1)  # (N, 2A)

    def fisher(self, z, dz):
        """Fisher metric applied to dz: 1/sigma^2 on the mean, 2 on each log-std (001 §Method 2). With
        u = (a - mu)/sigma: E[(u/sigma)^2] = 1/sigma^2, E[(u^2 - 1)^2] = 2, E[u (u^2 - 1)] = 0. (001's example
        takes sigma itself as the parameter, which gives 2/sigma^2; we use log sigma.)"""
        log_std = self._split(z)[1]
        return np.concatenate([dz[:, :self.A] / np.exp(2 * log_std), 2.0 * dz[:, self.A:]], 1)  # (N, 2A)


class Policy:
    """pi_theta(a|s): an MLP gives the first head.n_out columns of z; the head's state-independent parameters
    (log-std for DiagGaussian, none for Categorical) give the rest. theta = [MLP weights, extra] (P,)."""

    def __init__(self, obs_dim, head, hidden=(64, 64), activation="tanh", rng=None, init_log_std=0.0, dtype=np.float64):
        self.head = head
        self.net = MLP((obs_dim, *hidden, head.n_out), activation, out_gain=0.01, rng=rng, dtype=dtype)
        self.extra = np.full(head.D - head.n_out, float(init_log_std), dtype)  # (D - n_out,)

    @property
    def theta(self):
        return np.concatenate([self.net.theta, self.extra])  # a copy, (P,)

    @theta.setter
    def theta(self, value):
        if value.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {value.shape}")
        self.net.theta[:] = value[:self.net.theta.size]
        self.extra[:] = value[self.net.theta.size:]

    @property
    def n_params(self):
        return self.net.theta.size + self.extra.size

    def dist(self, obs):
        """obs (N, obs_dim) -> z (N, D), cache."""
        out, hs = self.net.forward(obs)
        if self.extra.size == 0:
            return out, hs
        z = np.empty((len(obs), self.head.D), out.dtype)  # (N, D)
        z[:, :self.head.n_out], z[:, self.head.n_out:] = out, self.extra  # the extra parameters, on every row
        return z, hs

    def backward(self, dz, hs):
        """sum_i dz_i^T dz_i/dtheta: (P,). The extra parameters are shared by all rows, so their rows add up."""
        dtheta_net, _ = self.net.backward(np.ascontiguousarray(dz[:, :self.head.n_out]), hs)
        if self.extra.size == 0:
            return dtheta_net
        return np.concatenate([dtheta_net, dz[:, self.head.n_out:].sum(0)])

    def jvp(self, dtheta, hs):
        """J dtheta = dz for a parameter direction dtheta (P,): (N, D)."""
        n = self.net.theta.size
        dout = self.net.jvp(dtheta[:n], hs)
        return np.concatenate([dout, np.broadcast_to(dtheta[n:], (len(dout), self.extra.size))], 1)


# ---------------------------------------------------------------------------------------------------------------
# Per-sample gradients: row i of G is grad_theta of sum_k dz_ik z_ik for sample i alone. With dz = head.dlogp
# this is grad_theta log pi(a_i|s_i), which the optimal baseline (003 §5.3.4) and the variance lab need.
# The backprop of the deltas is batched (BLAS); numba writes the per-sample outer products straight into G.
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _outer_rows(G, col, h, d):
    """G[i, col:col + n_in*n_out] = outer(h_i, d_i).ravel();  G[i, next n_out] = d_i.  h: (N, n_in), d: (N, n_out)."""
    N, n_in = h.shape
    n_out = d.shape[1]
    for i in range(N):
        k = col
        for j in range(n_in):
            hij = h[i, j]
            for m in range(n_out):
                G[i, k] = hij * d[i, m]
                k += 1
        for m in range(n_out):
            G[i, k] = d[i, m]
            k += 1


def per_sample_grads(policy, hs, dz):
    """hs: the cache of policy.dist(obs); dz: (N, D). Returns G: (N, P) in theta's flat order; G.sum(0) == backward.
    Row i is grad log pi(a_i|s_i); the rows of one episode sum to 003 §5.3.4's g(tau), whose square weighs r."""
    net, N = policy.net, len(dz)
    G = np.empty((N, policy.n_params), dtype=dz.dtype)  # (N, P)
    offsets = np.cumsum([0] + [W.size + b.size for W, b in zip(net.W, net.b)])
    for l, d in net.deltas(np.ascontiguousarray(dz[:, :policy.head.n_out]), hs):
        _outer_rows(G, offsets[l], np.ascontiguousarray(hs[l]), np.ascontiguousarray(d))
    G[:, net.theta.size:] = dz[:, policy.head.n_out:]
    return G


# ---------------------------------------------------------------------------------------------------------------
# Optimisers: hand-written, on flat vectors. step(theta, grad) moves theta *down* grad, in place.
# ---------------------------------------------------------------------------------------------------------------

class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1), the optimiser 003 §7 recommends for policy gradients."""

    def __init__(self, n, lr=3e-4, betas=(0.9, 0.999), eps=1e-8, dtype=np.float64):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m, self.v, self.t = np.zeros(n, dtype), np.zeros(n, dtype), 0  # (P,) first and second moments

    def step(self, theta, g, lr=None):
        """Returns theta moved down g; m, v and t are updated."""
        b1, b2, lr = *self.betas, self.lr if lr is None else lr
        g = np.asarray(g, self.m.dtype)  # the moments keep their dtype (a float64 g must not promote a float32 run)
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g**2
        mhat = self.m / (1 - b1**self.t)  # bias corrections: m and v start at 0
        vhat = self.v / (1 - b2**self.t)
        return theta - lr * mhat / (np.sqrt(vhat) + self.eps)

    def state(self):
        return {"m": self.m, "v": self.v, "t": np.array(self.t)}

    def load(self, state):
        self.m, self.v, self.t = state["m"].copy(), state["v"].copy(), int(state["t"])


class RMSprop:
    """RMSprop (Tieleman & Hinton 2012) as A2C and SB3 use it (torch.optim.RMSprop): no momentum, no bias correction."""

    def __init__(self, n, lr=7e-4, alpha=0.99, eps=1e-5, dtype=np.float64):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.v, self.t = np.zeros(n, dtype), 0  # (P,) running mean of g^2

    def step(self, theta, g, lr=None):
        """Returns theta moved down g; v and t are updated."""
        lr = self.lr if lr is None else lr
        g = np.asarray(g, self.v.dtype)  # the moments keep their dtype
        self.t += 1
        self.v = self.alpha * self.v + (1 - self.alpha) * g**2
        return theta - lr * g / (np.sqrt(self.v) + self.eps)

    def state(self):
        return {"v": self.v, "t": np.array(self.t)}

    def load(self, state):
        self.v, self.t = state["v"].copy(), int(state["t"])


OPTIMISERS = {"adam": Adam, "rmsprop": RMSprop}


def clip_grad_norm(grad, max_norm):
    """Rescale grad so its global L2 norm is at most max_norm. Returns (grad, norm before clipping)."""
    norm = float(np.sqrt(grad @ grad))
    if max_norm is not None and max_norm > 0 and norm > max_norm:
        grad = grad * (max_norm / (norm + 1e-12))
    return grad, norm


class Agent:
    """The policy pi_theta and the critic V_phi (a separate MLP with one output), and one optimiser for each."""

    def __init__(self, obs_dim, head, hidden=(64, 64), activation="tanh", rng=None, optimiser="adam",
                 lr_pi=3e-4, lr_v=1e-3, eps=1e-5, init_log_std=0.0, dtype=np.float64):
        rng = np.random.default_rng(0) if rng is None else rng
        self.dtype = np.dtype(dtype)  # float32 trains faster; the tests run in float64
        self.pi = Policy(obs_dim, head, hidden, activation, rng, init_log_std, dtype)
        self.v = MLP((obs_dim, *hidden, 1), activation, out_gain=1.0, rng=rng, dtype=dtype)
        self.opt_pi = OPTIMISERS[optimiser](self.pi.n_params, lr=lr_pi, eps=eps, dtype=dtype)
        self.opt_v = OPTIMISERS[optimiser](self.v.theta.size, lr=lr_v, eps=eps, dtype=dtype)
        self.beta = None  # PPO-Penalty's adaptive KL coefficient, once it has one

    def value(self, obs):
        """V_phi(s): (N,)."""
        return self.v.forward(obs)[0][:, 0]

    def act(self, obs, rng, deterministic=False):
        """Returns a (N,) or (N, A), log pi(a|s) (N,), V(s) (N,)."""
        z, _ = self.pi.dist(obs)
        a = self.pi.head.mode(z) if deterministic else self.pi.head.sample(z, rng)
        return a, self.pi.head.log_prob(z, a), self.value(obs)
