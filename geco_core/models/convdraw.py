"""ConvDRAW (Gregor et al. 2016, "Towards conceptual compression"), unconditional and conditional.

A recurrent VAE that builds the image over T steps on an additive canvas. At each step t:

1. prior      p(z_t | h^dec_{t-1})  = N(μ_p, σ_p²), a conv layer on the previous decoder state;
2. read       r_t = read(x, x − σ(c_{t-1}))  (the image and its current error, downsampled);
3. encoder    (h^enc_t, c^enc_t) = ConvLSTM_enc([r_t, h^dec_{t-1}, e], h^enc_{t-1}, c^enc_{t-1});
4. posterior  q(z_t | h^enc_t) = N(μ_q, σ_q²), a conv layer on the encoder state;
5. decoder    (h^dec_t, c^dec_t) = ConvLSTM_dec([z_t, e], h^dec_{t-1}, c^dec_{t-1});
6. write      c_t = c_{t-1} + write(h^dec_t)   (transposed convs back to image resolution),

and g(z) = σ(c_T), starting from a learned initial canvas c_0 (one logit per pixel). ``e`` is
the embedding of the context images (conditional model only: a small conv net run once, fed to
both LSTMs at every step, as in GQN's generator). Both conv-LSTMs compute their gates from the
input *and* the hidden state (one convolution over the concatenation [input, h], i.e.
W_x * x + W_h * h) — the widely copied PyTorch port of GQN feeds only the input to the gates,
which removes the recurrence from the gates.

Initialisation (why ConvDRAW trains at the CPU learning rate): c_0 is set, on the first
training batch, to the logit of the batch's mean intensity per channel (a data-dependent
initialisation in the spirit of weight normalisation and Glow's ActNorm,
:meth:`ConvDRAW.init_canvas_`), and the last write layer starts small, so the untrained decoder
outputs the data's mean grey level. Started instead at σ(c_0 = 0) = 0.5 on MNIST (mean 0.13),
Adam at lr 1e-3 drives the whole canvas down by ~0.5–1 logit per step (every write weight moves
the same way), momentum carries it far past logit(0.13) into the flat tail of the sigmoid
(c ≈ −10…−20, σ' < 1e-4) before the vanished gradient can stop it, and the model sits there
outputting black (per-pixel MSE 0.11, worse than the mean image's 0.067) for hundreds of steps.
A conv decoder without c_0 cannot even represent the mean image (it is translation-equivariant);
c_0 gives it that per-pixel bias.

Latents: each z_t is a ``[z_channels, H/2^n_down, W/2^n_down]`` feature map; the interface's
flat ``z`` is ``[B, T · z_channels · h · w]``, step-major (:meth:`ConvDRAW.flatten_latents`).
The prior is learned, so ``log_prior`` in :class:`~geco_core.models.base.VAEOutput` is
log p(z) = Σ_t log p(z_t | z_<t), and the KL is Σ_t KL[q_t ‖ p_t] in closed form per step
along the sampled trajectory (an unbiased estimate of KL[q(z|x) ‖ p(z)]).

References:
    Gregor, Besse, Rezende, Danihelka & Wierstra, "Towards conceptual compression" (NIPS 2016),
    ref. [5] of the paper.
    Eslami et al., "Neural scene representation and rendering" (Science 2018), ref. [16].
    Shi et al., "Convolutional LSTM network" (NIPS 2015), for the conv-LSTM cell.
    Rezende & Viola, "Taming VAEs" (2018), §4.1 and Figs. 3–6.

Example:
    >>> import torch
    >>> m = ConvDRAW((1, 28, 28), steps=2, hidden=8, z_channels=1, read_channels=4)
    >>> out = m(torch.rand(3, 1, 28, 28))
    >>> out.x_mean.shape, out.z.shape, m.latent_dim
    (torch.Size([3, 1, 28, 28]), torch.Size([3, 98]), 98)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from geco_base.checks import check_choice, check_int
from geco_core.models.base import LatentVariableModel, VAEOutput
from geco_core.models.layers import (
    check_context_shape,
    check_inputs,
    check_latents,
    check_shape,
    diag_normal_kl,
    diag_normal_log_prob,
    downsampled_hw,
    to_float32,
)

#: Scale of the last write layer's initial weights (its bias starts at 0): the T writes then add
#: only ~±0.05 to c_0 at initialisation, so the untrained decoder mean is σ(c_0).
WRITE_INIT_GAIN = 0.1

#: c_0 = logit(mean intensity clamped to this range), so that no initial logit sits in the flat
#: tail of the sigmoid (|logit| ≤ 3.9) even for an all-black or all-white first batch.
CANVAS_INIT_CLAMP = (0.02, 0.98)

#: The two arrangements of the same recurrence (:class:`ConvDRAW`'s ``implementation``).
IMPLEMENTATIONS = ("fused", "reference")


class ConvLSTMCell(nn.Module):
    """Conv-LSTM cell (Shi et al. 2015) whose gates see the input *and* the hidden state.

    [i, f, o, g] = conv([input, h]) (one conv over the channel concatenation, equal to
    W_x * input + W_h * h + b); c' = σ(f) c + σ(i) tanh(g); h' = σ(o) tanh(c').

    Example:
        >>> cell = ConvLSTMCell(3, 4)
        >>> x, h, c = torch.randn(2, 3, 5, 5), torch.zeros(2, 4, 5, 5), torch.zeros(2, 4, 5, 5)
        >>> h2, c2 = cell(x, (h, c)); h2.shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(
        self, in_channels: int, hidden: int, kernel: int = 3, forget_bias: float = 1.0
    ) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        with torch.no_grad():
            self.conv.bias[hidden : 2 * hidden].add_(forget_bias)

    def gates(self, inp: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Input, forget, output gates (sigmoid) and candidate (tanh), from [input, h]."""
        i, f, o, g = to_float32(self.conv(torch.cat([inp, h], dim=1))).chunk(4, dim=1)
        return torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)

    def forward(self, inp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        return self.update(to_float32(self.conv(torch.cat([inp, h], dim=1))), c)

    @staticmethod
    def update(pre: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """(h', c') from the gate pre-activations ``pre`` = [i, f, o, g] and the cell state
        ``c``: c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c'); ``c`` None is the zero state
        (c' = σ(i) tanh(g), what :meth:`ConvDRAW.unroll`'s first step uses)."""
        i, f, o, g = pre.chunk(4, dim=1)
        i, o, g = torch.sigmoid(i), torch.sigmoid(o), torch.tanh(g)
        c = i * g if c is None else torch.sigmoid(f) * c + i * g
        return o * torch.tanh(c), c


def _reparameterise(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """z = μ + σ ε, ε ~ N(0, I) drawn in NCHW order whatever μ's memory layout (``randn_like``
    would follow a channels_last μ and draw other numbers), so both unrolls draw the same z."""
    return mu + torch.exp(log_sigma) * torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)


def _gemm_ok(layer: nn.Module) -> bool:
    """Whether ``layer`` is a plain (transposed) conv the matmul helpers below compute exactly:
    no groups, dilation or output padding (what :func:`_down_stack` / :func:`_up_stack`
    build)."""
    if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return False
    plain = layer.groups == 1 and tuple(layer.dilation) == (1, 1)
    plain = plain and not isinstance(layer.padding, str)
    return plain and tuple(layer.output_padding) == (0, 0)


def _conv2d_gemm(x: Tensor, weight: Tensor, stride, padding) -> Tensor:
    """``F.conv2d(x, weight, None, stride, padding)`` as im2col (``F.unfold``) and one matmul;
    the result is NCHW in channels_last memory. Used for the read's one-channel image conv on
    CPU, where oneDNN's strided conv with a single input channel (and its backward, a
    single-output-channel transposed conv) is slower than the matmul (measured)."""
    b, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # [B, C·kh·kw, L]
    y = cols.transpose(1, 2) @ weight.reshape(c_out, -1).t()  # [B, L, C_out]
    return y.view(b, ho, wo, c_out).permute(0, 3, 1, 2)


def _conv_transpose2d_gemm(x: Tensor, layer: nn.ConvTranspose2d, out_hw: tuple[int, int]) -> Tensor:
    """``layer(x)`` for a transposed conv as one matmul and col2im (``F.fold``). Used for the
    write's last layer on CPU when it has one output channel, where it is faster than oneDNN's
    transposed conv (measured); ``x`` in channels_last memory."""
    b, c_in, h, w = x.shape
    weight = layer.weight  # [C_in, C_out, kh, kw]
    cols = x.permute(0, 2, 3, 1).reshape(b, h * w, c_in) @ weight.reshape(c_in, -1)
    y = F.fold(  # in float32 under autocast: fold sums the overlapping taps
        to_float32(cols).transpose(1, 2), out_hw, weight.shape[2:], padding=layer.padding,
        stride=layer.stride,
    )
    return y + layer.bias.view(1, -1, 1, 1)


def _down_stack(c_in: int, c_out: int, n_down: int) -> nn.Sequential:
    """n_down stride-2 4×4 convs (ELU after each): image → latent resolution."""
    layers: list[nn.Module] = []
    for _ in range(n_down):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ELU()]
        c_in = c_out
    return nn.Sequential(*layers) if layers else nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.ELU())


def _up_stack(c_in: int, c_mid: int, c_out: int, n_up: int) -> nn.Sequential:
    """n_up transposed stride-2 4×4 convs (ELU between): latent → image resolution."""
    if n_up == 0:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1))
    layers: list[nn.Module] = []
    for k in range(n_up):
        last = k == n_up - 1
        layers.append(nn.ConvTranspose2d(c_in, c_out if last else c_mid, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ELU())
        c_in = c_mid
    return nn.Sequential(*layers)


def _forget_canvas0_ready(module: nn.Module, incompatible_keys) -> None:
    """load_state_dict post-hook: re-read the loaded ``canvas0_initialised`` flag."""
    module._canvas0_ready = False


@dataclass
class DrawTrace:
    """Everything one unroll of ConvDRAW produces (per step t = 0..T-1).

    Attributes:
        canvas: c_T, pre-sigmoid, ``[B, C, H, W]``.
        z: list of T latent maps ``[B, Z, h, w]``.
        q: list of (μ_q, log σ_q) per step (empty for a decoder-only run).
        p: list of (μ_p, log σ_p) per step (the learned prior).
    """

    canvas: Tensor
    z: list[Tensor]
    q: list[tuple[Tensor, Tensor]]
    p: list[tuple[Tensor, Tensor]]

    def kl_steps(self) -> Tensor:
        """KL[q_t ‖ p_t] per step in closed form, ``[B, T]`` (needs an encoder run)."""
        return torch.stack(
            [diag_normal_kl(mq, lq, mp, lp, dims=3) for (mq, lq), (mp, lp) in zip(self.q, self.p)],
            dim=1,
        )

    def log_q(self) -> Tensor:
        """Σ_t log q(z_t | h^enc_t), ``[B]``."""
        return sum(diag_normal_log_prob(z, m, s, dims=3) for z, (m, s) in zip(self.z, self.q))

    def log_p(self) -> Tensor:
        """Σ_t log p(z_t | h^dec_{t-1}), ``[B]``."""
        return sum(diag_normal_log_prob(z, m, s, dims=3) for z, (m, s) in zip(self.z, self.p))


class ConvDRAW(LatentVariableModel):
    """ConvDRAW with conv-LSTM encoder/decoder, learned prior and additive canvas.

    Args:
        image_shape: (C, H, W) of x; H and W divisible by ``2 ** n_down``.
        context_shape: (C_ctx, H, W) of the context images for the conditional model, else None
            (H, W must equal the image's).
        steps: number of DRAW steps T.
        hidden: channels of both conv-LSTM states.
        z_channels: channels of each step's latent map.
        read_channels: channels of the read network's output r_t.
        n_down: stride-2 downsamplings from image to latent/LSTM resolution.
        kernel: conv-LSTM / prior / posterior kernel size (odd).
        context_channels: channels of the context embedding e (conditional only).
        canvas_init: initial decoder mean in (0, 1): c_0 = logit(canvas_init) at construction.
            ``None`` (default): data-dependent, c_0 = logit(mean intensity per channel of the
            first batch the model sees in training mode, :meth:`init_canvas_`).
        implementation: ``"fused"`` (default) runs :meth:`unroll`, the recurrence arranged for
            speed; ``"reference"`` runs :meth:`unroll_reference`, the same equations written
            out step by step (the baseline of ``benchmarks/bench_speed.py``). Both compute the
            same function from the same parameters (equal within float rounding, tested); the
            choice is not part of the state dict (given in ``TrainConfig.model_kwargs`` it is
            part of a run's store key, like every model argument).

    Example:
        >>> m = ConvDRAW((1, 28, 28), context_shape=(2, 28, 28), steps=2, hidden=8)
        >>> m.sample(4, context=torch.rand(4, 2, 28, 28)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        context_shape: Sequence[int] | None = None,
        steps: int = 4,
        hidden: int = 32,
        z_channels: int = 2,
        read_channels: int = 16,
        n_down: int = 2,
        kernel: int = 3,
        context_channels: int = 16,
        canvas_init: float | None = None,
        implementation: str = "fused",
    ) -> None:
        super().__init__()
        self.implementation = check_choice(implementation, "implementation", IMPLEMENTATIONS)
        self.image_shape = check_shape("image_shape", image_shape)
        self.context_shape = check_context_shape(self.image_shape, context_shape)
        for name, v in (("steps", steps), ("hidden", hidden), ("z_channels", z_channels)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if n_down < 0:
            raise ValueError(f"n_down must be >= 0, got {n_down}")
        self.conditional = self.context_shape is not None
        c, h, w = self.image_shape
        self.latent_hw = downsampled_hw((h, w), n_down)
        self.steps, self.hidden, self.z_channels = int(steps), int(hidden), int(z_channels)
        self.step_dim = self.z_channels * self.latent_hw[0] * self.latent_hw[1]
        self.latent_dim = self.steps * self.step_dim
        c_ctx = 0
        if self.conditional:
            c_ctx = context_channels
            self.context_net = _down_stack(self.context_shape[0], context_channels, n_down)
        pad = kernel // 2
        self.read_channels, self.context_channels = int(read_channels), c_ctx
        self.read = _down_stack(2 * c, read_channels, n_down)
        self.enc_cell = ConvLSTMCell(read_channels + hidden + c_ctx, hidden, kernel)
        self.dec_cell = ConvLSTMCell(z_channels + c_ctx, hidden, kernel)
        self.posterior_net = nn.Conv2d(hidden, 2 * z_channels, kernel, padding=pad)
        self.prior_net = nn.Conv2d(hidden, 2 * z_channels, kernel, padding=pad)
        self.write = _up_stack(hidden, hidden, c, n_down)
        with torch.no_grad():
            self.write[-1].weight.mul_(WRITE_INIT_GAIN)
            self.write[-1].bias.zero_()
        # c_0: the learned initial canvas (pre-sigmoid), one logit per pixel.
        self.canvas0 = nn.Parameter(torch.zeros(self.image_shape))
        self.register_buffer("canvas0_initialised", torch.zeros(()))
        # Host-side copy of the flag, so that a training step reads the buffer (a device sync on
        # CUDA) only until it is set; loading a state dict makes unroll read it again.
        self._canvas0_ready = False
        self.register_load_state_dict_post_hook(_forget_canvas0_ready)
        if canvas_init is not None:
            if not (isinstance(canvas_init, (int, float)) and 0.0 < canvas_init < 1.0):
                raise ValueError(f"canvas_init must be in (0, 1) or None, got {canvas_init!r}")
            with torch.no_grad():
                self.canvas0.fill_(torch.logit(torch.tensor(float(canvas_init))))
            self.canvas0_initialised.fill_(1.0)
        if self.implementation == "fused":
            self.to(memory_format=torch.channels_last)  # the layout the fused unroll runs in

    @torch.no_grad()
    def init_canvas_(self, x: Tensor) -> None:
        """Data-dependent initialisation: c_0 ← logit(mean intensity of ``x`` per channel).

        The mean is clamped to :data:`CANVAS_INIT_CLAMP` and, in a distributed run, averaged
        over ranks (so every rank starts from the same c_0). :meth:`unroll` calls this once, on
        the first batch it sees in training mode, unless ``canvas_init`` was given; the flag is
        stored in the state dict, so a loaded model is never re-initialised.

        Example:
            >>> m = ConvDRAW((1, 28, 28), steps=2, hidden=8)
            >>> m.init_canvas_(torch.full((4, 1, 28, 28), 0.5)); m.canvas0.abs().max().item()
            0.0
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.image_shape))}], "
                f"got {list(x.shape)}"
            )
        mean = x.detach().to(self.canvas0.dtype).mean(dim=(0, 2, 3))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(mean, op=dist.ReduceOp.SUM)
            mean = mean / dist.get_world_size()
        logit = torch.logit(mean.clamp(*CANVAS_INIT_CLAMP))
        self.canvas0.copy_(logit.view(-1, 1, 1).expand_as(self.canvas0))
        self.canvas0_initialised.fill_(1.0)
        self._canvas0_ready = True

    # -- latent layout ---------------------------------------------------------------------
    def prepare(self, x: Tensor, context: Tensor | None = None) -> None:
        """Initialise c_0 from ``x`` (:meth:`init_canvas_`) unless it is initialised already:
        what the first training forward would do, done before it, so that a compiled forward
        never sees the flag change (no recompilation)."""
        if not self._canvas0_ready:
            self._canvas0_ready = bool(self.canvas0_initialised)
            if not self._canvas0_ready:
                self.init_canvas_(x)

    def flatten_latents(self, zs: Sequence[Tensor]) -> Tensor:
        """T maps ``[B, Z, h, w]`` → flat ``[B, latent_dim]`` (step-major)."""
        return torch.stack(list(zs), dim=1).flatten(1)

    def unflatten_latents(self, z: Tensor) -> list[Tensor]:
        """Flat ``[B, latent_dim]`` → T maps ``[B, Z, h, w]``."""
        check_latents(self, z, self.latent_dim)
        return list(z.view(z.shape[0], self.steps, self.z_channels, *self.latent_hw).unbind(1))

    # -- the recurrence --------------------------------------------------------------------
    def _begin(
        self, x: Tensor | None, context: Tensor | None, z: Tensor | None, n: int | None
    ) -> tuple[list[Tensor] | None, Tensor, int, Tensor | None]:
        """Checks and setup shared by both unrolls: (given z_t's, a reference tensor for new
        states, batch size, context embedding e)."""
        if z is not None:
            check_latents(self, z, self.latent_dim)
        elif n is not None:
            n = check_int(n, "n")
        check_inputs(self, x, context, batch=z.shape[0] if z is not None else n)
        if not self._canvas0_ready:
            self._canvas0_ready = bool(self.canvas0_initialised)
            if not self._canvas0_ready and x is not None and self.training:
                self.init_canvas_(x)
        zs_given = self.unflatten_latents(z) if z is not None else None
        if x is not None:
            ref, batch = x, x.shape[0]
        elif zs_given is not None:
            ref, batch = z, z.shape[0]
        elif n is not None:
            ref, batch = next(self.parameters()), int(n)
        else:
            raise ValueError("unroll needs x, z or n")
        if zs_given is not None and z.shape[0] != batch:
            raise ValueError(f"z has {z.shape[0]} rows, expected {batch}")
        e = self.context_net(context) if self.conditional else None
        return zs_given, ref, batch, e

    def unroll(
        self,
        x: Tensor | None = None,
        context: Tensor | None = None,
        z: Tensor | None = None,
        n: int | None = None,
    ) -> DrawTrace:
        """Run the T steps.

        - ``x`` given, ``z`` None: encoder + decoder, z_t ~ q (reparameterised) — training.
        - ``x`` and ``z`` given: the encoder reads x while the decoder is fed the given z's
          (gives log q(z|x) for matched pairs).
        - ``x`` None: decoder only; z_t = given, or ~ p(z_t | h^dec_{t-1}) for ``n`` samples.

        The ``"fused"`` implementation (default) computes the equations of
        :meth:`unroll_reference` arranged for speed, without changing the function:

        - step 1 starts from zero states (h^enc_0 = c^enc_0 = h^dec_0 = c^dec_0 = 0), so its
          gates convolve only the inputs that are not zero (r_1, z_1, e), its prior is the
          prior conv's bias, and c_1 = σ(i) tanh(g) — the reference convolves the zeros;
        - what does not change between steps is convolved once per unroll: the image's half of
          the read's first conv (``[x, x − σ(c)]`` is split by linearity) and, for the
          conditional model, the embedding's share of both gate convolutions;
        - the weights (set in ``__init__``) and the images are kept in channels_last (NHWC)
          memory layout, which oneDNN's CPU convolutions run faster (measured on CPU only);
        - for one-channel images on CPU, the read's image conv and the write's last layer run
          as matmuls with im2col / col2im (``F.unfold`` / ``F.fold``), faster there than
          oneDNN's single-channel strided and transposed convs.

        ``benchmarks/bench_speed.py`` measures the two implementations side by side.
        """
        if self.implementation == "reference":
            return self.unroll_reference(x, context, z, n)
        zs_given, ref, batch, e = self._begin(x, context, z, n)
        fmt = torch.channels_last  # the layout of the weights (set in __init__)
        x = x.contiguous(memory_format=fmt) if x is not None else None
        e = e.contiguous(memory_format=fmt) if e is not None else None
        H, nr, ne, nz = self.hidden, self.read_channels, self.context_channels, self.z_channels
        enc, dec = self.enc_cell.conv, self.dec_cell.conv
        # enc_cell input channels: [r, h_dec, e, h_enc]; dec_cell: [z, e, h_dec]
        w_enc, w_dec = enc.weight, dec.weight
        if e is not None:
            enc_const = to_float32(
                F.conv2d(e, w_enc[:, nr + H : nr + H + ne], enc.bias, padding=enc.padding)
            )
            dec_const = to_float32(
                F.conv2d(e, w_dec[:, nz : nz + ne], dec.bias, padding=dec.padding)
            )
            w_enc = torch.cat([w_enc[:, : nr + H], w_enc[:, nr + H + ne :]], dim=1)
            w_dec = torch.cat([w_dec[:, :nz], w_dec[:, nz + ne :]], dim=1)
        else:
            enc_const = dec_const = None

        def gates(inp: Tensor, cell: nn.Conv2d, weight: Tensor, const: Tensor | None) -> Tensor:
            if const is None:
                return to_float32(F.conv2d(inp, weight, cell.bias, padding=cell.padding))
            return to_float32(F.conv2d(inp, weight, None, padding=cell.padding)) + const

        read0, c = self.read[0], self.image_shape[0]
        # one-channel images on CPU: the image-resolution convs as matmuls (see the helpers)
        gemm = c == 1 and ref.device.type == "cpu" and _gemm_ok(read0)
        last = self.write[-1]
        gemm_write = gemm and isinstance(last, nn.ConvTranspose2d) and _gemm_ok(last)
        if x is not None:
            read_x = F.conv2d(x, read0.weight[:, :c], read0.bias, read0.stride, read0.padding)
        canvas = self.canvas0.expand(batch, *self.image_shape)
        h_enc = c_enc = h_dec = c_dec = None
        zs: list[Tensor] = []
        qs: list[tuple[Tensor, Tensor]] = []
        ps: list[tuple[Tensor, Tensor]] = []
        for t in range(self.steps):
            if h_dec is None and self.steps > 1:  # the conv of zeros is its bias
                prior = self.prior_net.bias.view(1, -1, 1, 1).expand(batch, -1, *self.latent_hw)
            elif h_dec is None:  # T = 1: convolve the zeros, so that the weight gets its
                # (zero) gradient like every parameter (DistributedDataParallel needs it)
                prior = self.prior_net(ref.new_zeros(batch, H, *self.latent_hw))
            else:
                prior = self.prior_net(h_dec)
            mu_p, log_sigma_p = to_float32(prior).chunk(2, dim=1)
            ps.append((mu_p, log_sigma_p))
            if x is not None:
                err = x - torch.sigmoid(canvas)
                if gemm:
                    a = read_x + _conv2d_gemm(err, read0.weight[:, c:], read0.stride, read0.padding)
                else:
                    a = read_x + F.conv2d(
                        err, read0.weight[:, c:], None, read0.stride, read0.padding
                    )
                r = self.read[1:](a)
                if h_dec is None:
                    pre = gates(r, enc, w_enc[:, :nr], enc_const)
                else:
                    pre = gates(torch.cat([r, h_dec, h_enc], dim=1), enc, w_enc, enc_const)
                h_enc, c_enc = ConvLSTMCell.update(pre, c_enc)
                mu, log_sigma = to_float32(self.posterior_net(h_enc)).chunk(2, dim=1)
                qs.append((mu, log_sigma))
            else:
                mu, log_sigma = mu_p, log_sigma_p
            z_t = zs_given[t] if zs_given is not None else _reparameterise(mu, log_sigma)
            zs.append(z_t)
            if h_dec is None:
                pre = gates(z_t, dec, w_dec[:, :nz], dec_const)
            else:
                pre = gates(torch.cat([z_t, h_dec], dim=1), dec, w_dec, dec_const)
            h_dec, c_dec = ConvLSTMCell.update(pre, c_dec)
            if gemm_write:
                out_hw = self.image_shape[1:]
                write = _conv_transpose2d_gemm(self.write[:-1](h_dec), last, out_hw)
            else:
                write = self.write(h_dec)
            canvas = canvas + to_float32(write)
        return DrawTrace(canvas, zs, qs, ps)

    def unroll_reference(
        self,
        x: Tensor | None = None,
        context: Tensor | None = None,
        z: Tensor | None = None,
        n: int | None = None,
    ) -> DrawTrace:
        """:meth:`unroll` written as the equations of the module docstring read, one step at a
        time from zero states: the straightforward implementation the fused one is tested and
        benchmarked against (``implementation="reference"`` makes the model use it)."""
        zs_given, ref, batch, e = self._begin(x, context, z, n)
        state_shape = (batch, self.hidden, *self.latent_hw)
        h_enc = c_enc = h_dec = c_dec = ref.new_zeros(state_shape)
        canvas = self.canvas0.expand(batch, *self.image_shape)
        zs: list[Tensor] = []
        qs: list[tuple[Tensor, Tensor]] = []
        ps: list[tuple[Tensor, Tensor]] = []
        for t in range(self.steps):
            mu_p, log_sigma_p = to_float32(self.prior_net(h_dec)).chunk(2, dim=1)
            ps.append((mu_p, log_sigma_p))
            if x is not None:
                r = self.read(torch.cat([x, x - torch.sigmoid(canvas)], dim=1))
                enc_in = [r, h_dec] + ([e] if e is not None else [])
                h_enc, c_enc = self.enc_cell(torch.cat(enc_in, dim=1), (h_enc, c_enc))
                mu, log_sigma = to_float32(self.posterior_net(h_enc)).chunk(2, dim=1)
                qs.append((mu, log_sigma))
            else:
                mu, log_sigma = mu_p, log_sigma_p
            z_t = zs_given[t] if zs_given is not None else _reparameterise(mu, log_sigma)
            zs.append(z_t)
            dec_in = torch.cat([z_t, e], dim=1) if e is not None else z_t
            h_dec, c_dec = self.dec_cell(dec_in, (h_dec, c_dec))
            canvas = canvas + to_float32(self.write(h_dec))
        return DrawTrace(canvas, zs, qs, ps)

    # -- LatentVariableModel interface -----------------------------------------------------
    def forward(self, x: Tensor, context: Tensor | None = None) -> VAEOutput:
        tr = self.unroll(x, context)
        return VAEOutput(
            x_mean=torch.sigmoid(tr.canvas),
            z=self.flatten_latents(tr.z),
            kl=tr.kl_steps().sum(dim=1),
            log_q=tr.log_q(),
            log_prior=tr.log_p(),
        )

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.unroll(None, context, z=z).canvas)

    def log_q(self, z: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.unroll(x, context, z=z).log_q()

    def log_prior(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(z) = Σ_t log p(z_t | h^dec_{t-1}) under the learned prior, ``[B]``."""
        return self.unroll(None, context, z=z).log_p()

    def sample_posterior(
        self, x: Tensor, n: int = 1, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        n = check_int(n, "n")
        check_inputs(self, x, context)
        batch = x.shape[0]
        xr = x.repeat(n, 1, 1, 1)
        cr = context.repeat(n, 1, 1, 1) if context is not None else None
        tr = self.unroll(xr, cr)
        z = self.flatten_latents(tr.z).view(n, batch, self.latent_dim)
        return z, tr.log_q().view(n, batch)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        n = check_int(n, "n")
        return torch.sigmoid(self.unroll(None, context, n=n).canvas)
