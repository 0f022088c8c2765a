"""Loading paper-size WEBEmo weights (ResNet-101, 204 MB of float32 safetensors) side by side
with the physical floor of a verified load: reading the file and computing its sha256.

Rows, interleaved in one process after a warm-up (the file in the page cache: a warm load),
medians of ``--rounds``, CPU time first:

* "read + sha256" (the floor): ``hashlib.file_digest`` over the weights file;
* "read alone": ``safetensors.torch.load_file(backend="pread")``, the tensors without a check;
* "from_pretrained(folder)": ``MDAN.from_pretrained`` of a ``save_pretrained`` folder, which
  checks the sha256 config.json records on every load, hashing the bytes as it reads them;
* "Hub, warm cache": ``mdan_webemo(weights="hf-hub:bench/mdan-webemo@<commit>")`` from a warm
  Hub cache (``HF_HUB_OFFLINE=1``), whose file was verified before (a stat record);
* "plain": ``MDAN(get_taxonomy("webemo"))`` (random init) then ``load_state_dict(load_file())``.

Goals: from_pretrained(folder) <= 1.3x the floor (issue 21); the zoo's warm Hub load <= 0.5x
plain (issue 3).

    PYTHONPATH=$PWD python benchmarks/load.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from pathlib import Path

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

GOAL_FLOOR = 1.3
GOAL_PLAIN = 0.5


def _warm_cache(cache: Path, model) -> str:  # noqa: ANN001
    """A Hub cache holding the checkpoint at a pinned commit, in huggingface_hub's layout
    (``models--org--name/{refs,snapshots}``; snapshot files may be plain files, as on systems
    without symlinks). The tests fill the cache through a real server instead (olah)."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--bench--mdan-webemo"
    model.save_pretrained(repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return rev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=_common.rounds_arg, default=5)
    parser.add_argument("--quick", action="store_true", help="ResNet-18, width 64 (45 MB)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import safetensors.torch
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from mdan_zoo import MDAN, MDANConfig, get_taxonomy, mdan_webemo

    cfg = MDANConfig(backbone="resnet18", fpn_channels=64) if args.quick else MDANConfig()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "hub"
        os.environ["HF_HUB_CACHE"] = str(cache)
        os.environ["HF_HUB_OFFLINE"] = "1"  # proves no network call is needed
        os.environ["HF_ASSETS_CACHE"] = str(Path(tmp) / "assets")
        source = MDAN(get_taxonomy("webemo"), cfg)
        source.weights_origin = "benchmark"
        rev = _warm_cache(cache, source)
        folder = source.save_pretrained(Path(tmp) / "folder")
        weights = folder / "model.safetensors"
        size_mb = weights.stat().st_size / 1e6
        ref = f"hf-hub:bench/mdan-webemo@{rev}"
        del source

        def floor() -> str:
            with open(weights, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()

        def read_alone() -> object:
            return safetensors.torch.load_file(weights, backend="pread")

        def local() -> MDAN:
            return MDAN.from_pretrained(folder)

        def hub() -> MDAN:
            return mdan_webemo(weights=ref, config=cfg) if args.quick else mdan_webemo(weights=ref)

        def plain() -> MDAN:
            model = MDAN(get_taxonomy("webemo"), cfg)
            model.load_state_dict(safetensors.torch.load_file(weights), strict=True)
            return model

        a, b = local().state_dict(), plain().state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "not the same"
        runners = {
            "read + sha256 of the file (the floor)": floor,
            "read alone (safetensors, pread)": read_alone,
            "MDAN.from_pretrained(folder), verified": local,
            "mdan_webemo(hf-hub@commit), warm cache": hub,
            "plain: build (random init) + load_state_dict": plain,
        }
        times = _common.interleaved(runners, rounds=args.rounds)
    print(
        _common.header(f"WEBEmo MDAN ({cfg.backbone}, width {cfg.fpn_channels}), {size_mb:.0f} MB")
    )
    print(f"\nmedian of {args.rounds} interleaved rounds after a warm-up\n")
    print("| load | CPU s | / floor | wall s | / floor | wall / plain |")
    print("|---|---:|---:|---:|---:|---:|")
    base = times["read + sha256 of the file (the floor)"]
    plain_t = times["plain: build (random init) + load_state_dict"]
    for name, t in times.items():
        print(
            f"| {name} | {t.cpu:.3f} | {t.cpu / base.cpu:.2f} | {t.wall:.3f} | "
            f"{t.wall / base.wall:.2f} | {t.wall / plain_t.wall:.2f} |"
        )
    print(
        f"\ngoals: verified from_pretrained <= {GOAL_FLOOR}x the floor; warm Hub load <= "
        f"{GOAL_PLAIN}x plain"
    )


if __name__ == "__main__":
    main()
