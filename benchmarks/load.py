"""Loading WEBEmo-ResNet-101 from a warm Hub cache vs building the model + load_state_dict.

Both sides read the same safetensors file from the same disk, in one process, alternating,
and the script prints the median of each and their ratio. Goal (issue 3): the zoo's load
takes at most half the time of the plain way.

    python benchmarks/load.py [--repeats 5]

"plain": ``MDAN(get_taxonomy("webemo"))`` (random init of every layer), then
``load_state_dict(safetensors.torch.load_file(path))`` (a copy into each parameter).
"zoo": ``mdan_webemo(weights="hf-hub:bench/mdan-webemo@<commit>")``, a pinned commit in a warm
cache: no network, config.json rebuilds the model on the meta device, tensors are assigned.
"zoo, re-hash": the same with the sha256 of the weights recomputed (the first load after a
download, or after the file changed), instead of trusting the stat record of an earlier check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


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
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import safetensors.torch
    import torch

    import mdan_zoo
    from mdan_zoo import MDAN, get_taxonomy, mdan_webemo
    from mdan_zoo.hub._integrity import records_dir

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "hub"
        os.environ["HF_HUB_CACHE"] = str(cache)
        os.environ["HF_HUB_OFFLINE"] = "1"  # proves no network call is needed
        source = MDAN(get_taxonomy("webemo"))  # ResNet-101, paper config
        rev = _warm_cache(cache, source)
        weights = cache / "models--bench--mdan-webemo" / "snapshots" / rev / "model.safetensors"
        size_mb = weights.stat().st_size / 1e6
        ref = f"hf-hub:bench/mdan-webemo@{rev}"
        del source

        def plain() -> MDAN:
            model = MDAN(get_taxonomy("webemo"))
            model.load_state_dict(safetensors.torch.load_file(weights), strict=True)
            return model

        def zoo() -> MDAN:
            return mdan_webemo(weights=ref)

        def zoo_rehash() -> MDAN:
            for rec in records_dir().glob("*"):
                rec.unlink()
            return mdan_webemo(weights=ref)

        check = zoo()
        ref_model = plain()
        a, b = check.state_dict(), ref_model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (
            "not the same model"
        )
        del check, ref_model
        times: dict[str, list[float]] = {"plain": [], "zoo": [], "zoo, re-hash": []}
        fns = {"plain": plain, "zoo": zoo, "zoo, re-hash": zoo_rehash}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                model = fn()
                times[name].append(time.perf_counter() - t0)
                del model
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"mdan_zoo {mdan_zoo.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        print(f"WEBEmo MDAN-ResNet-101, {size_mb:.0f} MB safetensors, median of {args.repeats}")
        for name, value in med.items():
            print(f"  {name:<14} {value:6.3f} s   ratio to plain {value / med['plain']:.2f}")
        goal = med["zoo"] <= 0.5 * med["plain"]
        print(f"goal (zoo <= 0.5 x plain): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
