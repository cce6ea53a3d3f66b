"""Constraints of Table 1 against independent reference computations (loops, closed forms)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geco_core.constraints import (
    CLA,
    CONSTRAINTS,
    FRE,
    PNCC,
    RE,
    Constraint,
    GroupedRE,
    build_constraint,
    local_statistics,
)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 8, generator=g, dtype=torch.float64)
    x_hat = torch.rand(3, 2, 9, 8, generator=g, dtype=torch.float64)
    return x, x_hat


# --------------------------------------------------------------------------------------- RE
def test_re_of_exact_reconstruction_is_minus_kappa_squared(images):
    x, _ = images
    torch.testing.assert_close(RE(kappa=0.1)(x, x), torch.full((3,), -0.01, dtype=x.dtype))


def test_re_matches_per_example_loop(images):
    x, x_hat = images
    value = RE(kappa=0.2)(x, x_hat)
    for b in range(x.shape[0]):
        diffs = [(float(a) - float(c)) ** 2 for a, c in zip(x[b].flatten(), x_hat[b].flatten())]
        assert value[b].item() == pytest.approx(sum(diffs) / len(diffs) - 0.04, abs=1e-12)
    # batch mean Ĉ for GECO: shape [1]
    torch.testing.assert_close(RE(kappa=0.2).batch_mean(x, x_hat), value.mean().reshape(1))


def test_re_gradient_flows_into_reconstruction(images):
    x, x_hat = images
    x_hat = x_hat.clone().requires_grad_()
    RE(kappa=0.1)(x, x_hat).sum().backward()
    n = x[0].numel()
    torch.testing.assert_close(x_hat.grad, 2 * (x_hat.detach() - x) / n)


def test_grouped_re_per_channel_and_per_dimension(images):
    x, x_hat = images
    per_channel = GroupedRE(kappa=[0.1, 0.2], data_shape=(2, 9, 8))
    assert per_channel.n_constraints == 2
    values = per_channel(x, x_hat)
    assert values.shape == (3, 2)
    for c, kappa in enumerate((0.1, 0.2)):
        expected = ((x[:, c] - x_hat[:, c]) ** 2).mean(dim=(1, 2)) - kappa**2
        torch.testing.assert_close(values[:, c], expected)
    # the mean over equally sized groups is RE with the mean κ²
    torch.testing.assert_close(
        values.mean(1), RE(kappa=math.sqrt((0.01 + 0.04) / 2))(x, x_hat), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(per_channel.batch_mean(x, x_hat), values.mean(0))

    per_dim = GroupedRE(kappa=0.1, data_shape=(2, 9, 8), groups="dimension")
    assert per_dim.n_constraints == 144
    torch.testing.assert_close(per_dim(x, x_hat), (x - x_hat).square().flatten(1) - 0.01)
    torch.testing.assert_close(per_dim(x, x), torch.full((3, 144), -0.01, dtype=x.dtype))


def test_grouped_re_validates_arguments(images):
    x, x_hat = images
    with pytest.raises(ValueError, match="groups"):
        GroupedRE(kappa=0.1, data_shape=(2, 9, 8), groups="row")
    with pytest.raises(ValueError, match="kappa"):
        GroupedRE(kappa=[0.1, 0.2, 0.3], data_shape=(2, 9, 8))
    with pytest.raises(ValueError, match="kappa"):
        GroupedRE(kappa=[0.1, -0.2], data_shape=(2, 9, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        GroupedRE(kappa=0.1, data_shape=(3, 9, 8))(x, x_hat)


# -------------------------------------------------------------------------------------- FRE
def local_stats_loop(x, window, stride, eps):
    """Reference: explicit loops over windows, mean and (population) std per channel."""
    b, c, h, w = x.shape
    rows = range(0, h - window + 1, stride)
    cols = range(0, w - window + 1, stride)
    out = torch.zeros(b, 2 * c, len(rows), len(cols), dtype=x.dtype)
    for i, r in enumerate(rows):
        for j, s in enumerate(cols):
            patch = x[:, :, r : r + window, s : s + window].reshape(b, c, -1)
            mean = patch.mean(-1)
            var = ((patch - mean[..., None]) ** 2).mean(-1)
            out[:, :c, i, j] = mean
            out[:, c:, i, j] = torch.sqrt(var + eps)
    return out


@pytest.mark.parametrize(("window", "stride"), [(3, 1), (4, 2), (5, 3)])
def test_local_statistics_match_loop_reference(images, window, stride):
    x, _ = images
    torch.testing.assert_close(
        local_statistics(x, window, stride, eps=1e-6),
        local_stats_loop(x, window, stride, eps=1e-6),
        rtol=1e-9,
        atol=1e-9,
    )


def test_fre_local_stats_matches_reference(images):
    x, x_hat = images
    fre = FRE(kappa=0.05, window=3, stride=2)
    fx, fx_hat = local_stats_loop(x, 3, 2, 1e-6), local_stats_loop(x_hat, 3, 2, 1e-6)
    expected = (fx - fx_hat).square().flatten(1).mean(1) - 0.05**2
    torch.testing.assert_close(fre(x, x_hat), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fre(x, x), torch.full((3,), -0.0025, dtype=x.dtype))
    # a constant shift of the image moves only the local means
    shifted = fre(x, x + 0.1)
    n_features = fx[0].numel()
    torch.testing.assert_close(shifted, torch.full_like(shifted, 0.01 / 2 - 0.0025))
    assert n_features == 2 * 2 * 4 * 3


def test_fre_with_feature_callable(images):
    x, x_hat = images
    torch.manual_seed(0)
    features = nn.Conv2d(2, 4, 3).double().requires_grad_(False)
    fre = FRE(kappa=0.3, features=features)
    assert "features" in dict(fre.named_children())  # moves with .to(device)
    x_hat = x_hat.clone().requires_grad_()
    value = fre(x, x_hat)
    expected = (features(x) - features(x_hat)).square().flatten(1).mean(1) - 0.09
    torch.testing.assert_close(value, expected)
    value.sum().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    # a plain function works too
    fre_fn = FRE(kappa=0.3, features=lambda t: t.mean(dim=(2, 3)))
    expected = (x.mean(dim=(2, 3)) - x_hat.mean(dim=(2, 3))).square().mean(1) - 0.09
    torch.testing.assert_close(fre_fn(x, x_hat), expected)
    with pytest.raises(ValueError, match="features"):
        FRE(kappa=0.3, features="vgg")


# -------------------------------------------------------------------------------------- CLA
def test_cla_logits_matches_manual_gather(images):
    x, x_hat = images
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 8, 5)).double()
    labels = torch.tensor([0, 3, 4])
    value = CLA(kappa=0.9, classifier=clf)(x, x_hat, labels=labels)
    logits = clf(x_hat)
    for b in range(3):
        p = math.exp(logits[b, labels[b]].item()) / sum(math.exp(v) for v in logits[b].tolist())
        assert value[b].item() == pytest.approx(0.9 - p, abs=1e-12)


def test_cla_probabilities_and_sign(images):
    x, x_hat = images
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], dtype=x.dtype)
    cla = CLA(kappa=0.6, classifier=lambda _: probs, outputs="probs")
    value = cla(x, x_hat, labels=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(
        value, torch.tensor([0.6 - 0.7, 0.6 - 0.1, 0.6 - 0.4], dtype=x.dtype)
    )
    # ≤ 0 exactly when the true-class probability reaches κ; a smaller κ is a weaker constraint
    assert (value <= 0).tolist() == [True, False, False]
    weaker = CLA(kappa=0.3, classifier=lambda _: probs, outputs="probs")
    assert (weaker(x, x_hat, labels=torch.tensor([0, 1, 2])) <= 0).tolist() == [True, False, True]


def test_cla_gradient_raises_true_class_probability(images):
    x, x_hat = images
    torch.manual_seed(1)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 8, 4)).double().requires_grad_(False)
    labels = torch.tensor([1, 2, 3])
    cla = CLA(kappa=0.9, classifier=clf)
    x_hat = x_hat.clone().requires_grad_()
    before = cla(x, x_hat, labels=labels)
    before.sum().backward()
    with torch.no_grad():
        after = cla(x, x_hat - 0.01 * x_hat.grad, labels=labels)
    assert (after < before.detach()).all()  # descending C raises l(x)ᵀc(x̂)


def test_cla_validates_arguments(images):
    x, x_hat = images
    clf = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 8, 4)).double()
    with pytest.raises(ValueError, match="labels"):
        CLA(kappa=0.9, classifier=clf)(x, x_hat)
    with pytest.raises(ValueError, match="labels"):
        CLA(kappa=0.9, classifier=clf)(x, x_hat, labels=torch.zeros(3))
    with pytest.raises(ValueError, match="kappa"):
        CLA(kappa=1.5, classifier=clf)
    with pytest.raises(ValueError, match="outputs"):
        CLA(kappa=0.5, classifier=clf, outputs="scores")


# ------------------------------------------------------------------------------------- pNCC
def pncc_loop(x, x_hat, kappa, p, stride, eps):
    """Reference: loop over patch locations, whiten each patch, average the dot products."""
    b, _, h, w = x.shape
    out = torch.zeros(b, dtype=x.dtype)
    count = 0
    for r in range(0, h - p + 1, stride):
        for s in range(0, w - p + 1, stride):
            a = x[:, :, r : r + p, s : s + p].reshape(b, -1)
            c = x_hat[:, :, r : r + p, s : s + p].reshape(b, -1)
            a = a - a.mean(1, keepdim=True)
            c = c - c.mean(1, keepdim=True)
            a = a / torch.sqrt((a * a).sum(1, keepdim=True) + eps)
            c = c / torch.sqrt((c * c).sum(1, keepdim=True) + eps)
            out += (a * c).sum(1)
            count += 1
    return kappa - out / count


def test_pncc_of_image_with_itself_is_kappa_minus_one(images):
    x, _ = images
    value = PNCC(kappa=0.8, patch_size=3, stride=1, eps=1e-12)(x, x)
    torch.testing.assert_close(value, torch.full((3,), 0.8 - 1.0, dtype=x.dtype))


@pytest.mark.parametrize(("patch_size", "stride"), [(3, 1), (4, 2), (5, 3)])
def test_pncc_matches_loop_reference(images, patch_size, stride):
    x, x_hat = images
    value = PNCC(kappa=0.7, patch_size=patch_size, stride=stride)(x, x_hat)
    torch.testing.assert_close(value, pncc_loop(x, x_hat, 0.7, patch_size, stride, 1e-6))


def test_pncc_invariances(images):
    x, _ = images
    pncc = PNCC(kappa=0.5, patch_size=3, stride=2, eps=1e-12)
    # brightness and contrast do not matter; a negated image is perfectly anti-correlated
    torch.testing.assert_close(pncc(x, 0.3 * x + 0.2), torch.full((3,), -0.5, dtype=x.dtype))
    torch.testing.assert_close(pncc(x, -x), torch.full((3,), 1.5, dtype=x.dtype))
    # a flat patch whitens to zero and contributes no correlation: only 1 of the 6
    # non-overlapping 3×3 patches of this image is textured
    flat = torch.full_like(x, 0.4)
    flat[:, :, :3, :3] = x[:, :, :3, :3]
    pncc3 = PNCC(kappa=0.5, patch_size=3, stride=3, eps=1e-12)
    assert F.unfold(flat, 3, stride=3).shape[-1] == 6
    torch.testing.assert_close(pncc3(flat, flat), torch.full((3,), 0.5 - 1 / 6, dtype=x.dtype))


def test_pncc_validates_arguments(images):
    x, x_hat = images
    with pytest.raises(ValueError, match="patch_size"):
        PNCC(kappa=0.5, patch_size=0)
    with pytest.raises(ValueError, match="stride"):
        PNCC(kappa=0.5, stride=0)
    with pytest.raises(ValueError, match="patch_size"):
        PNCC(kappa=0.5, patch_size=10)(x, x_hat)
    with pytest.raises(ValueError, match="kappa"):
        PNCC(kappa=1.2)


# ---------------------------------------------------------------------------- common / factory
def test_build_constraint_builds_each_constraint(images):
    x, x_hat = images
    clf = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 8, 4)).double()
    built = {
        "re": build_constraint("re", 0.1),
        "grouped_re": build_constraint("grouped_re", 0.1, data_shape=(2, 9, 8)),
        "fre": build_constraint("FRE", 0.1, window=3),
        "cla": build_constraint("cla", 0.9, classifier=clf),
        "pncc": build_constraint("pNCC", 0.8, patch_size=3),
    }
    assert set(built) == set(CONSTRAINTS)
    for name, constraint in built.items():
        assert isinstance(constraint, CONSTRAINTS[name]) and isinstance(constraint, Constraint)
        kwargs = {"labels": torch.tensor([0, 1, 2])} if name == "cla" else {}
        c_hat = constraint.batch_mean(x, x_hat, **kwargs)
        assert c_hat.shape == (constraint.n_constraints,) and torch.isfinite(c_hat).all()


def test_build_constraint_rejects_unknown_names_and_bad_kappa():
    with pytest.raises(
        ValueError, match=r"valid names: \['cla', 'fre', 'grouped_re', 'pncc', 're'\]"
    ):
        build_constraint("mse", 0.1)
    for kappa in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="kappa"):
            build_constraint("re", kappa)
    for cls in (RE, FRE, PNCC):
        with pytest.raises(ValueError, match="kappa"):
            cls(kappa=-1.0)


def test_shape_mismatch_raises(images):
    x, x_hat = images
    with pytest.raises(ValueError, match="x_hat"):
        RE(kappa=0.1)(x, x_hat[:, :1])


def test_docstring_examples_run():
    import doctest

    import geco_core.constraints

    result = doctest.testmod(geco_core.constraints)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ inputs at the entry point
def test_constraints_refuse_integer_or_0_255_data_and_huge_kappa():
    x, x_hat = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    for c in (
        RE(0.1),
        GroupedRE(0.1, data_shape=(1, 8, 8)),
        FRE(0.1, window=3),
        PNCC(0.5, patch_size=3),
        CLA(0.5, clf),
    ):
        kw = {"labels": torch.zeros(3, dtype=torch.long)} if isinstance(c, CLA) else {}
        with pytest.raises(ValueError, match=r"^x must hold values in \[0, 1\].*max 2"):
            c(x * 255, x_hat, **kw)  # RE would read ≈ 215 instead of ≈ 0.17
        with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
            c((x * 255).to(torch.uint8), x_hat, **kw)
        with pytest.raises(TypeError, match=r"^x_hat must be a floating-point tensor"):
            c(x, torch.zeros(3, 1, 8, 8, dtype=torch.long), **kw)
        assert c(x, x_hat, **kw).shape[0] == 3
    for cls, hi in ((RE, 1e3), (FRE, 1e3), (CLA, 1.0), (PNCC, 1.0)):
        assert cls.kappa_max == hi
    with pytest.raises(ValueError, match=r"^kappa must be <= 1000, got 1e\+30"):
        RE(1e30)  # κ² = 1e60 overflows float32
    with pytest.raises(ValueError, match=r"^kappa must be <= 1000"):
        GroupedRE([0.1, 1e30], data_shape=(2, 4, 4))
    with pytest.raises(ValueError, match=r"^kappa must be <= 1000"):
        build_constraint("fre", 1e30)
    with pytest.raises(ValueError, match=r"^kappa must be <= 1"):
        PNCC(1.5)
    assert RE(1e3).kappa == 1e3


def test_cla_refuses_labels_outside_the_classes():
    x = torch.rand(3, 1, 8, 8)
    cla = CLA(0.5, nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    with pytest.raises(
        ValueError,
        match=r"^labels must be class indices in 0\.\.9, got values "
        r"in 3\.\.12",
    ):
        cla(x, x, labels=torch.tensor([3, 12, 4]))
    with pytest.raises(ValueError, match=r"^labels must be class indices in 0\.\.9"):
        cla(x, x, labels=torch.tensor([-1, 0, 4]))
    assert cla(x, x, labels=torch.tensor([0, 9, 4])).shape == (3,)
