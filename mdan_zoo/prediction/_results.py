"""What a prediction says: named labels per level, the hierarchy-consistent answer, attention maps.

Plain dataclasses with ``to_dict()`` for JSON; :mod:`mdan_zoo.prediction` fills them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._io import atomic_path
from .overlay import render_overlay

__all__ = [
    "UNCERTAIN",
    "AttentionMaps",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "Prediction",
]

UNCERTAIN = "uncertain"
"""What selective prediction answers at a level whose path probability is below the threshold."""


@dataclass(frozen=True)
class LabelProb:
    """A label name with its probability (P_O at its level).

    ``local_prob`` and ``global_prob`` are the same label's P_L and P_G, the paper's two
    branches (``P_O = alpha P_L + (1 - alpha) P_G``, Sec. 3.2), where the prediction filled
    them (``predict`` does). They take no part in equality, and :meth:`to_dict` leaves them out,
    so the JSON and CSV outputs keep their format.
    """

    label: str
    prob: float
    local_prob: float | None = field(default=None, compare=False)
    global_prob: float | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class LevelPrediction:
    """One affective level of one image.

    Attributes:
        level: the level's name in the taxonomy (``"polarity"``, ``"emotion"``, ...).
        label: the plain argmax of P_O at this level.
        prob: its P_O.
        top_k: the ``top_k`` most probable labels, most probable first.
    """

    level: str
    label: str
    prob: float
    top_k: tuple[LabelProb, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "label": self.label,
            "prob": self.prob,
            "top_k": [t.to_dict() for t in self.top_k],
        }


@dataclass(frozen=True)
class Prediction:
    """What the model says about one image (or why it could not say anything).

    Attributes:
        source: the file path, or ``<image N>`` / ``<array N>`` / ``<tensor N>`` for in-memory
            inputs (N counts the inputs from 0).
        levels: one :class:`LevelPrediction` per level, coarse to fine (plain argmax + top-k).
        consistent: the hierarchy-consistent answer, coarse to fine: a fine label and its
            ancestors, chosen to maximise the product of their P_O; each with its own P_O.
        joint_prob: that product.
        argmax_consistent: whether the plain per-level argmax already follows the hierarchy
            (then ``consistent`` and the argmax labels agree).
        error: why the image could not be read (then ``levels`` and ``consistent`` are empty).
        path_probs: the probability of the consistent path down to each level (the product of
            its P_O from the top; the last is ``joint_prob``).
        min_confidence: the threshold of selective prediction, when one was asked for.
    """

    source: str
    levels: tuple[LevelPrediction, ...] = ()
    consistent: tuple[LabelProb, ...] = ()
    joint_prob: float | None = None
    argmax_consistent: bool | None = None
    error: str | None = None
    path_probs: tuple[float, ...] = ()
    min_confidence: float | None = None

    @property
    def ok(self) -> bool:
        """True when the image was read and predicted."""
        return self.error is None

    @property
    def label(self) -> str | None:
        """The finest label of the hierarchy-consistent answer (None on error); with
        ``min_confidence``, ``"uncertain"`` when the path there is below it."""
        if not self.consistent:
            return None
        return UNCERTAIN if self.uncertain else self.consistent[-1].label

    @property
    def answer(self) -> tuple[str, ...]:
        """The labels answered, coarse to fine: the consistent path down to the deepest level
        whose path probability clears ``min_confidence`` (all of it without one); empty when
        even the top level is unsure."""
        if self.min_confidence is None:
            return tuple(c.label for c in self.consistent)
        confident = [p >= self.min_confidence for p in self.path_probs]
        depth = confident.index(False) if False in confident else len(confident)
        return tuple(c.label for c in self.consistent[:depth])

    @property
    def uncertain(self) -> bool:
        """Whether the finest level is below ``min_confidence`` (False without one)."""
        return len(self.answer) < len(self.consistent)

    @property
    def outside_top_k(self) -> tuple[str, ...]:
        """The levels whose consistent label is not among that level's ``top_k``: the answer
        maximises the product of P_O along its path, so a label can win on its path while
        others at its level score higher alone."""
        return tuple(
            lv.level
            for lv, c in zip(self.levels, self.consistent, strict=False)
            if c.label not in {t.label for t in lv.top_k}
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the CLI's ``--json`` line)."""
        if self.error is not None:
            return {"source": self.source, "ok": False, "error": self.error}
        return {
            "source": self.source,
            "ok": True,
            "label": self.label,
            "consistent": [c.to_dict() for c in self.consistent],
            "joint_prob": self.joint_prob,
            "argmax_consistent": self.argmax_consistent,
            "levels": [lv.to_dict() for lv in self.levels],
            **(
                {
                    "min_confidence": self.min_confidence,
                    "answer": list(self.answer),
                    "uncertain": self.uncertain,
                    "path_probs": list(self.path_probs),
                }
                if self.min_confidence is not None
                else {}
            ),
        }


