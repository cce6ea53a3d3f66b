"""The run store: keys, train-or-load, records, evaluations, resume, missing checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geco_book import store as store_mod
from geco_book.store import MissingCheckpointError, RunStore, key_fields, run_key
from geco_core.train import ENGINE_VERSION, read_log


def numbers(metrics):
    """A run's final metrics without its wall time (the only field that may differ)."""
    return {k: v for k, v in metrics.items() if k != "wall_time"}


def test_key_ignores_where_files_go_and_progress_but_not_any_setting(tiny_config):
    a = tiny_config()
    assert run_key(a) == run_key(tiny_config(out_dir="/x", progress=True, ckpt_every=1,
                                             device="cpu"))
    for change in ({"seed": 1}, {"steps": 4}, {"lr": 2e-3}, {"kappa": 0.2},
                   {"model_kwargs": {**a.model_kwargs, "hidden": 17}}, {"objective": "elbo"}):
        assert run_key(tiny_config(**change)) != run_key(a), change


def test_precision_is_in_the_key_and_its_default_keeps_the_stored_keys(tiny_config):
    assert "precision" not in key_fields(tiny_config())  # float32: keys as before the field
    mixed = tiny_config(precision="bfloat16")
    assert key_fields(mixed)["precision"] == "bfloat16"
    assert run_key(mixed) != run_key(tiny_config())


def test_key_holds_the_engine_version_and_the_data_source(tiny_config):
    fields = key_fields(tiny_config())
    assert fields["engine_version"] == ENGINE_VERSION
    assert fields["data_source"] == "mnist-test-10k"  # the vendored split (no $GECO_DATA here)
    assert "classifier_sha256" not in fields
    assert "classifier_sha256" in key_fields(tiny_config(constraint="cla", kappa=0.9))


def test_a_classifier_run_is_keyed_by_the_classifier_of_its_data_source(tiny_config,
                                                                         monkeypatch):
    """CLA / FRE runs on the official split read the 60k classifier, runs on the vendored
    fallback the one trained on 9,000 test images; each key holds its classifier's sha256."""
    from geco_core.models.classifier import classifier_sha256, weights_path
    from geco_core.train.builders import make_constraint

    cla = tiny_config(constraint="cla", kappa=0.9)
    keys = {}
    for source in ("mnist-60k", "mnist-test-10k"):
        monkeypatch.setattr(store_mod, "_mnist_source", lambda root, download, s=source: s)
        assert key_fields(cla)["classifier_sha256"] == classifier_sha256(source)
        keys[source] = run_key(cla)
        net = make_constraint("cla", 0.9, (1, 28, 28), {}, source).classifier
        ref = torch.load(weights_path(source), weights_only=True)
        assert all(torch.equal(net.state_dict()[k], v) for k, v in ref.items())
    assert keys["mnist-60k"] != keys["mnist-test-10k"]
    assert classifier_sha256("mnist-60k") != classifier_sha256("mnist-test-10k")


def test_nu_auto_is_in_the_key(tiny_config):
    assert key_fields(tiny_config(nu="auto"))["nu"] == "auto"


def test_engine_version_bump_changes_every_key(tiny_config, monkeypatch):
    import geco_core.train

    before = run_key(tiny_config())
    monkeypatch.setattr(geco_core.train, "ENGINE_VERSION", ENGINE_VERSION + 1)
    assert run_key(tiny_config()) != before


