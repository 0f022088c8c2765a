"""What ``mdan-zoo serve`` does once its arguments are parsed: load, build, listen, print the URL.

Exit status: 0 when stopped (Ctrl-C), 2 on usage errors (weights that do not load, a device
that is not there, a port range with nothing free), said before anything listens.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UsageError as _Usage

__all__ = ["run_serve"]


def run_serve(
    *,
    weights: str | None,
    model_name: str | None = None,
    pretrained: bool = False,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    max_upload_mb: float = 20.0,
    queue: int = 16,
    share: bool = False,
    token: str | None = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``mdan-zoo serve``: serve until interrupted; 0 then, 2 on a usage error."""
    from ._launch import build_app, launch, load_served_model

    err = stderr or sys.stderr
    try:
        if device is not None:
            import torch

            try:
                torch.empty(0, device=device)
            except (RuntimeError, AssertionError) as exc:
                raise _Usage(f"--device {device} is not usable here: {exc}") from None
        model = load_served_model(
            weights=weights, model_name=model_name, pretrained=pretrained, token=token
        )
        app = build_app(model, max_upload_mb=max_upload_mb, queue=queue, device=device)
        if app.session.untrained is not None:  # the page says it in red; the terminal too
            print(f"mdan-zoo serve: UntrainedWeightsWarning: {app.session.untrained}", file=err)
    except _Usage as exc:
        print(f"mdan-zoo serve: error: {exc}", file=err)
        return 2
    try:
        launch(app, host=host, port=port, share=share, stdout=stdout, stderr=err)
    except OSError as exc:
        print(f"mdan-zoo serve: error: cannot listen on {host}:{port}: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("mdan-zoo serve: stopped", file=err)
    return 0
