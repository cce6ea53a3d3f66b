"""geco_base — the ground floor under the library's two packages: the one argument-check module
(:mod:`geco_base.checks`) and the one atomic file writer (:mod:`geco_base.io`).

``data_builders`` (the data) and ``geco_core`` (the paper) both build on it, and it imports
neither, so the data code needs nothing of the paper's and the paper's parts need no data code
(``tests/geco_core/test_layout.py`` holds the rules).
"""
