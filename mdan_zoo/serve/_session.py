"""What the web app does with the images it is given, without the web: no gradio import here.

The app adds no model logic of its own: labels and probabilities are ``model.predict`` on the
uploaded files (the same decoding, EXIF rotation and preprocessing as Python and the CLI), the
attention pictures are ``model.attention_maps(...)[i].save(...)`` (the PNG ``predict
--save-attention`` writes), and the downloads are written by the ``predict --output`` writer.
What it adds is the guard in front: a file over the upload limit is refused from its size,
before anything decodes it.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..prediction import Prediction, write_predictions
from ..untrained import mark_warned, untrained_message

__all__ = ["Downloads", "Session", "Upload", "model_info"]

log = logging.getLogger(__name__)

KEEP_DOWNLOADS = 32
"""Request folders (CSV, JSONL, attention PNGs) kept on disk; older ones are removed, so a
server that runs for weeks does not fill its disk (gradio keeps its own copy while it serves)."""


@dataclass(frozen=True)
class Upload:
    """One image the page received: where it lies on the server, and the name to show."""

    path: str
    name: str


@dataclass(frozen=True)
class Downloads:
    """The batch's records in the ``mdan-zoo predict --output`` formats, and its table."""

    csv: str
    jsonl: str
    header: list[str]
    rows: list[list[str]]


def _size_error(size: int, limit: int) -> str:
    return (
        f"the file is {size / 2**20:.1f} MB, more than this server's upload limit of "
        f"{limit / 2**20:g} MB (mdan-zoo serve --max-upload-mb); it was not opened: resize or "
        "compress it, or restart the server with a larger limit"
    )


class Session:
    """The model and the limits of one server; methods are called from gradio's worker
    threads, one request at a time (the app's concurrency limit is 1)."""

    def __init__(
        self,
        model: Any,
        *,
        max_upload_mb: float = 20.0,
        top_k: int = 3,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb!r}")
        self.model = model
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.top_k = top_k
        self.untrained = untrained_message(model)
        mark_warned(model)  # the page shows the warning, loud; no log line per request
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mdan-serve-"))
        self._folders: deque[Path] = deque()
        self._lock = threading.Lock()
        # Every model call runs on this one thread: one call at a time whatever the web server
        # does (memory stays that of one batch), and one OpenMP thread team for the process
        # instead of a new one for each of the web server's worker threads.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="mdan-model")

    def _on_model_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._model_thread.submit(fn, *args, **kwargs).result()

    # ------------------------------------------------------------------ the answers
    def _checked(self, uploads: Sequence[Upload]) -> list[Prediction | None]:
        """A refusal per upload that must not be opened (None: hand it to the model)."""
        refused: list[Prediction | None] = []
        for up in uploads:
            try:
                size = os.stat(up.path).st_size
            except OSError as err:
                refused.append(Prediction(source=up.name, error=f"cannot read the upload ({err})"))
                continue
            if size > self.max_upload_bytes:
                refused.append(
                    Prediction(source=up.name, error=_size_error(size, self.max_upload_bytes))
                )
            else:
                refused.append(None)
        return refused

    def predict(self, uploads: Sequence[Upload]) -> list[Prediction]:
        """``model.predict`` on the uploaded files, one :class:`Prediction` per upload in order,
        named by the upload's own name; files over the limit are refused unopened."""
        start = time.perf_counter()
        refused = self._checked(uploads)
        todo = [up for up, r in zip(uploads, refused, strict=True) if r is None]
        answers = iter(
            self._on_model_thread(
                self.model.predict, [Path(up.path) for up in todo], top_k=self.top_k, workers=0
            )
            if todo
            else []
        )
        out = []
        for up, r in zip(uploads, refused, strict=True):
            out.append(r if r is not None else dataclasses.replace(next(answers), source=up.name))
        failed = sum(not p.ok for p in out)
        log.info(
            "%d image(s), %d refused or unreadable, in %.2f s",
            len(out),
            failed,
            time.perf_counter() - start,
        )
        return out

    def attention(
        self, uploads: Sequence[Upload], predictions: Sequence[Prediction]
    ) -> list[tuple[str, str]]:
        """The Fig. 8 picture of every predicted upload as ``(png path, caption)``: the file
        ``predict --save-attention`` writes for it."""
        todo = [up for up, p in zip(uploads, predictions, strict=True) if p.ok]
        if not todo:
            return []
        folder = self._new_folder()
        maps = self._on_model_thread(
            self.model.attention_maps, [Path(up.path) for up in todo], top_k=self.top_k, workers=0
        )
        shown = []
        for k, (up, result) in enumerate(zip(todo, maps, strict=True)):
            if not result.ok:  # read fine a moment ago; say so rather than fail the batch
                continue
            png = result.save(folder / f"{k:03d}_attention.png")
            path = " > ".join(c.label for c in result.prediction.consistent)
            shown.append((str(png), f"{up.name}: {path}"))
        return shown

    def downloads(self, predictions: Sequence[Prediction]) -> Downloads:
        """The records as ``predict --output`` writes them (CSV and JSON lines), and the CSV
        rows for the page's table."""
        folder = self._new_folder()
        levels = self.model.taxonomy.level_names
        paths = {
            fmt: str(write_predictions(folder / f"predictions.{fmt}", predictions, levels=levels))
            for fmt in ("csv", "jsonl")
        }
        with open(paths["csv"], newline="", encoding="utf-8", errors="surrogateescape") as fh:
            header, *rows = list(csv.reader(fh))
        return Downloads(csv=paths["csv"], jsonl=paths["jsonl"], header=header, rows=rows)

    # ------------------------------------------------------------------ disk
    def _new_folder(self) -> Path:
        with self._lock:
            folder = self.workdir / uuid.uuid4().hex
            folder.mkdir(parents=True)
            self._folders.append(folder)
            while len(self._folders) > KEEP_DOWNLOADS:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)
        return folder

    def close(self) -> None:
        """Remove the files this session wrote and stop its model thread."""
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            while self._folders:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


