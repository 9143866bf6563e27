"""vecenv.py -- E copies of an env stepped as one: SyncEnvs (a plain loop) and ProcEnvs (the same loop split over two
processes, so two cores run the physics). Both use gymnasium's SAME_STEP autoreset: on the step an episode ends,
the env resets at once and info['final_obs'][i] holds its true last observation (for bootstrapping truncations).

This file imports nothing of minipg's and not gymnasium: it takes a function that makes one env. minipg.py builds
its envs with it; the training code never sees which of the two it got (test_runner checks they agree exactly).
"""
import multiprocessing
import os
import signal
import time

import numpy as np


class EnvError(RuntimeError):
    """An env failed in ProcEnvs' child process, or the child ended."""


class SyncEnvs:
    """gymnasium's SyncVectorEnv with SAME_STEP autoreset, cut down to what collect() uses: the same envs, the
    same seeds (env i gets seed + i) and the same observations, but a plain loop, without the generic space handling
    (numpy-scalar actions, batched infos) that collect() does not need (what it cost: bench/rollout.md)."""

    def __init__(self, envs):
        self.envs, self.num_envs = envs, len(envs)
        self.single_observation_space, self.single_action_space = envs[0].observation_space, envs[0].action_space

    def reset(self, seed=None):
        return np.stack([e.reset(seed=None if seed is None else seed + i)[0] for i, e in enumerate(self.envs)]), {}

    def step(self, actions):
        """actions (E,) ints or (E, A) -> obs (E, obs_dim), rew, terminated, truncated (E,), {'final_obs': {i: obs}}."""
        obs, final = [None] * self.num_envs, {}
        rew, term, trunc = np.zeros(self.num_envs), np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        for i, (env, a) in enumerate(zip(self.envs, actions.tolist() if actions.ndim == 1 else actions)):
            obs[i], rew[i], term[i], trunc[i], _ = env.step(a)  # Python ints: Discrete.contains' fast path
            if term[i] or trunc[i]:
                final[i], (obs[i], _) = obs[i], env.reset()
        return np.array(obs), rew, term, trunc, {"final_obs": final}

    def close(self):
        for env in self.envs:
            env.close()


# ProcEnvs: the two processes share their arrays in memory and signal each other with semaphores, each first
# polling for up to SPIN_S before it sleeps, so that during the rollout the answer comes at once and during an
# update the child sleeps instead of spinning (a pipe round trip per step was slower: bench/rollout.md).

SPIN_S = 0.002


def _wait(sem, alive):
    """Acquire sem: poll it for SPIN_S (yielding the core to any other process that wants it, as when two runs
    share two cores), then block, checking alive() every second."""
    until = time.perf_counter() + SPIN_S
    while not sem.acquire(False):
        os.sched_yield()
        if time.perf_counter() > until:
            while not sem.acquire(timeout=1.0):
                if not alive():
                    raise EnvError("the env process ended")
            return


ACTION_DTYPES = ("float64", "float32", "int64")  # the actions keep their dtype on the way to the child's envs
SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the parent's to handle (it stops at an iteration boundary)


def _shared(ctx, shapes):
    """Named arrays in shared memory, {name: (RawArray, shape)}, which a child process receives: float64, but the
    command, int64 (a seed must arrive whole)."""
    return {k: (ctx.RawArray("q" if k == "cmd" else "d", int(np.prod(s))), s) for k, s in shapes.items()}


def _views(shm):
    return {k: np.frombuffer(buf, np.int64 if k == "cmd" else np.float64).reshape(s) for k, (buf, s) in shm.items()}


def _actions(shm):
    """The shared action array as each of ACTION_DTYPES (its buffer holds as many float64s, so any of them fits)."""
    buf, shape = shm["act"]
    return [np.frombuffer(buf, dtype, int(np.prod(shape))).reshape(shape) for dtype in ACTION_DTYPES]


