"""Coursework mode (exercises.py): every exercise's grader passes the project's own function, says "not implemented
yet" for the stub and fails its wrong answers; every find-the-bug draw is caught by the fast tests; the tables
name functions, tests and mutants that exist; bad input gets one line and exit code 2.

The folders are built once per session and graded in one process (exercises.grade_folders: pytest in-process,
folder after folder, each numba kernel compiled once), which keeps this file near a minute on 2 cores. Two folders
are graded end to end as a student would, `python grade.py` in a fresh folder.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import exercises as X

ROOT = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
NAMES = [ex.name for ex in X.EXERCISES]
BUG_NAMES = [b.mutant for b in X.BUGS]


def wrong_id(wrong):
    return wrong if isinstance(wrong, str) else wrong[0]


# ---------------------------------------------------------------------------------------------------------------
# The tables name what exists (cheap; these fail naming the entry when a rename leaves one behind)
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def collected():
    """The node ids of the two maths test files, as pytest collects them."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *X.TESTS], cwd=ROOT, env=ENV, capture_output=True, text=True)
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    assert ids, f"pytest could not collect {X.TESTS}: {proc.stdout[-800:]}{proc.stderr[-800:]}"
    return ids


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_names_functions_that_exist(name):
    ex = X.by_name(name)
    src = X.read(ex.file)
    missing = [f for f in ex.funcs if X.find_function(src, f) is None]
    assert not missing, f"exercise {name}: {ex.file} has no {', '.join(missing)} (update exercises.EXERCISES)"
    for f in ex.funcs:
        assert X.STUB.format(name=f) in X.stub_of(src, f), f"exercise {name}: {f} cannot be stubbed"


@pytest.mark.parametrize("name", NAMES)
def test_every_claim_names_tests_that_exist(name, collected):
    ex = X.by_name(name)
    missing = [test for test, _ in ex.claims if not any(X.matches(test, nodeid) for nodeid in collected)]
    assert not missing, f"exercise {name}: no test matches {missing} (update exercises.EXERCISES)"
    assert len(ex.claims) == len({c for _, c in ex.claims}), f"exercise {name}: two claims say the same"


@pytest.mark.parametrize("name", NAMES)
def test_every_wrong_answer_fits_its_function(name):
    ex = X.by_name(name)
    muts = X.mutants()
    unknown = [w for w in ex.wrong if isinstance(w, str) and w not in muts]
    assert not unknown, f"exercise {name}: bench/mutate.py has no mutant {unknown} (update exercises.EXERCISES)"
    assert len(ex.wrong) >= 2, f"exercise {name}: fewer than two wrong answers"
    reference = X.answer(ex)
    for w in ex.wrong:
        assert X.answer(ex, w) != reference, f"exercise {name}: the wrong answer {wrong_id(w)!r} changes nothing"


def test_the_bugs_are_mutants_of_nets_and_algos_and_name_real_tests(collected):
    muts = X.mutants()
    assert 12 <= len(X.BUGS) <= 20 and len(set(BUG_NAMES)) == len(BUG_NAMES)
    for bug in X.BUGS:
        assert bug.mutant in muts, f"bug {bug.mutant}: not a mutant of bench/mutate.py (update exercises.BUGS)"
        assert muts[bug.mutant].file in ("nets.py", "algos.py"), f"bug {bug.mutant}: only nets.py and algos.py"
        assert X.read(muts[bug.mutant].file).count(muts[bug.mutant].old) == 1, f"bug {bug.mutant}: stale mutant"
        assert sum(X.matches(bug.caught_by, nodeid) for nodeid in collected) == 1, \
            f"bug {bug.mutant}: caught_by must name one test, not {bug.caught_by} (update exercises.BUGS)"
        assert bug.train.split()[:2][0] == "--algo"
    files = {muts[b.mutant].file for b in X.BUGS}
    assert files == {"nets.py", "algos.py"}


def test_the_exercises_span_the_four_topics_in_build_up_order():
    assert len(X.EXERCISES) >= 15 and len(set(NAMES)) == len(NAMES)
    notes = {n for ex in X.EXERCISES for n in X.notes_of(ex)}
    assert {"000", "001", "003"} <= notes
    # a folder name is the exercise's place in the order, which the set's handout and --take rely on
    assert [X.folder_name(ex)[:2] for ex in X.EXERCISES] == [f"{i:02d}" for i in range(1, len(NAMES) + 1)]


