"""The documentation: docs/reading-map.md names real functions that carry their citations, the core files import
only numpy, numba and nets, docs/own-loop.md's examples run from an empty folder, and the README and docs/ link
only to files that exist."""
import ast
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

README = os.path.join(HERE, "README.md")
READING_MAP = os.path.join(HERE, "docs", "reading-map.md")


def reading_map_rows():
    text = open(READING_MAP).read().split("# Reading map", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if re.match(r"\| 00[0-3] \|", line)]
    assert len(rows) >= 20, "the reading map lost its rows"
    for line in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        yield cells[0], re.findall(r"`(\w+\.py):([\w.]+)`", cells[3]), cells[4].strip("`")


@pytest.mark.parametrize("note, targets, cite", list(reading_map_rows()), ids=lambda x: str(x)[:40])
def test_reading_map_names_real_functions_that_carry_their_citation(note, targets, cite):
    assert targets and cite.startswith(note + " §"), (targets, cite)
    for file, name in targets:
        obj = importlib.import_module(file[:-3])
        for part in name.split("."):
            obj = getattr(obj, part)
        assert cite in inspect.getsource(obj), f"{file}:{name} does not carry '{cite}'"


@pytest.mark.parametrize("file, allowed", [("nets.py", {"math", "os", "numpy", "numba", "threadpoolctl"}),
                                           ("algos.py", {"dataclasses", "numpy", "numba", "nets"}),
                                           # the vector envs take a function that makes an env: no gymnasium
                                           ("vecenv.py", {"multiprocessing", "os", "signal", "time", "numpy"})])
def test_core_files_import_only_numpy_numba_and_nets(file, allowed):
    tree = ast.parse(open(os.path.join(HERE, file)).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= allowed, imported - allowed


OWN_LOOP = os.path.join(HERE, "docs", "own-loop.md")


def own_loop_block(marker):
    return open(OWN_LOOP).read().split(f"<!-- {marker} -->")[1].split("```python")[1].split("```")[0]


def run_alone(tmp_path, code, timeout=300):
    """code run in an empty folder that holds copies of nets.py and algos.py and nothing else of minipg."""
    for f in ("nets.py", "algos.py"):
        shutil.copy(os.path.join(HERE, f), tmp_path / f)
    (tmp_path / "own_loop.py").write_text(code)
    r = subprocess.run([sys.executable, "own_loop.py"], cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_own_loop_example_runs_from_an_empty_folder_with_only_nets_and_algos(tmp_path):
    """docs/own-loop.md's hand-written env, run with copies of nets.py and algos.py and nothing else of minipg.
    An untrained policy rarely walks 4 cells right within 20 steps; the trained one does it in 4 every time."""
    out = run_alone(tmp_path, own_loop_block("own-loop"))
    reached, cut = map(int, re.findall(r"(\d+) episodes reached \+4, (\d+) were cut", out)[0])
    assert reached == 64 and cut == 0, out  # 256 steps / 4 steps per episode: the optimal policy


def test_the_gymnasium_own_loop_is_minipgs_own_run_bit_for_bit(tmp_path):
    """docs/own-loop.md's PPO loop on CartPole, alone with nets.py and algos.py, for 12 iterations: its theta and
    phi equal those of `python minipg.py --algo ppo --dtype float64` after 12 iterations, exactly."""
    import numpy as np
    import minipg
    code = own_loop_block("own-loop-gym").replace("for it in range(iters):", "for it in range(12):")
    run_alone(tmp_path, code + "\nnp.save('theta.npy', agent.pi.theta)\nnp.save('phi.npy', agent.v.theta)\n")
    run, hp = minipg.CONFIG.resolve({"algo": "ppo", "dtype": "float64"})
    tr = minipg.Trainer(run, hp)
    tr.start()
    for _ in range(12):
        tr.iteration()
    tr.close()
    assert np.array_equal(np.load(tmp_path / "theta.npy"), tr.agent.pi.theta)
    assert np.array_equal(np.load(tmp_path / "phi.npy"), tr.agent.v.theta)


@pytest.mark.slow
@pytest.mark.parametrize("env, bar", [("CartPole-v1", 450.0), ("Pendulum-v1", -300.0)])
def test_the_gymnasium_own_loop_learns(env, bar, tmp_path):
    """The whole loop, 100k steps: CartPole's mean return of the last 20 episodes goes from about 20 to above 450,
    Pendulum's from about -1200 to above -300."""
    out = run_alone(tmp_path, own_loop_block("own-loop-gym").replace('ENV = "CartPole-v1"', f'ENV = "{env}"'))
    means = [float(x) for x in re.findall(r"mean return of the last 20 episodes (-?[\d.]+)", out)]
    assert means[0] < (50 if env == "CartPole-v1" else -900) and means[-1] > bar, out


# ---------------------------------------------------------------------------------------------------------------
# The README and docs/ point only at files that exist (issue 21: the bench scripts moved, and the README moved to docs/)
# ---------------------------------------------------------------------------------------------------------------

PAGES = [README] + [os.path.join(HERE, "docs", f) for f in ("cli.md", "results.md", "checking.md", "reading-map.md",
                                                             "own-loop.md", "notes.md", "exercises.md")]
PENDING = {}  # files a page may name before they exist, each with the reason


def named_files(page):
    """The repository files a page names: its markdown links and images, and the `bench/...`, `docs/...` and
    `.ci/...` paths in backquotes, each relative to the repository (links relative to the page)."""
    text = open(page).read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:|#", target):
            yield os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0])), HERE)
    for path in re.findall(r"`((?:bench|docs|\.ci)/[\w./-]+)`", text):
        yield path.rstrip("/.")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, HERE))
def test_every_file_the_readme_and_docs_name_exists(page):
    missing = sorted({f for f in named_files(page) if not os.path.exists(os.path.join(HERE, f))} - set(PENDING))
    assert not missing, f"{os.path.relpath(page, HERE)} names files that do not exist: {missing}"


# ---------------------------------------------------------------------------------------------------------------
# The runner's shape (issue 11): minipg.py is about one thing, and each decision lives in one place
# ---------------------------------------------------------------------------------------------------------------

def test_minipg_py_has_at_most_450_lines_of_code():
    sys.path.insert(0, os.path.join(HERE, "bench"))
    import loc
    assert loc.code_lines(os.path.join(HERE, "minipg.py")) <= 450


@pytest.mark.parametrize("decision, pattern", [
    ("is the action space discrete?", r"isinstance\([^)]*spaces\.Discrete\)"),
    ("clip an action to the bounds", r"np\.clip\(a, "),
    ("name a run folder", r'os\.path\.join\("runs"'),
    ("write a file atomically", r"os\.replace\("),
    ("read policy.npz", r"np\.load\("),
])
def test_each_runner_decision_lives_in_one_place(decision, pattern):
    code = "".join(open(os.path.join(HERE, f)).read() for f in ("minipg.py", "runs.py", "cli.py", "plots.py", "lab.py"))
    assert len(re.findall(pattern, code)) == 1, decision


@pytest.mark.parametrize("file", ["test_minipg.py", "test_updates.py"])
def test_the_maths_tests_need_only_numpy_numba_pytest_nets_and_algos(file):
    """A student who copies nets.py and algos.py into coursework can copy their tests too."""
    tree = ast.parse(open(os.path.join(HERE, file)).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) <= {"numpy", "numba", "pytest", "nets", "algos"}, imported
