"""The command line and the files of a run (minipg.py): what a run writes, bad input, damaged checkpoints, run
folders and their lock, Ctrl-C and resume, --seeds, --help and --plot. Each claim here is one docs/cli.md makes."""
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minipg
import runs
import test_runner  # noqa: F401  (registers the test envs: test_runner:NanReward-v0, ...)

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_RUN = ["--algo", "ppo", "--steps", "1024", "--num-envs", "2", "--num-steps", "128", "--eval-episodes", "2",
            "--epochs", "2", "--minibatch", "64"]
LONG_RUN = ["--algo", "ppo", "--steps", "400000", "--eval-episodes", "1"]


def _run(*args, timeout=240, cwd=HERE, **kw):
    return subprocess.run([sys.executable, os.path.join(HERE, "minipg.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, **kw)


def _start(*args):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "minipg.py"), *args], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rows(out, n, p, deadline=90):
    """Wait until progress.csv of a live run holds n rows past its header."""
    end = time.time() + deadline
    path = os.path.join(out, "progress.csv")
    while time.time() < end and p.poll() is None:
        if os.path.exists(path) and sum(1 for _ in open(path)) > n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} rows in {path} ({p.poll()})")


def one_line_exit(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def snapshot_files(out):
    return {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out))}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "a")
    r = _run(*TINY_RUN, "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


# ---------------------------------------------------------------------------------------------------------------
# What a run writes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_default_run_writes_the_four_files_and_a_summary(tiny_run):
    out, r = tiny_run
    assert sorted(f for f in os.listdir(out) if f != ".lock") == sorted(runs.RUN_FILES)  # and the lock, released
    s = json.load(open(os.path.join(out, "summary.json")))
    assert (s["algo"], s["env"], s["total_steps"], s["eval_episodes"], s["threshold"], s["interrupted"]) == \
        ("ppo", "CartPole-v1", 1024, 2, 475.0, False)
    rows = list(csv.DictReader(open(os.path.join(out, "progress.csv"))))
    assert len(rows) == 4 and tuple(rows[0]) == minipg.PROGRESS_COLUMNS and rows[-1]["steps"] == "1024"
    assert "evaluation (2 deterministic episodes)" in r.stdout and out in r.stdout
    json.loads(open(os.path.join(out, "config.json")).read(), parse_constant=lambda c: pytest.fail(c))  # no NaN


@pytest.mark.slow
def test_same_seed_gives_the_same_progress_csv(tiny_run, tmp_path):
    out, _ = tiny_run
    r = _run(*TINY_RUN, "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr

    def rows(d):
        return [{k: v for k, v in row.items() if k not in minipg.TIMING_COLUMNS}
                for row in csv.DictReader(open(os.path.join(d, "progress.csv")))]
    assert rows(out) == rows(str(tmp_path / "b"))


@pytest.mark.slow
def test_eval_of_the_saved_policy_reproduces_the_summary(tiny_run):
    out, _ = tiny_run
    s = json.load(open(os.path.join(out, "summary.json")))
    r = _run("--eval", os.path.join(out, "policy.npz"), "--episodes", "2")
    assert r.returncode == 0, r.stderr
    assert f"{s['eval_return_mean']:.2f} ± {s['eval_return_std']:.2f}" in r.stdout


@pytest.mark.slow
def test_a_run_without_a_threshold_says_so(tmp_path):
    r = _run("--algo", "ppo", "--env", "Pendulum-v1", "--steps", "512", "--num-envs", "2", "--num-steps", "256",
             "--epochs", "1", "--eval-episodes", "1", "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert "Pendulum-v1 has no return threshold" in r.stdout
    assert json.load(open(tmp_path / "p" / "summary.json"))["threshold"] is None


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, no files
# ---------------------------------------------------------------------------------------------------------------

BAD = [
    (["--env", "CartPol-v1"], "did you mean CartPole-v1"),
    (["--env", "Blackjack-v1"], "Tuple observation space"),
    (["--env", "FrozenLake-v1"], "Discrete observation space"),
    (["--env", "test_runner:DictObs-v0"], "Dict observation space"),
    (["--env", "test_runner:MultiDiscreteAct-v0"], "MultiDiscrete action space"),
    (["--env", "test_runner:MultiBinaryAct-v0"], "MultiBinary action space"),
    (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    (["--gamma", "0"], "--gamma must be in (0, 1]"),
    (["--gamma", "nan"], "--gamma must be a finite number"),
    (["--lr-pi", "inf"], "--lr-pi must be a finite number"),
    (["--lam", "-0.1"], "--lam must be in [0, 1]"),
    (["--lr-pi", "0"], "must be > 0"),
    (["--clip-eps", "-0.2"], "--clip-eps must be > 0"),
    (["--steps", "100"], "smaller than one batch"),
    (["--minibatch", "512"], "larger than the batch"),
    (["--hidden", "64,,64"], "--hidden must be positive layer sizes"),
    (["--hidden", "64,-1"], "--hidden must be positive layer sizes"),
    (["--algo", "dqn"], "unknown --algo"),
    (["--gamma", "abc"], "invalid float value"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--episodes", "0"], "--eval-episodes must be >= 1"),
    (["--seeds", "1,1"], "--seeds must be distinct seeds >= 0"),
    (["--seeds", "3-1"], "--seeds must be distinct seeds >= 0"),
    (["--seeds", "0-1", "--jobs", "0"], "--jobs must be >= 1"),
    (["--jobs", "2"], "--jobs goes with --seeds"),
    (["--video", "v"], "--video goes with --eval"),
    (["--eval", "no/such/policy.npz"], "no such policy file"),
    (["--eval", "no/such/policy.npz", "--lr-pi", "0.1"], "--lr-pi has no effect with --eval"),
    (["--resume", "."], "not a minipg run"),
    (["--resume", ".", "--plot", "."], "choose one of"),
    (["--norm-obs", "maybe"], "--norm-obs must be one of on, off, auto"),
    (["--hidden", "²"], "--hidden must be positive layer sizes"),
    (["--env", ":CartPole-v1"], "cannot import"),
    (["--num-envs", "1", "--num-steps", "100000000000", "--steps", "100000000000"], "the batch <= 10^7 steps"),
    (["--seeds", "0-99999999999"], "--seeds must be distinct seeds >= 0"),
    (["--algo"], "expected one argument"),
    (["--lab", "variance", "--lr-pi", "0.1"], "--lr-pi has no effect with --lab"),
    # a flag the chosen algorithm does not read, abbreviations, yes/no flags and size bounds (issue 21)
    (["--algo", "trpo", "--clip-eps", "0.1"], "--clip-eps has no effect with --algo trpo (it is read by ppo)"),
    (["--algo", "ppo", "--phi", "return"], "--phi has no effect with --algo ppo (it is read by reinforce)"),
    (["--algo", "ppo", "--baseline", "optimal"], "--baseline has no effect with --algo ppo"),
    (["--algo", "trpo", "--lr-pi", "0.1"], "--lr-pi has no effect with --algo trpo"),
    (["--algo", "reinforce", "--num-steps", "10"], "--num-steps has no effect with --algo reinforce"),
    (["--algo", "ppo", "--num-episodes", "10"], "--num-episodes has no effect with --algo ppo"),
    (["--epoch", "5"], "unknown flag --epoch; did you mean --epochs?"),
    (["--lr_pi", "0.1"], "unknown flag --lr_pi; did you mean --lr-pi?"),
    (["--anneal-lr", "false"], "--anneal-lr takes no value: give --anneal-lr or --no-anneal-lr"),
    (["--algo", "trpo", "--v-minibatch", "5000"], "--v-minibatch 5000 is larger than the batch (1024)"),
    (["--algo", "reinforce", "--num-envs", "8", "--num-episodes", "4"], "--num-episodes 4 is smaller than --num-envs"),
    (["--eval", "test_cli.py"], "is not a policy file"),
    (["--eval", "README.md", "--seed", "1"], "is not a policy file"),
    (["--resume", "README.md"], "--resume takes the run's folder, not a file"),
    (["--resume", ".", "--lr-pi", "0.1"], "--lr-pi has no effect with --resume (a run keeps its config)"),
]


@pytest.mark.parametrize("args, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_no_files(args, says, tmp_path, capsys):
    modes = {"--eval", "--resume", "--plot"} & set(args)
    code = minipg.main(args if modes else [*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_out_naming_a_file_or_a_path_under_one_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        assert minipg.main(["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and "file" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == ["f"]


def test_help_shows_only_the_flags_the_chosen_algo_reads_with_the_values_it_takes(capsys):
    for algo, want, absent in (("trpo", ["batch is E*T (default: 512)", "--algo ALGO", "(default: trpo)", "--max-kl"],
                                ["--lr-pi", "--clip-eps", "--phi", "--epochs", "--num-episodes"]),
                               ("a2c", ["(A2C's classic choice) (default: rmsprop)", "--vf-coef"],
                                ["--max-kl", "--v-iters", "--baseline"]),
                               ("reinforce", ["--num-episodes", "--phi", "--baseline"], ["--num-steps", "--lam"])):
        with pytest.raises(SystemExit):
            minipg.CONFIG.parse_args(["--algo", algo, "--help"])
        out = capsys.readouterr().out
        flat = " ".join(out.split())
        assert f"defaults shown are those of --algo {algo}" in flat and "--flag or --no-flag" in flat
        for text in want:
            assert text in flat, (algo, text)
        options = out.split("options:")[1].split("Per-algorithm defaults")[0]
        for text in absent:
            assert text + " " not in options, (algo, text)


def test_the_header_lists_what_differs_from_the_chosen_algorithms_defaults(tmp_path):
    """A plain --algo ppo differs from nothing (gamma 0.98 and lambda 0.8 are PPO's defaults); a flag given shows."""
    plain = _run(*TINY_RUN[:2], "--steps", "256", "--num-envs", "2", "--num-steps", "128", "--minibatch", "64",
                 "--eval-episodes", "1", "--out", str(tmp_path / "a"))
    assert plain.returncode == 0, plain.stderr
    line = next(s for s in plain.stdout.splitlines() if "differs from the defaults of --algo ppo" in s)
    assert '"gamma"' not in line and '"lam"' not in line and '"num_envs": 2' in line and '"steps": 256' in line
    for args, algo in ((["--algo", "trpo"], "trpo"), (["--algo", "ppo", "--preset", "pendulum"], "ppo --preset pendulum")):
        run, hp = minipg.CONFIG.resolve(minipg.CONFIG.parse_args(args)[0])
        assert minipg.CONFIG.differs(run, hp) == {}, (algo, minipg.CONFIG.differs(run, hp))


def test_eval_of_a_live_run_says_it_is_live(tiny_run, capsys):
    out, _ = tiny_run
    with runs.folder_lock(out):
        assert minipg.main(["--eval", out, "--episodes", "1"]) == 0
    err = capsys.readouterr().err
    assert "is a live run" in err and "latest checkpoint" in err
    assert minipg.main(["--eval", out, "--episodes", "1"]) == 0 and "live" not in capsys.readouterr().err


def test_a_missing_optional_extra_is_one_line_with_the_install_command_the_readme_gives(tmp_path, capsys):
    """One install hint per extra, the same in the code (cli.INSTALL) and in the README; Box2D's, when it is missing."""
    import cli
    readme = open(os.path.join(HERE, "README.md")).read()
    for command in cli.INSTALL.values():
        assert command in readme, command
    try:
        import Box2D  # noqa: F401
        pytest.skip("Box2D is installed")
    except ImportError:
        pass
    code = minipg.main(["--preset", "lunarlander", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and cli.INSTALL["box2d"] in err and len(err.strip().splitlines()) == 1, err


def test_video_without_moviepy_says_so_and_leaves_no_folder(tiny_run, tmp_path, capsys):
    try:
        import moviepy  # noqa: F401
        pytest.skip("moviepy is installed")
    except ImportError:
        pass
    import cli
    out, _ = tiny_run
    code = minipg.main(["--eval", out, "--video", str(tmp_path / "videos"), "--episodes", "1"])
    err = capsys.readouterr().err
    assert code == 2 and cli.INSTALL["moviepy"] in err and not (tmp_path / "videos").exists()


# ---------------------------------------------------------------------------------------------------------------
# A damaged checkpoint: every array and every field, damaged in turn
# ---------------------------------------------------------------------------------------------------------------

NEGATIVE_MEANS_NONSENSE = {"opt_pi_v", "opt_v_v", "opt_pi_t", "opt_v_t", "norm_obs_var", "norm_obs_count",
                           "norm_ret_var", "norm_ret_count", "iteration", "seconds", "beta", "episodes"}


def array_damages(name, x):
    yield "drop", None
    yield "wrong length", np.concatenate([x.reshape(-1), x.reshape(-1)[:1]]) if x.ndim else np.array([x, x])
    yield "2-D", x.reshape(1, -1) if x.ndim == 1 else x[None, None]
    yield "text", np.array("abc")
    if x.dtype.kind == "f" and x.size:
        y = x.copy().reshape(-1)
        y[-1] = np.nan
        yield "NaN", y.reshape(x.shape)
    if name in NEGATIVE_MEANS_NONSENSE and x.size:
        y = x.copy().reshape(-1)
        y[0] = -1
        yield "negative", y.reshape(x.shape)
    if name == "rng_state":
        yield "not a state", np.array(json.dumps({"bit_generator": "PCG64", "state": "x"}))


def field_damages(name, value):
    yield "drop", KeyError
    yield "text", "abc" if not isinstance(value, str) else 5
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if name not in ("init_log_std", "target"):  # the two fields where a negative number means something
            yield "negative", -1
        yield "NaN", float("nan")


@pytest.fixture(scope="module", params=[("CartPole-v1", "ppo-penalty"), ("Pendulum-v1", "trpo")], ids=lambda p: p[0])
def half_way(request, tmp_path_factory):
    """A run stopped by Ctrl-C after 2 of its 4 iterations: its folder, and its checkpoint's arrays."""
    env, algo = request.param
    out = str(tmp_path_factory.mktemp("half") / "run")
    run, hp = minipg.CONFIG.resolve({"algo": algo, "env": env, "steps": 1024, "num_envs": 2, "num_steps": 128,
                                     "eval_episodes": 1, "save_every_s": 0.0, **({"v_iters": 1, "v_minibatch": 128} if algo == "trpo" else {})})
    tr = minipg.Trainer(run, hp)
    iteration = tr.iteration
    tr.iteration = lambda: (iteration(), tr.it == 2 and os.kill(os.getpid(), signal.SIGINT))[0]
    assert minipg.train(tr, out, quiet=True)["interrupted"]
    with np.load(os.path.join(out, "policy.npz")) as z:
        return out, {k: z[k] for k in z.files}


def damaged_copies(half_way, tmp_path):
    out, arrays = half_way
    cfg, n = json.loads(str(arrays["config"])), 0
    cases = [(f"{name} {how}", name, x) for name, value in arrays.items() if name not in ("config", "spaces")
             for how, x in array_damages(name, value)]
    for key in ("run", "hyper"):
        for field, value in cfg[key].items():
            for how, bad in field_damages(field, value):
                c = json.loads(json.dumps(cfg))
                c[key].pop(field) if bad is KeyError else c[key].__setitem__(field, bad)
                cases.append((f"config.{key}.{field} {how}", "config", np.array(json.dumps(c))))
    spaces = json.loads(str(arrays["spaces"]))
    cases += [("spaces.obs_dim wrong", "spaces", np.array(json.dumps({**spaces, "obs_dim": spaces["obs_dim"] + 1}))),
              ("spaces drop", "spaces", None), ("format wrong", "format", np.array(1))]
    for label, name, x in cases:
        d = tmp_path / f"c{n}"
        n += 1
        shutil.copytree(out, d)
        bad = {k: v for k, v in arrays.items() if k != name}
        if x is not None:
            bad[name] = x
        np.savez(d / "policy.npz", **bad)
        yield label, str(d)


def test_every_damaged_array_and_field_of_a_checkpoint_is_one_line_and_exit_2(half_way, tmp_path, capsys):
    """--eval and --resume of each damaged copy exit 2 with one line that names the damaged field, and never reach
    the numerics: a damage that slipped through would resume and train, and this test would see exit 0 or 130."""
    seen = 0
    for label, d in damaged_copies(half_way, tmp_path):
        for mode in (["--eval", os.path.join(d, "policy.npz")], ["--resume", d]):
            code = minipg.main(mode)
            err = capsys.readouterr().err
            assert code == 2 and len(err.strip().splitlines()) == 1, (label, mode[0], code, err)
            field = label.split()[0].split(".")[-1]
            assert field in err or field.replace("_", "-") in err or label.startswith(("spaces", "format")), (label, err)
        seen += 1
    assert seen > 150


def test_an_undamaged_half_way_checkpoint_resumes_to_the_end(half_way, tmp_path, capsys):
    d = str(tmp_path / "copy")
    shutil.copytree(half_way[0], d)
    assert minipg.main(["--resume", d]) == 0
    rows = list(csv.DictReader(open(os.path.join(d, "progress.csv"))))
    assert [int(r["iter"]) for r in rows] == [1, 2, 3, 4]
    s = json.load(open(os.path.join(d, "summary.json")))
    assert s["total_steps"] == 1024 and s["interrupted"] is False and s["wall_s"] > 0


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "other_env"])
def test_eval_of_a_damaged_or_foreign_policy_file_is_exit_2(damage, half_way, tmp_path, capsys):
    good = open(os.path.join(half_way[0], "policy.npz"), "rb").read()
    path = str(tmp_path / "p.npz")
    open(path, "wb").write({"truncated": good[:len(good) // 2], "corrupt": b"not a zip" * 100, "other_env": good}[damage])
    other = "Pendulum-v1" if "CartPole" in str(half_way[1]["config"]) else "CartPole-v1"
    assert minipg.main(["--eval", path, *(["--env", other] if damage == "other_env" else [])]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# Interrupts land on iteration boundaries; nothing saved is lost
# ---------------------------------------------------------------------------------------------------------------

def test_sigint_during_the_update_saves_the_state_at_the_end_of_that_iteration(tmp_path):
    """The handler only asks; the update in progress completes, and the checkpoint holds exactly the state an
    uninterrupted run has at the end of the iteration it names."""
    run, hp = minipg.CONFIG.resolve({"algo": "ppo", "steps": 2048, "num_envs": 2, "num_steps": 128, "eval_episodes": 1,
                              "dtype": "float64"})
    tr, twin = minipg.Trainer(run, hp), minipg.Trainer(run, hp)
    update = tr.update
    tr.update = lambda *a: (tr.it == 2 and os.kill(os.getpid(), signal.SIGINT), update(*a))[1]
    assert minipg.train(tr, str(tmp_path / "run"), quiet=True)["interrupted"]
    back = minipg.restore(str(tmp_path / "run" / "policy.npz"))
    twin.start()
    for _ in range(3):
        twin.iteration()
    twin.close()
    assert back.it == 3
    for k, x in twin.state().items():
        assert k == "seconds" or np.array_equal(x, back.state()[k]), k


def test_every_checkpoint_follows_the_fsync_of_the_progress_rows_it_vouches_for(tmp_path, monkeypatch):
    """A resume repairs progress.csv to the checkpoint and refuses one that lacks rows, so after a power cut the
    rows must be on disk before the checkpoint that vouches for them: progress.csv is fsynced before each one."""
    run, hp = minipg.CONFIG.resolve({"algo": "ppo", "steps": 1024, "num_envs": 2, "num_steps": 128, "eval_episodes": 1,
                              "save_every_s": 0.0})
    fsync, replace, events = os.fsync, os.replace, []
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("-> " + os.path.basename(b)), replace(a, b))[1])
    minipg.train(minipg.Trainer(run, hp), str(tmp_path / "run"), quiet=True)
    saves = [i for i, e in enumerate(events) if e == "-> policy.npz"]
    assert len(saves) == 5, events  # the new run's iteration 0, iterations 1, 2, 3 (save_every_s 0) and the last
    for before, i in zip([-1] + saves, saves):  # the header is written whole (fsynced, renamed); rows are fsynced
        assert {"progress.csv", "-> progress.csv"} & set(events[before + 1:i]), events


def test_a_signal_while_the_run_releases_its_folder_only_asks(tmp_path, monkeypatch):
    """Outside an iteration and the evaluation a signal only asks, so the run's bookkeeping runs whole: one that comes
    as the lock is released (where CI once saw a second Ctrl-C land, leaving .lock naming a dead run) changes nothing."""
    run, hp = minipg.CONFIG.resolve({"algo": "ppo", "steps": 1024, "num_envs": 2, "num_steps": 128, "eval_episodes": 1})
    truncate, calls = os.ftruncate, []

    def ftruncate(fd, length):  # the lock's file is emptied twice: when taken, and when released
        calls.append(fd)
        if calls.count(fd) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        truncate(fd, length)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    out = tmp_path / "run"
    assert minipg.train(minipg.Trainer(run, hp), str(out), quiet=True)["interrupted"] is False
    assert len(calls) == 2 and (out / ".lock").read_text() == ""
    assert json.loads((out / "summary.json").read_text())["interrupted"] is False


def test_a_sigint_during_the_final_evaluation_stops_at_once_and_resume_finishes_it(tmp_path, monkeypatch):
    run, hp = minipg.CONFIG.resolve({"algo": "ppo", "steps": 1024, "num_envs": 2, "num_steps": 128, "eval_episodes": 2})
    evaluate = minipg.evaluate
    monkeypatch.setattr(minipg, "evaluate", lambda *a, **k: (os.kill(os.getpid(), signal.SIGINT), evaluate(*a, **k))[1])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        minipg.train(minipg.Trainer(run, hp), str(out), quiet=True)
    assert (out / ".lock").read_text() == "" and minipg.restore(str(out / "policy.npz")).it == 4
    assert not (out / "summary.json").exists() or json.loads((out / "summary.json").read_text())["interrupted"]
    r = _run("--resume", str(out))
    assert r.returncode == 0 and "evaluation (2 deterministic episodes)" in r.stdout, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["eval_episodes"] == 2 and summary["total_steps"] == 1024


@pytest.mark.slow
@pytest.mark.parametrize("gap_ms", [0, 1, 2, 3, 5])
def test_a_double_sigint_leaves_a_loadable_checkpoint(gap_ms, tmp_path):
    out = str(tmp_path / "int")
    p = _start(*LONG_RUN, "--out", out, "--save-every-s", "0")
    _wait_rows(out, 3, p)
    p.send_signal(signal.SIGINT)
    time.sleep(gap_ms / 1000)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "--resume" in err and "Traceback" not in err, err
    assert minipg.restore(os.path.join(out, "policy.npz")).it >= 1
    assert not os.path.exists(os.path.join(out, "policy.npz.tmp")) and open(os.path.join(out, ".lock")).read() == ""


@pytest.mark.slow
def test_sigint_then_resume_continues_and_extends(tmp_path):
    out = str(tmp_path / "int")
    p = _start(*LONG_RUN[:2], "--steps", "40960", "--eval-episodes", "1", "--out", out, "--save-every-s", "1000")
    _wait_rows(out, 4, p)  # of 160 iterations
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and f"--resume {out}" in err and "Traceback" not in err, err
    it = minipg.restore(os.path.join(out, "policy.npz")).it
    assert it >= 4 and json.load(open(os.path.join(out, "summary.json")))["interrupted"]
    rows = [int(r["iter"]) for r in csv.DictReader(open(os.path.join(out, "progress.csv")))]
    assert rows == list(range(1, it + 1))  # the boundary: a row for every iteration the checkpoint holds
    r = _run("--resume", out, "--steps", str(256))
    one_line_exit(r, 2)
    assert "can only be extended" in r.stderr
    r = _run("--resume", out, "--steps", str(162 * 256))
    assert r.returncode == 0 and "extending" in r.stdout, r.stderr
    rows = [int(r["iter"]) for r in csv.DictReader(open(os.path.join(out, "progress.csv")))]
    assert rows == list(range(1, 163)) and json.load(open(os.path.join(out, "summary.json")))["total_steps"] == 162 * 256


@pytest.mark.slow
def test_two_runs_into_one_folder_the_first_finishes_the_second_exits_2(tmp_path):
    out = str(tmp_path / "shared")
    first = _start(*TINY_RUN[:2], "--steps", "20480", "--out", out)
    _wait_rows(out, 1, first)
    second = _run(*TINY_RUN, "--out", out)
    one_line_exit(second, 2)
    assert f"in use by a live run (pid {first.pid}" in second.stderr
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert json.load(open(os.path.join(out, "summary.json")))["total_steps"] == 20480
    before = snapshot_files(out)
    third = _run(*TINY_RUN, "--out", out)  # into the finished run: refused, and nothing changes
    one_line_exit(third, 2)
    assert "holds a finished run" in third.stderr and "--overwrite" in third.stderr and snapshot_files(out) == before
    assert _run(*TINY_RUN, "--out", out, "--overwrite").returncode == 0
    assert json.load(open(os.path.join(out, "summary.json")))["total_steps"] == 1024


@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_changes_no_file(tiny_run):
    out, _ = tiny_run
    before = snapshot_files(out)
    mtimes = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in before}
    r = _run("--resume", out)
    assert r.returncode == 0 and "is a finished run" in r.stdout and "nothing to do" in r.stdout, r.stderr
    assert snapshot_files(out) == before and mtimes == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in before}


@pytest.mark.parametrize("damage, resumes", [("rows past the checkpoint", True), ("a partial last row", True),
                                             ("header only", False), ("empty", False), ("a row missing", False)])
def test_resume_repairs_progress_csv_to_match_the_checkpoint_or_refuses(damage, resumes, half_way, tmp_path, capsys):
    d = str(tmp_path / "r")
    shutil.copytree(half_way[0], d)
    path = os.path.join(d, "progress.csv")
    lines = open(path).read().splitlines(keepends=True)  # header, rows 1 and 2
    extra = lines[2].replace("2,", "3,", 1)
    text = {"rows past the checkpoint": "".join(lines) + extra + extra.replace("3,", "4,", 1),
            "a partial last row": "".join(lines) + extra[:len(extra) // 2], "header only": lines[0], "empty": "",
            "a row missing": lines[0] + lines[2]}[damage]
    open(path, "w").write(text)
    code = minipg.main(["--resume", d, "--eval-episodes", "1"])
    err = capsys.readouterr().err
    if resumes:
        assert code == 0, err
        assert [int(r["iter"]) for r in csv.DictReader(open(path))] == [1, 2, 3, 4]
    else:
        assert code == 2 and "cannot be repaired" in err and len(err.strip().splitlines()) == 1, err
        assert open(path).read() == text


@pytest.mark.slow
def test_a_write_that_fails_mid_run_is_one_line_exit_1_and_the_last_checkpoint_stays_readable(tmp_path):
    """A file-size limit stands in for a full disk: the checkpoint grows with the episode history until a write
    fails (EFBIG, as ENOSPC would); the run stops with one line, and the previous checkpoint loads."""
    out = str(tmp_path / "full")
    first = _run(*TINY_RUN[:2], "--steps", "256", "--num-envs", "2", "--num-steps", "128", "--out", out + "0")
    limit = os.path.getsize(os.path.join(out + "0", "policy.npz")) + 4_000

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    assert first.returncode == 0
    r = _run(*TINY_RUN[:2], "--steps", "50000", "--num-envs", "2", "--num-steps", "128", "--save-every-s", "0",
             "--out", out, preexec_fn=cap)
    one_line_exit(r, 1)
    assert "cannot write" in r.stderr and "policy.npz" in r.stderr and "last good checkpoint" in r.stderr
    assert minipg.restore(os.path.join(out, "policy.npz")).it >= 1


# ---------------------------------------------------------------------------------------------------------------
# --seeds, --plot
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_seeds_run_in_parallel_and_save_their_table_in_the_root(tmp_path):
    root = str(tmp_path / "seeds")
    r = _run(*TINY_RUN, "--seeds", "0-1", "--jobs", "2", "--out", root)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(root)) == [".lock", "s0", "s1", "seeds.json", "seeds.md"]
    table = json.load(open(os.path.join(root, "seeds.json")))
    assert table["seeds"] == [0, 1] and [s["seed"] for s in table["runs"]] == [0, 1]
    assert "| final eval return |" in open(os.path.join(root, "seeds.md")).read() and "| final eval return |" in r.stdout
    again = _run(*TINY_RUN, "--seeds", "0-1", "--out", root)
    one_line_exit(again, 2)
    pytest.importorskip("matplotlib")
    assert minipg.main(["--plot", root]) == 0 and os.path.exists(os.path.join(root, "learning_curve.png"))
    assert minipg.main(["--plot", os.path.join(root, "s0"), os.path.join(root, "s1")]) == 0
    assert minipg.main(["--plot", root, "--out", str(tmp_path / "pics")]) == 0
    assert os.path.exists(tmp_path / "pics" / "learning_curve.png")


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """Each env turns NaN after its 300th step, which falls in iteration 5 (64 steps per env per iteration): the run
    stops with a one-line message naming the iteration and the quantity, and policy.npz holds iteration 4's weights."""
    out = str(tmp_path / "nan")
    code = minipg.main(["--algo", "vpg", "--env", "test_runner:NanReward-v0", "--steps", "1280", "--num-envs", "2",
                        "--num-steps", "64", "--v-minibatch", "64", "--save-every-s", "0", "--out", out])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "loss_pi is not finite at iteration 5" in err and "last good checkpoint is kept" in err
    tr = minipg.restore(os.path.join(out, "policy.npz"))
    assert np.all(np.isfinite(tr.agent.pi.theta)) and np.all(np.isfinite(tr.agent.v.theta)) and tr.it == 4