def test_docs_list_is_the_table():
    with open(os.path.join(ROOT, "docs", "exercises.md")) as f:
        doc = f.read()
    assert X.list_text(markdown=True) in doc, \
        "docs/exercises.md's list is stale: paste `python exercises.py --exercise list --markdown` into it"


# ---------------------------------------------------------------------------------------------------------------
# Every folder, graded (one session fixture: built once, graded in one process)
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Builds, for every exercise: its folder in a full set with every earlier exercise and itself written as the
    project has them (the reference, after its own dependencies); its stub folder; one folder per wrong answer;
    and a folder per bug. Grades them all. Returns {key: result or "build failed: ..."}."""
    root = tmp_path_factory.mktemp("exercises")
    jobs, keys, results = [], [], {}

    def add(key, build, folder, data=None, first_failure=False):
        try:
            build()
        except Exception as e:  # one stale entry must not hide the others
            results[key] = f"build failed: {type(e).__name__}: {e}"
            return
        jobs.append((str(folder), data, first_failure))
        keys.append(key)

    course = root / "course"
    assert X.main(["--exercise", "set", "--out", str(course)]) == 0
    for i, ex in enumerate(X.EXERCISES):
        folder = course / "students" / X.folder_name(ex)

        def fill(ex=ex, i=i, folder=folder):  # the student has done exercises 1..i+1, as the solutions do
            for done in X.EXERCISES[:i + 1]:
                X.put_answer(str(folder), done.file, solution_texts(course, done))
        add(("reference", ex.name), fill, folder)
        stub = root / "stub" / ex.name
        add(("stub", ex.name), lambda ex=ex, stub=stub: X.write_exercise(ex, str(stub)), stub)
        for w in ex.wrong:
            planted = root / "wrong" / f"{ex.name}--{X.EXERCISES.index(ex)}-{ex.wrong.index(w)}"

            def build(ex=ex, w=w, planted=planted):
                X.write_exercise(ex, str(planted))
                X.put_answer(str(planted), ex.file, X.answer(ex, w))
            add(("wrong", ex.name, wrong_id(w)), build, planted, first_failure=True)
    # a set of exercises 1 and 2: in 2's folder, 1's function is a stub until --take copies the student's in
    pair = root / "pair"
    assert X.main(["--exercise", "set", "--out", str(pair), "--only", ",".join(NAMES[:2])]) == 0
    first, second = (pair / "students" / X.folder_name(X.by_name(n)) for n in NAMES[:2])
    needs = root / "needs"
    shutil.copytree(second, needs)
    add(("needs",), lambda: X.put_answer(str(needs), "nets.py", X.answer(X.by_name(NAMES[1]))), needs)

    def take():
        X.put_answer(str(first), "nets.py", X.answer(X.by_name(NAMES[0])))  # the student solved exercise 1 ...
        X.put_answer(str(second), "nets.py", X.answer(X.by_name(NAMES[1])))  # ... and exercise 2
        results["take"] = subprocess.run([sys.executable, "grade.py", "--take", "../" + first.name], cwd=second,
                                         env=ENV, capture_output=True, text=True, timeout=60)
    add(("taken",), take, second)
    muts = X.mutants()
    clean = root / "clean"
    add(("clean",), lambda: (clean.mkdir(), X.copy_project(str(clean))), clean,
        dict(claims=[[b.caught_by, b.mutant] for b in X.BUGS], funcs=[]))
    for bug in X.BUGS:
        folder = root / "bug" / bug.mutant.replace("/", "_")

        def build(bug=bug, folder=folder):
            folder.mkdir(parents=True)
            X.copy_project(str(folder))
            X.plant(str(folder), muts[bug.mutant])
        add(("bug", bug.mutant), build, folder, dict(claims=[[bug.caught_by, "the fast suite catches it"]], funcs=[]))

    with open(root / "jobs.json", "w") as f:
        json.dump(jobs, f)
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import exercises; "
              "json.dump(exercises.grade_folders(json.load(open(sys.argv[2]))), open(sys.argv[3], 'w'))")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, ROOT, str(root / "jobs.json"), str(root / "out.json")],
                          cwd=str(root), env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"grading the folders failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    with open(root / "out.json") as f:
        out = json.load(f)
    results.update(zip(keys, out))
    results["seconds"] = time.perf_counter() - t0
    with open(root / "times.txt", "w") as f:  # where the time goes, for whoever tunes this file
        f.write("\n".join(f"{r['seconds']:6.2f} {k}" for k, r in zip(keys, out)))
    results["root"] = root
    return results


def solution_texts(course, ex):
    """{qualname: text} from course/solutions/NN-name.py: the teacher's file, checked against the project."""
    with open(course / "solutions" / f"{X.folder_name(ex)}.py") as f:
        text = f.read()
    body = text.split("\n\n", 1)[1]
    texts = X.answer(ex)
    assert body == "\n".join(texts.values()), f"solutions/{X.folder_name(ex)}.py is not the project's function"
    return texts


