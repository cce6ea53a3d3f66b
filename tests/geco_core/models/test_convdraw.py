"""Tests of ConvDRAW: per-step KLs, matched-pair log q, recurrent gates, gradients, seeds, the
initial canvas, and that it actually learns MNIST at the engine's CPU settings."""

import warnings

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from geco_core.models.convdraw import CANVAS_INIT_CLAMP, ConvDRAW

SMALL = dict(steps=3, hidden=8, z_channels=2, read_channels=4, context_channels=4)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ConvDRAW((1, 28, 28), **{**SMALL, **kw})


@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_and_ranges(conditional):
    m = _model(context_shape=(2, 28, 28) if conditional else None)
    assert m.latent_dim == 3 * 2 * 7 * 7
    x = torch.rand(4, 1, 28, 28)
    ctx = torch.rand(4, 2, 28, 28) if conditional else None
    out = m(x, ctx)
    assert out.x_mean.shape == x.shape and 0 <= out.x_mean.min() and out.x_mean.max() <= 1
    assert out.z.shape == (4, m.latent_dim)
    for t in (out.kl, out.log_q, out.log_prior):
        assert t.shape == (4,) and torch.isfinite(t).all()
    z, lq = m.sample_posterior(x, n=2, context=ctx)
    assert z.shape == (2, 4, m.latent_dim) and lq.shape == (2, 4)
    s = m.sample(3, None if ctx is None else ctx[:3])
    assert s.shape == (3, 1, 28, 28) and 0 <= s.min() and s.max() <= 1


def test_kl_per_step_matches_torch_distributions():
    m = _model(context_shape=(2, 28, 28))
    x, ctx = torch.rand(3, 1, 28, 28), torch.rand(3, 2, 28, 28)
    torch.manual_seed(1)
    tr = m.unroll(x, ctx)
    kl_steps = tr.kl_steps()
    assert kl_steps.shape == (3, 3)
    for t in range(3):
        (mq, lq), (mp, lp) = tr.q[t], tr.p[t]
        ref = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp())).sum((1, 2, 3))
        torch.testing.assert_close(kl_steps[:, t], ref)
    # the priors of steps ≥ 2 depend on the decoder state, i.e. on the example
    assert (tr.p[1][0][0] - tr.p[1][0][1]).abs().max() > 0
    torch.manual_seed(1)
    out = m(x, ctx)
    torch.testing.assert_close(out.kl, kl_steps.sum(1))
    torch.testing.assert_close(out.z, m.flatten_latents(tr.z))


