"""cli.py -- the command line, generated from the config dataclasses, and the checks of a config.

minipg.py holds the config (its Run, algos.Hyper, the per-algorithm defaults and the presets) and makes one
Config from them; this file turns that into argparse flags, merges defaults <- the algorithm's <- --preset <-
the flags given, and checks every value. Each field's metadata says which algorithms read it ("used_by"), so
--algo X --help shows only X's flags, and a flag X does not read is refused with one line. Also here: the checks
of an env id and the one-line messages for a missing optional extra. Imports gymnasium, nets and algos (for the
choices of a field), and runs.py (for its UsageError).
"""
import argparse
import dataclasses
import difflib
import math
import os
import sys

import gymnasium as gym

import algos
import nets
from runs import UsageError, config_from, field_type


def flag(name):
    return "--" + name.replace("_", "-")


MODES = {
    "seeds": (dict(metavar="SEEDS"), "seeds (0-3 or 0,3,7): a run each in ROOT/s<seed>, ROOT/seeds.md (ROOT: --out)"),
    "jobs": (dict(type=int, metavar="N"), "with --seeds: runs at once (default: the cores, or half as many runs "
                                          "with --vec procs)"),
    "overwrite": (dict(action="store_true"), "replace a finished or interrupted run in --out (else minipg refuses)"),
    "eval": (dict(metavar="POLICY.npz"), "evaluate a saved policy with its saved normalisation (--episodes, --seed)"),
    "video": (dict(metavar="DIR"), "with --eval: record videos to DIR (needs moviepy)"),
    "render": (dict(action="store_true"), "with --eval: show a window (needs pygame)"),
    "plot": (dict(nargs="+", metavar="DIR"), "learning_curve.png of runs or --seeds folders, in --out or beside them"),
    "resume": (dict(metavar="DIR"), "continue the run in DIR from its last checkpoint; --steps N extends it to N"),
    "lab": (dict(choices=["variance"]), "the variance lab (lab.py) on --env: tables and pictures in --out"),
    "exercise": (dict(metavar="NAME"), "coursework (exercises.py): list [--markdown] | NAME --out DIR | bug --seed N "
                                       "--out DIR | reveal --seed N | set --out DIR [--only a,b]"),
}
CHOICES = {"algo": tuple(algos.UPDATES), "phi": ("return", "rtg"), "baseline": ("none", "mean", "optimal", "v"),
           "beta_rule": ("ppo", "additive"), "optimiser": tuple(nets.OPTIMISERS), "activation": nets.ACTIVATIONS,
           "vec": ("sync", "procs", "async"), "dtype": ("float32", "float64"), "norm_obs": ("on", "off", "auto"),
           "norm_reward": ("on", "off", "auto")}
INSTALL = {"mujoco": 'pip install "gymnasium[mujoco]"', "box2d": 'pip install swig "gymnasium[box2d]"',
           "moviepy": "pip install moviepy", "pygame": 'pip install "gymnasium[classic-control]"',
           "matplotlib": "pip install matplotlib"}  # one hint per optional extra, as the README gives them


def checks(run, hp):
    """The checks across fields, as (message, ok)."""
    batch = run.num_envs * run.num_steps
    steps_batch = algos.BATCHES[run.algo] is algos.Batch
    fits_v = run.algo in ("vpg", "npg", "trpo") or run.algo == "reinforce" and hp.baseline == "v"
    return [
        (f"--steps {run.steps} is smaller than one batch (num_envs*num_steps = {batch})",
         run.steps >= batch or not steps_batch),
        (f"--minibatch {hp.minibatch} is larger than the batch ({batch})", hp.minibatch <= batch or "ppo" not in run.algo),
        (f"--v-minibatch {hp.v_minibatch} is larger than the batch ({batch})",
         hp.v_minibatch <= batch or not (fits_v and steps_batch)),
        (f"--num-episodes {run.num_episodes} is smaller than --num-envs {run.num_envs} (each env runs its share)",
         run.num_episodes >= run.num_envs or steps_batch),
        ("--num-envs must be <= 1024, the batch <= 10^7 steps and --steps <= 10^12",
         run.num_envs <= 1024 and batch <= 10 ** 7 and run.steps <= 10 ** 12 and run.num_episodes <= 10 ** 6),
        (f"--hidden must be positive layer sizes like 64,64, got {run.hidden!r}", parse_hidden(run.hidden) is not None),
    ]


