"""runs.py -- what keeps a user's files and processes safe, so that minipg.py can show the training loop alone.

    with runs.RunFolder(out, trainer, columns) as folder:   # lock the folder, start or repair its files
        while ... and not folder.stopping:                  # a Ctrl-C asks; the loop stops at an iteration's end
            with folder.dropped_on(2):                      # a second Ctrl-C drops the iteration in progress
                info = trainer.iteration()
            folder.log(row)                                 # one row of progress.csv
            folder.save_if_due(every_s)                     # rows fsynced, then the checkpoint, atomically
        folder.save()
        folder.finish(summary)                              # summary.json

What is here: the two kinds of error the command line reports (UsageError: exit 2; RunError: exit 1); atomic
writes with SIGINT/SIGTERM held; the folder's lock; Interrupts, which turn Ctrl-C into a request that the loop
reads at iteration boundaries; the one writer and the one reader of policy.npz, with the check of every array
against a fresh trainer's state; a saved config read back field by field; progress.csv repaired on resume;
the --seeds orchestration (one process per seed). It knows nothing about gradients or algorithms: a trainer is
anything with state(), config, spaces.describe(), it and batch. Imports only the standard library and numpy.
"""
import contextlib
import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

RUN_FILES = ("config.json", "progress.csv", "summary.json", "policy.npz")
FORMAT = 2  # policy.npz layout version


class UsageError(Exception):
    """Bad input (the command line, a damaged file, a folder in use): one line on stderr, exit code 2."""


class RunError(Exception):
    """Training cannot go on (a NaN, a failed write): one line on stderr, exit code 1."""


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------------

def write_atomic(path, write):
    """write(f) into path.tmp, fsync, rename over path: a reader sees the old file or the new one, never neither.
    SIGINT and SIGTERM wait until the rename is done, so an interrupt cannot leave half a file either."""
    tmp = path + ".tmp"
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RunError(f"cannot write {path}: {e.strerror or e}")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_json(path, obj):
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1, allow_nan=False).encode()))


def write_text(path, text):
    write_atomic(path, lambda f: f.write(text.encode()))


# ---------------------------------------------------------------------------------------------------------------
# Run folders: where they may go, what they hold, and their lock
# ---------------------------------------------------------------------------------------------------------------

def check_out(path):
    """--out must be a folder or not exist yet, and not lie under a file."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        if parent == os.path.abspath(path):
            raise UsageError(f"--out {path} is a file, not a folder")
        raise UsageError(f"--out {path} lies under {parent}, which is a file")


def folder_state(out):
    """'new' (none of minipg's files), 'finished' (its summary says so) or 'unfinished' (interrupted or killed)."""
    if not any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES + ("seeds.json",)):
        return "new"
    try:
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return "unfinished"
    if isinstance(summary, dict) and summary.get("interrupted") is False:
        return "finished"
    return "unfinished"