def _preprocessing_text(pre: Any) -> str:
    if pre.resize_size is None:
        resize = f"centre crop {pre.input_size} x {pre.input_size} of the photo as it is"
    else:
        resize = (
            f"shorter side resized to {pre.resize_size} ({pre.interpolation}), "
            f"centre crop {pre.input_size} x {pre.input_size}"
        )
    mean = ", ".join(f"{v:g}" for v in pre.mean)
    std = ", ".join(f"{v:g}" for v in pre.std)
    return f"{resize}; normalised with mean ({mean}), std ({std})"


def _calibration_text(config: Any) -> str:
    local = getattr(config, "local_temperatures", None)
    if local is None:
        return "none: the raw model's probabilities (mdan-zoo calibrate fits temperatures)"
    temps = ", ".join(f"{t:.3f}" for t in local)
    return (
        f"temperature scaling fitted on validation: local {temps} (coarse to fine), "
        f"global {config.global_temperature:.3f}"
    )


def model_info(model: Any, *, device: str) -> dict[str, Any]:
    """What the side panel says about the model: rows of (name, value) and the tree."""
    origin = {
        "loaded": "loaded from a checkpoint",
        "trained": "trained in this process",
        "backbone": "ImageNet backbone only (heads random)",
        None: "random initialisation (never trained)",
    }.get(model.weights_origin, str(model.weights_origin))
    rows = [
        ("weights", model.checkpoint_source or "none (built in memory)"),
        ("weights origin", origin),
    ]
    if model.checkpoint_revision:
        rows.append(("revision", model.checkpoint_revision))
    tax = model.taxonomy
    rows += [
        ("taxonomy", f"{tax.name}: " + " -> ".join(str(n) for n in tax.num_classes)),
        ("levels", ", ".join(tax.level_names)),
        ("backbone", model.config.backbone),
        ("alpha (P_O = a P_L + (1 - a) P_G)", f"{model.config.alpha:g}"),
        ("calibration", _calibration_text(model.config)),
        ("preprocessing", _preprocessing_text(model.preprocessing)),
        ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
        ("device", device),
    ]
    return {"rows": rows, "tree": tax.describe()}