def outcome(graded, key):
    r = graded.get(key)
    assert r is not None, f"{key}: not graded"
    assert not isinstance(r, str), f"{key}: {r}"
    assert r["error"] is None, f"{key}: {r['error']}"
    return r["results"]


def show(results):
    return "\n".join(f"{'PASS' if ok else 'FAIL'}  {claim}" + (f"\n      {msg}" if msg else "")
                     for claim, ok, msg in results)


@pytest.mark.parametrize("name", NAMES)
def test_the_project_s_own_function_passes_its_grader_after_the_exercises_before_it(name, graded):
    """In the set's folder, with exercises 1..k written as the project has them and every later one a stub: so the
    build-up order holds (no claim needs a later exercise), and the reference passes."""
    results = outcome(graded, ("reference", name))
    assert all(ok for _, ok, _ in results), f"exercise {name}:\n{show(results)}"


@pytest.mark.parametrize("name", NAMES)
def test_the_stub_fails_every_claim_saying_not_implemented_yet(name, graded):
    """For the numba kernels (discount_cumsum, gae) this says that numba compiles the stub's raise, too."""
    results = outcome(graded, ("stub", name))
    assert results and not any(ok for _, ok, _ in results), f"exercise {name}:\n{show(results)}"
    assert all(msg.startswith("not implemented yet") for _, _, msg in results), f"exercise {name}:\n{show(results)}"


@pytest.mark.parametrize("name", NAMES)
def test_every_wrong_answer_fails_a_claim_with_one_line_that_says_what_came(name, graded):
    ex = X.by_name(name)
    for w in ex.wrong:
        results = outcome(graded, ("wrong", name, wrong_id(w)))
        failed = [(claim, msg) for claim, ok, msg in results if not ok and msg != "did not run"]
        assert failed, f"exercise {name}: the wrong answer {wrong_id(w)!r} passes every claim:\n{show(results)}"
        for claim, msg in failed[:1]:  # the grading stopped at the first failure
            assert msg and "\n" not in msg and len(msg) < 400, (name, wrong_id(w), claim, msg)
            assert "not implemented" not in msg and "Traceback" not in msg, (name, wrong_id(w), msg)


def test_the_bugs_caught_by_tests_pass_on_the_clean_project(graded):
    results = outcome(graded, ("clean",))
    assert all(ok for _, ok, _ in results), show(results)


@pytest.mark.parametrize("mutant", BUG_NAMES)
def test_every_bug_draw_is_caught_by_the_fast_suite(mutant, graded):
    results = outcome(graded, ("bug", mutant))
    bug = next(b for b in X.BUGS if b.mutant == mutant)
    assert results and not results[0][1], f"bug {mutant} passes {bug.caught_by}: choose a test that catches it"


# ---------------------------------------------------------------------------------------------------------------
# End to end, as a student: python grade.py in a fresh folder (numba compiles from nothing)
# ---------------------------------------------------------------------------------------------------------------

def grade_py(folder, *args):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "grade.py", *args], cwd=folder, env=ENV, capture_output=True, text=True,
                          timeout=300)
    return proc, time.perf_counter() - t0


def test_grade_py_in_a_fresh_folder_passes_the_reference_within_30_s(tmp_path):
    ex = X.by_name("gae")
    X.write_exercise(ex, str(tmp_path / "gae"))
    X.put_answer(str(tmp_path / "gae"), ex.file, X.answer(ex))
    proc, seconds = grade_py(tmp_path / "gae")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [s[:4] for s in lines[1:-1]] == ["PASS"] * len(ex.claims), proc.stdout
    assert lines[-1].startswith("all 4 claims pass") and "python minipg.py --algo ppo" in lines[-1]
    assert seconds < 30, seconds


