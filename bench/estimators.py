"""bench/estimators.py -- is REINFORCE's gradient estimate unbiased? Issue 20: algos.pg_estimate's mean against the
exact gradient of test_estimators.py, for the fixed-T rollout the runner used and for i.i.d. whole episodes; and
the O(1/N_tau) bias of the baselines estimated from the batch ('mean', 'optimal').

    python bench/estimators.py                          # writes bench/estimators.md; ~5 min on 2 shared cores
    python bench/estimators.py --estimates 2000 --batches 500 --out /tmp/estimators.md   # a quick look

Table 1, the toy (one observation; action 1 continues, action 0 stops; reward 1 per step; H = 10; logits 0, so
dJ/dz_1 = 0.98926): the mean of --estimates estimates of dJ/dz_1 +- its standard error, each estimate from --envs
envs run T steps from reset, back to back, keeping the episodes that end by T (the runner at issue 20); from each
env's first episode only; and from --envs i.i.d. whole episodes. Table 2, both tasks of test_estimators.py, i.i.d.
whole episodes in --batches batches of N_tau: the mean estimate along grad J, (E[g_hat] . g / |g|^2) - 1, the
fraction of the gradient lost on average, for 'mean' and 'optimal' and for two baselines computed here.
"""
import argparse
import os
import platform
import shlex
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: one BLAS thread is faster

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import algos  # noqa: E402
import test_estimators as te  # noqa: E402  the tasks, the exact gradient and the samplers, tested there


def header(argv):
    """The command, the date, the commit (and whether the code it measures differs from it), the machine."""
    git = ["git", "-C", ROOT]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "algos.py", "nets.py", "test_estimators.py",
                                  "bench/estimators.py"], capture_output=True, text=True).stdout.split("\n")
    dirty = [line[3:] for line in dirty if line.strip()]
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    cpu = platform.machine()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    load = os.getloadavg()[0]
    return (f"`{shlex.join(['python', 'bench/estimators.py', *argv])}`\n\n"
            f"- date: {date}\n"
            f"- commit: {head or '?'}" + (f" + uncommitted {', '.join(dirty)}" if dirty else "") + "\n"
            f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, load {load:.1f} "
            f"at the start (shared); python {platform.python_version()}, numpy {np.__version__}\n\n"
            "# Is the REINFORCE estimate unbiased? (issue 20)\n")


def fmt(mean, se):
    return f"{mean:.4f} ± {se:.4f}"


