"""Tests for data_builders.mixtures (the 2-D data of Figs. 1, 2 and 7)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import data_builders.mixtures as mixtures
from data_builders.mixtures import (
    FIG2_CENTRES,
    fig2_blobs,
    gaussian_blobs,
    mixture_of_circles,
    mixture_of_lines,
    tiny_glyphs,
    two_blobs,
)

BUILDERS = [
    lambda seed: gaussian_blobs([[0.0, 0.0], [0.2, 0.1]], n_per_blob=7, seed=seed),
    lambda seed: fig2_blobs(seed=seed),
    lambda seed: two_blobs(seed=seed),
    lambda seed: mixture_of_lines(seed=seed),
    lambda seed: mixture_of_circles(seed=seed),
]


def test_doctests():
    result = doctest.testmod(mixtures, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("build", BUILDERS)
def test_shapes_types_and_box(build):
    x, labels = build(0)
    assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == 2
    assert labels.dtype == np.int64 and labels.shape == (x.shape[0],)
    # every component is represented and labels are contiguous blocks 0..k-1
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    assert np.all(np.diff(labels) >= 0)
    # the data live in the latent square of Appendix A (noise can poke out by a few σ)
    assert np.all(np.abs(x) < 0.55)


@pytest.mark.parametrize("build", BUILDERS)
def test_seeded(build):
    x1, _ = build(3)
    x2, _ = build(3)
    x3, _ = build(4)
    assert np.array_equal(x1, x2)
    assert not np.allclose(x1, x3)


def test_blob_statistics():
    centres = np.array([[-0.2, 0.1], [0.3, -0.2]])
    x, labels = gaussian_blobs(centres, n_per_blob=4000, std=0.05, seed=1)
    for k in range(2):
        pts = x[labels == k]
        # sample mean within 5 standard errors, sample std within 5%
        assert np.all(np.abs(pts.mean(0) - centres[k]) < 5 * 0.05 / np.sqrt(4000))
        assert np.allclose(pts.std(0), 0.05, rtol=0.05)


def test_fig2_and_two_blobs_layout():
    x, labels = fig2_blobs(n_per_blob=5, std=0.0)
    assert x.shape == (5 * len(FIG2_CENTRES), 2)
    assert np.allclose(x[::5], np.array(FIG2_CENTRES))
    x, _ = two_blobs(n_per_blob=3, separation=0.6, std=0.0)
    assert np.allclose(x, [[-0.3, 0]] * 3 + [[0.3, 0]] * 3)


def test_lines_are_straight_and_long():
    x, labels = mixture_of_lines(n_lines=4, n_per_line=50, noise=0.0, min_length=0.5, seed=2)
    for k in range(4):
        pts = x[labels == k]
        centred = pts - pts.mean(0)
        singular = np.linalg.svd(centred, compute_uv=False)
        assert singular[1] < 1e-10 * singular[0]  # collinear
        direction = np.linalg.svd(centred)[2][0]
        extent = centred @ direction
        assert extent.max() - extent.min() <= np.sqrt(2) * 0.8 + 1e-12
        assert np.all(np.abs(pts) <= 0.4 + 1e-12)
    # with noise the points scatter around the line by about `noise`
    x, labels = mixture_of_lines(n_lines=1, n_per_line=2000, noise=0.02, seed=2)
    centred = x - x.mean(0)
    normal = np.linalg.svd(centred)[2][1]
    assert np.isclose((centred @ normal).std(), 0.02, rtol=0.1)


def test_circles_are_circles_inside_the_box_and_disjoint():
    x, labels = mixture_of_circles(n_circles=4, n_per_circle=40, noise=0.0, seed=5)
    fits = []
    for k in range(4):
        pts = x[labels == k]
        # algebraic circle fit: x² + y² + D x + E y + F = 0
        design = np.column_stack([pts, np.ones(len(pts))])
        rhs = -(pts**2).sum(1)
        (d, e, f), *_ = np.linalg.lstsq(design, rhs, rcond=None)
        centre = np.array([-d / 2, -e / 2])
        radius = np.sqrt(centre @ centre - f)
        assert np.allclose(np.linalg.norm(pts - centre, axis=1), radius, atol=1e-9)
        assert 0.08 - 1e-9 <= radius <= 0.16 + 1e-9
        assert np.all(np.abs(centre) + radius <= 0.5)
        fits.append((centre, radius))
    for a in range(4):
        for b in range(a + 1, 4):
            (ca, ra), (cb, rb) = fits[a], fits[b]
            assert np.linalg.norm(ca - cb) > ra + rb


def test_tiny_glyphs():
    g = tiny_glyphs(8)
    assert g.shape == (5, 8, 8)
    assert set(np.unique(g)) == {0.0, 1.0}
    flat = g.reshape(5, -1)
    # five different images, none empty
    assert len({row.tobytes() for row in flat}) == 5
    assert np.all(flat.sum(1) > 0)
    assert np.array_equal(g[0], g[1].T)  # vertical bar is the transposed horizontal bar
    assert tiny_glyphs(12).shape == (5, 12, 12)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: gaussian_blobs([[0.0, 0.0, 0.0]]), "centres"),
        (lambda: gaussian_blobs([[0.0, 0.0]], n_per_blob=0), "n_per_blob"),
        (lambda: gaussian_blobs([[0.0, 0.0]], std=-1.0), "std"),
        (lambda: two_blobs(separation=-0.1), "separation"),
        (lambda: mixture_of_lines(n_lines=0), "n_lines"),
        (lambda: mixture_of_lines(noise=-0.1), "noise"),
        (lambda: mixture_of_lines(min_length=2.0), "min_length"),
        (lambda: mixture_of_circles(n_circles=7), "n_circles"),
        (lambda: mixture_of_circles(radius_range=(0.2, 0.1)), "radius_range"),
        (lambda: tiny_glyphs(2), "size"),
    ],
)
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