def test_log_q_log_prior_and_decode_match_the_sampled_pass():
    m = _model()
    x = torch.rand(4, 1, 28, 28)
    out = m(x)
    torch.testing.assert_close(m.log_q(out.z, x), out.log_q, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(m.log_prior(out.z), out.log_prior, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(m.decode(out.z), out.x_mean)  # the decoder sees only z
    z, lq = m.sample_posterior(x, n=3)
    for k in range(3):
        torch.testing.assert_close(m.log_q(z[k], x), lq[k], atol=1e-4, rtol=1e-5)
    # a different x gives a different density for the same z (the pairing matters)
    assert (m.log_q(out.z, x.flip(0)) - out.log_q).abs().max() > 1e-3


def test_monte_carlo_kl_agrees_with_summed_closed_form_step_kls():
    m = _model()
    x = torch.rand(1, 1, 28, 28).expand(2000, -1, -1, -1)
    torch.manual_seed(2)
    with torch.no_grad():
        out = m(x)
    mc = out.log_q - out.log_prior
    se = (mc.std() ** 2 / len(mc) + out.kl.std() ** 2 / len(mc)).sqrt()
    assert (mc.mean() - out.kl.mean()).abs() < 4 * se + 1e-3


@pytest.mark.parametrize("cell_name", ["enc_cell", "dec_cell"])
def test_gates_depend_on_hidden_state(cell_name):
    m = _model()
    cell = getattr(m, cell_name)
    in_ch = cell.conv.in_channels - cell.hidden
    inp = torch.randn(2, in_ch, 7, 7)
    h1, h2 = torch.randn(2, 8, 7, 7), torch.randn(2, 8, 7, 7)
    for g1, g2 in zip(cell.gates(inp, h1), cell.gates(inp, h2)):
        assert (g1 - g2).abs().max() > 1e-3
    h = h1.clone().requires_grad_(True)
    for gate in cell.gates(inp, h):  # i, f, o, g each have a non-zero ∂/∂h
        (grad,) = torch.autograd.grad(gate.sum(), h, retain_graph=True)
        assert grad.abs().sum() > 0
    # and the new state changes with h at fixed input and cell state
    c = torch.randn(2, 8, 7, 7)
    assert (cell(inp, (h1, c))[0] - cell(inp, (h2, c))[0]).abs().max() > 1e-3


@pytest.mark.parametrize("conditional", [False, True])
def test_gradients_reach_all_parameters(conditional):
    m = _model(context_shape=(2, 28, 28) if conditional else None)
    x = torch.rand(3, 1, 28, 28)
    ctx = torch.rand(3, 2, 28, 28) if conditional else None
    out = m(x, ctx)
    ((out.x_mean - x).square().sum() + out.kl.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_numbers():
    x = torch.rand(2, 1, 28, 28)
    res = []
    for _ in range(2):
        m = _model(seed=4)
        torch.manual_seed(8)
        res.append((m(x), m.sample(2)))
    for a, b in zip(vars(res[0][0]).values(), vars(res[1][0]).values()):
        assert torch.equal(a, b)
    assert torch.equal(res[0][1], res[1][1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        ConvDRAW((1, 28, 28), steps=0)
    with pytest.raises(ValueError, match="kernel"):
        ConvDRAW((1, 28, 28), kernel=4)
    with pytest.raises(ValueError, match="divisible"):
        ConvDRAW((1, 28, 28), n_down=3)
    m = _model()
    with pytest.raises(ValueError, match="z must have shape"):
        m.decode(torch.randn(2, 10))
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.rand(2, 1, 28, 28), torch.rand(2, 2, 28, 28))
    mc = _model(context_shape=(2, 28, 28))
    with pytest.raises(ValueError, match="context is required"):
        mc.sample(2)
    with pytest.raises(ValueError, match="rows"):
        mc.sample(3, torch.rand(2, 2, 28, 28))
    for bad in (0.0, 1.0, -0.5, "0.5"):
        with pytest.raises(ValueError, match="canvas_init"):
            ConvDRAW((1, 28, 28), canvas_init=bad)


def test_first_training_batch_sets_the_initial_canvas_to_its_mean_intensity():
    m = _model(context_shape=(2, 28, 28))
    x, ctx = 0.3 * torch.rand(5, 1, 28, 28), torch.rand(5, 2, 28, 28)
    c0 = torch.logit(x.mean())
    with torch.no_grad():
        out = m(x, ctx)
    torch.testing.assert_close(m.canvas0, c0.expand(1, 28, 28))
    # the small initial writes leave the untrained decoder mean at the data's grey level
    assert (out.x_mean - x.mean()).abs().max() < 0.03
    # later batches, eval-mode calls and decoder-only calls do not touch c_0 again
    m(torch.ones(2, 1, 28, 28), ctx[:2])
    torch.testing.assert_close(m.canvas0, c0.expand(1, 28, 28))
    # a loaded model keeps the stored c_0 (the flag is in the state dict)
    fresh = _model(seed=3, context_shape=(2, 28, 28))
    fresh.load_state_dict(m.state_dict())
    fresh(torch.ones(2, 1, 28, 28), ctx[:2])
    torch.testing.assert_close(fresh.canvas0, c0.expand(1, 28, 28))
    # loading an uninitialised state dict makes the next training batch initialise c_0 again
    m.load_state_dict(_model(seed=5, context_shape=(2, 28, 28)).state_dict())
    m(torch.ones(2, 1, 28, 28), ctx[:2])
    torch.testing.assert_close(
        m.canvas0, torch.logit(torch.tensor(CANVAS_INIT_CLAMP[1])).expand(1, 28, 28)
    )
    # in eval mode the first batch does not initialise it
    ev = _model().eval()
    ev(x)
    assert bool((ev.canvas0 == 0).all())
    # an all-black batch gives the clamped logit, not -inf
    m0 = _model()
    m0(torch.zeros(2, 1, 28, 28))
    torch.testing.assert_close(
        m0.canvas0, torch.logit(torch.tensor(CANVAS_INIT_CLAMP[0])).expand(1, 28, 28)
    )
    # a fixed canvas_init replaces the data-dependent one
    mf = _model(canvas_init=0.25)
    mf(x)
    torch.testing.assert_close(mf.canvas0, torch.logit(torch.tensor(0.25)).expand(1, 28, 28))


def test_learns_mnist_at_the_book_cpu_settings():
    """Regression test: ConvDRAW (small size) trained by Adam at the book's cpu lr (1e-3,
    geco_book.policy) on the ELBO (σ = 0.1 learned, the engine's defaults) must reconstruct
    well below the mean-image MSE (here 0.015 vs 0.068 after 100 steps). Before c_0 was
    initialised from the data, the canvas ran into the flat tail of the sigmoid within ~25
    steps and this run ended at the all-black MSE, 0.117."""
    from data_builders.registry import load_dataset
    from geco_core.objectives import ELBO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vendored 10k split stands in for the 60k one
        x = load_dataset("mnist", "train", seed=0, n=256).x
    mean_image_mse = float((x - x.mean(0)).square().mean())
    torch.manual_seed(0)
    m = ConvDRAW((1, 28, 28))
    elbo = ELBO(sigma=0.1, learn_sigma=True)
    opt = torch.optim.Adam([*m.parameters(), *elbo.parameters()], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        xb = x[torch.randint(0, len(x), (32,), generator=g)]
        loss, _ = elbo(m(xb), xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float((m(x).x_mean - x).square().mean())
    assert mse < 0.5 * mean_image_mse, (mse, mean_image_mse)


_FUSED_CASES = {
    "mnist": (dict(), 1, 5, torch.float32),
    "conditional": (dict(context_shape=(2, 28, 28)), 1, 5, torch.float32),
    "color": (dict(), 3, 5, torch.float32),
    "conditional-color": (dict(context_shape=(2, 28, 28)), 3, 3, torch.float32),
    "one-step": (dict(steps=1), 1, 4, torch.float32),
    "one-downsampling-kernel-5": (dict(n_down=1, kernel=5), 1, 2, torch.float32),
    "no-downsampling": (dict(n_down=0), 1, 2, torch.float32),
    "batch-of-one": (dict(), 1, 1, torch.float32),
    "float64": (dict(context_shape=(2, 28, 28)), 1, 3, torch.float64),
}


@pytest.mark.parametrize("case", list(_FUSED_CASES))
def test_fused_unroll_computes_what_the_reference_computes(case):
    """The fused recurrence (zero first-step states skipped, constant inputs convolved once,
    channels_last, one-channel image convs as matmuls) gives the reference's outputs and
    gradients to float rounding — every parameter gets a gradient, as DDP needs — from the same
    parameters and the same noise; so do the decoder-only, matched-pair and sampling paths."""
    kw, channels, batch, dtype = _FUSED_CASES[case]
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-4, rtol=1e-5)
    gtol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    fused = ConvDRAW((channels, 28, 28), **{**SMALL, **kw}).to(dtype)
    ref = ConvDRAW((channels, 28, 28), implementation="reference", **{**SMALL, **kw}).to(dtype)
    ref.load_state_dict(fused.state_dict())
    assert fused.enc_cell.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(batch, channels, 28, 28, dtype=dtype)
    ctx = torch.rand(batch, 2, 28, 28, dtype=dtype) if "context_shape" in kw else None
    outs = []
    for m in (fused, ref):
        m.train()
        m.prepare(x)
        torch.manual_seed(3)
        out = m(x, ctx)
        loss = (out.x_mean - x).square().sum() + out.kl.sum()
        m.zero_grad()
        loss.backward()
        outs.append(out)
    for k in ("x_mean", "z", "kl", "log_q", "log_prior"):
        torch.testing.assert_close(getattr(outs[0], k), getattr(outs[1], k), **tol)
    for (name, a), b in zip(fused.named_parameters(), ref.parameters()):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, **gtol, msg=name)
    z = torch.randn(batch, fused.latent_dim, dtype=dtype)
    with torch.no_grad():
        for f in ("log_q", "log_prior", "decode"):
            args = (z, x, ctx) if f == "log_q" else (z, ctx)
            torch.testing.assert_close(getattr(fused, f)(*args), getattr(ref, f)(*args), **tol)
        samples = []
        for m in (fused, ref):
            torch.manual_seed(4)
            samples.append(m.sample(batch, ctx))
        torch.testing.assert_close(*samples, **tol)


def test_fused_weights_save_and_load_into_either_implementation(tmp_path):
    """channels_last weights survive torch.save / torch.load(weights_only=True) and load into a
    reference model (which keeps its NCHW layout) with the same values."""
    fused = _model()
    torch.save(fused.state_dict(), tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    ref = _model(seed=1, implementation="reference")
    ref.load_state_dict(state)
    assert ref.enc_cell.conv.weight.is_contiguous()
    for k, v in fused.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k]), k
    again = _model(seed=2)
    again.load_state_dict(state)
    assert again.enc_cell.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        z = torch.randn(3, fused.latent_dim)
        torch.testing.assert_close(again.log_q(z, x), ref.log_q(z, x), atol=2e-4, rtol=1e-5)


def test_fused_and_reference_training_runs_agree():
    """Ten Adam steps from the same start: the fused and the reference step stay equal to
    rounding (the recurrence is the same function, not just statistically similar)."""
    from geco_core.constraints import RE
    from geco_core.objectives import GECOObjective

    x = torch.rand(8, 1, 28, 28) * 0.5
    traces = []
    for impl in ("fused", "reference"):
        m = _model(implementation=impl)
        m.train()
        m.prepare(x)
        obj = GECOObjective([RE(kappa=0.1)], alpha=0.9)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        torch.manual_seed(7)
        losses = []
        for t in range(10):
            loss, _ = obj(m(x), x, step=t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        traces.append(losses)
    assert traces[0] == pytest.approx(traces[1], rel=1e-4)


def test_implementation_is_checked():
    with pytest.raises(ValueError, match="implementation"):
        ConvDRAW((1, 28, 28), implementation="fast")
