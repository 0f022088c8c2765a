"""Export MDAN for deployment: ONNX (run with ONNX Runtime) and ``torch.export`` programs.

(Publishing a training run in the Hub layout, ``mdan-zoo export``, is
:func:`mdan_zoo.training.export_run`.)

Both export :class:`ProbabilityModel`, a wrapper whose forward takes normalised images
``[B, 3, S, S]`` (``model.eval_transform()`` output; the batch dimension is dynamic, the image
size fixed at ``model.preprocessing.input_size``) and returns a flat tuple of per-level
probabilities: P_O of every level (coarse to fine), then P_L, then P_G (Sec. 3.2). A flat
tuple of tensors is what every exporter and runtime understands; the names travel with it.

The ONNX file carries the taxonomy, the preprocessing and the output names in its metadata, so
:class:`OnnxRuntimeModel` can rebuild named, hierarchy-consistent predictions from the file
alone: ``predict(OnnxRuntimeModel("m.onnx"), images)`` works like ``predict(model, images)``.

TorchScript is not offered: ``torch.jit`` is deprecated in PyTorch 2.x and cannot script the
dataclass outputs; ``torch.export`` traces the same graph cleanly (and is what the ONNX exporter
runs first).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._hints import require
from ._io import atomic_path, atomic_write_bytes
from .config import Preprocessing
from .taxonomy import Taxonomy

if TYPE_CHECKING:
    from .model import MDAN, MDANOutput

__all__ = [
    "EXPORT_OUTPUTS",
    "OnnxRuntimeModel",
    "ProbabilityModel",
    "export_onnx",
    "export_program",
    "save_program",
]

log = logging.getLogger(__name__)

EXPORT_OUTPUTS = ("P_O", "P_L", "P_G")
"""The probabilities an export can return per level: overall, local (Eq. 1), global (Eq. 2)."""

_META = "mdan_zoo"  # ONNX metadata key


class ProbabilityModel(nn.Module):
    """``MDAN`` -> flat tuple of per-level probabilities, in :attr:`output_names` order.

    Args:
        model: the network (kept, not copied).
        outputs: which of ``"P_O"``, ``"P_L"``, ``"P_G"`` to return, each for every level.
    """

    def __init__(
        self, model: MDAN, *, outputs: Sequence[str] = EXPORT_OUTPUTS, calibration: bool = True
    ) -> None:
        super().__init__()
        unknown = [o for o in outputs if o not in EXPORT_OUTPUTS]
        if unknown or not outputs:
            raise ValueError(
                f"outputs must be a non-empty subset of {EXPORT_OUTPUTS}, got {list(outputs)}"
            )
        self.model = model
        self.outputs = tuple(outputs)
        self.calibration = calibration
        levels = model.taxonomy.level_names
        self.output_names = [f"{o}.{level}" for o in self.outputs for level in levels]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.model(image, calibration=self.calibration)
        fields = {"P_O": "probs", "P_L": "local_probs", "P_G": "global_probs"}
        return tuple(getattr(lv, fields[o]) for o in self.outputs for lv in out)


def _example(model: MDAN, batch_size: int) -> Tensor:
    size = model.preprocessing.input_size
    device = next(model.parameters()).device
    return torch.randn(batch_size, 3, size, size, device=device)


def export_program(
    model: MDAN,
    *,
    outputs: Sequence[str] = EXPORT_OUTPUTS,
    max_batch: int = 4096,
    calibration: bool = True,
) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`ProbabilityModel` with a dynamic batch dimension (1 ..
    ``max_batch``). The model is put in eval mode (batch norm uses its running statistics).
    The temperatures a calibrated model stores are built in (``calibration=False``: raw)."""
    model.eval()
    wrapper = ProbabilityModel(model, outputs=outputs, calibration=calibration).eval()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return torch.export.export(wrapper, (_example(model, 2),), dynamic_shapes={"image": {0: batch}})


