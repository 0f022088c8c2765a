"""JPEG decoding and the train augmentations on the training device (``decode="gpu"``).

A GPU takes MDAN's 448 px training images faster than a few CPU cores can decode and resize
them (docs/benchmarks.md). With ``TrainConfig.decode = "gpu"`` the DataLoader workers only read
each file's bytes and its header (size, EXIF orientation) and draw the random crop and flip,
the main process then decodes the whole batch with nvJPEG (``torchvision.io.decode_jpeg(...,
device=...)``) and resizes, crops, flips and normalises it there with torchvision's tensor
kernels.

The random draws are the ones :meth:`~mdan_zoo.Preprocessing.train_transform` makes, in the same
order from the same generator (the worker's), so a seed gives the same crops and flips as
``decode="cpu"``; the pixels then differ only by the JPEG decoders (libjpeg-turbo in Pillow vs
nvJPEG: IDCT and chroma upsampling, a few grey levels) and the resize kernels of the devices.
Files that are not plain RGB / greyscale JPEGs (PNG, CMYK JPEGs, ...) are decoded by Pillow in
the worker as before and only resized on the device; a JPEG that nvJPEG refuses is decoded by
Pillow in the main process (logged once).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..config import Preprocessing
from ..errors import ImageDecodeError
from ..imageio import MAX_ASPECT_RATIO, ImageReadError, read_image
from .dataset import ImageDataset

__all__ = ["EncodedBatch", "EncodedImages", "collate_encoded", "decode_batch", "resized_size"]

logger = logging.getLogger(__name__)

# meta columns of an encoded sample
_ENCODED, _ORIENT, _TOP, _LEFT, _FLIP, _INDEX = range(6)
_EXIF_ORIENTATION = 0x0112


def resized_size(height: int, width: int, pre: Preprocessing) -> tuple[int, int]:
    """(H, W) after the train transform's resize step (v2.Resize of the shorter side to
    ``resize_size``; with ``resize_size=None`` only images smaller than the crop grow)."""
    short, long = (height, width) if height <= width else (width, height)
    size = pre.resize_size
    if size is None:
        if short >= pre.input_size:
            return height, width
        size = pre.input_size
    new_long = int(size * long / short)
    return (size, new_long) if height <= width else (new_long, size)


class EncodedImages(Dataset):
    """``dataset[i]`` of an :class:`ImageDataset` as ``((data, meta), fine_index)``: the file's
    bytes (or, for images nvJPEG does not take, Pillow's upright RGB pixels) and the crop and
    flip drawn as the train transform draws them. Unreadable files follow the dataset's
    ``on_missing`` like :meth:`ImageDataset.__getitem__`."""

    def __init__(self, dataset: ImageDataset, preprocessing: Preprocessing) -> None:
        from torchvision.transforms import v2

        self.dataset = dataset
        self.preprocessing = preprocessing
        self._crop = v2.RandomCrop(preprocessing.input_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[tuple[Tensor, Tensor], int]:
        ds = self.dataset
        n = len(ds.samples)
        for j in (k % n for k in range(i, i + n)):
            try:
                item = self._read(j)
            except ImageReadError as err:
                ds._unreadable(j, err, instead_of=i)
                continue
            return item, ds.samples[j][1]
        raise ImageDecodeError(
            f"{ds.name}: none of the {n} images can be decoded (e.g. {ds.samples[i][0]}); "
            "check the files with load_dataset(..., check='full')"
        )

    def _read(self, j: int) -> tuple[Tensor, Tensor]:
        path = self.dataset.samples[j][0]
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as err:
            raise ImageReadError(path, f"cannot read the file ({err.strerror or err})") from None
        header = _jpeg_header(raw)
        if header is None:  # not a JPEG nvJPEG takes: Pillow decodes it here, as before
            pixels = _pixels(read_image(path))
            data, encoded, orient = pixels, 0, 1
            h, w = pixels.shape[-2:]
        else:
            (w, h), orient = header
            _check_size(path, w, h)
            if orient in (5, 6, 7, 8):
                w, h = h, w
            data, encoded = torch.frombuffer(bytearray(raw), dtype=torch.uint8), 1
        rh, rw = resized_size(int(h), int(w), self.preprocessing)
        params = self._crop.make_params([torch.empty(1, 1, 1).expand(3, rh, rw)])
        flip = self.preprocessing.hflip and bool(torch.rand(1) < 0.5)
        meta = torch.tensor([encoded, orient, params["top"], params["left"], int(flip), j])
        return data, meta


def _pixels(img: Image.Image) -> Tensor:
    """An RGB PIL image as a uint8 tensor ``[3, H, W]``."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(img)


def _jpeg_header(raw: bytes) -> tuple[tuple[int, int], int] | None:
    """((W, H), EXIF orientation) of a baseline/progressive RGB or greyscale JPEG; None for
    anything else (other formats, CMYK / YCCK JPEGs), which Pillow decodes."""
    if raw[:3] != b"\xff\xd8\xff" or raw[-2:] != b"\xff\xd9":  # cut short: Pillow says so
        return None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            orient = int(img.getexif().get(_EXIF_ORIENTATION, 1))
            return img.size, orient if 1 <= orient <= 8 else 1
    except Exception:  # noqa: BLE001 - a bad header or EXIF block: read_image names it
        return None


def _check_size(path: str, w: int, h: int) -> None:
    """The limits :func:`read_image` applies from the header: decompression bombs and strips."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        read_image(path)  # raises the same ImageReadError as decode="cpu"
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        read_image(path)


class EncodedBatch:
    """A micro-batch of :class:`EncodedImages` samples: ``data`` (one tensor per image),
    ``meta`` ``[N, 6]``; :func:`decode_batch` turns it into the train tensor."""

    def __init__(self, data: list[Tensor], meta: Tensor) -> None:
        self.data, self.meta = data, meta

    def __len__(self) -> int:
        return len(self.data)

    def pin_memory(self) -> EncodedBatch:
        return EncodedBatch([d.pin_memory() for d in self.data], self.meta.pin_memory())


def collate_encoded(
    batch: Sequence[tuple[tuple[Tensor, Tensor], int]],
) -> tuple[EncodedBatch, Tensor]:
    """DataLoader ``collate_fn`` for :class:`EncodedImages` (images keep their own sizes)."""
    data = [d for (d, _), _ in batch]
    meta = torch.stack([m for (_, m), _ in batch])
    return EncodedBatch(data, meta), torch.tensor([t for _, t in batch])


def _orient(img: Tensor, orientation: int) -> Tensor:
    """EXIF orientation as :func:`PIL.ImageOps.exif_transpose` applies it (CHW tensor)."""
    if orientation == 2:
        return img.flip(-1)
    if orientation == 3:
        return img.flip(-1, -2)
    if orientation == 4:
        return img.flip(-2)
    if orientation == 5:
        return img.transpose(-1, -2)
    if orientation == 6:
        return img.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return img.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return img.transpose(-1, -2).flip(-2)
    return img


def decode_batch(
    batch: EncodedBatch,
    device: torch.device | str,
    preprocessing: Preprocessing,
    *,
    dataset: ImageDataset | None = None,
) -> Tensor:
    """Decode, resize, crop, flip and normalise ``batch`` on ``device``: the float tensor
    ``[N, 3, S, S]`` the CPU path (:meth:`Preprocessing.train_transform`) gives, within the
    JPEG decoders' tolerance.

    ``dataset`` (the :class:`ImageDataset` the batch was read from) names a file nvJPEG
    refuses; Pillow then decodes it here. One that Pillow refuses too stops with an
    :class:`ImageDecodeError` under ``on_missing="error"``; under ``"skip"`` it is logged,
    counted in ``dataset.decode_failures()`` and another image of the batch takes its place.
    """
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    device = torch.device(device)
    pre = preprocessing
    meta = batch.meta.tolist()
    images: list[Tensor | None] = [None] * len(batch)
    jpeg = [i for i, m in enumerate(meta) if m[_ENCODED]]
    if jpeg:
        try:
            decoded = decode_jpeg(
                [batch.data[i] for i in jpeg], mode=ImageReadMode.RGB, device=device
            )
            for i, img in zip(jpeg, decoded, strict=True):
                images[i] = _orient(img, meta[i][_ORIENT])
        except RuntimeError:  # one bad file fails the whole call: decode them one by one
            for i in jpeg:
                images[i] = _decode_one(batch.data[i], meta[i], device, dataset)
    for i, m in enumerate(meta):
        if not m[_ENCODED]:
            images[i] = batch.data[i].to(device, non_blocking=True)
    good = next((img for img in images if img is not None), None)
    if good is None:
        raise ImageDecodeError("none of the images of a training batch could be decoded")
    s = pre.input_size
    interp = pre._interp()
    out = []
    for img, m in zip(images, meta, strict=True):
        if img is None:  # skipped (on_missing="skip"): another image of the batch stands in
            img, m = good, meta[images.index(good)]
        h, w = img.shape[-2:]
        rh, rw = resized_size(h, w, pre)
        if (rh, rw) != (h, w):
            img = F.resize(img, [rh, rw], interpolation=interp, antialias=True)
        img = F.crop(img, m[_TOP], m[_LEFT], s, s)
        out.append(img.flip(-1) if m[_FLIP] else img)
    x = F.to_dtype(torch.stack(out), torch.float32, scale=True)  # the CPU path's kernels
    return F.normalize(x, list(pre.mean), list(pre.std))


def _decode_one(
    data: Tensor, meta: list[int], device: torch.device, dataset: ImageDataset | None
) -> Tensor | None:
    """One JPEG on ``device``, or by Pillow when the device's decoder refuses it (upright
    already); None when Pillow refuses it too and the dataset skips such files."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return _orient(decode_jpeg(data, mode=ImageReadMode.RGB, device=device), meta[_ORIENT])
    except RuntimeError as err:
        if dataset is None:
            raise ImageDecodeError(
                f"cannot decode a JPEG of the batch on {device} ({err}); pass dataset= to "
                "decode_batch so that Pillow can read the file instead"
            ) from None
        j = meta[_INDEX]
        path = dataset.samples[j][0]
        logger.info("decode=gpu: %s does not decode on %s (%s); Pillow reads it", path, device, err)
    try:
        return _pixels(read_image(path)).to(device)
    except ImageReadError as bad:
        dataset._unreadable(j, bad, instead_of=j)  # raises under on_missing="error"
        return None
