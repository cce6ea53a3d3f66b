"""``python -m geco_core.train`` (and ``torchrun ... -m geco_core.train``): see :mod:`.cli`."""

from geco_core.train.cli import main

if __name__ == "__main__":
    main()
