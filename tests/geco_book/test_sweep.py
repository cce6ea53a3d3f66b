"""The sweep runner: skips stored runs, trains the rest in workers, survives SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from geco_book.store import RunStore, run_key
from geco_book.sweep import SweepError, run_sweep

# Four runs, two short and two long, trained by two workers in a child process.
SCRIPT = textwrap.dedent(
    """
    import sys
    from geco_book.store import RunStore
    from geco_book.sweep import run_sweep
    from geco_core.train import TrainConfig

    def cfg(seed, steps):
        return TrainConfig(model="conv_vae", dataset="micro-mnist", steps=steps, batch_size=7,
                           lr=1e-3, alpha=0.9, seed=seed, progress=False, download=False,
                           ckpt_every=50, dataset_kwargs={"n": 7},
                           model_kwargs={"latent_dim": 2, "channels": [4, 8], "hidden": 16})

    CONFIGS = [cfg(0, 20), cfg(1, 20), cfg(2, 3000), cfg(3, 3000)]
    if __name__ == "__main__":
        store = RunStore(sys.argv[1], sys.argv[2])
        run_sweep(CONFIGS, store=store, workers=2, progress=False)
    """
)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_leaves_no_workers_and_a_rerun_trains_only_the_rest(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    records, ckpts = tmp_path / "records", tmp_path / "ckpts"
    proc = subprocess.Popen([sys.executable, str(script), str(records), str(ckpts)],
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline:
        workers |= {c for c in _children(proc.pid)}
        done = list(records.glob("*/record.json")) if records.exists() else []
        if done:
            break
        assert proc.poll() is None, "the sweep ended before any run was stored"
        time.sleep(0.2)
    assert done, "no run finished within 120 s"
    workers |= set(_children(proc.pid))
    # Two spawn workers (plus, possibly, the resource tracker).
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "workers outlived the killed sweep"

    sys.path.insert(0, str(tmp_path))
    try:
        import sweep_script
    finally:
        sys.path.remove(str(tmp_path))
    store = RunStore(records, ckpts)
    stored_before = {k for k in store.keys()}
    assert 1 <= len(stored_before) < 4
    # Continue: only the runs without a record train (a long one resumes from its checkpoint).
    runs = run_sweep(sweep_script.CONFIGS, store=store, workers=2, progress=False)
    trained = {r.key for r in runs if r.trained}
    assert trained == {run_key(c) for c in sweep_script.CONFIGS} - stored_before
    assert all(r.step == c.steps for r, c in zip(runs, sweep_script.CONFIGS))


def test_parallel_sweep_equals_serial_and_dedups(tiny_config, tmp_path):
    cfgs = [tiny_config(seed=s) for s in (0, 1)] + [tiny_config(seed=0)]
    par = run_sweep(cfgs, store=RunStore(tmp_path / "a", tmp_path / "b"), workers=2,
                    progress=False)
    ser = run_sweep(cfgs, store=RunStore(tmp_path / "c", tmp_path / "d"), workers=1,
                    progress=False)
    assert [r.key for r in par] == [r.key for r in ser]
    assert [{k: v for k, v in r.metrics.items() if k != "wall_time"} for r in par] == [
        {k: v for k, v in r.metrics.items() if k != "wall_time"} for r in ser]
    assert par[0].key == par[2].key


def test_a_failing_run_raises_with_its_traceback(tiny_config, tmp_path):
    bad = tiny_config(seed=0, dataset_kwargs={"n": 7, "bogus": 1})
    store = RunStore(tmp_path / "a", tmp_path / "b")
    with pytest.raises(SweepError, match="bogus"):
        run_sweep([tiny_config(seed=1), bad], store=store, workers=2, progress=False)


def test_arguments_are_checked(tiny_config):
    with pytest.raises(ValueError, match="workers"):
        run_sweep([tiny_config()], workers=0)
    with pytest.raises(TypeError, match="threads"):
        run_sweep([tiny_config()], threads=1.5)


def test_one_worker_trains_in_this_process_with_the_requested_threads(tiny_config, tmp_path,
                                                                      monkeypatch):
    import torch

    store = RunStore(tmp_path / "records", tmp_path / "checkpoints")
    seen = []
    real = RunStore.get_or_train

    def spy(self, config, **kw):
        seen.append(torch.get_num_threads())
        return real(self, config, **kw)

    monkeypatch.setattr(RunStore, "get_or_train", spy)
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    run_sweep([tiny_config(seed=0), tiny_config(seed=1)], store=store, workers=1,
              threads=want, progress=False)
    assert seen == [want, want] and torch.get_num_threads() == before


def test_a_script_without_a_main_guard_gets_a_sweep_error_not_a_hang(tmp_path):
    """Spawned workers re-import the main module; without ``if __name__ == "__main__":`` they
    fail before reporting that they started: the parent names the cause instead of waiting."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""
        import geco_book.sweep as sw
        from geco_book.store import RunStore
        from geco_core.train import TrainConfig
        sw.START_TIMEOUT_S = 20.0
        cfgs = [TrainConfig(model="conv_vae", dataset="micro-mnist", steps=2, batch_size=7,
                            lr=1e-3, log_every=1, progress=False, seed=s,
                            dataset_kwargs={{"n": 7}}, model_kwargs={{"latent_dim": 2,
                            "channels": [4, 8], "hidden": 16}}) for s in (0, 1)]
        sw.run_sweep(cfgs, store=RunStore({str(tmp_path / 'r')!r}, {str(tmp_path / 'c')!r}),
                     workers=2, progress=False)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert "SweepError: no worker started" in out.stderr
    assert 'if __name__ == "__main__":' in out.stderr


def test_a_sweep_announces_the_runs_it_must_train_before_training(tiny_config, store, capsys):
    """A chapter whose records are missing says so, with an estimate, before it trains (the
    announcement is printed even without a progress bar)."""
    a, b = tiny_config(seed=0), tiny_config(seed=1)
    run_sweep([a], store=store, workers=1, progress=False, desc="demo")
    err = capsys.readouterr().err
    assert "demo: training 1 of 1 runs the store" in err and "no stored run" in err
    run_sweep([a, b], store=store, workers=1, progress=False, desc="demo")
    err = capsys.readouterr().err
    assert "demo: training 1 of 2 runs" in err and "min on 1 worker(s)" in err
    run_sweep([a, b], store=store, workers=1, progress=False, desc="demo")
    assert "training" not in capsys.readouterr().err
