"""A verified load reads each tensor file once (issue 21): the sha256 is computed over the
bytes as they are read into the tensors, an inference load of a run folder never opens the
optimizer state, and a damaged file is still refused with the same errors.

Bytes read are the process's own count (``/proc/self/io`` rchar), so a second pass over a
file (the old separate hash) cannot hide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from zoo_helpers import same_state, tiny_mdan

from mdan_zoo import MDAN
from mdan_zoo.hub._checkpoint import ChecksumError, read_hashed_state_dict, read_state_dict

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _read_during(fn):  # noqa: ANN001, ANN202
    before = _bytes_read()
    result = fn()
    return result, _bytes_read() - before


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[MDAN, Path]:
    model = tiny_mdan()
    return model, model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "m")


def test_hashed_read_gives_the_same_tensors_and_digest(folder) -> None:  # noqa: ANN001
    import hashlib

    _, path = folder
    weights = path / "model.safetensors"
    state, digest = read_hashed_state_dict(weights)
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    plain = read_state_dict(weights)
    assert state.keys() == plain.keys()
    assert all(torch.equal(state[k], plain[k]) and state[k].dtype == plain[k].dtype for k in state)
    assert len({t.untyped_storage().data_ptr() for t in state.values() if t.numel()}) == len(
        [t for t in state.values() if t.numel()]
    ), "every tensor owns its memory"


def test_verified_local_load_reads_the_weights_once(folder) -> None:  # noqa: ANN001
    model, path = folder
    size = (path / "model.safetensors").stat().st_size
    MDAN.from_pretrained(path)  # warm: imports, caches
    loaded, read = _read_during(lambda: MDAN.from_pretrained(path))
    assert same_state(loaded, model)
    assert size <= read < 1.1 * size + 256 * 1024, f"read {read:,} bytes of a {size:,}-byte file"


def test_a_flipped_byte_is_still_caught(folder, tmp_path: Path) -> None:  # noqa: ANN001
    import shutil

    _, path = folder
    copy = Path(shutil.copytree(path, tmp_path / "copy"))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a tensor: the file still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        MDAN.from_pretrained(copy)
    weights.write_bytes(bytes(data[: len(data) // 3]))  # truncated: unreadable, and mismatched
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        MDAN.from_pretrained(copy)


def _run_folder(root: Path, model: MDAN) -> Path:
    """A run with two epochs, epoch 1 selected, written by the trainer's own writer."""
    from mdan_zoo.training._run_writer import save_training_checkpoint

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # momentum buffers: an optimizer state as large as the weights
    extra = {"config": {}, "history": [], "best_metric": 0.5, "scheduler": {}, "scaler": {}}
    for epoch in (1, 2):
        save_training_checkpoint(
            root, epoch, model=model, optimizer=opt, extra={**extra, "best_epoch": 1}, keep=2
        )
    return root


def test_run_folder_inference_load_reads_the_selected_weights_only(folder, tmp_path: Path) -> None:  # noqa: ANN001
    model, _ = folder
    run = _run_folder(tmp_path / "run", model)
    best = run / "checkpoints" / "epoch-0001"
    size = (best / "model.safetensors").stat().st_size
    assert (best / "training.safetensors").stat().st_size > 0.9 * size  # momentum: as large
    MDAN.from_pretrained(run)
    loaded, read = _read_during(lambda: MDAN.from_pretrained(run))
    assert same_state(loaded, model)
    assert size <= read < 1.1 * size + 256 * 1024, f"read {read:,} bytes for {size:,} of weights"
    # the optimizer state is not what an inference load trusts or needs
    training = best / "training.safetensors"
    data = bytearray(training.read_bytes())
    data[-3] ^= 0xFF
    training.write_bytes(bytes(data))
    assert same_state(MDAN.from_pretrained(run), model)
    weights = best / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        MDAN.from_pretrained(run)


def test_weights_that_do_not_fit_their_tree_are_refused_from_the_header(
    folder, tmp_path: Path
) -> None:  # noqa: ANN001
    """The model is built from the file's header before any tensor is read: a config whose
    taxonomy does not match the weights' heads fails having read the header alone."""
    import shutil

    from mdan_zoo.errors import WeightsError

    _, path = folder
    other = tiny_mdan("emotion6").save_pretrained(tmp_path / "other")  # 2 -> 6 classes
    mixed = Path(shutil.copytree(other, tmp_path / "mixed"))
    shutil.copy(path / "model.safetensors", mixed / "model.safetensors")  # fashion_mnist's
    size = (mixed / "model.safetensors").stat().st_size
    with pytest.raises(WeightsError, match="do not belong together"):
        MDAN.from_pretrained(mixed)
    before = _bytes_read()
    with pytest.raises(WeightsError):
        MDAN.from_pretrained(mixed)
    read = _bytes_read() - before
    assert read < size / 4, f"read {read:,} bytes of a {size:,}-byte file before refusing it"
