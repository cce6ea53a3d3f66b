"""Training the CLA/FRE classifier (geco_core.train.classifier): augmentation and the CLI.
The cached weights and the network are tested in tests/geco_core/models/test_classifier.py."""

import torch

from geco_core.train.classifier import main, random_shift


def test_random_shift_is_a_translation():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(50, 1, 28, 28)
    x[:, 0, 10:14, 12:15] = torch.rand(50, 4, 3, generator=g)
    y = random_shift(x, 2, g)
    shifts = set()
    for b in range(50):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y[b], torch.roll(x[b], (dy, dx), dims=(1, 2)))
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # many different offsets are drawn
    assert torch.equal(random_shift(x, 0, g), x)


def test_cli_without_train_flag_prints_help(capsys):
    assert main([]) == 2
    assert "--train" in capsys.readouterr().out