def parse_hidden(text):
    """'64,64' -> (64, 64); None if it is not a list of positive sizes."""
    parts = [s.strip() for s in text.split(",")]
    if not all(s.isascii() and s.isdigit() and int(s) > 0 for s in parts):
        return None
    return tuple(int(s) for s in parts)


def check_env_id(env_id):
    """Unknown ids get a one-line error with close names. 'module:EnvId' imports module first (it registers EnvId),
    as gymnasium.make does, so your own envs work from the command line. Returns the id without the module."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            __import__(module)
        except (ImportError, ValueError) as e:
            raise UsageError(f"cannot import {module!r} for env {env_id!r}: {e}")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        raise UsageError(f"unknown env id {env_id!r}" + (f"; did you mean {' or '.join(close)}?" if close else ""))
    return env_id


def threshold_of(run):
    """The return a run counts as solved: --target, else the env's reward_threshold (None if it has none)."""
    if run.target is not None:
        return run.target
    spec = gym.spec(check_env_id(run.env))
    return None if spec.reward_threshold is None else float(spec.reward_threshold)


def missing_extra(what, e):
    """One line for an optional extra that is not installed: which one, and its install command."""
    text = str(e).lower()
    extra = next((k for k in INSTALL if k in text), None)
    return f"{what} needs an optional extra: {INSTALL[extra] if extra else str(e).splitlines()[0]}"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2, no usage dump) and no abbreviations."""

    def __init__(self, *a, known=(), **kw):
        super().__init__(*a, allow_abbrev=False, **kw)
        self.known, self.bools, self.unused = known, set(), {}

    def error(self, message):
        if message.startswith("unrecognized arguments: "):
            message = self.explain_unknown(message.split(": ", 1)[1].split())
        raise UsageError(message)

    def explain_unknown(self, args):
        first = args[0]
        if first.split("=")[0] in self.unused:
            return self.unused[first.split("=")[0]]
        before = sys.argv[1:] if self.argv is None else self.argv
        i = before.index(first) if first in before else -1
        if i > 0 and before[i - 1] in self.bools:
            return f"{before[i - 1]} takes no value: give {before[i - 1]} or --no-{before[i - 1][2:]}"
        if first.startswith("-"):
            close = difflib.get_close_matches(first.split("=")[0].replace("_", "-"), self.known, n=1, cutoff=0.75)
            return f"unknown flag {first}" + (f"; did you mean {close[0]}?" if close else " (see --help)")
        return f"unexpected argument {first!r} (see --help)"

    def parse_args(self, argv=None):
        self.argv = argv
        return super().parse_args(argv)


@dataclasses.dataclass
class Config:
    """What the command line is built from: the dataclasses (run: what to run; hyper: what the updates read), the
    per-algorithm defaults, the presets, the choices of each text field, and the flags that pick a mode."""
    run_cls: type
    hyper_cls: type
    algo_defaults: dict
    presets: dict
    doc: str

    def fields(self):
        return dataclasses.fields(self.run_cls) + dataclasses.fields(self.hyper_cls)

    def defaults(self, algo, preset=""):
        """The values a plain --algo ALGO [--preset P] takes: the dataclasses' <- ALGO's <- the preset's."""
        base = {**dataclasses.asdict(self.run_cls()), **dataclasses.asdict(self.hyper_cls())}
        return {**base, **self.algo_defaults[algo], **self.presets.get(preset, {}), "algo": algo, "preset": preset}

    def field(self, name):
        return next(f for f in self.fields() if f.name == name)

    def argv(self, run, hp):
        """The flags that give this config to a new minipg.py process (for --seeds): every field the algorithm
        reads, but the seed and the folder."""
        args = []
        for f in self.fields():
            v = getattr(run if f.name in {g.name for g in dataclasses.fields(self.run_cls)} else hp, f.name)
            if f.name in ("seed", "out") or v is None or not self.uses(f, run.algo):
                continue
            args += [("--" if v else "--no-") + f.name.replace("_", "-")] if isinstance(v, bool) else [flag(f.name), str(v)]
        return args

    def uses(self, f, algo):
        used_by = f.metadata.get("used_by")
        return used_by is None or algo in used_by

    # -- the parser ------------------------------------------------------------------------------------------

    def parser(self, algo, preset):
        """The parser for --algo ALGO: only the flags ALGO reads, each showing the value ALGO (and the preset) gives it.
        algo None: every flag (for an unknown --algo, which resolve() then refuses by name)."""
        shown = {**self.defaults(algo or "ppo", preset), "algo": algo or "ppo"}
        names = [flag(f.name) for f in self.fields()] + [flag(m) for m in MODES] + ["--episodes"]
        description = (self.doc + f"\n\nThe flags and defaults shown are those of --algo {algo}"
                       + (f" --preset {preset}" if preset else "")
                       + " (give --algo NAME --help for another's). Yes/no flags are --flag or --no-flag.")
        epilog = ("Per-algorithm defaults:\n" + "\n".join(f"  {a}: {d}" for a, d in self.algo_defaults.items())
                  + "\nPresets:\n" + "\n".join(f"  {p}: {d}" for p, d in self.presets.items()))
        p = Parser(prog="minipg.py", formatter_class=argparse.RawDescriptionHelpFormatter, description=description,
                   epilog=epilog, known=names)
        groups = {"run": p.add_argument_group(f"what to run ({self.run_cls.__name__}, minipg.py)"),
                  "hyper": p.add_argument_group(f"what the {algo or 'chosen'} update reads ({self.hyper_cls.__name__}, "
                                                "algos.py)")}
        for f in self.fields():
            if algo is not None and not self.uses(f, algo):
                continue
            group = groups["run" if f in dataclasses.fields(self.run_cls) else "hyper"]
            sym = f.metadata.get("sym", "")
            doc = f"{f.metadata['help']} (default: {shown[f.name]})"
            if sym:
                doc = f"{sym}: {doc}"
            names = [flag(f.name)]
            if f.name == "eval_episodes":
                names.append("--episodes")
            if field_type(f) is bool:
                group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=doc,
                                   action=argparse.BooleanOptionalAction)
                p.bools.add(flag(f.name))
            else:
                group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=doc, type=field_type(f),
                                   metavar=f.name.upper())
        modes = p.add_argument_group("modes (instead of one training run)")
        for name, (kw, doc) in MODES.items():
            modes.add_argument(flag(name), help=doc, **kw)
        return p

    def parse_args(self, argv):
        """argv -> (the config flags given, the mode flags). A flag that --algo does not read is refused."""
        pre = Parser(add_help=False)
        pre.add_argument("--algo", default="ppo")
        pre.add_argument("--preset", default="")
        first, _ = pre.parse_known_args(argv)
        preset = first.preset if first.preset in self.presets else ""
        if first.algo in self.algo_defaults:
            p = self.parser(first.algo, preset)
            p.unused = {flag(f.name): self.unused_message(f, first.algo) for f in self.fields()
                        if not self.uses(f, first.algo)}
        else:  # an unknown --algo: take every flag, and let resolve() name the choices
            p = self.parser(None, preset)
        given = vars(p.parse_args(argv))
        config = {k: v for k, v in given.items() if k not in MODES}
        modes = {k: given.get(k) for k in MODES}
        return config, modes

    def unused_message(self, f, algo):
        return f"{flag(f.name)} has no effect with --algo {algo} (it is read by {', '.join(f.metadata['used_by'])})"

    def refuse_unused(self, given, algo):
        """One line for the first flag given that `algo` does not read (the parser refuses most; this catches the
        flags given with a mode, where the parser of the saved run's algorithm was not the one used)."""
        for f in self.fields():
            if f.name in given and not self.uses(f, algo):
                raise UsageError(self.unused_message(f, algo))

    # -- resolving and checking --------------------------------------------------------------------------------

    def resolve(self, given):
        """Defaults <- the algorithm's defaults <- --preset <- flags given. Returns (run, hyper), checked."""
        algo, preset = given.get("algo", "ppo"), given.get("preset", "")
        for name, value, known in (("algo", algo, tuple(self.algo_defaults)), ("preset", preset, ("", *self.presets))):
            if value not in known:
                raise UsageError(f"unknown --{name} {value!r}; choose one of {', '.join(k for k in known if k)}")
        self.refuse_unused(given, algo)
        values = {**self.defaults(algo, preset), **given}
        run_names = {f.name for f in dataclasses.fields(self.run_cls)}
        run = self.run_cls(**{k: v for k, v in values.items() if k in run_names})
        hp = self.hyper_cls(**{k: v for k, v in values.items() if k not in run_names})
        self.validate(run, hp)
        return run, hp

    def differs(self, run, hp):
        """The values of a run that differ from what a plain --algo ALGO [--preset P] takes."""
        shown = self.defaults(run.algo, run.preset)
        values = {**dataclasses.asdict(run), **dataclasses.asdict(hp)}
        return {k: v for k, v in values.items() if shown[k] != v}

    def from_saved(self, cfg):
        """(run, hyper) from a saved config dict: every field present, of its declared type, and valid."""
        run, hp = config_from(cfg, {"run": self.run_cls, "hyper": self.hyper_cls})
        self.validate(run, hp)
        return run, hp

    def validate(self, run, hp):
        """Every value of a config, as the command line or a saved run gives it; raises UsageError naming the flag.
        The ranges are in the fields' metadata ("range": "> 0", ">= 0", ">= 1", "(0, 1]", "[0, 1]", "(0, 1)")."""
        values = {**dataclasses.asdict(run), **dataclasses.asdict(hp)}
        for k, choices in {**CHOICES, "preset": ("", *self.presets)}.items():
            if values[k] not in choices:
                raise UsageError(f"{flag(k)} must be one of {', '.join(choices)}")
        for f in self.fields():
            x = values[f.name]
            if type(x) is float and not math.isfinite(x):
                raise UsageError(f"{flag(f.name)} must be a finite number, got {x}")
            bound = f.metadata.get("range")
            if bound and not in_range(x, bound):
                raise UsageError(f"{flag(f.name)} must be {bound if bound[0] in '<>' else 'in ' + bound}")
        for message, ok in checks(run, hp):
            if not ok:
                raise UsageError(message)