def test_grade_py_says_not_implemented_yet_and_exits_1(tmp_path):
    ex = X.by_name("categorical-dlogp")
    X.write_exercise(ex, str(tmp_path / "ex"))
    proc, _ = grade_py(tmp_path / "ex")
    assert proc.returncode == 1 and proc.stderr == "", proc.stdout + proc.stderr
    assert proc.stdout.count("FAIL  ") == len(ex.claims) and proc.stdout.count("not implemented yet") == len(ex.claims)
    assert "Traceback" not in proc.stdout


def test_in_a_set_grade_py_names_an_earlier_exercise_it_needs_and_take_copies_it_in(graded):
    """In the set, exercise 2's claims use exercise 1's function: grade.py says so, and --take copies it in."""
    results = outcome(graded, ("needs",))
    assert any(msg.startswith("needs Categorical.log_prob first (exercise 01-categorical-log-prob)")
               for _, ok, msg in results if not ok), show(results)
    proc = graded["take"]
    assert proc.returncode == 0 and proc.stdout.startswith("took Categorical.log_prob from ../01-"), proc.stdout
    results = outcome(graded, ("taken",))
    assert all(ok for _, ok, _ in results), show(results)


# ---------------------------------------------------------------------------------------------------------------
# What the folders hold
# ---------------------------------------------------------------------------------------------------------------

def code_lines(text):
    """The lines of a function that are code: not its signature, docstring or comments, not blank."""
    node = ast.parse(textwrap.dedent(text)).body[0]
    doc = X._docstring(node)
    start = doc.end_lineno if doc else node.body[0].lineno - 1
    lines = textwrap.dedent(text).splitlines()[start:]
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def test_the_set_s_students_folders_hold_no_solution(tmp_path):
    course = tmp_path / "course"
    assert X.main(["--exercise", "set", "--out", str(course)]) == 0
    texts = []
    for folder, _, files in os.walk(course / "students"):
        for name in files:
            with open(os.path.join(folder, name), errors="replace") as f:
                texts.append("\n".join(code_lines_of_all(f.read())))
    everything = "\n".join(sorted(set(texts)))  # the folders' copies are mostly the same files
    for ex in X.EXERCISES:
        for qualname, text in X.answer(ex).items():
            body = "\n".join(code_lines(text))
            assert body and body not in everything, f"{ex.name}: {qualname} leaks into students/"
        assert os.path.exists(course / "solutions" / f"{X.folder_name(ex)}.py")
    with open(course / "students" / "handout.md") as f:
        handout = f.read()
    positions = [handout.index(X.folder_name(ex) + "/") for ex in X.EXERCISES]
    assert positions == sorted(positions) and all(ex.note in handout for ex in X.EXERCISES)


def code_lines_of_all(text):
    return [s.strip() for s in text.splitlines() if s.strip() and not s.strip().startswith("#")]


def test_an_exercise_folder_works_on_its_own(tmp_path):
    ex = X.by_name("ppo-clip-objective")
    out = tmp_path / "ex"
    assert X.main(["--exercise", ex.name, "--out", str(out)]) == 0
    names = set(os.listdir(out))
    assert {"nets.py", "algos.py", "minipg.py", "requirements.txt", "conftest.py", "grade.py", "README.md",
            *X.TESTS} <= names
    assert not names & {"exercises.py", "bench", ".git"}
    src = (out / ex.file).read_text()
    assert X.is_stub(src, ex.funcs[0]) and not X.is_stub(X.read(ex.file), ex.funcs[0])
    stub = X.function_text(src, ex.funcs[0])
    reference = X.answer(ex)[ex.funcs[0]]
    assert reference.splitlines()[:1] == stub.splitlines()[:1]  # the signature
    assert all(s in stub for s in reference.splitlines() if s.strip().startswith(("#", '"""')))  # docstring, equations
    readme = (out / "README.md").read_text()
    assert "python grade.py" in readme and ex.note in readme and f"python minipg.py {ex.train}" in readme
    assert "OPENBLAS_NUM_THREADS" in (out / "conftest.py").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Find the bug, and the command line
# ---------------------------------------------------------------------------------------------------------------

