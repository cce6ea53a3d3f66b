"""Figure functions of geco_book.figures.micro_mnist: they return Figures with the expected
axes, draw what they are given, and refuse malformed input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from geco_book.figures import micro_mnist as plots  # noqa: E402

RNG = np.random.default_rng(0)
N = 7
DIGITS = RNG.random((N, 28, 28))
LABELS = [4, 1, 9, 2, 7, 0, 5]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def latent(scale: float = 1.0, s: int = 100) -> np.ndarray:
    return RNG.normal(size=(N, s, 2)) * scale


def test_posterior_panels_has_one_axes_per_panel_plus_the_legend_strip():
    fig = plots.posterior_panels(
        [("ELBO", latent()), ("RE", latent(0.5)), ("CLA", torch.as_tensor(latent(0.2)))],
        DIGITS,
        labels=LABELS,
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 + N
    scatter_axes, legend_axes = fig.axes[:3], fig.axes[3:]
    assert [ax.get_title() for ax in scatter_axes] == ["ELBO", "RE", "CLA"]
    # every panel draws N point clouds of 100 samples, coloured like the legend frames
    for ax in scatter_axes:
        assert len(ax.collections) == N
        assert all(len(c.get_offsets()) == 100 for c in ax.collections)
    colors = [tuple(ax.spines["left"].get_edgecolor()[:3]) for ax in legend_axes]
    first = [tuple(c.get_facecolor()[0][:3]) for c in scatter_axes[0].collections]
    assert np.allclose(colors, first)
    assert len(set(colors)) == N
    assert [ax.get_xlabel() for ax in legend_axes] == [str(v) for v in LABELS]
    # a common, symmetric latent range that holds the samples
    lims = {ax.get_xlim() for ax in scatter_axes}
    assert len(lims) == 1 and lims.pop()[1] >= 3.0


def test_posterior_panels_in_a_grid_and_uint8_images():
    digits = (DIGITS * 255).astype(np.uint8)[:, None]  # [N, 1, H, W] uint8
    fig = plots.posterior_panels([(str(k), latent()) for k in range(5)], digits, ncols=3)
    assert len(fig.axes) == 5 + N
    img = fig.axes[5].images[0].get_array()
    assert img.max() <= 1.0 and np.allclose(img, digits[0, 0] / 255.0)


def test_posterior_panels_rejects_bad_shapes():
    with pytest.raises(ValueError, match="panel"):
        plots.posterior_panels([("bad", RNG.normal(size=(N, 10, 3)))], DIGITS)
    with pytest.raises(ValueError, match="labels"):
        plots.posterior_panels([("ok", latent())], DIGITS, labels=[1, 2])
    with pytest.raises(ValueError, match="panels"):
        plots.posterior_panels([], DIGITS)


def test_reconstruction_grid_has_one_row_per_model_plus_the_data():
    recons = {"ELBO": RNG.random((N, 4, 28, 28)), "RE": (RNG.random((N, 28, 28)) * 255)}
    recons["RE"] = recons["RE"].astype(np.uint8)
    fig = plots.reconstruction_grid(DIGITS, recons, n_samples=1)
    assert len(fig.axes) == 3
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["data", "ELBO", "RE"]
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (28, N * 28 + (N - 1) * 2)
    np.testing.assert_allclose(canvas[:, :28], 1.0 - DIGITS[0], atol=1e-6)  # ink is dark
    fig2 = plots.reconstruction_grid(DIGITS, {"ELBO": recons["ELBO"]}, n_samples=3)
    assert fig2.axes[1].images[0].get_array().shape == (28, N * 3 * 28 + (N - 1) * 2)
    with pytest.raises(ValueError, match="n_samples"):
        plots.reconstruction_grid(DIGITS, {"RE": recons["RE"]}, n_samples=2)


def test_training_curves_one_panel_per_quantity_one_line_per_run():
    step = np.arange(0, 100, 10)
    curves = {
        "a": {
            "step": step,
            "kl": np.linspace(5, 2, 10),
            "mse": np.full(10, 0.01),
            "lambda": step + 1,
        },
        "b": {"step": step, "kl": np.linspace(9, 3, 10), "mse": np.full(10, 0.02)},
    }
    fig = plots.training_curves(curves, hlines={"kl": np.log(7)})
    assert len(fig.axes) == 3
    assert len(fig.axes[0].get_lines()) == 3  # two runs + the ln 7 line
    assert len(fig.axes[2].get_lines()) == 1  # run b has no λ
    assert all(ax.get_yscale() == "log" for ax in fig.axes)


def _dashed(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_training_curves_draw_kappa_squared_for_each_re_run_in_its_colour():
    step = np.arange(0, 100, 10)
    curves = {
        "RE 0.05": {"step": step, "kl": np.linspace(5, 2, 10), "mse": np.geomspace(0.2, 1e-3, 10)},
        "RE 0.2": {"step": step, "kl": np.linspace(3, 1, 10), "mse": np.geomspace(0.2, 0.03, 10)},
        "CLA 0.9": {"step": step, "kl": np.linspace(9, 3, 10), "mse": np.full(10, 0.3)},
    }
    fig = plots.training_curves(curves, re_kappa={"RE 0.05": 0.05, "RE 0.2": 0.2, "CLA 0.9": None})
    kl_ax, mse_ax, lam_ax = fig.axes
    dashed = _dashed(mse_ax)
    assert sorted(float(ln.get_ydata()[0]) for ln in dashed) == pytest.approx([0.05**2, 0.2**2])
    runs = {ln.get_label(): ln for ln in mse_ax.get_lines() if ln.get_label() in curves}
    for ln in dashed:  # each κ² line in the colour of its run
        owner = "RE 0.05" if ln.get_ydata()[0] == pytest.approx(0.0025) else "RE 0.2"
        assert ln.get_color() == runs[owner].get_color()
    assert not _dashed(kl_ax) and not _dashed(lam_ax)
    # one κ: its value in the panel's legend
    one = plots.training_curves({"RE 0.05": curves["RE 0.05"]}, re_kappa={"RE 0.05": 0.05})
    texts = [t.get_text() for t in one.axes[1].get_legend().get_texts()]
    assert texts == ["κ² = 0.0025 (κ = 0.05)"]


def test_training_curves_legend_serves_every_panel():
    step = np.arange(5)
    curves = {name: {"step": step, "kl": step + 1.0, "mse": step + 0.1, "lambda": step + 2.0}
              for name in ("ELBO", "RE", "CLA")}
    fig = plots.training_curves(curves, hlines={"kl": {"ln 7": np.log(7)},
                                                "lambda": {"λ bounds": (1e-3, 1e7)}},
                                re_kappa={"RE": 0.1})
    # the runs: one figure legend outside the panels, same colour per run on every panel
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(curves)
    for name in curves:
        colors = {ln.get_color() for ax in fig.axes for ln in ax.get_lines()
                  if ln.get_label() == name}
        assert len(colors) == 1
    # every panel's reference lines are labelled in that panel
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["ln 7"], ["κ² = 0.01 (κ = 0.1)"], ["λ bounds"]]
    bounds = [ln.get_ydata()[0] for ln in fig.axes[2].get_lines() if ln.get_linestyle() == ":"]
    assert sorted(bounds) == [1e-3, 1e7]


def test_training_curves_keep_negative_kl_on_a_symlog_axis():
    step = np.arange(0, 100, 10)
    kl = np.array([-0.2, -0.05, 0.3, 2.0, 10.0, 40.0, 30.0, 20.0, 15.0, 12.0])
    curves = {"a": {"step": step, "kl": kl, "mse": np.full(10, 0.01)}}
    fig = plots.training_curves(curves, keys=(("kl", "KL"), ("mse", "MSE")))
    kl_ax, mse_ax = fig.axes
    assert kl_ax.get_yscale() == "symlog" and mse_ax.get_yscale() == "log"
    assert "symlog" in kl_ax.get_ylabel()  # the caption's reader is told
    (line,) = [ln for ln in kl_ax.get_lines() if ln.get_label() == "a"]
    np.testing.assert_array_equal(line.get_ydata(), kl)  # no point dropped or masked
    assert kl_ax.get_ylim()[0] <= kl.min() and kl_ax.get_ylim()[1] >= kl.max()
    # values of both signs within ±linthresh (a constraint's C_ma): a plain linear axis
    c_ma = np.linspace(0.8, -0.2, 10)
    fig = plots.training_curves({"a": {"step": step, "c_ma": c_ma}}, keys=(("c_ma", "C_ma"),))
    assert fig.axes[0].get_yscale() == "linear"
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "a"]
    np.testing.assert_array_equal(line.get_ydata(), c_ma)


def test_sweep_summary_one_panel_per_constraint():
    idx = pd.MultiIndex.from_tuples(
        [("RE", 0.05), ("RE", 0.2), ("CLA", 0.9), ("CLA", 0.2)], names=["constraint", "κ"]
    )
    table = pd.DataFrame({"e^I (eff. tiles)": [6.5, 2.0, 6.9, 3.0]}, index=idx)
    fig = plots.sweep_summary(table, reference={"e^I (eff. tiles)": 7.0})
    assert len(fig.axes) == 2
    re_line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(re_line.get_xdata(), [0.05, 0.2])
    np.testing.assert_allclose(re_line.get_ydata(), [6.5, 2.0])
    assert fig.axes[1].xaxis_inverted()  # CLA: weaker to the right


def test_measures_vs_steps_draws_the_mean_and_every_seed():
    h = [[{"steps": 10, "avg_kl": 4.0 + s, "mse": 0.1}, {"steps": 100, "avg_kl": 2.0 + s,
           "mse": 0.05}] for s in range(3)]
    short = [[{"steps": 10, "avg_kl": -1.0, "mse": 0.2}]]
    fig = plots.measures_vs_steps({"a": h, "b": short},
                                  keys=[("avg_kl", "KL"), ("mse", "MSE")],
                                  reference={"avg_kl": 1.9})
    ax_kl, ax_mse = fig.axes
    # 3 seed lines + 1 for run b, plus the reference line; the means are errorbar containers
    assert len(ax_kl.lines) >= 5 and len(ax_kl.containers) == 2
    mean = ax_kl.containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(mean, [5.0, 3.0])
    assert ax_kl.get_yscale() == "linear"  # run b's negative value keeps a linear axis
    assert ax_mse.get_yscale() == "log" and ax_kl.get_xscale() == "log"
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert labels == ["a (3 seeds)", "b (1 seed)"]
    plt.close(fig)
