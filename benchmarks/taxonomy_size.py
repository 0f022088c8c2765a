"""What a large taxonomy costs: MDAN's forward time and peak memory at 30,000 fine classes
against 10, at 3 levels and at 2, and a training step's memory at 30,000 against 25 (issue 21).

The trees are generated (``generated_tree``: every level about ``fine ** (1 / levels)`` times
the one above, children spread evenly), so that a taxonomy of any size exists. Times: one
process, ``torch.inference_mode``, batch 1, the models interleaved after a warm-up, medians
(CPU time first). Peak memory: a fresh process per measurement, peak RSS above the resting
RSS of the built model (``/proc/self/status`` VmHWM after resetting it), for one forward and for
one training step (forward, Eq. 3 loss, backward), the latter at batch 1 and 2 so that the
per-image slope is seen apart from the gradients of the larger heads. Goal: 30,000 classes
at most 1.3x 10 classes in forward time and peak memory, and 1.3x 25 classes in a training
step's memory per image.

    PYTHONPATH=$PWD python benchmarks/taxonomy_size.py [--size 448] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

GOAL = 1.3


def generated_tree(levels: int, fine: int):  # noqa: ANN201
    """A balanced tree of ``levels`` levels with ``fine`` classes at the finest."""
    from mdan_zoo import Taxonomy

    sizes = [max(2, round(fine ** ((d + 1) / levels))) for d in range(levels - 1)] + [fine]
    sizes = [min(s, fine) for s in sizes]
    labels = [[f"L{d}_{i}" for i in range(n)] for d, n in enumerate(sizes)]
    parents = [
        {labels[d][i]: labels[d - 1][i * sizes[d - 1] // sizes[d]] for i in range(sizes[d])}
        for d in range(1, levels)
    ]
    return Taxonomy.from_levels(labels, parents, name=f"generated-{levels}x{fine}")


def build(levels: int, fine: int, width: int, backbone: str):  # noqa: ANN201
    import torch

    from mdan_zoo import MDAN, MDANConfig

    torch.manual_seed(0)
    model = MDAN(generated_tree(levels, fine), MDANConfig(backbone=backbone, fpn_channels=width))
    model.weights_origin = "benchmark"
    return model


def peak_mb(spec: dict) -> float:
    """Peak RSS above the built model (MB) of one forward or training step, in a forked child."""
    import torch

    torch.set_num_threads(spec["threads"])
    model = build(spec["levels"], spec["fine"], spec["width"], spec["backbone"])
    x = torch.randn(spec["batch"], 3, spec["size"], spec["size"])
    y = torch.zeros(spec["batch"], dtype=torch.long)
    model.train(spec["train"])
    rest = _common.reset_peak()
    if spec["train"]:
        model.loss(model(x), y).backward()
    else:
        with torch.inference_mode():
            model(x)
    return _common.peak_above(rest) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--rounds", type=_common.rounds_arg, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--quick", action="store_true", help="ResNet-18, width 64, 64 px, 2,000 classes"
    )
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone, width, size, large = "resnet101", 1024, args.size, 30_000
    if args.quick:
        backbone, width, size, large = "resnet18", 64, 64, 2_000
    print(_common.header(f"MDAN ({backbone}, width {width}) at {size} px on generated trees"))
    threads = torch.get_num_threads()
    specs = [
        dict(levels=levels, fine=k, width=width, backbone=backbone, batch=batch, size=size,
             train=train, threads=threads)
        for levels, k, batch, train in [(3, 10, 1, False), (3, large, 1, False),
                                        (2, 10, 1, False), (2, large, 1, False),
                                        (3, 25, 1, True), (3, 25, 2, True),
                                        (3, large, 1, True), (3, large, 2, True)]
    ]  # fmt: skip
    # memory first, each in a fork of this still single-threaded process
    peaks = [] if args.no_memory else [float(_common.in_fork(peak_mb, spec)) for spec in specs]  # type: ignore[arg-type]
    rows = []
    for levels in (3, 2):
        models = {k: build(levels, k, width, backbone).eval() for k in (10, large)}
        x = torch.randn(1, 3, size, size)

        def runner(model, x=x):  # noqa: ANN001, ANN202
            def run() -> None:
                with torch.inference_mode():
                    model(x)

            return run

        times = _common.interleaved({k: runner(m) for k, m in models.items()}, rounds=args.rounds)
        sizes = {k: "/".join(map(str, m.num_classes)) for k, m in models.items()}
        params = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in models.items()}
        del models
        rows.append((levels, sizes, params, times))
    print(f"\n## Forward, batch 1, median of {args.rounds} (CPU time first)\n")
    print("| levels | classes | M params | CPU s | ratio | wall s | ratio | peak MB | ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, (levels, sizes, params, times) in enumerate(rows):
        mem = dict(zip((10, large), peaks[2 * i : 2 * i + 2], strict=True)) if peaks else {}
        for k in (10, large):
            t, b = times[k], times[10]
            m = f"{mem[k]:.0f} | {mem[k] / mem[10]:.2f}" if mem else "- | -"
            print(
                f"| {levels} | {sizes[k]} | {params[k]:.1f} | {t.cpu:.3f} | {t.cpu / b.cpu:.2f} "
                f"| {t.wall:.3f} | {t.wall / b.wall:.2f} | {m} |"
            )
    if args.no_memory:
        return
    print("\n## Training step memory (forward + loss + backward), peak RSS above the built model\n")
    print(
        "| classes | batch 1 MB | batch 2 MB | per image MB | ratio per image | ratio at batch 2 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    train = {25: peaks[4:6], large: peaks[6:8]}
    for k, (one, two) in train.items():
        base = train[25]
        print(
            f"| {k} (3 levels) | {one:.0f} | {two:.0f} | {two - one:.0f} | "
            f"{(two - one) / (base[1] - base[0]):.2f} | {two / base[1]:.2f} |"
        )
    print(f"\ngoal: every ratio at {large:,} classes <= {GOAL}")


if __name__ == "__main__":
    main()
