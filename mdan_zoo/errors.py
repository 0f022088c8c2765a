"""Every public exception of mdan_zoo, in one family.

Each derives from :class:`MDANZooError` (``except MDANZooError`` catches anything the package
raises on purpose) and still from the builtin it always had, so ``except ValueError`` code keeps
working. The modules that raise them re-export them under their old names
(``mdan_zoo.config.ConfigError`` is this ``ConfigError``). Messages name the problem and the fix.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

__all__ = [
    "MDANZooError",
    "ChecksumError",
    "ConfigError",
    "DatasetError",
    "ImageDecodeError",
    "ImageReadError",
    "MissingDependencyError",
    "NonFiniteLossError",
    "OutputError",
    "RunExistsError",
    "RunFolderError",
    "RunsError",
    "ServeExtraMissing",
    "SplitError",
    "StorageError",
    "TaxonomyError",
    "UnpublishedWeightsError",
    "UntrainedWeightsWarning",
    "UsageError",
    "WeightsError",
]


class MDANZooError(Exception):
    """The base of every error mdan_zoo raises on purpose; the message says what to do."""


class ConfigError(MDANZooError, ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


class TaxonomyError(MDANZooError, ValueError):
    """A label tree breaks a rule; the message names the label and the rule."""


class WeightsError(MDANZooError, RuntimeError):
    """A checkpoint cannot be found, read or matched to the model; the message says why and
    what to do."""


class ChecksumError(WeightsError):
    """A weights file does not have the sha256 it should; the message names the file."""


class UnpublishedWeightsError(MDANZooError, LookupError):
    """``pretrained=True`` asked for weights that nobody has published yet.

    The message says how to train them (``mdan-zoo train <dataset>``, a config that ships with
    the package; ``docs/reproduce.md``) or how to load a file you have.
    """


class RunFolderError(ConfigError):
    """A run folder that cannot be trusted, or that a command must not overwrite; the message
    names the files, what is wrong with each, and the fix."""


class DatasetError(MDANZooError, RuntimeError):
    """A dataset file is missing, unreadable or inconsistent; the message says how to fix it."""


class ImageDecodeError(DatasetError):
    """An image failed to decode while the data was read (after passing the up-front check);
    the message names the file, the reason and the fix.

    Raised in a DataLoader worker, PyTorch re-raises it in the main process as
    ``ImageDecodeError("Caught ImageDecodeError in DataLoader worker process 0. Original
    Traceback ...")``; the constructor keeps only the original message, so a user sees what
    is wrong and how to fix it rather than a worker's traceback.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].rstrip()
        super().__init__(message)


class SplitError(DatasetError):
    """A split file does not match the dataset or the split asked for; the message says how
    to regenerate it."""


class ImageReadError(MDANZooError, OSError):
    """An image could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class NonFiniteLossError(MDANZooError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class RunExistsError(ConfigError):
    """The output folder already holds a run that was not asked to be continued; ``paths``
    names the run folders (nothing in them was touched), ``detail`` what they hold."""

    def __init__(self, paths: list[Path], detail: str, fix: str) -> None:
        super().__init__(f"{detail}: {fix}; nothing was changed")
        self.paths = paths
        self.detail = detail


class RunsError(MDANZooError, ValueError):
    """No runs where runs were expected, or runs that cannot be averaged together."""


class UsageError(MDANZooError, ValueError):
    """A command-line mistake (exit status 2): unknown model, unreadable weights, bad option."""


class OutputError(MDANZooError, ValueError):
    """An ``--output`` file that cannot be used as asked (a usage error: exit status 2)."""


_STORAGE = {  # errno -> (what happened, the fix)
    errno.ENOSPC: (
        "no space left on the disk",
        "free some space there, or choose a folder on another disk, and run the command again",
    ),  # fmt: skip
    errno.EDQUOT: (
        "the disk quota is used up",
        "free some of your space, or choose a folder on another disk, and run the command again",
    ),  # fmt: skip
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.EACCES: (
        "permission denied",
        "choose a folder you may write in, or fix its permissions",
    ),  # fmt: skip
    errno.EPERM: ("operation not permitted", "choose a folder you may write in"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("the path is a folder", "name a file"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
}


class StorageError(MDANZooError, OSError):
    """Writing a file or folder failed (a full disk, a read-only or forbidden folder, a file in
    the way); the message names the path and the fix. Nothing half-written is left under a
    real name: every write goes to a temporary name first (``mdan_zoo._io``)."""

    @classmethod
    def of(cls, err: BaseException, path: str | os.PathLike[str], doing: str) -> StorageError:
        """The error for ``err`` (an ``OSError``, or safetensors' error around one) raised
        while ``doing`` (e.g. "writing the checkpoint") at ``path``."""
        code = getattr(err, "errno", None)
        if code is None:  # safetensors: "... No space left on device (os error 28)"
            found = re.search(r"os error (\d+)", str(err))
            code = int(found.group(1)) if found else None
        why, fix = _STORAGE.get(code or -1, (getattr(err, "strerror", None) or str(err), ""))
        fix = fix or "check the path and the disk, and run the command again"
        new = cls(code or errno.EIO, f"{doing} {path}: {why}; {fix} (nothing half-written was "
                  "left under a real name)")  # fmt: skip
        new.filename = str(path)
        return new

    def __str__(self) -> str:
        return str(self.strerror)


class ServeExtraMissing(MDANZooError, ImportError):
    """The web app (``mdan-zoo serve``) needs gradio, the ``serve`` extra, and it is missing or
    too old; the message gives the exact ``pip install 'mdan_zoo[serve]'`` command."""


class MissingDependencyError(MDANZooError, ImportError):
    """An optional package a feature needs is not installed; the message gives the exact
    ``pip install 'mdan_zoo[extra]'`` (``extra`` and ``packages`` say which)."""

    def __init__(self, message: str, *, extra: str, packages: tuple[str, ...]) -> None:
        super().__init__(message)
        self.extra = extra
        self.packages = packages


class UntrainedWeightsWarning(UserWarning):
    """Predicting with weights that were never trained or loaded: the labels are random."""
