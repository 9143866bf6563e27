"""The documentation: the README's reading map names real functions that carry their citations, the core files
import only numpy, numba and nets, and the README's own-loop example runs from an empty folder."""
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


def reading_map_rows():
    text = open(README).read().split("## Reading map", 1)[1].split("\n## ", 1)[0]
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


@pytest.mark.parametrize("file, allowed", [("nets.py", {"math", "numpy", "numba"}),
                                           ("algos.py", {"dataclasses", "numpy", "numba", "nets"}),
                                           # the vector envs take a function that makes an env: no gymnasium
                                           ("vecenv.py", {"multiprocessing", "os", "signal", "time", "numpy"})])
def test_core_files_import_only_numpy_numba_and_nets(file, allowed):
    tree = ast.parse(open(os.path.join(HERE, file)).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= allowed, imported - allowed


def test_own_loop_example_runs_from_an_empty_folder_with_only_nets_and_algos(tmp_path):
    """The README's 'own loop' block, run with copies of nets.py and algos.py and nothing else of minipg.
    An untrained policy rarely walks 4 cells right within 20 steps; the trained one does it in 4 every time."""
    code = open(README).read().split("<!-- own-loop -->")[1].split("```python")[1].split("```")[0]
    for f in ("nets.py", "algos.py"):
        shutil.copy(os.path.join(HERE, f), tmp_path / f)
    (tmp_path / "own_loop.py").write_text(code)
    r = subprocess.run([sys.executable, "own_loop.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    reached, cut = map(int, re.findall(r"(\d+) episodes reached \+4, (\d+) were cut", r.stdout)[0])
    assert reached == 64 and cut == 0, r.stdout  # 256 steps / 4 steps per episode: the optimal policy


# ---------------------------------------------------------------------------------------------------------------
# The runner's shape (issue 11): minipg.py is about one thing, and each decision lives in one place
# ---------------------------------------------------------------------------------------------------------------

def test_minipg_py_has_at_most_750_lines_of_code():
    sys.path.insert(0, os.path.join(HERE, "bench"))
    import loc
    assert loc.code_lines(os.path.join(HERE, "minipg.py")) <= 750


@pytest.mark.parametrize("decision, pattern", [
    ("is the action space discrete?", r"isinstance\([^)]*spaces\.Discrete\)"),
    ("clip an action to the bounds", r"np\.clip\(a, "),
    ("name a run folder", r'os\.path\.join\("runs"'),
    ("write a file atomically", r"os\.replace\("),
    ("read policy.npz", r"np\.load\("),
])
def test_each_runner_decision_lives_in_one_place(decision, pattern):
    code = "".join(open(os.path.join(HERE, f)).read() for f in ("minipg.py", "lab.py"))
    assert len(re.findall(pattern, code)) == 1, decision


@pytest.mark.parametrize("file", ["test_minipg.py", "test_updates.py"])
def test_the_maths_tests_need_only_numpy_numba_pytest_nets_and_algos(file):
    """A student who copies nets.py and algos.py into coursework can copy their tests too."""
    tree = ast.parse(open(os.path.join(HERE, file)).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) <= {"numpy", "numba", "pytest", "nets", "algos"}, imported