def test_get_or_train_trains_once_and_records_everything(tiny_config, store, monkeypatch):
    cfg = tiny_config()
    run = store.get_or_train(cfg, command="pytest")
    assert run.trained and run.step == 3
    rec = json.loads((store.records / run.key / "record.json").read_text())
    assert rec["key"] == run.key == run_key(cfg)
    assert rec["engine_version"] == ENGINE_VERSION
    assert rec["config"]["seed"] == 0 and "out_dir" not in rec["config"]
    assert rec["data"] == {"dataset": "micro-mnist", "source": "mnist-test-10k"}
    for field in ("git_commit", "versions", "cpu_count", "created_utc", "command"):
        assert field in rec["provenance"]
    assert rec["provenance"]["command"] == "pytest"
    assert len(run.log()) == 3 and np.isfinite(run.metrics["kl"])
    assert run.checkpoint_path.is_file()
    # Stored: no second training (fit would raise).
    import geco_core.train as train_mod

    monkeypatch.setattr(train_mod, "fit", lambda *a, **k: pytest.fail("retrained"))
    again = store.get_or_train(cfg)
    assert not again.trained and again.metrics == run.metrics


def test_a_damaged_record_is_not_served(tiny_config, store):
    run = store.get_or_train(tiny_config())
    log = store.records / run.key / "metrics.jsonl"
    log.write_text(log.read_text() + "\n")  # no longer matches its recorded sha256
    assert store.get(tiny_config()) is None
    assert store.get_or_train(tiny_config()).trained


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_numbers(tiny_config, store, tmp_path):
    from geco_core.train import fit

    whole = RunStore(tmp_path / "r2", tmp_path / "c2").get_or_train(tiny_config(steps=6))
    # Simulate a run killed after its step-3 checkpoint: the checkpoint exists, no record.
    cfg = tiny_config(steps=6, ckpt_every=3)
    key = run_key(cfg)
    partial = tiny_config(steps=3, ckpt_every=3, out_dir=str(store.checkpoints / key))
    fit(partial)
    resumed = store.get_or_train(cfg)
    assert resumed.record["resumed"] is True
    assert numbers(resumed.metrics) == numbers(whole.metrics)


def test_evaluations_are_cached_by_name_and_settings(tiny_config, store):
    run = store.get_or_train(tiny_config())
    calls = []

    def compute(r):
        calls.append(1)
        return {"value": 1.5}, {"z": np.arange(6.0).reshape(2, 3)}

    m, a = run.evaluation("demo", {"version": 1, "n": 2}, compute)
    m2, a2 = run.evaluation("demo", {"n": 2, "version": 1}, compute)
    assert len(calls) == 1 and m == m2 == {"value": 1.5}
    np.testing.assert_array_equal(a2["z"], np.arange(6.0).reshape(2, 3))
    run.evaluation("demo", {"version": 2, "n": 2}, compute)
    assert len(calls) == 2
    npz = next((run.record_dir / "eval").glob("demo-*.npz"))
    npz.write_bytes(npz.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ValueError, match="sha256"):
        run.evaluation("demo", {"version": 1, "n": 2}, compute)


def test_missing_checkpoint_names_the_command_that_recreates_it(tiny_config, store):
    import shutil

    run = store.get_or_train(tiny_config())
    shutil.rmtree(run.run_dir)
    with pytest.raises(MissingCheckpointError, match=f"python -m geco_book.store train {run.key}"):
        run.load_model()
    run.evaluation("demo", {"version": 1}, lambda r: ({"x": 1.0}, {}))
    again = store.retrain(run.key)
    assert numbers(again.metrics) == numbers(run.metrics)
    assert again.load_model() is not None
    assert again.has_evaluation("demo", {"version": 1})  # the same numbers: kept


def test_a_retrain_with_other_numbers_drops_the_cached_evaluations(
    tiny_config, store, monkeypatch, capsys
):
    run = store.get_or_train(tiny_config())
    run.evaluation("demo", {"version": 1}, lambda r: ({"x": 1.0}, {}))
    # an engine whose arithmetic moved (another Adam, layout, kernel): other final numbers
    import geco_core.train.loop as loop

    def other_adam(params, lr):
        return torch.optim.Adam(params, lr=2 * lr)

    monkeypatch.setattr(loop, "make_optimizer", other_adam)
    monkeypatch.setattr(store_mod, "default_store", lambda: store)
    assert store_mod.main(["train", run.key]) == 0
    out = capsys.readouterr().out
    assert "final metrics differ" in out and "cached evaluations were deleted" in out
    again = store.load(run.key)
    assert numbers(again.metrics) != numbers(run.metrics)
    assert not again.has_evaluation("demo", {"version": 1})


