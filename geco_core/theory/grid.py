"""The discretised latent space: Prop. 4's basis of tile indicators and Appendix A's start.

The latent square is cut into a ``size × size`` grid of tiles φ_a; the prior becomes the tile
masses π_a = E_π[φ_a(z)], the encoder a table of tile masses and the decoder one reconstruction
vector ψ_a per tile. :func:`init_reconstructions` is Appendix A's initial ψ.

References:
    Rezende & Viola (2018), "Taming VAEs", arXiv:1810.00597: Prop. 4 (the basis φ_a),
    Appendix A (32×32 tiles on [-1/2, 1/2]², uniform prior, ψ⁰ = centres + U[-0.1, 0.1]).

Example:
    >>> grid = latent_grid(4)
    >>> grid.n_tiles, float(grid.prior.sum()), grid.side
    (16, 1.0, 0.25)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from geco_base.checks import check_choice, check_int, check_nonnegative, check_positive

__all__ = ["LatentGrid", "init_reconstructions", "latent_grid"]


@dataclass(frozen=True)
class LatentGrid:
    """A ``size × size`` grid of square tiles φ_a over ``[-half_width, half_width]²``.

    Attributes:
        size: tiles per side; ``n_tiles = size²`` (Appendix A: 32, i.e. 1,024 tiles).
        half_width: the grid covers ``[-half_width, half_width]²`` (Appendix A: 1/2).
        centres: ``[n_tiles, 2]`` tile centres, row-major (x varies fastest).
        prior: ``[n_tiles]`` prior masses π_a = E_π[φ_a(z)], summing to 1.
        side: the tile side length h.
    """

    size: int
    half_width: float
    centres: np.ndarray
    prior: np.ndarray
    side: float

    @property
    def n_tiles(self) -> int:
        return self.size * self.size

    @property
    def log_prior(self) -> np.ndarray:
        return np.log(self.prior)


def latent_grid(size: int = 32, half_width: float = 0.5, prior: str = "uniform") -> LatentGrid:
    """The tiled latent space of Prop. 4 and Appendix A.

    Appendix A uses ``size=32`` on ``[-1/2, 1/2]²`` with the uniform prior π(z) = 1, so every
    tile has mass π_a = 1/1024. ``prior="normal"`` discretises the paper's default prior
    N(0, I) (§3) instead: π_a is the Gaussian mass of tile a, renormalised over the grid (use a
    ``half_width`` of about 3 so that little mass is cut off).

    Args:
        size: tiles per side.
        half_width: the grid covers ``[-half_width, half_width]²``.
        prior: ``"uniform"`` or ``"normal"``.

    Returns:
        A :class:`LatentGrid`.

    Raises:
        ValueError: ``size < 1``, ``half_width <= 0`` or an unknown ``prior``.
        TypeError: ``size`` is not an int or ``half_width`` not a number.

    Example:
        >>> g = latent_grid(32)
        >>> g.n_tiles, float(g.prior[0]) == 1 / 1024, g.centres[0].tolist()
        (1024, True, [-0.484375, -0.484375])
    """
    size = check_int(size, "size")
    half_width = check_positive(half_width, "half_width")
    prior = check_choice(prior, "prior", ("uniform", "normal"))
    side = 2 * half_width / size
    ticks = -half_width + side * (np.arange(size) + 0.5)
    gx, gy = np.meshgrid(ticks, ticks, indexing="xy")
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if prior == "uniform":
        masses = np.full(size * size, 1.0 / (size * size))
    else:  # "normal"
        edges = -half_width + side * np.arange(size + 1)
        per_axis = np.diff(scipy.stats.norm.cdf(edges))
        masses = np.outer(per_axis, per_axis).ravel()  # row = y, column = x: row-major like centres
        masses = masses / masses.sum()
    return LatentGrid(size, half_width, centres, masses, side)


def init_reconstructions(
    grid: LatentGrid, noise: float = 0.1, seed: int = 0, dim: int = 2
) -> np.ndarray:
    """Initial reconstruction vectors ψ⁰ of Appendix A: tile centres plus U[-noise, noise].

    Appendix A initialises "the matrix ψ at the center-points of the grid tiles with small
    uniform noise in [-0.1, 0.1]". The tile centres are latent points, and ψ_a lives in data
    space; with 2-D data in the same square [-1/2, 1/2]² (as all of
    :mod:`data_builders.mixtures`) we read this as the identity embedding ψ⁰_a = c_a + ε_a,
    ε_a ~ U[-noise, noise]², i.e. the reconstructions start on the uniform 2-D grid that Fig. 7
    describes ("initial conditions on an uniform 2D grid").

    Args:
        grid: the latent grid.
        noise: half-width of the uniform noise (Appendix A: 0.1).
        seed: seed of ``numpy.random.default_rng``.
        dim: data dimension; must be 2 (the embedding is the identity).

    Returns:
        ``[n_tiles, 2]`` float64 array.

    Example:
        >>> psi = init_reconstructions(latent_grid(4), noise=0.0)
        >>> psi[:2].tolist()
        [[-0.375, -0.375], [-0.125, -0.375]]
    """
    if dim != 2:
        raise ValueError(f"dim must be 2 (tile centres are 2-D latent points), got {dim}")
    noise = check_nonnegative(noise, "noise")
    rng = np.random.default_rng(seed)
    return grid.centres + rng.uniform(-noise, noise, size=grid.centres.shape)
