"""A full disk while checkpointing: one line saying which checkpoint is intact, no temporary
file left behind, and the run resumes exactly once there is space again."""

from __future__ import annotations

import errno

import pytest
import torch

from geco_core.checkpoint import load_checkpoint
from geco_core.train import fit, main

pytestmark = pytest.mark.usefixtures("quiet")


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_disk_full_mid_run_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path, tiny, full_disk):
    out = tmp_path / "run"
    disk = full_disk(fail_from=2)  # checkpoints at steps 2, 4, 6, 8: the one of step 4 fails
    with pytest.raises(OSError) as e:
        fit(tiny(steps=8, out_dir=str(out)))
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and "\n" not in msg
    assert (
        f"no space left on device while writing {out / 'checkpoint.pt'} (checkpoint of step 4); "
        "the checkpoint of step 2 is intact; free some space and rerun with --resume" in msg
    )
    assert _leftovers(out) == []
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2

    disk.fail_from = 10**9  # space again
    resumed = fit(tiny(steps=8, out_dir=str(out)), resume=True)
    full = fit(tiny(steps=8, out_dir=str(tmp_path / "uninterrupted")))
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert torch.equal(full.objective.geco.lambdas, resumed.objective.geco.lambdas)


def test_disk_full_at_the_first_checkpoint(tmp_path, tiny, full_disk):
    out = tmp_path / "run"
    full_disk(fail_from=1, mode="torch")
    with pytest.raises(
        OSError,
        match=r"checkpoint of step 2\); .*checkpoint\.pt was left as it "
        r"was",
    ) as e:
        fit(tiny(steps=8, out_dir=str(out)))
    assert e.value.errno == errno.ENOSPC
    assert not (out / "checkpoint.pt").exists() and _leftovers(out) == []


def test_cli_reports_a_full_disk_in_one_line_and_exits_1(tmp_path, tiny, full_disk, capsys):
    out = tmp_path / "run"
    full_disk(fail_from=2)
    argv = [
        "--dataset-kwargs", "n=32", "--model-kwargs", '{"latent_dim": 2, "channels": [4, 8]}',
        "--steps", "8", "--batch-size", "8", "--ckpt-every", "2", "--lr", "1e-3",
        "--device", "cpu", "--no-progress", "--download", "false", "--out", str(out),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1
    assert err[0].startswith("error: no space left on device while writing ")
    assert "the checkpoint of step 2 is intact" in err[0] and "[Errno" not in err[0]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2 and _leftovers(out) == []


def test_a_full_disk_on_the_metrics_log_names_the_log(tmp_path):
    from geco_core.train.log import append_row as _append_row

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    log = tmp_path / "metrics.jsonl"
    with pytest.raises(OSError, match=f"no space left on device while writing {log}; free space "
                                      "and resume"):
        _append_row(FullDisk(), {"step": 0}, log)
