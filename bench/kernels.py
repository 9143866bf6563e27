"""bench/kernels.py -- timings of the numba kernels in nets.py and algos.py against NumPy / pure Python.

    python bench/kernels.py                     # prints the table and writes it to bench/kernels.md
    python bench/kernels.py --small --out /tmp/kernels.md     # smaller arrays: a smoke test, not the figures

Run from anywhere (it puts the repo root on sys.path itself). The start-up rows delete nets' and algos' numba cache
files (in NUMBA_CACHE_DIR if set, else __pycache__) and so make the next import compile again.

  1. nets.per_sample_grads (numba) vs the best pure-NumPy version vs a Python loop of pi.backward per sample,
     N = 4096 samples of grad_theta log pi(a|s) for Policy(obs_dim=11, hidden=(64, 64), tanh, DiagGaussian(3)).
  2. algos.gae compiled vs algos.gae.py_func on (T, E) = (125000, 8), ~1% terminations, ~0.5% truncations.
  3. the numba kernels that stay in nets.py (log-softmax, inverse-CDF sampling) against NumPy, and what the plain
     NumPy lines that replaced the others cost (h @ W + b, d.sum(0), d * (1 - h**2), Adam, the Gaussian
     log-density, and @ against np.dot for the value head), in float32 at the shapes of the timed runs.
  4. `import nets, algos` + the first call of every numba kernel, in a fresh interpreter, with the numba
     cache deleted first (cold) and present (warm).
Each timing is the median of repeated time.perf_counter runs after a warm-up call.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import common

ROOT = Path(common.ROOT)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy starts its threads, as minipg.py does

import numpy as np  # noqa: E402

import algos  # noqa: E402
import nets  # noqa: E402

ROWS = []  # (benchmark, measured, target, PASS/MISS/"")


def timeit(f, reps, warmup=1):
    """Median wall time of f() over reps runs, in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def row(name, measured, target="", ok=None):
    ROWS.append((name, measured, target, "" if ok is None else ("PASS" if ok else "MISS")))


# ---- 1. per-sample gradients ----------------------------------------------------------------------------------
def numpy_psg(variant):
    """per_sample_grads in pure NumPy: same batched deltas, outer products written into a fresh (N, P) array."""
    def psg(policy, hs, dz):
        net, N = policy.net, len(dz)
        G = np.empty((N, policy.n_params), dtype=dz.dtype)  # (N, P)
        col = 0
        for l, d in reversed(list(net.deltas(np.ascontiguousarray(dz[:, :policy.head.n_out]), hs))):
            h, (n_in, n_out) = hs[l], net.W[l].shape
            out = G[:, col:col + n_in * n_out].reshape(N, n_in, n_out)  # a view into G
            if variant == "einsum":
                np.einsum("ni,nj->nij", h, d, out=out)
            elif variant == "multiply":
                np.multiply(h[:, :, None], d[:, None, :], out=out)
            else:  # "assign": broadcast product into a temporary, then copy
                out[...] = h[:, :, None] * d[:, None, :]
            G[:, col + n_in * n_out:col + n_in * n_out + n_out] = d
            col += n_in * n_out + n_out
        G[:, col:] = dz[:, policy.head.n_out:]
        return G
    return psg


def loop_psg(policy, hs, dz):
    """One pi.backward per sample: the obvious Python loop."""
    G = np.empty((len(dz), policy.n_params))
    for i in range(len(dz)):
        G[i] = policy.backward(dz[i:i + 1], [h[i:i + 1] for h in hs])
    return G


