"""The run store cannot be escaped or corrupted: key format, edited records, swapped
checkpoints, one trainer per key, whole logs only."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time

import numpy as np
import pytest

from geco_book import store as store_mod
from geco_book.integrity import read_evaluation
from geco_book.store import check_key, main, record_key


@pytest.mark.parametrize("key", ["../../x", "/etc/passwd", "0123456789ABCDEF", "0123456789abcde",
                                 "0123456789abcdef0", "", None, 12, "0123456789abcdeg"])
def test_only_16_hex_digit_keys_are_accepted(key, store):
    with pytest.raises(ValueError, match="^key: .* is not a run key"):
        check_key(key)
    with pytest.raises(ValueError, match="^key: "):
        store.load(key)
    with pytest.raises(ValueError, match="^key: "):
        store.retrain(key)


def test_the_cli_refuses_a_path_as_a_key_and_touches_nothing(tmp_path, monkeypatch, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    records = tmp_path / "cache" / "runs"
    records.mkdir(parents=True)
    planted = tmp_path / "planted"  # a record outside the store, reached by a relative key
    planted.mkdir()
    (planted / "record.json").write_text(json.dumps({"key": "../../planted"}))
    monkeypatch.setenv("GECO_BOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GECO_RUNS", str(tmp_path / "ckpts"))
    assert main(["train", "../../planted"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: key: '../../planted' is not a run key")
    assert victim.read_text() == "keep me" and (planted / "record.json").is_file()
    (records / "not-a-key").mkdir()
    (records / "not-a-key" / "record.json").write_text("{}")
    assert store_mod.RunStore(records, tmp_path / "ckpts").keys() == []


def test_an_edited_record_is_not_served_and_the_store_says_why(tiny_config, store, capsys,
                                                               monkeypatch):
    run = store.get_or_train(tiny_config())
    path = store.records / run.key / "record.json"
    rec = json.loads(path.read_text())
    assert record_key(rec) == run.key
    rec["config"]["seed"] = 5  # the record now describes another run; its log sha still holds
    path.write_text(json.dumps(rec))
    assert store.load(run.key) is None
    assert "its config hashes to" in store.damage(run.key)
    assert store.get_or_train(tiny_config()).trained  # the config asked for, trained afresh
    assert json.loads(path.read_text())["config"]["seed"] == 0
    monkeypatch.setattr(store_mod, "default_store", lambda: store)
    rec["config"]["seed"] = 5
    path.write_text(json.dumps(rec))
    main(["list"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{run.key}  damaged: its config hashes to") and "delete" in line


def test_a_record_checks_by_its_own_data_source_not_this_machines(tiny_config, store,
                                                                  monkeypatch):
    """A record trained on the official split keeps its key on a machine with the fallback."""
    monkeypatch.setattr(store_mod, "_mnist_source", lambda root, download: "mnist-60k")
    run = store.get_or_train(tiny_config())
    monkeypatch.setattr(store_mod, "_mnist_source", lambda root, download: "mnist-test-10k")
    assert store.load(run.key) is not None and store.get(tiny_config()) is None


def test_a_run_on_another_data_source_is_never_continued(tiny_config, store, monkeypatch):
    """A shorter run trained on the fallback split is no prefix of the same config once the
    machine has the official split (CI stop 32: the resume then refused the copied
    checkpoint); the longer run trains from scratch instead."""
    monkeypatch.setattr(store_mod, "_mnist_source", lambda root, download: "mnist-test-10k")
    short = store.get_or_train(tiny_config(steps=3))
    assert store.prefix_of(tiny_config(steps=6)).key == short.key  # same source: continued
    monkeypatch.setattr(store_mod, "_mnist_source", lambda root, download: "mnist-60k")
    assert store.prefix_of(tiny_config(steps=6)) is None
    # (the data really are the fallback here; only the key's source is patched)
    assert store.get_or_train(tiny_config(steps=6)).record["continued_from"] is None


def test_a_stale_partial_checkpoint_on_other_data_is_kept_aside_and_the_run_retrained(
        tiny_config, store):
    """A checkpoint left in a key's folder whose data record differs from the data the key
    trains on (an interrupted run of the store before prefix_of checked data sources) is not
    this run's: it is moved aside with a warning naming it, and the run trains from the start
    to the numbers of a run from scratch."""
    from geco_core.checkpoint import load_checkpoint, save_checkpoint

    run = store.get_or_train(tiny_config())
    final = {k: v for k, v in run.record["final"].items() if k != "wall_time"}
    state = load_checkpoint(run.checkpoint_path)
    state["data"] = {**state["data"], "source": "mnist-60k", "sha256": "0" * 64}
    shutil.rmtree(store.records / run.key)  # the run is unfinished again ...
    save_checkpoint(run.checkpoint_path, state)  # ... with a checkpoint on other data
    with pytest.warns(RuntimeWarning, match=r"training data differ.*moved it to checkpoint\.stale"):
        again = store.get_or_train(tiny_config())
    assert {k: v for k, v in again.record["final"].items() if k != "wall_time"} == final
    assert again.record["resumed"] is False
    assert len(list(run.checkpoint_path.parent.glob("checkpoint.stale-*.pt"))) == 1


def test_a_swapped_checkpoint_is_refused(tiny_config, store):
    a = store.get_or_train(tiny_config())
    b = store.get_or_train(tiny_config(seed=1))
    a.checkpoint_path.write_bytes(b.checkpoint_path.read_bytes())
    with pytest.raises(ValueError, match=f"checkpoint is not run {a.key}'s .*'seed'.*"
                                         f"python -m geco_book.store train {a.key}"):
        a.load_model()
    b.load_model()  # its own checkpoint loads


def test_a_second_trainer_of_one_key_waits_and_then_finds_the_record(tiny_config, store,
                                                                     monkeypatch, capsys):
    import geco_core.train as train_mod

    cfg = tiny_config()
    key = store_mod.run_key(cfg)
    real_fit, calls = train_mod.fit, []

    def counting_fit(*a, **k):
        calls.append(1)
        return real_fit(*a, **k)

    monkeypatch.setattr(train_mod, "fit", counting_fit)
    out = store.checkpoints / key
    out.mkdir(parents=True)
    got = []
    with store_mod._key_lock(out / ".lock", key):  # "another process" holds the key
        t = threading.Thread(target=lambda: got.append(store.get_or_train(cfg)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and not calls  # waiting, not training
        store._train_locked(key, cfg, "the other process")
    t.join(30)
    assert len(calls) == 1 and got[0].key == key and not got[0].trained
    assert "another process is training it" in capsys.readouterr().err


def test_a_log_that_is_not_one_whole_run_is_never_recorded(tiny_config, store, monkeypatch):
    import geco_core.train as train_mod

    real_fit = train_mod.fit

    def fit_then_cut_the_log(cfg, **k):
        res = real_fit(cfg, **k)
        log = res.log_path
        lines = open(log).read().splitlines()
        open(log, "w").write("\n".join(lines[:-1]) + "\n")  # as if two writers raced
        return res

    monkeypatch.setattr(train_mod, "fit", fit_then_cut_the_log)
    cfg = tiny_config(steps=4)
    with pytest.raises(RuntimeError, match="the log holds 3 rows .* a whole run of 4 steps logs 4"
                                           "; nothing was recorded"):
        store.get_or_train(cfg)
    assert not (store.records / store_mod.run_key(cfg)).exists()


def test_every_committed_record_checks_and_reports_its_log():
    """The book's own records: every one is served (its config hashes to its key, by its own
    data source; its numbers are its log's last row), and no log lacks rows (the four that
    did, chapter 02's earliest records on the 10k split, were deleted with that split's
    records)."""
    st = store_mod.default_store()
    keys = st.keys()
    assert keys
    gaps = {}
    for k in keys:
        assert st.damage(k) is None, (k, st.damage(k))
        g = st.load(k).log_gaps()
        if g:
            gaps[k] = g
    assert not gaps, gaps


def test_sha_of_a_log_is_what_the_record_holds(tiny_config, store):
    run = store.get_or_train(tiny_config())
    log = (store.records / run.key / "metrics.jsonl").read_bytes()
    assert run.record["files"]["metrics.jsonl"] == hashlib.sha256(log).hexdigest()
    assert run.log_gaps() is None


def test_a_deeply_nested_record_is_reported_damaged_not_raised(tiny_config, store):
    run = store.get_or_train(tiny_config())
    (store.records / run.key / "record.json").write_text("[" * 100_000 + "]" * 100_000)
    assert store.load(run.key) is None
    assert "RecursionError" in store.damage(run.key)


@pytest.mark.parametrize("files", [[], None, "x"])
def test_a_record_whose_files_entry_is_not_a_mapping_is_damaged_not_raised(tiny_config, store,
                                                                          files):
    run = store.get_or_train(tiny_config())
    path = store.records / run.key / "record.json"
    rec = json.loads(path.read_text())
    rec["files"] = files
    path.write_text(json.dumps(rec))
    assert store.load(run.key) is None
    assert "metrics.jsonl does not match" in store.damage(run.key)


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/abs", ".hidden", "a/b", "", 3])
def test_an_evaluation_name_never_leaves_the_record(tiny_config, store, tmp_path, name):
    run = store.get_or_train(tiny_config())
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="name"):
        run.evaluation(name, {"v": 1}, lambda r: ({"x": 1.0}, {}))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    metrics, _ = run.evaluation("large_scale.v2-ok", {"v": 1}, lambda r: ({"x": 1.0}, {}))
    assert metrics == {"x": 1.0}


def test_a_diverged_run_is_never_recorded(tiny_config, store):
    """lr = 1e30 sends every metric to NaN within two steps (fewer than the engine's bad-step
    limit): the store refuses to record it, and nothing is served afterwards."""
    cfg = tiny_config(lr=1e30, steps=2)
    with pytest.warns(RuntimeWarning):
        with pytest.raises(store_mod.TrainingDiverged, match="non-finite"):
            store.get_or_train(cfg)
    assert store.load(store_mod.run_key(cfg)) is None


@pytest.mark.parametrize("argv", [[], ["list", "extra"], ["--bogus", "list"], ["show", "x"],
                                  ["train"]])
def test_the_store_cli_refuses_bad_arguments_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


@pytest.mark.parametrize("edit", ["final", "step", "truncated log"])
def test_a_record_whose_numbers_are_not_its_logs_is_damaged(tiny_config, store, edit):
    """``final`` and ``step`` are checked against the log's last row (the log is checksummed),
    so an edited number — or a log cut short and re-hashed — is not served."""
    run = store.get_or_train(tiny_config())
    d = store.records / run.key
    rec = json.loads((d / "record.json").read_text())
    if edit == "final":
        rec["final"]["kl"] = rec["final"]["kl"] * 0.5
    elif edit == "step":
        rec["step"] += 1
    else:
        rows = (d / "metrics.jsonl").read_bytes().splitlines(keepends=True)
        log = b"".join(rows[:-1])
        (d / "metrics.jsonl").write_bytes(log)
        rec["files"]["metrics.jsonl"] = hashlib.sha256(log).hexdigest()
    (d / "record.json").write_text(json.dumps(rec))
    assert store.load(run.key) is None
    why = store.damage(run.key)
    assert ("final metrics are not the last row" in why) if edit != "step" else \
        ("is not the log's last step + 1" in why), why


def test_an_edited_evaluation_is_refused_naming_its_file(tiny_config, store):
    run = store.get_or_train(tiny_config())
    compute = lambda r: ({"x": 1.0}, {"a": np.arange(3)})  # noqa: E731
    assert run.evaluation("demo", {"version": 1}, compute)[0] == {"x": 1.0}
    (path,) = (store.records / run.key / "eval").glob("demo-*.json")
    entry = json.loads(path.read_text())
    entry["metrics"]["x"] = 0.5  # a flattering edit
    path.write_text(json.dumps(entry))
    with pytest.raises(ValueError, match=f"^{path}: its content does not match the sha256"):
        run.evaluation("demo", {"version": 1}, compute)
    entry.pop("sha256")
    path.write_text(json.dumps(entry))
    with pytest.raises(ValueError, match="holds no sha256"):
        run.evaluation("demo", {"version": 1}, compute)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable evaluation"):
        run.evaluation("demo", {"version": 1}, compute)
    path.unlink()
    assert run.evaluation("demo", {"version": 1}, compute)[0] == {"x": 1.0}  # recomputed
    path.with_suffix(".npz").unlink()
    with pytest.raises(ValueError, match="npz: missing"):
        run.evaluation("demo", {"version": 1}, compute)


def test_every_committed_evaluation_checks():
    st = store_mod.default_store()
    paths = sorted(st.records.glob("*/eval/*.json"))
    assert paths
    for p in paths:
        read_evaluation(p)
