"""iterate_minibatches: coverage, determinism, resumption, input and output types."""

from __future__ import annotations

import pytest
import torch

from data_builders import ImageDataset, iterate_minibatches
from data_builders.batching import batches_per_epoch, epoch_permutation


def collect(*args, **kw):
    return [b.clone() for b in iterate_minibatches(*args, **kw)]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    x = torch.arange(23)
    batches = collect(x, 5, seed=0, drop_last=False, epochs=3)
    assert len(batches) == 3 * batches_per_epoch(23, 5, drop_last=False) == 15
    epochs = [torch.cat(batches[i * 5 : (i + 1) * 5]) for i in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(23))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    assert [len(b) for b in batches[:5]] == [5, 5, 5, 5, 3]


def test_drop_last_gives_full_batches_and_shuffle_false_keeps_order():
    kept = collect(torch.arange(23), 5, seed=0, epochs=2)
    assert len(kept) == 8 and all(len(b) == 5 for b in kept)
    assert len(set(torch.cat(kept[:4]).tolist())) == 20
    ordered = collect(torch.arange(10), 4, seed=0, shuffle=False, drop_last=False, epochs=1)
    assert [b.tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_same_seed_same_batches_other_seed_different():
    x = torch.randn(100, 3)
    a, b = collect(x, 10, seed=3, epochs=2), collect(x, 10, seed=3, epochs=2)
    c = collect(x, 10, seed=4, epochs=2)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    assert torch.equal(epoch_permutation(100, 3, 1), epoch_permutation(100, 3, 1))


@pytest.mark.parametrize("start", [0, 1, 6, 7, 13, 20])
def test_resume_sees_exactly_the_uninterrupted_batches(start):
    x = torch.arange(45)
    full = collect(x, 6, seed=11, epochs=3)  # 7 batches per epoch, 21 in all
    resumed = collect(x, 6, seed=11, epochs=3, start_step=start)
    assert len(resumed) == 21 - start
    assert all(torch.equal(u, v) for u, v in zip(full[start:], resumed))


def test_infinite_stream_continues_past_epochs():
    it = iterate_minibatches(torch.arange(8), 4, seed=0)
    seen = [next(it) for _ in range(7)]
    assert len(seen) == 7  # epochs=None never stops


def test_image_dataset_batches_are_dicts_with_indices():
    x = torch.rand(12, 1, 4, 4)
    ds = ImageDataset(x=x, labels=torch.arange(12) % 3, context=torch.rand(12, 2, 4, 4))
    batches = list(iterate_minibatches(ds, 4, seed=2, epochs=1))
    assert len(batches) == 3
    for b in batches:
        assert set(b) == {"x", "labels", "context", "index"}
        assert torch.equal(b["x"], x[b["index"]]) and torch.equal(b["labels"], b["index"] % 3)
        assert torch.equal(b["context"], ds.context[b["index"]])
    uncond = ImageDataset(x=x, labels=torch.arange(12))
    assert next(iterate_minibatches(uncond, 4, seed=0))["context"] is None


def test_tuple_list_and_dict_inputs_keep_rows_aligned():
    a, b = torch.arange(10), torch.arange(10) * 10
    for batch in iterate_minibatches((a, b), 3, seed=1, epochs=1):
        assert isinstance(batch, tuple) and torch.equal(batch[1], batch[0] * 10)
    assert isinstance(next(iterate_minibatches([a, b], 3, seed=1)), list)
    d = next(iterate_minibatches({"u": a, "v": b}, 3, seed=1))
    assert set(d) == {"u", "v"} and torch.equal(d["v"], d["u"] * 10)


def test_bad_arguments_fail_at_the_call():
    x = torch.arange(10)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_minibatches(x, 0, seed=0)
    with pytest.raises(ValueError, match="batch_size=11"):
        iterate_minibatches(x, 11, seed=0)
    with pytest.raises(ValueError, match="first dimension"):
        iterate_minibatches((x, torch.arange(9)), 2, seed=0)
    with pytest.raises(ValueError, match="start_step"):
        iterate_minibatches(x, 2, seed=0, start_step=-1)
    with pytest.raises(ValueError, match="dataset_or_tensors"):
        iterate_minibatches([], 2, seed=0)
