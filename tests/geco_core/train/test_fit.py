"""The training engine: config validation, batches, logs, checkpoints, refusals, CLI."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from geco_core import checkpoint as ckpt
from geco_core.checkpoint import load_checkpoint
from geco_core.models import MODEL_SIZES, MODELS
from geco_core.train import (
    ENGINE_VERSION,
    PAPER_LR,
    TrainConfig,
    batch_indices,
    fit,
    load_run,
    main,
    read_log,
    resolve_device,
)

TINY = {
    "conv_vae": {"latent_dim": 2, "channels": (4, 8), "hidden": 16},
    "convdraw": {"steps": 2, "hidden": 8, "z_channels": 1, "read_channels": 4},
    "vae_nvp": {
        "latent_dim": 2,
        "channels": (4, 8),
        "context_dim": 16,
        "n_flows": 2,
        "flow_hidden": 16,
    },
}


def tiny(**kw) -> TrainConfig:
    model = kw.pop("model", "conv_vae")
    base = dict(
        model=model,
        dataset="mnist",
        objective="geco",
        constraint="re",
        kappa=0.1,
        steps=8,
        batch_size=8,
        lr=1e-3,  # the book's cpu policy (geco_book.policy): the paper's rates barely move
        alpha=0.9,  # a model in 8 steps
        log_every=3,
        ckpt_every=4,
        device="cpu",
        progress=False,
        download=False,
        dataset_kwargs={"n": 64},
        model_kwargs=dict(TINY.get(model, {})),
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one thread is faster and deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vendored-MNIST fallback warning
        yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "field, value, valid",
    [
        ("model", "vae", "conv_vae"),
        ("dataset", "mnist-plus", "mnist-rotate"),
        ("objective", "iwae", "beta_vae"),
        ("constraint", "ssim", "pncc"),
        ("model_size", "tpu", "paper"),
    ],
)
def test_unknown_names_list_the_valid_choices(field, value, valid):
    with pytest.raises(ValueError, match=field) as e:
        tiny(**{field: value})
    assert valid in str(e.value) and repr(value) in str(e.value)


@pytest.mark.parametrize("kappa", [0.0, -0.1, [0.1, -1.0], float("nan")])
def test_nonpositive_kappa_is_refused(kappa):
    with pytest.raises(ValueError, match="kappa"):
        tiny(kappa=kappa, constraint="re,pncc")


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"alpha": 1.0}, "alpha"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"kappa": [0.1, 0.1, 0.1], "constraint": "re,pncc"}, "kappa"),
        ({"model_kwargs": "latent_dim=2"}, "model_kwargs"),
    ],
)
def test_bad_config_values_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        tiny(**kw)


def test_defaults_are_the_papers():
    cfg = TrainConfig(progress=False)
    assert (cfg.lr, cfg.alpha, cfg.nu, cfg.lambda_init, cfg.model_size) == (
        None,
        0.99,  # §4.1
        1.0,
        1.0,  # Algorithm 1
        "small",
    )
    assert PAPER_LR == {"convdraw": 1e-5, "vae_nvp": 1e-6, "conv_vae": 1e-5}  # §4.1
    assert set(PAPER_LR) == set(MODELS)
    for model, lr in PAPER_LR.items():
        assert TrainConfig(model=model, progress=False).learning_rate == lr
    res = fit(tiny(steps=1, lr=None, alpha=0.99))
    assert res.lr == PAPER_LR["conv_vae"] and res.objective.geco.alpha == 0.99
    assert (res.objective.geco.nu, res.objective.geco.lambdas.item() != 1.0) == (1.0, True)
    res = fit(tiny(steps=1, alpha=0.5, nu=0.25, lr=1e-4))
    assert (res.objective.geco.alpha, res.objective.geco.nu, res.lr) == (0.5, 0.25, 1e-4)


def test_model_size_picks_the_constructor_arguments():
    assert set(MODEL_SIZES) == {"small", "paper"}
    assert all(set(table) <= set(MODELS) for table in MODEL_SIZES.values())
    small = fit(tiny(steps=1, model_kwargs={}))
    paper = fit(tiny(steps=1, model_kwargs={}, model_size="paper"))
    assert small.model.latent_dim == type(small.model)().latent_dim
    assert paper.model.latent_dim == MODEL_SIZES["paper"]["conv_vae"]["latent_dim"]
    # model_kwargs override the size's arguments
    assert fit(tiny(steps=1, model_size="paper")).model.latent_dim == TINY["conv_vae"]["latent_dim"]


def test_a_newly_registered_model_is_accepted(monkeypatch):
    from geco_core.models import ConvVAE

    class Renamed(ConvVAE):
        pass

    monkeypatch.setitem(MODELS, "renamed_vae", Renamed)
    with pytest.raises(ValueError, match="lr"):  # no paper learning rate for it
        tiny(model="renamed_vae", lr=None)
    res = fit(tiny(model="renamed_vae", steps=1, model_kwargs=TINY["conv_vae"]))
    assert type(res.model) is Renamed


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_batch_indices_shard_cover_and_match_iterate_minibatches():
    from data_builders.batching import iterate_minibatches

    n, b, w = 50, 4, 3
    per_epoch = n // (b * w)
    seen = []
    for step in range(per_epoch):
        shards = [
            set(batch_indices(n, b, step, seed=7, rank=r, world_size=w).tolist()) for r in range(w)
        ]
        assert all(len(s) == b for s in shards)
        assert not (shards[0] & shards[1]) and not (shards[1] & shards[2])
        seen += [i for s in shards for i in s]
    assert len(set(seen)) == per_epoch * b * w  # no index twice within an epoch
    # next epoch: a different order
    assert not torch.equal(batch_indices(n, b, 0, 7, 0, w), batch_indices(n, b, per_epoch, 7, 0, w))
    # one rank: exactly data_builders.iterate_minibatches' batches (resumable at any step)
    it = iterate_minibatches(torch.arange(n), b, seed=7, start_step=5)
    for step in range(5, 5 + 2 * (n // b)):
        assert torch.equal(next(it), batch_indices(n, b, step, seed=7))
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(5, 4, 0, 0, 0, 2)


def test_fit_writes_log_and_weights_only_checkpoint(tmp_path):
    cfg = tiny(steps=8, log_every=3, ckpt_every=4, out_dir=str(tmp_path))
    res = fit(cfg)
    df = read_log(tmp_path)
    assert df["step"].tolist() == [0, 2, 5, 7]  # first step, every 3rd, last
    for col in ("kl", "mse", "nll", "beta", "lambda", "c_ma", "c_hat", "wall_time", "sigma"):
        assert col in df.columns and df[col].notna().all(), col
    assert (df["wall_time"].diff().dropna() >= 0).all()
    assert df["beta"].to_numpy() == pytest.approx(1 / df["lambda"].to_numpy())
    # the last row is the result, λ is GECO's
    assert res.metrics["lambda"] == pytest.approx(res.objective.geco.lambdas.item())
    assert res.metrics["step"] == 7 and res.step == 8
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 8 and state["model_name"] == "conv_vae"
    assert state["engine_version"] == ENGINE_VERSION
    assert state["config"] == cfg.to_dict()
    assert torch.equal(state["objective"]["geco"]["lambdas"], res.objective.geco.lambdas)
    for k, v in res.model.state_dict().items():
        assert torch.equal(state["model"][k], v), k
    assert {"torch", "numpy_keys", "python_internal"} <= set(state["rng"][0])
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "conv_vae"
    model, objective, cfg2, step = load_run(tmp_path)
    assert step == 8 and cfg2 == cfg
    assert torch.equal(objective.geco.lambdas, res.objective.geco.lambdas)
    for k, v in model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k])


def test_same_seed_same_numbers_other_seed_other_numbers():
    a = fit(tiny(steps=4, seed=3, objective="elbo"))
    b = fit(tiny(steps=4, seed=3, objective="elbo"))
    c = fit(tiny(steps=4, seed=4, objective="elbo"))
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    assert a.metrics == {**b.metrics, "wall_time": a.metrics["wall_time"]}
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    # the learned σ of the ELBO is trained
    assert a.objective.sigma.item() != pytest.approx(0.1)


@pytest.mark.parametrize("objective", ["elbo", "annealed", "beta_vae"])
def test_baseline_objectives_train_and_log(objective):
    res = fit(tiny(steps=3, objective=objective, anneal_steps=10, log_every=1))
    m = res.metrics
    assert all(k in m for k in ("kl", "mse", "nll", "beta", "lambda", "sigma"))
    assert m["lambda"] == pytest.approx(784 / (2 * m["sigma"] ** 2), rel=1e-5)
    if objective == "annealed":
        assert m["sigma"] == pytest.approx(2.0 - 1.3 * 2 / 10, rel=1e-6)  # step 2 of 10


def test_conditional_convdraw_on_mnist_rotate_with_cla():
    pytest.importorskip("geco_core.models.classifier")
    res = fit(
        tiny(
            model="convdraw",
            dataset="mnist-rotate",
            dataset_kwargs={"n": 32},
            constraint="re,cla",
            kappa=[0.1, 0.5],
            steps=2,
            log_every=1,
        )
    )
    assert res.model.conditional
    assert {"lambda_0", "lambda_1", "c_ma_0", "c_ma_1"} <= set(res.metrics)


def test_resume_refuses_other_config_and_other_model(tmp_path):
    fit(tiny(steps=4, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="kappa"):
        fit(tiny(steps=8, kappa=0.2, out_dir=str(tmp_path)), resume=True)
    with pytest.raises(ValueError, match="'conv_vae' model.*'vae_nvp'"):
        fit(tiny(model="vae_nvp", steps=8, out_dir=str(tmp_path)), resume=True)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        fit(tiny(steps=8, out_dir=str(tmp_path)))
    # a checkpoint whose weights do not fit the model is refused with a message
    state = ckpt.load_checkpoint(tmp_path / "checkpoint.pt")
    state["model"] = {k + ".x": v for k, v in state["model"].items()}
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(ValueError, match="do not fit"):
        fit(tiny(steps=8, out_dir=str(tmp_path)), resume=True)
    # a checkpoint of another engine version is refused: its numbers differ
    state["engine_version"] = ENGINE_VERSION - 1
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(ValueError, match="engine version"):
        fit(tiny(steps=8, out_dir=str(tmp_path)), resume=True)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    res = fit(tiny(steps=2, out_dir=str(tmp_path)), resume=True)
    assert res.step == 2 and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_resume_in_process_equals_uninterrupted(tmp_path):
    full = fit(tiny(steps=8, ckpt_every=3, out_dir=str(tmp_path / "a")))
    fit(tiny(steps=5, ckpt_every=3, out_dir=str(tmp_path / "b")))  # stops after step 5
    resumed = fit(tiny(steps=8, ckpt_every=3, out_dir=str(tmp_path / "b")), resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert torch.equal(full.objective.geco.lambdas, resumed.objective.geco.lambdas)
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b").set_index("step")
    assert b.index.tolist() == [0, 2, 4, 5, 7]  # 4: the last step of the 5-step segment
    b = b.loc[a["step"]]
    assert a["lambda"].tolist() == b["lambda"].tolist() and a["kl"].tolist() == b["kl"].tolist()


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--kappa" in help_text and "--model-size" in help_text
    assert "defaults are the paper's" in help_text and "--lr 1e-3 --alpha 0.9" in help_text
    res = main(
        [
            "--model", "conv_vae", "--dataset", "mnist", "--objective", "geco",
            "--constraint", "re", "--kappa", "0.1", "--steps", "3", "--batch-size", "8",
            "--nu", "0.5", "--alpha", "0.95", "--lr", "1e-3", "--no-learn-sigma",
            "--device", "cpu", "--no-progress", "--download", "false",
            "--dataset-kwargs", "n=32",
            "--model-kwargs", '{"latent_dim": 2, "channels": [4, 8], "hidden": 16}',
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert res.step == 3 and res.config.model_kwargs["latent_dim"] == 2
    assert (res.config.nu, res.config.alpha, res.config.lr) == (0.5, 0.95, 1e-3)
    assert res.config.learn_sigma is False and res.config.seed == 0
    assert "lambda=" in capsys.readouterr().err
    assert len(read_log(tmp_path)) == 2
