"""geco_book — the book's experiment code, kept apart from the paper library ``geco_core``.

The paper library never imports this package. It holds what only the book needs:

- :mod:`geco_book.profiles` — the one list of chapter profiles (``smoke``, ``cpu``, ``gpu``);
- :mod:`geco_book.policy` — the cpu-scale training policy (learning rates, GECO's α / clamp);
- :mod:`geco_book.paths` — where caches and checkpoints live (independent of the working dir);
- :mod:`geco_book.provenance` — git commit, package versions, machine;
- :mod:`geco_book.store` — the run store: ``get_or_train(config)`` keyed by config + engine
  version; :mod:`geco_book.sweep` — trains a list of configs in worker processes;
- :mod:`geco_book.figures` — the chapters' figures; :mod:`geco_book.chapters` — one thin
  module per chapter (settings, runs, tables).
"""

__all__: list[str] = []
