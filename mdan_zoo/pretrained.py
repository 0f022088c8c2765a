"""``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for the network, as a mixin.

Like huggingface_hub's ``ModelHubMixin``, the machinery receives the class it builds
(``cls``), so nothing here imports the network: :mod:`mdan_zoo.model` imports this module, never
the other way round. Loading builds the network on the ``meta`` device (no throw-away random
initialisation) and assigns the tensors read from the file (``load_state_dict(assign=True)``),
strictly: a missing or unexpected key is an error, never silently dropped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from ._version import __version__
from .checkpoint import FORMAT_VERSION, WeightsError, jsonable, read_state_dict, write_checkpoint
from .config import MDANConfig, Preprocessing
from .model_card import model_card
from .taxonomy import Taxonomy, as_taxonomy
from .transfer import TransferReport, transfer_state
from .transport import endpoint, resolve

__all__ = ["PretrainedMixin"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound="PretrainedMixin")


class PretrainedMixin:
    """Hub-layout save / load / push for a module built as ``cls(taxonomy, config,
    preprocessing=...)`` that carries ``taxonomy``, ``config`` and ``preprocessing``."""

    transfer_report: TransferReport | None = None
    """What fine-tuning transfer did when the weights met another taxonomy (None: nothing)."""
    checkpoint_source: str | None = None
    """Where the weights came from (None: never loaded)."""
    checkpoint_revision: str | None = None
    """The Hub commit the weights came from, when known."""

    # ------------------------------------------------------------------ save
    def describe_checkpoint(self) -> dict[str, Any]:
        """The description written to config.json and the safetensors header."""
        model: Any = self
        return {
            "library": "mdan_zoo",
            "mdan_zoo_version": __version__,
            "format_version": FORMAT_VERSION,
            "architecture": model.config.to_dict(),
            "taxonomy": model.taxonomy.to_dict(),
            "preprocessing": model.preprocessing.to_dict(),
            "num_classes": list(model.taxonomy.num_classes),
            "num_params": sum(p.numel() for p in model.parameters()),
        }

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        metrics: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write model.safetensors, config.json and a README.md model card to a folder.

        ``metrics`` (e.g. ``{"accuracy_O": {"2": 91.1, "8": 76.0}}``) and ``training`` (recipe,
        data, seed) go into config.json and the model card. Returns the folder.
        """
        model: Any = self
        description = self.describe_checkpoint()
        description["metrics"] = jsonable(metrics, "metrics")
        description["training"] = jsonable(training, "training")
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        if any(t.device.type == "meta" for t in state.values()):
            raise WeightsError("the model still has meta tensors: load its weights before saving")
        out = write_checkpoint(Path(save_directory), state, description, card=model_card)
        logger.info("saved %s (%s classes) to %s", model.taxonomy.name, model.num_classes, out)
        return out

    def push_to_hub(
        self,
        repo_id: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        commit_message: str = "Upload MDAN checkpoint (mdan_zoo)",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        api: Any = None,
    ) -> str:
        """Save with :meth:`save_pretrained` and upload the folder to the Hub repo ``repo_id``.

        Returns the commit id; pin it in your registry entry or ``revision=``. ``api`` takes an
        ``HfApi`` (default: one for ``HF_ENDPOINT``).
        """
        from huggingface_hub import HfApi

        api = api or HfApi(endpoint=endpoint(), token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mdan_zoo_push_") as tmp:
            folder = self.save_pretrained(Path(tmp) / "ckpt", metrics=metrics, training=training)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
        commit = getattr(info, "oid", None) or str(info)
        logger.info("pushed %s to %s at commit %s", folder.name, repo_id, commit)
        return commit

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(
        cls: type[T],
        repo_or_dir: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        progress: bool = True,
        force_download: bool = False,
        taxonomy: Taxonomy | str | None = None,
        config: MDANConfig | None = None,
        expected_sha256: str | None = None,
    ) -> T:
        """The exact saved model from a folder, a ``.safetensors`` file or a Hub repo, in eval mode.

        ``revision`` pins a Hub commit (a full 40-hex commit in a warm cache makes no network
        call). ``taxonomy`` different from the checkpoint's fine-tunes: backbone, FPN and
        attention are kept, changed classifier heads are re-initialised with rows copied for
        labels whose name and ancestors match; the :class:`~mdan_zoo.TransferReport` is
        ``model.transfer_report``. ``config`` (for checkpoints without one) gives the
        architecture; it must agree with a config the checkpoint carries.
        """
        ckpt = resolve(
            repo_or_dir,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            progress=progress,
            force_download=force_download,
            expected_sha256=expected_sha256,
        )
        if ckpt.config is None:
            if config is None or taxonomy is None:
                ckpt.describe()  # raises the explanation
            assert config is not None and taxonomy is not None
            target_tax = as_taxonomy(taxonomy)
            return cls.from_state(
                read_state_dict(ckpt.weights_path),
                config=config,
                taxonomy=target_tax,
                source_taxonomy=target_tax,
                preprocessing=Preprocessing(),
                source=ckpt.source,
                revision=ckpt.revision,
            )
        saved_config, saved_tax, pre = ckpt.describe()
        if config is not None and config != saved_config:
            raise WeightsError(
                f"{ckpt.source} was saved with config {saved_config} but config={config} was "
                "given; drop config= to use the checkpoint's own, or train a model with the new "
                "config"
            )
        return cls.from_state(
            read_state_dict(ckpt.weights_path),
            config=saved_config,
            taxonomy=saved_tax if taxonomy is None else as_taxonomy(taxonomy),
            source_taxonomy=saved_tax,
            preprocessing=pre,
            source=ckpt.source,
            revision=ckpt.revision,
        )

    @classmethod
    def from_state(
        cls: type[T],
        state: Mapping[str, Tensor],
        *,
        config: MDANConfig,
        taxonomy: Taxonomy,
        source_taxonomy: Taxonomy,
        preprocessing: Preprocessing,
        source: str,
        revision: str | None = None,
    ) -> T:
        """A model for ``taxonomy`` holding ``state`` (saved for ``source_taxonomy``), in eval mode.

        Built on the meta device and filled with the tensors themselves (no copy, no random
        init); a different taxonomy goes through fine-tuning transfer. ``source`` and
        ``revision`` are recorded as ``model.checkpoint_source`` / ``checkpoint_revision``.
        """
        with torch.device("meta"):
            model: Any = cls(taxonomy, config, preprocessing=preprocessing)  # type: ignore[call-arg]
        report: TransferReport | None = None
        if not taxonomy.same_tree(source_taxonomy):
            state, report = transfer_state(model, state, source_taxonomy, source=source)
            logger.info("%s", report.summary())
        _assign(model, state, source=source)
        model.transfer_report = report
        model.checkpoint_source = source
        model.checkpoint_revision = revision
        return model.eval()


def _assign(model: Any, state: Mapping[str, Tensor], *, source: str) -> None:
    """Strict, shape-checked ``load_state_dict(assign=True)`` onto a meta-built model."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights from {source} do not fit this MDAN ({model.config.backbone}, taxonomy "
            f"{model.taxonomy.name} {model.num_classes}): missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
            f"{'...' if len(unexpected) > 6 else ''}, shape mismatches {wrong[:4]}. Load the "
            "checkpoint with the architecture it was saved with (MDAN.from_pretrained reads it "
            "from config.json), or pass taxonomy= to fine-tune to another label tree"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model._init_taxonomy_buffers()
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise WeightsError(f"weights from {source} left tensors uninitialised: {left[:6]}")