def in_range(x, bound):
    if bound == "> 0":
        return x > 0
    if bound == ">= 0":
        return x >= 0
    if bound == ">= 1":
        return x >= 1
    lo, hi = (float(s) for s in bound[1:-1].split(","))
    above = x > lo if bound[0] == "(" else x >= lo
    below = x < hi if bound[-1] == ")" else x <= hi
    return above and below


def require_extra(module, what):
    """UsageError with the install line if the optional extra `module` is missing."""
    try:
        __import__(module)
    except ImportError:
        raise UsageError(f"{what} needs an optional extra: {INSTALL[module]}")


def only(given, allowed, mode):
    """Refuse a config flag that a mode does not take, naming the flags it does take."""
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise UsageError(f"{flag(extra[0])} has no effect with {mode} (it takes {', '.join(map(flag, allowed))})")


def check_modes(modes, given):
    """The rules between the mode flags. Returns the mode chosen (None: one training run)."""
    chosen = [m for m in ("eval", "plot", "resume", "lab", "seeds") if modes[m]]
    rules = [(len(chosen) > 1, f"choose one of --{' and --'.join(chosen)}"),
             (modes["video"] and not modes["eval"], "--video goes with --eval"),
             (modes["render"] and not modes["eval"], "--render goes with --eval"),
             (modes["jobs"] is not None and not modes["seeds"], "--jobs goes with --seeds"),
             (modes["jobs"] is not None and modes["jobs"] < 1, "--jobs must be >= 1"),
             (modes["overwrite"] and chosen not in ([], ["seeds"]), "--overwrite goes with a new run"),
             (modes["seeds"] and "seed" in given, "give --seed or --seeds, not both")]
    for bad, message in rules:
        if bad:
            raise UsageError(message)
    takes = {"eval": ("env", "eval_episodes", "seed"), "plot": ("out",), "lab": ("env", "seed", "out"),
             "resume": ("steps", "eval_episodes", "save_every_s", "log_every")}
    if chosen and chosen[0] in takes:
        only(given, takes[chosen[0]], f"--{chosen[0]}" + (" (a run keeps its config)" * (chosen[0] == "resume")))
    return chosen[0] if chosen else None


def parse_seeds(text):
    """'0-3' or '0,3,7' -> the list of seeds."""
    lo, _, hi = text.partition("-")
    try:
        seeds = list(range(int(lo), min(int(hi), int(lo) + 1000) + 1)) if hi else [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not 0 < len(seeds) <= 1000 or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise UsageError(f"--seeds must be distinct seeds >= 0 like 0-3 or 0,3,7, got {text!r}")
    return seeds


def default_jobs(run):
    """--seeds runs this many at once by default: the cores, or half as many with --vec procs (two cores a run)."""
    cores = os.cpu_count() or 1
    return max(1, cores // (2 if run.vec == "procs" else 1))
