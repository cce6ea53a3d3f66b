"""The shared conv blocks of :mod:`geco_core.models.layers`."""

from __future__ import annotations

import copy

import pytest
import torch

from geco_core.models.layers import ConvDecoder


@pytest.mark.parametrize("out_channels", [1, 3])
def test_channels_last_decoder_is_the_nchw_decoder(out_channels):
    torch.manual_seed(0)
    dec = ConvDecoder(6, out_channels, (28, 28), channels=(16, 32))
    convs = [m for m in dec.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    nchw = copy.deepcopy(dec).to(memory_format=torch.contiguous_format)
    assert not any(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in nchw.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    z = torch.randn(5, 6)
    y, y_ref = dec(z), nchw(z)
    assert y.is_contiguous()  # callers may .view() the decoder mean
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    for (name, p), q in zip(dec.named_parameters(), nchw.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
        # gradients in the weights' layout (what the fused Adam needs); size-1 dims aside
        dense = [i for i, n in enumerate(p.shape) if n > 1]
        assert [p.grad.stride(i) for i in dense] == [p.stride(i) for i in dense]
