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

from .._version import __version__
from ..config import MDANConfig, Preprocessing
from ..taxonomy import Taxonomy, as_taxonomy
from ..untrained import UNTRAINED_KEY, is_untrained, untrained_from_config
from ._checkpoint import (
    FORMAT_VERSION,
    TIMM_ARCHITECTURE,
    PendingState,
    WeightsError,
    jsonable,
    write_checkpoint,
)
from ._download import endpoint, offline_mode, resolve
from ._model_card import model_card
from ._network import hub_error, network_errors
from ._options import FetchOptions
from ._refs import check_repo_id, check_revision
from ._transfer import TransferReport, transfer_state
from .run_folder import is_run_folder

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
            "architecture": TIMM_ARCHITECTURE,  # what timm.create_model("hf-hub:...") calls
            "model_config": model.config.to_dict(),
            "taxonomy": model.taxonomy.to_dict(),
            "preprocessing": model.preprocessing.to_dict(),
            "pretrained_cfg": jsonable(model.pretrained_cfg, "pretrained_cfg"),
            "num_classes": list(model.taxonomy.num_classes),
            "num_features": model.num_features,
            "num_params": sum(p.numel() for p in model.parameters()),
            **({UNTRAINED_KEY: True} if is_untrained(model) else {}),
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
        if is_run_folder(save_directory):
            raise WeightsError(
                f"{save_directory} is a training run's folder; saving there would overwrite its "
                "config.json. Nothing was changed: save to another folder (`mdan-zoo export "
                "RUN_DIR OUT_DIR` writes a run's selected epoch)"
            )
        description = self.describe_checkpoint()
        description["metrics"] = jsonable(metrics, "metrics")
        description["training"] = jsonable(training, "training")
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        if any(t.device.type == "meta" for t in state.values()):
            raise WeightsError("the model still has meta tensors: load its weights before saving")
        base = None  # a model fine-tuned to another taxonomy from a Hub checkpoint
        source = self.checkpoint_source or ""
        if self.transfer_report is not None and source.startswith("hf-hub:"):
            base = source[len("hf-hub:") :].partition("@")[0]
        out = write_checkpoint(
            Path(save_directory),
            state,
            description,
            card=lambda config: model_card(config, base_model=base),
        )
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
        branch: str | None = None,
        create_pr: bool | None = None,
        allow_patterns: list[str] | str | None = None,
        ignore_patterns: list[str] | str | None = None,
        delete_patterns: list[str] | str | None = None,
        revision: str | None = None,
        api: Any = None,
    ) -> str:
        """Save with :meth:`save_pretrained` and upload the folder to the Hub repo ``repo_id``
        (created if needed) in one commit; returns the commit id (pin it).

        Arguments as ``huggingface_hub.PyTorchModelHubMixin.push_to_hub``: ``branch`` (default
        main; ``revision`` is an older name for it), ``create_pr``, ``private``, ``token``
        (default: ``HF_TOKEN`` or ``hf auth login``), the ``*_patterns`` of
        ``HfApi.upload_folder``. ``api`` takes an ``HfApi`` (default: one for ``HF_ENDPOINT``).
        A refused token, no network or offline mode is a :class:`WeightsError` with the fix.
        """
        from huggingface_hub import HfApi

        if revision is not None and branch is not None and revision != branch:
            raise ValueError(f"branch={branch!r} and revision={revision!r}: give one (branch)")
        branch = branch if branch is not None else revision
        check_repo_id(repo_id, namespace_required=False)
        if branch is not None:
            check_revision(branch)
        what = f"push to {repo_id}"
        if offline_mode() and api is None:
            raise WeightsError(
                f"cannot {what}: offline mode is on (HF_HUB_OFFLINE=1). Unset it on a connected "
                "machine, or save now (`model.save_pretrained(dir)` / `mdan-zoo export`) and "
                "upload the folder later (`hf upload REPO DIR`)"
            )
        api = api or HfApi(endpoint=endpoint(), token=token)
        try:
            made = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            repo_id = getattr(made, "repo_id", None) or repo_id
            with tempfile.TemporaryDirectory(prefix="mdan_zoo_push_") as tmp:
                folder = self.save_pretrained(
                    Path(tmp) / "ckpt", metrics=metrics, training=training
                )
                info = api.upload_folder(
                    repo_id=repo_id,
                    folder_path=str(folder),
                    repo_type="model",
                    commit_message=commit_message,
                    revision=branch,
                    create_pr=create_pr,
                    allow_patterns=allow_patterns,
                    ignore_patterns=ignore_patterns,
                    delete_patterns=delete_patterns,
                )
        except network_errors() as err:
            raise hub_error(err, repo_id=repo_id, what=what, token=token) from None
        commit = getattr(info, "oid", None) or str(info)
        logger.info("pushed %s to %s at commit %s", folder.name, repo_id, commit)
        return commit

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        progress: bool = True,
        force_download: bool = False,
        token: str | bool | None = None,
        taxonomy: Taxonomy | str | None = None,
        config: MDANConfig | None = None,
        expected_sha256: str | None = None,
        dtype: torch.dtype | str | None = None,
        repo_or_dir: str | os.PathLike[str] | None = None,
        calibration: bool = True,
    ) -> T:
        """The exact saved model from a folder, a ``.safetensors`` file or a Hub repo, in eval mode.

        The first argument is named as in huggingface_hub's ``PyTorchModelHubMixin``
        (``pretrained_model_name_or_path``); ``repo_or_dir=`` is its 0.1.0 name and still works.

        A training run's output_dir loads its validation-selected epoch (an epoch folder of
        the run loads that epoch), with the taxonomy, config and preprocessing it was trained
        with; ``mdan-zoo export`` stays the way to publish.

        ``revision`` pins a Hub commit (a full 40-hex commit in a warm cache makes no network
        call); ``token`` reads private repos (default: ``HF_TOKEN`` or ``hf auth login``).
        ``taxonomy`` different from the checkpoint's fine-tunes: backbone, FPN and
        attention are kept, changed classifier heads are re-initialised with rows copied for
        labels whose name and ancestors match; the :class:`~mdan_zoo.TransferReport` is
        ``model.transfer_report``. ``config`` (for checkpoints without one) gives the
        architecture; it must agree with a config the checkpoint carries. ``dtype``: float32
        by default whatever the file holds (fp16 / bf16 checkpoints too); ``"auto"`` keeps the
        checkpoint's, a torch floating dtype casts to it. ``calibration=False`` drops the
        temperatures a calibrated checkpoint stores (``mdan-zoo calibrate``): the raw model.
        """
        if (pretrained_model_name_or_path is None) == (repo_or_dir is None):
            raise TypeError(
                "from_pretrained() takes the checkpoint once: pass pretrained_model_name_or_path "
                "(a folder, a .safetensors file or a Hub repo), or its 0.1.0 name repo_or_dir"
            )
        source = pretrained_model_name_or_path if repo_or_dir is None else repo_or_dir
        assert source is not None
        target = as_dtype(dtype)
        fetch = FetchOptions(
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
            token=token,
            progress=progress,
            expected_sha256=expected_sha256,
        )
        ckpt = resolve(source, fetch, hash_on_read=True)  # hashed as the tensors are read
        if ckpt.config is None:
            if config is None or taxonomy is None:
                ckpt.describe()  # raises the explanation
            assert config is not None and taxonomy is not None
            target_tax = as_taxonomy(taxonomy)
            return cls.from_state(
                ckpt.pending_state(),
                config=config,
                taxonomy=target_tax,
                source_taxonomy=target_tax,
                preprocessing=Preprocessing(),
                source=ckpt.source,
                revision=ckpt.revision,
                dtype=target,
            )
        saved_config, saved_tax, pre = ckpt.describe()  # before any tensor is read
        if not calibration:
            saved_config = saved_config.uncalibrated()
        if config is not None and config.uncalibrated() != saved_config.uncalibrated():
            raise WeightsError(
                f"{ckpt.source} was saved with config {saved_config} but config={config} was "
                "given; drop config= to use the checkpoint's own, or train a model with the new "
                "config"
            )
        model = cls.from_state(
            ckpt.pending_state(),  # the header now, the tensors (hashed) once the model is built
            config=saved_config,
            taxonomy=saved_tax if taxonomy is None else as_taxonomy(taxonomy),
            source_taxonomy=saved_tax,
            preprocessing=pre,
            source=ckpt.source,
            revision=ckpt.revision,
            dtype=target,
        )
        return untrained_from_config(model, ckpt.config)

    @classmethod
    def from_state(
        cls: type[T],
        state: Mapping[str, Tensor] | PendingState,
        *,
        config: MDANConfig,
        taxonomy: Taxonomy,
        source_taxonomy: Taxonomy,
        preprocessing: Preprocessing,
        source: str,
        revision: str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> T:
        """A model for ``taxonomy`` holding ``state`` (saved for ``source_taxonomy``), in eval mode.

        Built on the meta device and filled with the tensors themselves (no random init); a
        different taxonomy goes through fine-tuning transfer. Floating-point tensors become
        float32 (``dtype=None``), keep the checkpoint's dtype (``"auto"``) or become ``dtype``;
        an integer tensor where the model has a floating one is a :class:`WeightsError`.
        ``source`` and ``revision`` are recorded as ``model.checkpoint_source`` /
        ``checkpoint_revision``. ``state`` may be a ``PendingState``
        (``Checkpoint.pending_state()``): the model is built from the file's header, before
        any tensor is read.
        """
        target = as_dtype(dtype)
        shapes = (
            state.shapes()
            if isinstance(state, PendingState)
            else {k: tuple(v.shape) for k, v in state.items()}
        )
        try:
            _check_heads(shapes, source_taxonomy, source=source)  # before anything is built
            config = _temperatures_for(config, taxonomy, source_taxonomy, source=source)
            with torch.device("meta"), _SkipInitOnMeta():
                model: Any = cls(taxonomy, config, preprocessing=preprocessing)  # type: ignore[call-arg]
        except BaseException:
            if isinstance(state, PendingState):
                state.close()  # no reader left running when the error reaches the caller
            raise
        if isinstance(state, PendingState):
            state = state.result()
        saved = _saved_dtype(state)
        expected = model.state_dict()  # meta tensors: names, shapes, dtypes
        state = _as_model_dtypes(expected, state, source=source)
        report: TransferReport | None = None
        if not taxonomy.same_tree(source_taxonomy):
            state, report = transfer_state(model, state, source_taxonomy, source=source)
            logger.info("%s", report.summary())
        _assign(model, state, expected, source=source)
        final = saved if target == "auto" else target
        if final != torch.float32:
            model.to(final)
        model.transfer_report = report
        model.checkpoint_source = source
        model.checkpoint_revision = revision
        return model.eval()


class _SkipInitOnMeta(torch.overrides.TorchFunctionMode):
    """Skips the in-place random initialisations (``normal_``, ``uniform_``, ``fill_``,
    ``zero_``) of meta tensors while a model is built to be filled from a file: on ``meta``
    they run as Python decompositions and cost twice the rest of the build. ``torch.nn.init``'s
    functions are skipped whole: they reach a mode as themselves (``handle_torch_function``),
    and what they call inside runs with the mode off, so skipping only the tensor methods
    let every ``kaiming_uniform_`` of a convolution run its decomposition."""

    _NN_INIT = "uniform_ normal_ constant_ ones_ zeros_ trunc_normal_ kaiming_uniform_ "
    _NN_INIT += "kaiming_normal_ xavier_uniform_ xavier_normal_ orthogonal_"
    _INIT = frozenset(
        {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_}
        | {getattr(torch.nn.init, name) for name in _NN_INIT.split()}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in self._INIT:  # nn.init passes the tensor by keyword, Tensor methods first
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _temperatures_for(
    config: MDANConfig, taxonomy: Taxonomy, source_taxonomy: Taxonomy, *, source: str
) -> MDANConfig:
    """``config`` with its temperatures when they fit the tree: one per level of the saved
    tree, dropped (with a note) when the weights meet another tree (its heads are new)."""
    local = config.local_temperatures
    if local is None:
        return config
    if len(local) != source_taxonomy.num_levels:
        raise WeightsError(
            f"{source}: the config stores {len(local)} local temperatures but its taxonomy has "
            f"{source_taxonomy.num_levels} levels; the file is damaged or was edited: "
            "calibrate again (`mdan-zoo calibrate`), or load with calibration=False"
        )
    if not taxonomy.same_tree(source_taxonomy):
        logger.info("%s: temperatures dropped (new classifier heads for another tree)", source)
        return config.uncalibrated()
    return config


def _check_heads(shapes: Mapping[str, tuple[int, ...]], taxonomy: Taxonomy, *, source: str) -> None:
    """The classifier heads in ``state`` have one row per class of ``taxonomy`` (the one the
    checkpoint's config names); checked before a model (and its taxonomy buffers) is built, so a
    config naming 10^6 classes beside small weights fails at once."""
    heads = [(f"local_heads.{d}.weight", d) for d in range(taxonomy.num_levels)]
    for key, depth in [*heads, ("global_head.weight", taxonomy.num_levels - 1)]:
        rows = shapes[key][0] if key in shapes and len(shapes[key]) == 2 else None
        if rows is not None and rows != taxonomy.num_classes[depth]:
            raise WeightsError(
                f"weights from {source} do not match their taxonomy {taxonomy.name!r}: it names "
                f"{taxonomy.num_classes[depth]} classes at level {depth} "
                f"({taxonomy.level_names[depth]!r}) but {key} has {rows} rows. The config and "
                "the weights do not belong together: save or download the checkpoint again"
            )


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    """``None`` -> float32; ``"auto"``; a floating torch dtype or its name (``"bfloat16"``)."""
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        return "auto"
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(
            f"dtype={dtype!r}: give None (float32), 'auto' (the checkpoint's) or a floating "
            "torch dtype such as torch.float16 / 'bfloat16'"
        )
    return value


def _saved_dtype(state: Mapping[str, Tensor]) -> torch.dtype:
    """The floating dtype most of the checkpoint's floating tensors have (float32 if none)."""
    counts: dict[torch.dtype, int] = {}
    for t in state.values():
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    return max(counts, key=counts.__getitem__) if counts else torch.float32


def _as_model_dtypes(
    expected: Mapping[str, Tensor], state: Mapping[str, Tensor], *, source: str
) -> dict[str, Tensor]:
    """``state`` with floating tensors in float32 and integer ones in the dtype of the model's
    (``expected``: its state dict) (no copy when they already are); a tensor of the wrong
    kind is an error naming it."""
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        want = expected.get(key)
        if want is None:  # a key the model lacks: transfer or _assign says what is wrong
            out[key] = tensor
        elif want.is_floating_point():
            if not tensor.is_floating_point():
                raise WeightsError(
                    f"weights from {source}: tensor {key!r} is {tensor.dtype}, but the model "
                    "holds floating-point numbers there; the file was not written from an MDAN "
                    "(or was converted wrongly): save or download the checkpoint again"
                )
            out[key] = tensor.float()
        elif tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise WeightsError(
                f"weights from {source}: tensor {key!r} is {tensor.dtype}, but the model holds "
                f"{want.dtype} there (a counter); save or download the checkpoint again"
            )
        else:
            out[key] = tensor.to(want.dtype)
    return out


def _assign(
    model: Any, state: Mapping[str, Tensor], expected: Mapping[str, Tensor], *, source: str
) -> None:
    """Strict, shape-checked ``load_state_dict(assign=True)`` onto a meta-built model whose
    state dict (taken before any tensor was assigned) is ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        width = state["f5.weight"].shape[0] if "f5.weight" in state else None
        dead_f5 = set(unexpected) <= {"f5.weight", "f5.bias"} and not (missing or wrong)
        if width is not None and model.f5 is None and dead_f5:
            raise WeightsError(
                f"weights from {source} hold F5 (f5.*), which this MDAN does not build: with "
                f"mapping ({model.config.mapping}), mhcca=False and no top-down sums nothing "
                "reads F5 (mdan_zoo 0.1.0 built it unused). Its other tensors fit: drop "
                "the two f5.* tensors from the file to load it"
            )
        if width is not None and width != model.config.fpn_channels:  # e.g. a zoo 0.1.0 file
            wrong.insert(
                0,
                f"top-down width {width} (model: {model.config.fpn_channels}; pass "
                f"config=MDANConfig(fpn_channels={width}), MDANConfig.lite() for 256)",
            )
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