def test_cli_lists_and_refuses_unknown_keys(tiny_config, store, monkeypatch, capsys):
    monkeypatch.setattr(store_mod, "default_store", lambda: store)
    run = store.get_or_train(tiny_config())
    assert store_mod.main(["list"]) == 0
    assert run.key in capsys.readouterr().out
    assert store_mod.main(["train", "0123456789abcdef"]) == 2
    assert capsys.readouterr().err.startswith("error: key: no stored run")


def test_store_for_keeps_smoke_runs_out_of_the_book(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("GECO_RUNS", str(tmp_path))
    monkeypatch.delenv("GECO_BOOK_CACHE", raising=False)
    assert store_mod.store_for("smoke").records == tmp_path / "smoke" / "records"
    assert store_mod.store_for("cpu").records.parts[-3:] == ("book", "_cache", "runs")
    with pytest.raises(ValueError, match="profile"):
        store_mod.store_for("laptop")


def test_log_matches_the_engine_log(tiny_config, store):
    run = store.get_or_train(tiny_config())
    engine = read_log(run.run_dir / "metrics.jsonl")
    assert run.log().equals(engine)


def test_a_new_engine_field_at_its_default_keeps_every_key(tiny_config, monkeypatch):
    from geco_core.train import TrainConfig

    before = run_key(tiny_config())
    fields = dict(store_mod._defaults())
    plain = TrainConfig.to_dict
    monkeypatch.setattr(store_mod, "_defaults", lambda: {**fields, "new_option": 3})
    monkeypatch.setattr(TrainConfig, "to_dict", lambda self: {**plain(self), "new_option": 3})
    assert run_key(tiny_config()) == before  # the engine gained a field; stored runs stay
    monkeypatch.setattr(TrainConfig, "to_dict", lambda self: {**plain(self), "new_option": 4})
    assert run_key(tiny_config()) != before  # a run that sets it is another run


def test_a_longer_run_continues_a_stored_shorter_one_to_the_same_numbers(tiny_config, store,
                                                                       tmp_path, monkeypatch):
    short = store.get_or_train(tiny_config(steps=3))
    assert store.prefix_of(tiny_config(steps=6)).key == short.key
    assert store.prefix_of(tiny_config(steps=6, seed=1)) is None  # another config
    assert store.prefix_of(tiny_config(steps=3)) is None  # not shorter
    long = store.get_or_train(tiny_config(steps=6))
    assert long.record["continued_from"] == short.key and long.step == 6
    scratch = RunStore(tmp_path / "r3", tmp_path / "c3").get_or_train(tiny_config(steps=6))
    assert scratch.record["continued_from"] is None
    assert numbers(long.metrics) == numbers(scratch.metrics)
    assert long.log().drop(columns="wall_time").equals(scratch.log().drop(columns="wall_time"))


def test_no_training_refuses_a_missing_run_and_still_loads_stored_ones(store, tiny_config,
                                                                      monkeypatch):
    stored = store.get_or_train(tiny_config())
    monkeypatch.setenv(store_mod.NO_TRAINING_ENV, "1")
    assert store.get_or_train(tiny_config()).key == stored.key  # loading is not training
    with pytest.raises(store_mod.TrainingRefused, match=run_key(tiny_config(seed=1))):
        store.get_or_train(tiny_config(seed=1))
    assert store.load(run_key(tiny_config(seed=1))) is None
    monkeypatch.setenv(store_mod.NO_TRAINING_ENV, "0")  # "0" allows training again
    assert store.get_or_train(tiny_config(seed=1)).trained