def bench_per_sample_grads(N=4096):
    rng = np.random.default_rng(0)
    pi = nets.Policy(11, nets.DiagGaussian(3), hidden=(64, 64), activation="tanh", rng=rng)
    z, hs = pi.dist(rng.standard_normal((N, 11)))
    dz = pi.head.dlogp(z, pi.head.sample(z, rng))  # (N, D): rows of G are grad log pi(a_i|s_i)
    G = nets.per_sample_grads(pi, hs, dz)
    variants = {v: numpy_psg(v) for v in ("einsum", "multiply", "assign")}
    for name, f in [*variants.items(), ("loop", loop_psg)]:
        err = np.abs(f(pi, hs, dz) - G).max()
        assert err < 1e-10, f"per_sample_grads: {name} differs from the kernel by {err:.2e}"
    assert np.abs(G.sum(0) - pi.backward(dz, hs)).max() < 1e-8
    t_kernel = timeit(lambda: nets.per_sample_grads(pi, hs, dz), 20)
    t_np = {v: timeit(lambda: f(pi, hs, dz), 20) for v, f in variants.items()}
    best = min(t_np, key=t_np.get)
    t_loop = timeit(lambda: loop_psg(pi, hs, dz), 5)
    t_floor = timeit(lambda: np.empty_like(G).fill(1.0), 20)
    shape = f"N={N}, P={pi.n_params}"
    row(f"per_sample_grads, numba kernel ({shape})", f"{t_kernel * 1e3:.1f} ms")
    row(f"per_sample_grads, best NumPy: {best} (" + ", ".join(f"{v} {t * 1e3:.1f}" for v, t in t_np.items())
        + " ms)", f"{t_np[best] * 1e3:.1f} ms")
    row(f"per_sample_grads, Python loop of pi.backward (all {N} samples)", f"{t_loop * 1e3:.1f} ms")
    row(f"reference: allocate + fill a fresh (N, P) array ({G.nbytes / 2**20:.0f} MiB)", f"{t_floor * 1e3:.1f} ms")
    row("speed-up kernel vs best NumPy", f"{t_np[best] / t_kernel:.2f}x", ">= 1x", t_np[best] / t_kernel >= 1)
    row("speed-up kernel vs Python loop", f"{t_loop / t_kernel:.1f}x", ">= 50x", t_loop / t_kernel >= 50)
    row("ceiling on that speed-up for any kernel returning a fresh G: loop / reference",
        f"{t_loop / t_floor:.1f}x")


# ---- 2. GAE ---------------------------------------------------------------------------------------------------
def bench_gae(T=125_000, E=8):
    rng = np.random.default_rng(1)
    rew, val, final_val = (rng.standard_normal((T, E)) for _ in range(3))
    last_val, u = rng.standard_normal(E), rng.random((T, E))
    terminated, truncated = u < 0.01, (u >= 0.01) & (u < 0.015)
    args = (rew, val, terminated, truncated, final_val, last_val, 0.99, 0.95)
    err = np.abs(algos.gae(*args) - algos.gae.py_func(*args)).max()
    assert err < 1e-10, f"gae: compiled and py_func differ by {err:.2e}"
    t_jit = timeit(lambda: algos.gae(*args), 20)
    t_py = timeit(lambda: algos.gae.py_func(*args), 2, warmup=0)
    row(f"gae compiled, T={T} x E={E} ({T * E / 1e6:g}M steps)", f"{t_jit * 1e3:.2f} ms")
    row("gae.py_func (pure Python)", f"{t_py:.2f} s")
    row("speed-up gae compiled vs py_func", f"{t_py / t_jit:.0f}x", ">= 100x", t_py / t_jit >= 100)


# ---- 3. the numba kernels that stay, against NumPy; the plain NumPy lines that replaced the others ------------
def numpy_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def numpy_inverse_cdf(p, u):
    return np.minimum((p.cumsum(1) < u[:, None]).sum(1), p.shape[1] - 1)


def bench_elementwise(dt=np.float32):
    """float32, the training dtype; shapes of the PPO CartPole run (minibatch 256, hidden 64, 2 actions, P = 4610)
    and of the MuJoCo preset (minibatch 64, 6 action dimensions)."""
    rng = np.random.default_rng(2)
    d, h = rng.standard_normal((256, 64)).astype(dt), np.tanh(rng.standard_normal((256, 64))).astype(dt)
    W, b, z = rng.standard_normal((64, 64)).astype(dt), rng.standard_normal(64).astype(dt), \
        rng.standard_normal((256, 2)).astype(dt)
    p, u = nets._softmax(z), rng.random(256)
    adam, th, g = nets.Adam(4610, dtype=dt), rng.standard_normal(4610).astype(dt), rng.standard_normal(4610).astype(dt)
    gauss, zg = nets.DiagGaussian(6), rng.standard_normal((64, 12)).astype(dt)
    act, d1, w1 = zg[:, :6] + 0.1, d[:, :1], rng.standard_normal((64, 1)).astype(dt)
    for what, kernel, numpy_version in [
            ("log_softmax, (256, 2)", lambda: nets._log_softmax(z), lambda: numpy_log_softmax(z)),
            ("inverse-CDF sampling, (256, 2)", lambda: nets._inverse_cdf(p, u), lambda: numpy_inverse_cdf(p, u))]:
        t_k, t_np = timeit(kernel, 2000), timeit(numpy_version, 2000)
        row(f"{what}: numba / NumPy", f"{t_k * 1e6:.1f} / {t_np * 1e6:.1f} us ({t_np / t_k:.1f}x)")
    for what, f in [("a = h @ W + b, (256, 64) x (64, 64)", lambda: h @ W + b),
                    ("db = d.sum(0), (256, 64)", lambda: d.sum(0)),
                    ("d * (1 - h**2), (256, 64)", lambda: d * (1 - h**2)),
                    ("Adam.step as published, P = 4610", lambda: adam.step(th, g)),
                    ("DiagGaussian.log_prob, (64, 6)", lambda: gauss.log_prob(zg, act))]:
        row(f"{what} (plain NumPy)", f"{timeit(f, 2000) * 1e6:.1f} us")
    t_at, t_dot = timeit(lambda: d1 @ w1.T, 2000), timeit(lambda: np.dot(d1, w1.T), 2000)
    row("value head d @ W.T, (256, 1) x (1, 64): @ / np.dot (NumPy's @ skips BLAS when the inner size is 1)",
        f"{t_at * 1e6:.1f} / {t_dot * 1e6:.1f} us")