def _serve(make_env, n, act_dim, shm, go, done, errors, parent):
    """ProcEnvs' child: a SyncEnvs of n envs, stepped whenever `go` is released, its answers written into the
    shared arrays. cmd: [0 step (actions of ACTION_DTYPES[cmd[1]]) | 1 reset (seed cmd[1], none if < 0) | 2 close]."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # blocked by the parent while it started us
    x, actions, alive = _views(shm), _actions(shm), lambda: os.getppid() == parent

    def failed(e):  # the parent raises it; short, so that it fits the pipe without waiting for the parent
        x["failed"][0] = 1
        errors.send(f"{type(e).__name__}: {e}"[:2000])
    try:
        envs = SyncEnvs([make_env() for _ in range(n)])
    except Exception as e:
        failed(e)
        done.release()
        return
    done.release()
    while True:
        try:
            _wait(go, alive)
        except EnvError:  # the parent is gone
            return
        cmd, arg = x["cmd"]
        if cmd == 2:
            break
        try:
            if cmd == 1:
                x["obs"][:] = envs.reset(None if arg < 0 else int(arg))[0]
            else:
                a = actions[arg]
                a = a[:, 0] if act_dim == 0 else a  # act_dim 0: Discrete, one int per env
                x["obs"][:], x["rew"][:], x["term"][:], x["trunc"][:], info = envs.step(a)
                for i, o in info["final_obs"].items():
                    x["final"][i] = o
        except Exception as e:
            failed(e)
        done.release()
    envs.close()


class ProcEnvs:
    """SyncEnvs of n envs split in two: this process steps the first `near` while a child process steps the rest,
    with the same seeds, observations and final_obs as SyncEnvs of all n (test_runner checks it). make_env must
    pickle (a module-level function or a functools.partial of one); observations are 1-D, of obs_dim; act_dim 0
    means Discrete actions. Observations come back as float64. An error in either half is raised after both
    halves have answered, so the two stay in step."""

    def __init__(self, make_env, n, obs_dim, act_dim, near=None):
        # This process also runs the policy, so it keeps the smaller share, 3 of 8 envs (bench/rollout.md):
        # near envs here, the other f in the child
        near = max(1, 3 * n // 8) if near is None else near
        ctx, f = multiprocessing.get_context("spawn"), n - near  # spawn: no fork of this process's threads
        self.shm = _shared(ctx, {"cmd": (2,), "failed": (1,), "act": (f, max(act_dim, 1)), "obs": (f, obs_dim),
                                 "rew": (f,), "term": (f,), "trunc": (f,), "final": (f, obs_dim)})
        self.x, self.far, self.actions, self.near = _views(self.shm), f, _actions(self.shm), None
        self.go, self.done, (self.errors, child_errors) = ctx.Semaphore(0), ctx.Semaphore(0), ctx.Pipe(False)
        self.proc = ctx.Process(target=_serve, daemon=True, args=(make_env, f, act_dim, self.shm, self.go,
                                                                  self.done, child_errors, os.getpid()))
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # the child starts with them blocked
        try:
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        try:
            self.near = self._both(lambda: SyncEnvs([make_env() for _ in range(n - f)]))
        except BaseException:
            self.close()
            raise
        self.num_envs = n
        self.single_observation_space, self.single_action_space = (self.near.single_observation_space,
                                                                   self.near.single_action_space)

    def _answer(self):
        _wait(self.done, self.proc.is_alive)
        if self.x["failed"][0]:
            self.x["failed"][0] = 0
            raise EnvError(self.errors.recv())

    def _both(self, mine):
        """mine() (this process's half) while the child works; then the child's answer, even when mine() raised."""
        try:
            out = mine()
        except BaseException:
            try:
                self._answer()
            except EnvError:
                pass
            raise
        self._answer()
        return out

    def reset(self, seed=None):
        k = self.near.num_envs
        self.x["cmd"][:] = 1, -1 if seed is None else seed + k  # env i is seeded seed + i, as in SyncEnvs
        self.go.release()
        obs = self._both(lambda: self.near.reset(seed)[0])
        return np.concatenate([obs, self.x["obs"]]), {}

    def step(self, actions):
        k, x = self.near.num_envs, self.x
        if actions.dtype.kind in "biu":
            actions = actions.astype(np.int64, copy=False)
        if actions.dtype.name not in ACTION_DTYPES:
            raise TypeError(f"ProcEnvs takes actions of {', '.join(ACTION_DTYPES)} or ints, not {actions.dtype}")
        code = ACTION_DTYPES.index(actions.dtype.name)
        x["cmd"][:] = 0, code
        self.actions[code][:] = actions[k:].reshape(self.far, -1)
        self.go.release()
        obs, rew, term, trunc, info = self._both(lambda: self.near.step(actions[:k]))
        term2, trunc2 = x["term"] > 0, x["trunc"] > 0
        final = {**info["final_obs"], **{k + i: x["final"][i].copy() for i in np.flatnonzero(term2 | trunc2)}}
        return (np.concatenate([obs, x["obs"]]), np.concatenate([rew, x["rew"]]),
                np.concatenate([term, term2]), np.concatenate([trunc, trunc2]), {"final_obs": final})

    def close(self):
        if self.proc.is_alive():
            self.x["cmd"][0] = 2
            self.go.release()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.terminate()
        self.errors.close()
        if self.near is not None:
            self.near.close()
            self.near = None