@dataclass
class LevelAttention:
    """The spatial attention of one level (Sec. 4.2).

    Attributes:
        level: the level's name.
        label: this level's own prediction (argmax of P_O). Not always what the map shows:
            an L-CAM map is built from ``classes``, chosen by the level above.
        prob: its P_O.
        kind: ``"L-CAM"`` (the fused map M the level applied, Sec. 4.2.2) or ``"CAM"`` (the
            class activation map of ``label``, Sec. 4.2.1, where the level has no L-CAM).
        map: ``float32 [H, W]`` in [0, 1] (min-max scaled per image), the size of
            :attr:`AttentionMaps.image`.
        classes: the classes whose CAMs the map was built from: for L-CAM the children of
            ``parent`` (every class at the first level), for a CAM ``(label,)``.
        parent: for L-CAM below the first level, the class the level above picked (its P_L
            argmax, or P_O with ``lcam_parent="overall"``) whose children L-CAM fused.
    """

    level: str
    label: str
    prob: float
    kind: str
    map: np.ndarray
    classes: tuple[str, ...] = ()
    parent: str | None = None

    def built_from(self) -> str:
        """The caption line that says what the map shows (the PNG prints it as is)."""
        if self.kind != "L-CAM":
            return f"CAM of {self.label}"
        shown = ", ".join(self.classes)
        if self.parent is None:
            return f"all classes: {shown}"
        return f"under {self.parent}: {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "label": self.label,
            "prob": self.prob,
            "kind": self.kind,
            "classes": list(self.classes),
            "parent": self.parent,
            "size": [int(self.map.shape[1]), int(self.map.shape[0])],
        }


@dataclass
class AttentionMaps:
    """Attention maps of one image, with its prediction.

    Attributes:
        source: as in :class:`Prediction`.
        image: the part of the photo the model saw (the eval transform's centre crop), upright
            RGB at the photo's own resolution; every map has its size.
        levels: one :class:`LevelAttention` per level, coarse to fine.
        prediction: the :class:`Prediction` of the same forward pass.
        error: why the image could not be read (then ``image`` is None and ``levels`` empty).
    """

    source: str
    image: Image.Image | None
    levels: tuple[LevelAttention, ...]
    prediction: Prediction
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def overlay(
        self, *, panel_size: int = 256, alpha: float = 0.5, legend: bool = True
    ) -> Image.Image:
        """Fig. 8 as one picture: the photo, then one heat-map overlay per level, captioned
        with the level name and the map kind, the classes the map was built from
        (:meth:`LevelAttention.built_from`), and, marked as such, the hierarchy-consistent
        answer's label at that level with its P_O (the answer the text output gives); a
        colour bar at the bottom (``legend=False`` leaves it out)."""
        if self.image is None:
            raise ValueError(f"no attention maps for {self.source}: {self.error}")
        if panel_size < 32:
            raise ValueError(f"panel_size must be at least 32 pixels, got {panel_size}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        answer = [(c.label, c.prob) for c in self.prediction.consistent] or None
        return render_overlay(
            self.image,
            self.levels,
            panel_size=panel_size,
            alpha=alpha,
            labels=answer,
            legend=legend,
        )

    def save(
        self, path: str | os.PathLike[str], *, panel_size: int = 256, overwrite: bool = True
    ) -> Path:
        """Write :meth:`overlay` as a PNG (atomically) and return its path. ``overwrite=False``
        never replaces an existing file (:class:`FileExistsError`; the CLI's default)."""
        path = Path(path)
        picture = self.overlay(panel_size=panel_size)
        with atomic_path(path, replace=overwrite) as tmp:
            picture.save(tmp, format="PNG")
        return path

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "ok": self.ok}
        if self.error is not None:
            data["error"] = self.error
        else:
            data["levels"] = [lv.to_dict() for lv in self.levels]
        return data
