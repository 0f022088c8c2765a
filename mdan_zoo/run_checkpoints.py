"""A training run's checkpoint files: one folder per epoch, ``best/``, and pointer files.

Each checkpoint folder holds the weights and the optimizer / RNG tensors as safetensors and
everything else as JSON (``state.json``): nothing is pickled. Folders are written under a
temporary name and renamed into place; pointer files (``last.json`` / ``best.json``) are
replaced atomically.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import MDANConfig, Preprocessing
from .model import MDAN
from .taxonomy import Taxonomy

__all__ = ["Checkpoint", "load_checkpoint"]


@dataclass
class Checkpoint:
    """A saved epoch: the model plus the state that ``resume`` needs."""

    path: Path
    epoch: int
    model: MDAN
    state: dict[str, Any]
    tensors: dict[str, Tensor]


def model_state(model: MDAN) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    meta: dict[str, Any] = {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, entry in opt_state["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def unflatten_optimizer(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, idx, key = name.split("/", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    np_state: Any = np.random.get_state()
    tensors = {
        "rng/torch": torch.get_rng_state(),
        "rng/numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, meta


def set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state(
        (name, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, values, gauss = meta["python"]
    random.setstate((version, tuple(values), gauss))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def write_checkpoint_dir(final: Path, files: Mapping[str, Any]) -> None:
    """Write files into ``final.tmp-*`` and rename the folder into place (atomic on POSIX)."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, content in files.items():
        if name.endswith(".safetensors"):
            save_file(content, str(tmp / name))
        else:
            (tmp / name).write_text(content, encoding="utf-8")
    for entry in tmp.iterdir():
        with open(entry, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def pointer(run_dir: Path, which: str) -> Path | None:
    ptr = run_dir / "checkpoints" / f"{which}.json"
    if not ptr.is_file():
        return None
    target = run_dir / "checkpoints" / json.loads(ptr.read_text())["dir"]
    return target if target.is_dir() else None


def load_checkpoint(path: str | os.PathLike[str], *, which: str = "best") -> Checkpoint:
    """Load a checkpoint folder, or a run's ``best`` / ``last`` checkpoint from its output folder.

    The model is rebuilt from the taxonomy, config and preprocessing stored beside the weights.
    """
    path = Path(path)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not (path / "state.json").is_file():
        found = pointer(path, which)
        if found is None:
            raise FileNotFoundError(
                f"{path} holds no checkpoint: expected {path}/checkpoints/{which}.json (a training "
                "run's output_dir) or a checkpoint folder with state.json"
            )
        path = found
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    taxonomy = Taxonomy.from_dict(state["taxonomy"])
    model = MDAN(
        taxonomy,
        MDANConfig.from_dict(state["model_config"]),
        preprocessing=Preprocessing.from_dict(state["preprocessing"]),
    )
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    tensors = (
        load_file(str(path / "training.safetensors"))
        if (path / "training.safetensors").is_file()
        else {}
    )
    return Checkpoint(
        path=path, epoch=int(state["epoch"]), model=model, state=state, tensors=tensors
    )