@contextlib.contextmanager
def folder_lock(out):
    """DIR/.lock, flock'ed while a run writes into DIR, and naming that run. The kernel drops the lock when the
    process ends, however it ends, so a killed run never leaves a stale one: only the flock counts, and the name in
    the file is read only when the flock is taken. A run that ends in Python empties the file."""
    import fcntl
    fd = os.open(os.path.join(out, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        who = os.read(fd, 200).decode(errors="replace").strip()
        os.close(fd)
        raise UsageError(f"{out} is in use by a live run ({who}); wait or use another --out")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # and with it the lock


def live_run(out):
    """The text of DIR/.lock if a live run holds it, else None (the flock is tried and released at once)."""
    import fcntl
    path = os.path.join(out, ".lock")
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.read(fd, 200).decode(errors="replace").strip() or "a live run"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# Interrupts
# ---------------------------------------------------------------------------------------------------------------

class Interrupts:
    """Ctrl-C (SIGINT) or SIGTERM asks the run to stop at the end of the iteration in progress, where the state is
    whole. Only work marked `with interrupts.dropped_on(n)` is dropped, on the n-th signal: an iteration on the
    second (the last checkpoint written is kept), the final evaluation on the first. Anywhere else (starting,
    writing files, releasing the folder) a signal only asks, so none lands halfway through the run's own
    bookkeeping."""

    def __enter__(self):
        self.count = 0
        self.n = 0
        self.old = {s: signal.signal(s, self.ask) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def ask(self, signum, frame):
        self.count += 1
        if 0 < self.n <= self.count:
            self.n = 0  # from here on a signal only asks: the bookkeeping that follows runs whole
            raise KeyboardInterrupt
        if self.count == 1:
            print("\nstopping at the end of this iteration (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def dropped_on(self, n):
        self.n = n
        try:
            yield
        finally:
            self.n = 0

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------------------------------------------------------
# The checkpoint: one writer, one reader, and the check of every array
# ---------------------------------------------------------------------------------------------------------------

def write_checkpoint(path, tr):
    """The one writer of policy.npz: the trainer's state(), the config and the spaces."""
    arrays = {**tr.state(), "format": np.array(FORMAT), "config": np.array(json.dumps(tr.config)),
              "spaces": np.array(json.dumps(tr.spaces.describe()))}
    write_atomic(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path):
    """The one reader of policy.npz. Returns (config dict, spaces dict, state arrays), the format and the JSON
    checked; the caller builds a trainer from the config and loads the arrays through check_state."""
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder; give its policy.npz, or pass the folder to --resume")
    if not os.path.isfile(path):
        raise UsageError(f"no such policy file: {path} (not a minipg run or policy)")
    if not path.endswith(".npz"):
        raise UsageError(f"{path} is not a policy file: minipg saves policies as policy.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            s = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError (a pickle or a text file), MemoryError, ...
        raise UsageError(f"{path} is not a readable minipg policy: not an npz archive ({type(e).__name__})")
    for k, kind in (("format", "i"), ("config", "U"), ("spaces", "U")):
        if k not in s or s[k].shape != () or s[k].dtype.kind != kind:
            raise UsageError(f"{path}: {k} is missing or not a {'number' if kind == 'i' else 'text'}")
    if s.pop("format") != FORMAT:
        raise UsageError(f"{path}: format is not this minipg's {FORMAT}")
    try:
        cfg = json.loads(str(s.pop("config")))
        spaces = json.loads(str(s.pop("spaces")))
    except (ValueError, RecursionError):  # a NaN is refused later, by the field checks
        raise UsageError(f"{path}: config or spaces is not valid JSON")
    return cfg, spaces, s


def check_state(s, want, least, iters, batch):
    """Raise UsageError naming the first array of s that is missing, unknown, of another dtype or shape than the
    state `want` of a fresh trainer has, not finite, or below its least value, before any of it is used."""
    odd = sorted(set(want) ^ set(s))
    if odd:
        raise UsageError(f"{'missing' if odd[0] in want else 'unknown'} array {odd[0]!r}")
    for name, w in want.items():
        x = s[name]
        skip = 1 if name == "episodes" else 0  # any number of episodes
        if w.dtype.kind == "U":
            same_kind = x.dtype.kind == "U"
        else:
            same_kind = x.dtype == w.dtype
        if not same_kind or x.ndim != w.ndim or x.shape[skip:] != w.shape[skip:]:
            raise UsageError(f"{name} must be {w.dtype} of shape {w.shape}, got {x.dtype} of shape {x.shape}")
        if w.dtype.kind != "U" and not (np.all(np.isfinite(x)) and np.all(x >= least.get(name, -np.inf))):
            raise UsageError(f"{name} must be finite" + (f" and >= {least[name]:g}" if name in least else ""))
    it, steps, ep = int(s["iteration"]), int(s["steps"]), s["episodes"]
    if iters is not None and it > iters:
        raise UsageError(f"iteration {it} is past the run's {iters}")
    if batch is not None and steps != it * batch:
        raise UsageError(f"steps {steps} is not iteration x batch = {it * batch}")
    whole = np.all(ep[:, [0, 2]] % 1 == 0) and np.all(ep[:, [0, 2]] >= 1) and np.all(np.diff(ep[:, 0]) >= 0)
    if len(ep) and not (whole and ep[-1, 0] <= steps and np.abs(ep[:, 1]).max() <= 1e15):
        raise UsageError(f"episodes must be (step, return, length) rows, steps whole, rising to {steps}")
    try:
        np.random.PCG64().state = json.loads(str(s["rng_state"]))  # PCG64 checks every field of it
    except Exception as e:
        raise UsageError(f"rng_state is not a PCG64 state ({type(e).__name__})")


def field_type(f):
    """The declared type of a dataclass field (metadata 'type' where the default is None)."""
    return f.metadata.get("type") or type(f.default)


def config_from(cfg, classes):
    """The dataclasses of a saved config, e.g. {"run": Run, "hyper": Hyper}, each field present and of its
    declared type (a float may be written as an int; a bool is never a number here). The ranges are the caller's."""
    if not isinstance(cfg, dict) or set(cfg) != set(classes):
        raise UsageError(f"config must hold {' and '.join(map(repr, classes))}")
    made = []
    for key, cls in classes.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        got = cfg[key] if isinstance(cfg[key], dict) else {}
        if set(got) != set(fields):
            raise UsageError(f"config.{key} has missing or unknown fields: {sorted(set(got) ^ set(fields))}")
        for name, f in fields.items():
            x, t = got[name], field_type(f)
            if x is None and f.default is None:
                continue
            number_ok = isinstance(x, (int, float)) if t is float else isinstance(x, t)
            if not number_ok or (t is bool) != isinstance(x, bool):
                raise UsageError(f"config.{key}.{name} must be a {t.__name__}, got {x!r}")
        values = {k: float(x) if field_type(fields[k]) is float and x is not None else x for k, x in got.items()}
        made.append(cls(**values))
    return tuple(made)


# ---------------------------------------------------------------------------------------------------------------
# progress.csv
# ---------------------------------------------------------------------------------------------------------------

def repair_progress(path, it, columns):
    """On resume, progress.csv is made to match the checkpoint: the header, then the rows of iterations 1..it,
    which the checkpoint vouches for; a partial row, or rows past it (a hard kill), are dropped."""
    rows = []
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if len(r) == len(columns) and r[0].isdigit()]
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    rows = [r for i, r in enumerate(rows[:it]) if r[0] == str(i + 1)]
    if len(rows) < it:
        raise UsageError(f"{path} has whole rows for iterations 1..{len(rows)}, not 1..{it}: it cannot be repaired")
    write_text(path, "".join(",".join(r) + "\r\n" for r in [columns, *rows]))


def csv_cell(x):
    """A value as progress.csv writes it: floats in full (repr), None as empty."""
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    return "" if x is None else str(x)


# ---------------------------------------------------------------------------------------------------------------
# The run folder while a run writes into it: the interface the training loop calls
# ---------------------------------------------------------------------------------------------------------------

class RunFolder:
    """A run's folder from start to finish. On entry: the folder made and locked, Ctrl-C turned into a request,
    and either a new run's files started (a folder holding a run is refused unless overwrite) or a resumed run's
    progress.csv repaired to its checkpoint (resumed is the st_mtime_ns of the policy.npz it was read from);
    config.json written in both cases. Then log(), save_if_due(), save() and finish() as the loop runs. A failed
    write, or one of `errors`, becomes a RunError that names the last good checkpoint; a second Ctrl-C stops at
    once and keeps it."""

    def __init__(self, out, tr, columns, resumed=None, overwrite=False, errors=()):
        self.out, self.tr, self.columns = out, tr, columns
        self.resumed, self.overwrite, self.errors = resumed, overwrite, errors
        self.checkpoint = os.path.join(out, "policy.npz")
        self.progress_path = os.path.join(out, "progress.csv")
        self.stack = contextlib.ExitStack()

    def __enter__(self):
        os.makedirs(self.out, exist_ok=True)
        with self.stack:
            self.interrupts = self.stack.enter_context(Interrupts())  # the handler outlives the lock
            self.stack.enter_context(folder_lock(self.out))
            self._open()
            self.progress = self.stack.enter_context(open(self.progress_path, "a", newline=""))
            self.saved, self.last_save = self.tr.it, time.time()
            self.stack = self.stack.pop_all()
        return self

    def _open(self):
        if self.resumed and os.stat(self.checkpoint).st_mtime_ns != self.resumed:
            raise UsageError(f"{self.checkpoint} changed while it was being read; try again")
        state = folder_state(self.out)
        if self.resumed:
            repair_progress(self.progress_path, self.tr.it, self.columns)
        elif state != "new" and not self.overwrite:
            kind = "a finished" if state == "finished" else "an unfinished"
            hint = "" if state == "finished" else f"continue it with --resume {self.out}, or "
            raise UsageError(f"{self.out} holds {kind} run; {hint}pass --overwrite to replace it, or choose another --out")
        else:
            for f in RUN_FILES:
                if os.path.exists(os.path.join(self.out, f)):
                    os.remove(os.path.join(self.out, f))
            write_text(self.progress_path, ",".join(self.columns) + "\r\n")
            write_checkpoint(self.checkpoint, self.tr)
        write_json(os.path.join(self.out, "config.json"), self.tr.config)

    @property
    def stopping(self):
        """A Ctrl-C or SIGTERM has asked the run to stop."""
        return self.interrupts.count > 0

    def dropped_on(self, n):
        return self.interrupts.dropped_on(n)

    def log(self, row):
        self.progress.write(",".join(csv_cell(row.get(c)) for c in self.columns) + "\r\n")
        self.progress.flush()

    def save(self):
        """The rows first (a checkpoint vouches for the rows before it), then the checkpoint."""
        os.fsync(self.progress.fileno())
        write_checkpoint(self.checkpoint, self.tr)
        self.saved, self.last_save = self.tr.it, time.time()

    def save_if_due(self, every_s):
        if time.time() - self.last_save >= every_s:
            self.save()

    def finish(self, summary):
        write_json(os.path.join(self.out, "summary.json"), summary)
        return summary

    def __exit__(self, kind, e, tb):
        try:
            if kind is KeyboardInterrupt:
                print(f"stopped at once: the checkpoint of iteration {self.saved} is kept. Continue with:\n"
                      f"  python minipg.py --resume {self.out}", file=sys.stderr, flush=True)
            elif kind is not None and issubclass(kind, (RunError, OSError, *self.errors)):
                raise RunError(f"{e}; training stopped, the last good checkpoint is kept in {self.checkpoint} "
                               f"(iteration {self.saved})") from e
        finally:
            self.stack.close()
        return False


def steps_to_threshold(episodes, threshold, window=20):
    """First env step at which the mean return of the last `window` finished episodes >= threshold, or None."""
    if threshold is None:
        return None
    c = np.cumsum([0.0] + [r for _, r, _ in episodes])  # c[i + window] - c[i]: the sum of episodes i..i+window-1
    hit = np.flatnonzero((c[window:] - c[:-window]) / window >= threshold)
    return int(episodes[hit[0] + window - 1][0]) if len(hit) else None


def summary(tr, threshold, returns=(), interrupted=False):
    """What summary.json holds: the run, its seconds, the evaluation's returns, the step at which the mean of 20
    training episodes first reached the threshold (None: never, or no threshold), and whether it was interrupted."""
    returns = [float(r) for r in returns if math.isfinite(r)]
    last20 = [r for _, r, _ in tr.episodes[-20:]]
    return {"algo": tr.run.algo, "env": tr.run.env, "seed": tr.run.seed, "total_steps": tr.steps, **tr.seconds,
            "eval_return_mean": float(np.mean(returns)) if returns else None,
            "eval_return_std": float(np.std(returns)) if returns else None, "eval_episodes": len(returns),
            "eval_seed": tr.run.seed + 10_000, "threshold": threshold,
            "steps_to_threshold": steps_to_threshold(tr.episodes, threshold),
            "train_return_last20": float(np.mean(last20)) if last20 else None, "interrupted": interrupted}


# ---------------------------------------------------------------------------------------------------------------
# --seeds: one process per seed
# ---------------------------------------------------------------------------------------------------------------

def run_seeds(commands, jobs):
    """Run {seed: argv} as processes, `jobs` at a time, each in a session of its own (the terminal's Ctrl-C is
    ours, not theirs). A Ctrl-C or SIGTERM reaches each running seed once (it stops at the end of its
    iteration), and no new seed starts. Returns ({seed: exit code} of the seeds started, whether we were asked to stop)."""
    procs, stop = {}, []

    def ask_each_to_stop(signum, frame):
        stop.append(signum)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    old = {sig: signal.signal(sig, ask_each_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for seed, argv in commands.items():
            while sum(p.poll() is None for p in procs.values()) >= jobs and not stop:
                time.sleep(0.05)
            if stop:
                break
            print(f"seed {seed}: running in {argv[argv.index('--out') + 1]}", flush=True)
            procs[seed] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        codes = {seed: p.wait() for seed, p in procs.items()}
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return codes, bool(stop)


def read_summary(path):
    """A finished run's summary.json, as a dict."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not a readable summary ({type(e).__name__})")
    if not isinstance(summary, dict):
        raise UsageError(f"{path} is not a summary")
    return summary


def is_finite_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------------------------
# The modes that work on saved runs: --eval, --resume, --seeds. Each takes the runner's functions it needs
# (restore: a trainer from policy.npz; train; evaluate; validate: a config's checks), so nothing imports back.
# ---------------------------------------------------------------------------------------------------------------

def run_folder(run, mode=None):
    """The default output folder: runs/<env>-<algo>[-s<seed>]-<timestamp> (no seed for --seeds)."""
    algo = "lab-variance" if mode == "lab" else run.algo
    name = f"{run.env.split(':')[-1]}-{algo}" + ("" if mode == "seeds" else f"-s{run.seed}")
    return run.out or os.path.join("runs", name + time.strftime("-%Y%m%d-%H%M%S"))


def eval_cmd(path, given, video, render, restore, evaluate, validate):
    """--eval POLICY.npz (or its folder): the saved policy, with its saved normalisation, on fresh episodes."""
    if os.path.isdir(path):
        path = os.path.join(path, "policy.npz")
    tr = restore(path, given.get("env"))
    validate(dataclasses.replace(tr.run, **{k: v for k, v in given.items() if k != "env"}), tr.hp)
    live = live_run(os.path.dirname(path) or ".")
    if live:
        print(f"note: {os.path.dirname(path) or '.'} is a live run ({live}): this evaluates its latest checkpoint, "
              f"iteration {tr.it}", file=sys.stderr)
    episodes, seed = given.get("eval_episodes", tr.run.eval_episodes), given.get("seed", tr.run.seed) + 10_000
    returns = evaluate(tr, episodes, seed, "human" if render else ("rgb_array" if video else None), video)
    print(f"{path}: {tr.run.env}, {len(returns)} deterministic episodes (seeds {seed}..{seed + episodes - 1}): "
          f"{np.mean(returns):.2f} ± {np.std(returns):.2f}" + (f"; videos in {video}" if video else ""))
    return 0


def resume_cmd(out, given, restore, train, validate):
    """--resume DIR [--steps N]: continue the run in DIR from its checkpoint, or extend a finished one to N steps."""
    if os.path.isfile(out):
        raise UsageError(f"--resume takes the run's folder, not a file: --resume {os.path.dirname(out) or '.'}")
    ck_path = os.path.join(out, "policy.npz")
    stamp = os.path.isfile(ck_path) and os.stat(ck_path).st_mtime_ns  # taken first: a later write changes it
    tr = restore(ck_path)
    run = dataclasses.replace(tr.run, **given)
    validate(run, tr.hp)
    if run.steps < tr.run.steps:
        raise UsageError(f"--steps {run.steps} is below the run's {tr.run.steps} steps: it can only be extended")
    extended = run.steps != tr.run.steps
    tr.run = run
    if folder_state(out) == "finished" and tr.done():
        print(f"{out} is a finished run ({tr.it} iterations, {tr.steps} steps): nothing to do. To train it further: "
              f"--resume {out} --steps N, with N > {tr.steps}")
        return 0
    if extended:
        print(f"extending {out} to {run.steps} steps (annealed rates follow the new horizon)")
    return 130 if train(tr, out, resumed=stamp)["interrupted"] else 0


def seeds_cmd(root, seeds, argv, jobs, overwrite, table, about):
    """--seeds: one run per seed, `argv --seed S --out root/sS`, in root/s<seed>/, `jobs` at a time; then
    table(summaries), a markdown table, in root/seeds.md, and every summary in root/seeds.json (with `about`)."""
    commands = {s: [*argv, "--seed", str(s), "--out", os.path.join(root, f"s{s}"), *(["--overwrite"] if overwrite else [])]
                for s in seeds}
    os.makedirs(root, exist_ok=True)
    with folder_lock(root):
        if os.path.exists(os.path.join(root, "seeds.json")) and not overwrite:
            raise UsageError(f"{root} holds a finished --seeds run; pass --overwrite to replace it, or another --out")
        codes, stopped = run_seeds(commands, jobs)
        if stopped or len(codes) < len(commands) or any(codes.values()):
            print(f"not every seed finished ({codes}): continue each with --resume {root}/s<seed>", file=sys.stderr)
            return 130 if stopped else 1
        summaries = [read_summary(os.path.join(root, f"s{s}", "summary.json")) for s in commands]
        text = table(summaries)
        write_text(os.path.join(root, "seeds.md"), text)
        write_json(os.path.join(root, "seeds.json"), {**about, "seeds": list(commands), "runs": summaries})
    print(f"\n{text}\nfiles: {root}/" + "{seeds.json, seeds.md, s<seed>/}")
    return 0