def fixed_T_table(args, rng):
    """Table 1: dJ/dz_1 of the toy, mean +- s.e. over args.estimates, per sampling procedure, Phi = R(tau) and R_hat_t,
    no baseline."""
    task = te.toy()
    pi = task.policy()
    _, g = te.exact(task)
    k = 1  # theta = [W_00, W_01, b_0, b_1], the observation is 1: component 1 is dJ/dz_1
    rows = []
    procedures = [(f"fixed T = {T}, every episode that ends by T", T, False) for T in args.T]
    procedures.append((f"fixed T = {task.H}, each env's first episode only", task.H, True))
    chunk = 1000  # estimates per rollout array: 4000 envs x T = 200 steps stays under 30 MB an array
    for name, T, first_only in procedures:
        est = {"return": [], "rtg": []}
        n_ep = []
        for c in range(0, args.estimates, chunk):
            m = min(chunk, args.estimates - c)
            rollout = te.run_fixed_T(task, pi, args.envs * m, T, rng)  # (envs * m, T) each
            for j in range(m):
                d = te.finished_episodes(task, *[x[j * args.envs:(j + 1) * args.envs] for x in rollout],
                                         first_only=first_only)  # T >= H: every env finishes an episode
                n_ep.append(len(d.start) - 1)
                for form in est:
                    est[form].append(algos.pg_estimate(pi, d.obs, d.act, d.phi(form), d.ep, "none")[k])
        rows.append((name, np.mean(n_ep), est))
    d = te.sample_episodes(task, pi, args.envs * args.estimates, rng)
    est = {form: te.batch_estimates(pi, d, args.envs, d.phi(form), "none")[:, k] for form in ("return", "rtg")}
    rows.append((f"{args.envs} i.i.d. whole episodes (each from reset, run to its end)", args.envs, est))
    out = [f"## 1. The toy's dJ/dz_1 = {g[k]:.5f}: the mean of {args.estimates:,} estimates ± s.e., "
           f"{args.envs} envs, no baseline\n",
           "| episodes in an estimate | mean episodes | Φ = R(τ) | z | Φ = reward-to-go | z |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, n_ep, est in rows:
        cells = []
        for form in ("return", "rtg"):
            x = np.asarray(est[form])
            mean, se = x.mean(), x.std(ddof=1) / np.sqrt(len(x))
            cells += [fmt(mean, se), f"{(mean - g[k]) / se:+.1f}"]
        out.append(f"| {name} | {n_ep:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def reference_phis(d, n_tau, phi):
    """Two baselines computed here, from the batch of n_tau consecutive episodes each row belongs to:
    the batch's average R(tau) (003 §5.3.1's b, as the note writes it; E[g_hat] = (1 - 1/N) grad J exactly), and the
    leave-one-out step mean of Phi over the batch's other episodes (independent of the episode's own actions, so
    unbiased; undefined at N_tau = 1). Returns {name: Phi - b} (N,) each."""
    ep_steps = np.diff(d.start)                                        # (N_tau_total,)
    ep_phi = np.add.reduceat(phi, d.start[:-1])                        # (N_tau_total,) sum of Phi per episode
    batch = np.arange(len(ep_steps)) // n_tau                          # (N_tau_total,) the batch of each episode
    R_bar = np.bincount(batch, d.R_tau()) / np.bincount(batch)         # (batches,)
    out = {AVG_R: phi - R_bar[batch][d.ep]}
    if n_tau > 1:
        b_phi, b_steps = np.bincount(batch, ep_phi), np.bincount(batch, ep_steps)  # (batches,) each
        loo = (b_phi[batch] - ep_phi) / (b_steps[batch] - ep_steps)             # (N_tau_total,)
        out[LOO] = phi - loo[d.ep]
    return out


AVG_R = "b = the batch's average R(τ) (003 §5.3.1), here"
LOO = "b = step mean of Φ over the other episodes, here"


def bias_table(args, rng):
    """Table 2: (mean along grad J) - 1, +- s.e., per task, Phi, baseline and N_tau; and N_tau times it."""
    lines, scaled = [], []
    order = ["pg_estimate 'mean'", "pg_estimate 'optimal'", AVG_R, LOO]
    for task_name in te.TASKS:
        task = te.TASKS[task_name]()
        pi = task.policy()
        _, g = te.exact(task)
        cells = {}  # (form, baseline name) -> {n_tau: (bias, se)}
        for n_tau in args.n_tau:
            d = te.sample_episodes(task, pi, n_tau * args.batches, rng)
            for form in ("return", "rtg"):
                phi = d.phi(form)
                for baseline in ("mean", "optimal"):
                    est = te.batch_estimates(pi, d, n_tau, phi, baseline)
                    cells.setdefault((form, f"pg_estimate '{baseline}'"), {})[n_tau] = te.along_g(est, g)
                for name, phi_b in reference_phis(d, n_tau, phi).items():
                    est = te.batch_estimates(pi, d, n_tau, phi_b, "none")
                    cells.setdefault((form, name), {})[n_tau] = te.along_g(est, g)
        for (form, name), by_n in sorted(cells.items(), key=lambda kv: (kv[0][0] == "rtg", order.index(kv[0][1]))):
            phi_name = "R(τ)" if form == "return" else "reward-to-go"
            row = [by_n[n] if n in by_n else None for n in args.n_tau]
            lines.append(f"| {task_name} | {phi_name} | {name} | "
                         + " | ".join("–" if c is None else f"{c[0]:+.4f} ± {c[1]:.4f}" for c in row) + " |")
            scaled.append(f"| {task_name} | {phi_name} | {name} | "
                          + " | ".join("–" if c is None else f"{n * c[0]:+.2f} ± {n * c[1]:.2f}"
                                       for n, c in zip(args.n_tau, row)) + " |")
    head = "| task | Φ | baseline | " + " | ".join(f"N_τ = {n}" for n in args.n_tau) + " |\n" + \
        "|---|---|---|" + "---:|" * len(args.n_tau) + "\n"
    return (f"## 2. Batch baselines: the mean estimate along grad J, (E[ĝ]·g/|g|²) − 1, ± s.e., "
            f"{args.batches:,} batches of N_τ i.i.d. episodes\n\n" + head + "\n".join(lines) + "\n\n"
            "N_τ times the same (constant if the bias is c/N_τ):\n\n" + head + "\n".join(scaled) + "\n\n"
            "The rows marked 'here' are baselines computed in this script, not options of pg_estimate: the note's b, "
            "the batch's average R(τ), whose bias is exactly −1/N_τ since E[g(τ_i) R(τ_j)] = 0 for j ≠ i and "
            "E[g(τ) R(τ)] = grad J; and the leave-one-out step mean, unbiased because it never sees the episode it "
            "weighs. At N_τ = 1 'optimal' returns exactly 0 (b_k = h_k / g_k) wherever g_k(τ) ≠ 0.\n")


def main(argv=None):
    doc_head, _, doc_rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=doc_head, epilog=doc_rest,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--estimates", type=int, default=20000, help="estimates per row of table 1")
    p.add_argument("--envs", type=int, default=4, help="envs per estimate in table 1 (the issue's 4)")
    p.add_argument("--T", type=int, nargs="+", default=[10, 16, 40, 200], help="rollout lengths of table 1 (>= H = 10)")
    p.add_argument("--batches", type=int, default=4000, help="batches per cell of table 2")
    p.add_argument("--n-tau", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="N_tau of table 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(BENCH, "estimators.md"), help="results file ('' = print only)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if min(args.T) < te.toy().H:
        p.error("--T must be >= the toy's horizon H = 10, so that every env finishes an episode")
    text = header(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    text += "\n" + fixed_T_table(args, rng)
    t1 = time.time()
    text += "\n" + bias_table(args, rng)
    t2 = time.time()
    text += (f"\nTimes: table 1 {t1 - t0:.0f} s, table 2 {t2 - t1:.0f} s. The s.e. is std / sqrt(count); "
             "z = (mean - exact) / s.e.\n")
    print(text, end="")
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