# ---- 4. import + first call in a fresh interpreter ------------------------------------------------------------
CHILD = f"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, nets, algos
for dt in (np.float64, np.float32):  # the tests use float64, training float32: both get compiled
    pi = nets.Policy(11, nets.DiagGaussian(3), dtype=dt)
    z, hs = pi.dist(np.zeros((5, 11), dt))
    G = nets.per_sample_grads(pi, hs, pi.head.dlogp(z, z[:, :3]))  # nets._outer_rows
    pi.net.backward(np.ones((5, 3), dt), hs)
    pi.head.log_prob(z, z[:, :3])
    cat = nets.Policy(11, nets.Categorical(2), dtype=dt)
    zc, _ = cat.dist(np.zeros((5, 11), dt))
    cat.head.log_prob(zc, cat.head.sample(zc, np.random.default_rng(0)))
    nets.Adam(3, dtype=dt).step(np.zeros(3, dt), np.ones(3, dt))
    r, f = np.ones((4, 2), dt), np.zeros((4, 2), bool)
    algos.gae(r, r, f, f, r, r[0], 0.99, 0.95)
    algos.discount_cumsum(r, f, 0.99)
    algos.trajectory_sums(G, np.array([0, 0, 1, 1, 1]), r[:, 0].repeat(2)[:5])
print(time.perf_counter() - t0)
"""


def clear_numba_cache():
    cache = Path(os.environ.get("NUMBA_CACHE_DIR") or ROOT / "__pycache__")
    for p in [*cache.rglob("nets.*.nb[ic]"), *cache.rglob("algos.*.nb[ic]")]:
        p.unlink()


def first_call():
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def bench_import():
    cold = []
    for _ in range(2):
        clear_numba_cache()
        cold.append(first_call())
    warm = [first_call() for _ in range(3)]
    row("import nets, algos + first calls, cold cache (mean of " + ", ".join(f"{t:.2f}" for t in cold) + " s)",
        f"{np.mean(cold):.2f} s", "<= 5 s", np.mean(cold) <= 5)
    row("import nets, algos + first calls, warm cache (median of 3)", f"{np.median(warm):.2f} s", "<= 1 s",
        np.median(warm) <= 1)


def table():
    lines = ["| Benchmark | Measured | Target | Result |", "|---|---:|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ROWS]) + "\n"


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--out", default=os.path.join(common.BENCH, "kernels.md"), help="default bench/kernels.md")
    p.add_argument("--small", action="store_true", help="N = 512 samples and T = 12,500 steps: a smoke test")
    args = p.parse_args(argv)
    bench_per_sample_grads(512 if args.small else 4096)
    bench_gae(12_500 if args.small else 125_000)
    bench_elementwise()
    bench_import()
    common.write_results(args.out, "Kernel benchmarks", table() + "\n" + (
        "Times are medians of repeated `time.perf_counter` runs after a warm-up call (20 reps; 5 for the loop,\n"
        "2 for gae.py_func). The per-sample-gradient timings start from the forward cache and dz, and every\n"
        "version allocates its own (N, P) output, as nets.per_sample_grads does; the 'reference' row (allocate\n"
        "and write that array once) is a floor no such kernel can beat. The elementwise rows are float32 at the\n"
        "shapes of the timed runs (2000 reps).\n"
        "Import times are measured\n"
        "inside a fresh `python -c` (interpreter start-up excluded); cold = numba cache files of nets/algos deleted."))


if __name__ == "__main__":
    main()