def save_program(
    model: MDAN,
    path: str | os.PathLike[str],
    *,
    outputs: Sequence[str] = EXPORT_OUTPUTS,
    program: torch.export.ExportedProgram | None = None,
) -> Path:
    """Write :func:`export_program` (or the ``program`` given) as a ``.pt2`` archive,
    atomically; load it with ``torch.export.load(path).module()``. Only load ``.pt2`` files
    you made or trust."""
    import io

    path = Path(path)
    if program is None:
        program = export_program(model, outputs=outputs)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def export_onnx(
    model: MDAN,
    path: str | os.PathLike[str],
    *,
    outputs: Sequence[str] = EXPORT_OUTPUTS,
    opset: int = 18,
    program: torch.export.ExportedProgram | None = None,
    calibration: bool = True,
) -> Path:
    """Write an ONNX file (atomically) of :class:`ProbabilityModel` with a dynamic batch.

    Input ``image`` ``float32 [batch, 3, S, S]``, normalised as ``model.eval_transform()``
    does; outputs named ``P_O.<level>``, ``P_L.<level>``, ``P_G.<level>``. The metadata key
    ``mdan_zoo`` holds the taxonomy, preprocessing and output names as JSON. Needs the
    ``onnx`` and ``onnxscript`` packages (the PyTorch 2.x exporter). ``program``: a
    :func:`export_program` result to reuse (made with the same ``outputs``). A calibrated
    model's temperatures are built into the graph and named in the metadata
    (``calibration=False`` exports the raw probabilities).
    """
    path = Path(path)
    require("onnx", "onnxscript", extra="onnx", what="ONNX export")  # before any work
    if program is None:
        program = export_program(model, outputs=outputs, calibration=calibration)
    wrapper = ProbabilityModel(model, outputs=outputs)
    onnx_program = torch.onnx.export(
        program,
        input_names=["image"],
        output_names=wrapper.output_names,
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    if onnx_program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    meta = {
        "format": 1,
        "taxonomy": model.taxonomy.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "outputs": list(wrapper.outputs),
        "output_names": wrapper.output_names,
        "alpha": model.config.alpha,
        "backbone": model.config.backbone,
        "temperatures": (
            {
                "local": list(model.config.local_temperatures or ()),
                "global": model.config.global_temperature,
            }
            if calibration and model.config.calibrated
            else None
        ),
    }
    onnx_program.model.metadata_props[_META] = json.dumps(meta)
    with atomic_path(path) as tmp:
        onnx_program.save(str(tmp))
    log.info("exported %s to %s", model.taxonomy.name, path)
    return path


class OnnxRuntimeModel:
    """An exported ONNX file run by ONNX Runtime, usable wherever :func:`~mdan_zoo.predict.predict`
    takes a model: it carries ``taxonomy``, ``preprocessing`` and ``eval_transform()`` from the
    file's metadata and returns an ``MDANOutput`` (``probs``, ``local_probs``,
    ``global_probs`` per level; logits and maps are not exported, so attention maps need the
    PyTorch model).

    Args:
        path: a file written by :func:`export_onnx`.
        providers: ONNX Runtime execution providers (default: CPU).
        threads: intra-op threads (default: ONNX Runtime's choice).
    """

    training = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        (ort,) = require("onnxruntime", extra="onnx", what="running an ONNX file")

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=list(providers)
        )
        raw = self.session.get_modelmeta().custom_metadata_map.get(_META)
        if raw is None:
            raise ValueError(
                f"{self.path} has no '{_META}' metadata: export it with mdan_zoo.export_onnx"
            )
        meta = json.loads(raw)
        self.taxonomy = Taxonomy.from_dict(meta["taxonomy"])
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self.outputs: tuple[str, ...] = tuple(meta["outputs"])
        self.output_names: list[str] = list(meta["output_names"])
        self.temperatures: dict[str, Any] | None = meta.get("temperatures")
        if "P_O" not in self.outputs:
            raise ValueError(
                f"{self.path} does not export P_O; re-export with outputs including it"
            )
        paths = [self.taxonomy.ancestor_indices(k) for k in range(self.taxonomy.num_classes[-1])]
        self._fine_to = torch.tensor(paths, dtype=torch.long)

    def eval_transform(self) -> Any:
        return self.preprocessing.eval_transform()

    def fine_to_level(self, fine: Tensor, level: int) -> Tensor:
        return self._fine_to[:, level % self.taxonomy.num_levels][fine.cpu()]

    # nn.Module-like no-ops, so predict() can treat it as a model
    def eval(self) -> OnnxRuntimeModel:
        return self

    def train(self, mode: bool = True) -> OnnxRuntimeModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxRuntimeModel:  # noqa: ARG002
        return self

    def parameters(self) -> list[Tensor]:
        return []

    def __call__(
        self, image: Tensor, *, return_cams: bool = False, calibration: bool = True
    ) -> MDANOutput:
        from .model import LevelOutput, MDANOutput

        if not calibration and self.temperatures is not None:
            raise ValueError(
                f"{self.path} has the temperatures of a calibrated model built in; export it "
                "again with export_onnx(..., calibration=False) for the raw probabilities"
            )
        if return_cams:
            raise ValueError("an ONNX export has no attention maps; use the PyTorch model")
        arrays = self.session.run(None, {"image": image.detach().cpu().float().numpy()})
        got = dict(zip(self.output_names, (torch.from_numpy(a) for a in arrays), strict=True))
        tax = self.taxonomy
        levels = []
        empty = torch.empty(0)
        for depth, name in enumerate(tax.level_names):
            p_o = got[f"P_O.{name}"]
            levels.append(
                LevelOutput(
                    name=name,
                    labels=tax.labels[depth],
                    probs=p_o,
                    local_probs=got.get(f"P_L.{name}", empty),
                    global_probs=got.get(f"P_G.{name}", empty),
                    local_logits=empty,
                )
            )
        return MDANOutput(levels=tuple(levels))