def test_a_bug_folder_does_not_say_where_and_reveal_shows_the_diff(tmp_path, capsys):
    out = tmp_path / "bug"
    assert X.main(["--exercise", "bug", "--seed", "3", "--out", str(out)]) == 0
    bug = X.draw(3)
    assert X.draw(3) == bug and bug in X.BUGS
    mutant = X.mutants()[bug.mutant]
    readme = (out / "README.md").read_text()
    assert f"python minipg.py {bug.train}" in readme and "pytest -q test_minipg.py test_updates.py" in readme
    assert bug.mutant not in readme and mutant.doc not in readme and "bench" not in os.listdir(out)
    assert (out / mutant.file).read_text() == X.mutated(mutant)
    assert len({os.stat(out / name).st_mtime for name in os.listdir(out)}) == 1  # `ls -t` gives nothing away
    capsys.readouterr()
    assert X.main(["--exercise", "reveal", "--seed", "3"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"bug 3: {bug.mutant}") and f"--- a/{mutant.file}" in shown
    assert any(line.startswith("+") and mutant.new.strip().splitlines()[0] in line for line in shown.splitlines())


def test_list_shows_one_exercise_a_line_in_order_with_its_note(capsys):
    assert X.main(["--exercise", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == NAMES
    assert all(ex.note in line for ex, line in zip(X.EXERCISES, lines))


@pytest.mark.parametrize("argv, says", [
    (["--exercise", "gea", "--out", "x"], "unknown exercise 'gea'; did you mean gae?"),
    (["--exercise", "categorical-dlgop", "--out", "x"], "did you mean categorical-dlogp"),
    (["--exercise", "gae"], "needs --out DIR"),
    (["--exercise", "bug", "--out", "x"], "needs --seed N"),
    (["--exercise", "bug", "--seed", "-1", "--out", "x"], "needs --seed N"),
    (["--exercise", "reveal"], "needs --seed N"),
    (["--exercise", "reveal", "--seed", "1", "--out", "x"], "does not take --out"),
    (["--exercise", "list", "--seed", "1"], "does not take --seed"),
    (["--exercise", "gae", "--only", "cg", "--out", "x"], "does not take --only"),
    (["--exercise", "set", "--out", "x", "--only", "gae,cgg"], "unknown exercise 'cgg'; did you mean cg"),
    (["--exercise", "bug", "--seed", "one", "--out", "x"], "invalid int value"),
    (["--exercise"], "expected one argument"),
    ([], "required: --exercise"),
    (["--exercise", "gae", "--out", "x", "--steps", "3"], "unrecognized arguments: --steps 3"),
])
def test_bad_input_gets_one_line_and_exit_code_2(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert X.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and says in err, err
    assert os.listdir(tmp_path) == []  # nothing written


def test_an_out_that_exists_and_is_not_empty_is_refused(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("my work")
    for argv in (["--exercise", "gae"], ["--exercise", "bug", "--seed", "0"], ["--exercise", "set"]):
        assert X.main([*argv, "--out", str(tmp_path / "full")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "exists and is not an empty folder" in err
    assert os.listdir(tmp_path / "full") == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    assert X.main(["--exercise", "gae", "--out", str(tmp_path / "empty")]) == 0


# ---------------------------------------------------------------------------------------------------------------
# Slow: each bug changes what training shows
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_bug_differs_visibly_in_a_diagnostic_or_learns_worse():
    clean_runs, seen = {}, []
    for bug in X.BUGS:
        r = X.bug_diagnostics(bug.mutant, clean_runs=clean_runs)
        seen.append(r)
        col, diff = r["largest"]
        worse = r["eval_bug"] is not None and r["eval_clean"] is not None and r["eval_bug"] < r["eval_clean"]
        assert diff > 0.05 or worse, f"bug {bug.mutant}: no diagnostic differs by > 5% and eval is not lower: {r}"


def test_minipg_py_hands_exercise_to_exercises_py():
    """minipg.py --exercise ... is exercises.main: the same list, and the same exit code 2 for bad input."""
    proc = subprocess.run([sys.executable, "minipg.py", "--exercise", "list"], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == X.list_text() + "\n", proc.stdout[-500:] + proc.stderr[-500:]
    proc = subprocess.run([sys.executable, "minipg.py", "--exercise", "gea"], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "did you mean gae" in proc.stderr
    with tempfile.TemporaryDirectory() as tmp:  # the teacher's command, with the flags only exercises.py knows
        proc = subprocess.run([sys.executable, "minipg.py", "--exercise", "set", "--out", os.path.join(tmp, "course"),
                               "--only", "gae,cg"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(os.path.join(tmp, "course", "students"))) == ["09-gae", "13-cg", "handout.md"]
