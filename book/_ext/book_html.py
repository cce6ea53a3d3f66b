"""Local Sphinx extension of the book (loaded through ``sphinx.local_extensions`` in _config.yml).

Keeps the rendered HTML self-contained, so it reads the same offline (the headless-browser check
of ``ci/browser_check.py`` runs without a network) as on a web server:

- the "Open in Colab" badge of the notebooks points to Colab's remote SVG (right for GitHub and
  Colab, which show the ``.ipynb``); in the HTML it is swapped for ``_static/colab-badge.svg``;
- MathJax is served from the build (``_static/mathjax``) when the ``sphinx-mathjax-offline``
  package is installed, and from its CDN otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util.osutil import relative_uri

REMOTE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "_static/colab-badge.svg"
OFFLINE_MATHJAX = "sphinx-mathjax-offline"  # the package's (hyphenated) module name


def _local_badge(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "html":
        return
    local = relative_uri(app.builder.get_target_uri(docname), LOCAL_BADGE)
    for image in doctree.findall(nodes.image):
        if image.get("uri") == REMOTE_BADGE:
            image["uri"] = local


def _add_static_path(app: Sphinx, config: Config) -> None:
    static = str(Path(__file__).resolve().parents[1] / "_static")
    if static not in config.html_static_path:
        config.html_static_path.append(static)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _add_static_path)
    app.connect("doctree-resolved", _local_badge)
    if importlib.util.find_spec(OFFLINE_MATHJAX) is not None:
        app.setup_extension(OFFLINE_MATHJAX)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
