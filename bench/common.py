"""bench/common.py -- what the bench scripts share: where the repo is, the commit, the machine and the versions a
results file names, running one minipg command in a subprocess and reading its summary.json, and writing a
results file atomically under its header. It imports neither minipg nor the code it measures, so a script can
run another checkout (--tree) with it.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PACKAGES = ("numpy", "gymnasium", "numba", "mujoco", "box2d")


def parser(doc):
    """The argparse parser of a bench script: its docstring's first paragraph as the description, the rest (how to
    run it) after the options."""
    head, _, rest = doc.partition("\n\n")
    return argparse.ArgumentParser(description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)


def commit(tree=ROOT):
    """HEAD of tree, short, with ' + uncommitted changes' when a tracked .py file differs from it."""
    git = ["git", "-C", tree]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no", "--", "*.py"],
                           capture_output=True, text=True).stdout.strip()
    return (head or "?") + (" + uncommitted changes" if dirty else "")


def machine():
    """One line: CPU model, cores, RAM, OS."""
    cpu, ram = platform.processor() or platform.machine(), "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            kib = next(int(l.split()[1]) for l in f if l.startswith("MemTotal"))
        ram = f"{kib / 2 ** 20:.1f}"
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {ram} GiB, {platform.system()} {platform.release()}"


def versions(packages=PACKAGES):
    """{package: version} of the installed ones, then python."""
    found = {}
    for p in packages:
        try:
            found[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {**found, "python": platform.python_version()}


def utc(fmt="%Y-%m-%d %H:%M UTC"):
    return time.strftime(fmt, time.gmtime())


def rel(path):
    """path relative to the repo root when it lies inside it (as a results file names it), else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def command(argv=None):
    """The command that is running, as it would be typed from the repo root: `python bench/x.py ARGS`."""
    argv = sys.argv if argv is None else argv
    return shlex.join(["python", rel(argv[0]), *argv[1:]])


def header(title, tree=ROOT):
    """The first lines of every results file: what, the command, the commit, the date, the machine, the versions."""
    return (f"# {title}\n\n`{command()}` at {commit(tree)}, {utc()}, on {machine()}; "
            + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".\n\n")


def write_text(path, text):
    """Write path.tmp and rename it over path: a reader sees the old file or the new one, never half of one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=1) + "\n")


def write_results(path, title, body, tree=ROOT):
    """A markdown results file: header(title), then body. Also printed. No path: print only."""
    text = header(title, tree) + body.rstrip("\n") + "\n"
    print(text, end="")
    if path:
        write_text(path, text)


def child_env():
    """One BLAS/OpenMP thread in the child: the matrices are small, and two runs may share the two cores."""
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_minipg(args, out, tree=ROOT, log=None, reads="summary.json"):
    """`python minipg.py ARGS --out OUT --overwrite` in a fresh interpreter, from tree, its output into the file log
    (as it runs) or kept in memory. Returns OUT's summary.json (with --seeds: reads="seeds.json"); raises
    RuntimeError with minipg's last line if it failed."""
    out = os.path.abspath(out)
    cmd = [sys.executable, "minipg.py", *args, "--out", out, "--overwrite"]
    if log:
        with open(log, "w") as f:
            rc = subprocess.run(cmd, cwd=tree, stdout=f, stderr=subprocess.STDOUT, env=child_env()).returncode
        text = open(log).read()
    else:
        r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=child_env())
        rc, text = r.returncode, r.stdout + r.stderr
    if rc != 0:
        tail = (text.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"python minipg.py {shlex.join(args)} (in {tree}): exit code {rc}: {tail}")
    with open(os.path.join(out, reads)) as f:
        return json.load(f)
