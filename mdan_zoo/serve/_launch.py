"""Building and starting the app: gradio checked for, the model loaded, a port found, the URL said.

Nothing here imports gradio at module level; :func:`require_gradio` and :func:`build_app` do.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ServeExtraMissing, UsageError, WeightsError

__all__ = [
    "DEFAULT_PORT",
    "PIP_COMMAND",
    "App",
    "ServeExtraMissing",
    "WEIGHTS_ENV",
    "app_from_env",
    "build_app",
    "free_port",
    "launch",
    "load_served_model",
    "require_gradio",
]

PIP_COMMAND = "pip install 'mdan_zoo[serve]'"
"""The exact command that installs the web app's dependencies."""

DEFAULT_PORT = 7860
"""gradio's and Hugging Face Spaces' port; taken, the next free one is used."""

GRADIO_FLOOR = (6, 0)


def require_gradio() -> None:
    """Raise :class:`ServeExtraMissing` naming :data:`PIP_COMMAND` unless gradio is importable."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app calls no one
    try:
        import gradio
    except ImportError as err:
        raise ServeExtraMissing(
            f"the web app needs gradio, which is not installed ({err}); install it with: "
            f"{PIP_COMMAND}"
        ) from None
    version = getattr(gradio, "__version__", "0")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < GRADIO_FLOOR:
        raise ServeExtraMissing(
            f"the web app needs gradio >= {'.'.join(map(str, GRADIO_FLOOR))}, found {version}; "
            f"upgrade with: {PIP_COMMAND.replace('pip install', 'pip install -U')}"
        )


@dataclass
class App:
    """A built page: the gradio ``Blocks``, the launch settings it needs, its session."""

    blocks: Any
    session: Any
    max_upload_mb: float
    queue: int

    def close(self) -> None:
        """Stop the server (if running) and remove the files this app wrote."""
        self.blocks.close()
        self.session.close()

    def launch(self, **options: Any) -> Any:
        """gradio's ``Blocks.launch`` with this app's upload limit, queue and look."""
        from ._render import CSS

        self.blocks.queue(max_size=self.queue, default_concurrency_limit=1)
        _calm(self.blocks)
        return self.blocks.launch(max_file_size=int(self.max_upload_mb * 2**20), css=CSS, **options)


QUEUE_POLL_SECONDS = 0.02
"""How often gradio's queue looks for work. Its Linux default (1 ms; 50 ms on Windows)
keeps an idle server at about 5 % of a core (55 ms of CPU per second on the test machine,
taken from the model while it runs); 20 ms costs at most 20 ms before a request starts."""


def _calm(blocks: Any) -> None:
    """Slow gradio's idle polling to :data:`QUEUE_POLL_SECONDS` (gradio internals: left alone
    when a gradio version has other names)."""
    queue = getattr(blocks, "_queue", None)
    for name, seconds in (
        ("sleep_when_free", QUEUE_POLL_SECONDS),
        ("progress_update_sleep_when_free", 5 * QUEUE_POLL_SECONDS),
    ):
        if isinstance(getattr(queue, name, None), float):
            setattr(queue, name, max(getattr(queue, name), seconds))


def build_app(
    model: Any,
    *,
    max_upload_mb: float = 20.0,
    queue: int = 16,
    device: str | None = None,
    top_k: int = 3,
) -> App:
    """The page for ``model`` (moved to ``device`` first), not yet started.

    ``max_upload_mb`` bounds each uploaded file (refused by size, before decoding);
    ``queue`` is the most requests that may wait (more are told the app is busy, retry).
    """
    require_gradio()
    if not (isinstance(queue, int) and queue >= 1):
        raise ValueError(f"queue must be a positive integer, got {queue!r}")
    from ._app import build_blocks
    from ._session import Session

    if device is not None:
        model.to(device)
    where = device or str(next(iter(model.parameters())).device)
    session = Session(model, max_upload_mb=max_upload_mb, top_k=top_k)
    return App(build_blocks(session, device=where), session, max_upload_mb, queue)


def free_port(host: str, port: int, *, tries: int = 100) -> int:
    """``port`` if it can be bound on ``host``, else the next one that can (up to ``tries``)."""
    for candidate in range(port, min(port + tries, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, candidate))
            except OSError as err:
                if err.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            return candidate
    raise OSError(errno.EADDRINUSE, f"no free port in {port}..{port + tries - 1} on {host}")


def launch(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    share: bool = False,
    block: bool = True,
    stdout: Any = None,
    stderr: Any = None,
) -> str:
    """Start ``app`` on ``host`` (loopback unless told) at ``port`` or the next free one (said on
    stderr); print the URL to open on stdout; return it. ``block`` serves until interrupted."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    chosen = free_port(host, port)
    if chosen != port:
        print(f"mdan-zoo serve: port {port} is taken; using {chosen}", file=err)
    _, local_url, share_url = app.launch(
        server_name=host,
        server_port=chosen,
        share=share,
        quiet=True,
        prevent_thread_lock=True,
        inbrowser=False,
    )
    shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://[{shown}]:{chosen}/" if ":" in shown else f"http://{shown}:{chosen}/"
    where = "" if shown == host else f" (listening on every interface, {host})"
    print(f"mdan-zoo serve: open {url} in a browser{where}", file=out, flush=True)
    if share_url:
        print(f"mdan-zoo serve: public link {share_url}", file=out, flush=True)
    if block:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does
        try:
            app.blocks.block_thread()  # returns on Ctrl-C, having closed the server
        finally:
            signal.signal(signal.SIGTERM, previous)
            app.close()
    return url


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


WEIGHTS_ENV = "MDAN_ZOO_WEIGHTS"
"""The environment variable ``app.py`` (a Hugging Face Space) reads its weights from."""


def app_from_env(environ: Any = None) -> App:
    """The app ``app.py`` serves, configured by environment variables (a Space's settings):
    ``MDAN_ZOO_WEIGHTS`` (required: anything ``--weights`` takes, e.g.
    ``hf-hub:org/name@commit``), and optionally ``MDAN_ZOO_DEVICE``, ``MDAN_ZOO_MAX_UPLOAD_MB``,
    ``MDAN_ZOO_QUEUE`` and ``HF_TOKEN`` (private weights)."""
    env = os.environ if environ is None else environ
    weights = env.get(WEIGHTS_ENV, "").strip()
    if not weights:
        raise ConfigError(
            f"set {WEIGHTS_ENV} to the weights to serve: a Hub repo (hf-hub:org/name@commit), a "
            "folder saved by save_pretrained or `mdan-zoo export`, or a .safetensors file (in a "
            "Space: Settings > Variables)"
        )
    try:
        max_mb = float(env.get("MDAN_ZOO_MAX_UPLOAD_MB", "20"))
        queue = int(env.get("MDAN_ZOO_QUEUE", "16"))
    except ValueError as err:
        raise ConfigError(f"MDAN_ZOO_MAX_UPLOAD_MB / MDAN_ZOO_QUEUE: {err}") from None
    try:
        model = load_served_model(weights=weights, model_name=None, pretrained=False, token=None)
    except UsageError as err:
        raise ConfigError(f"{WEIGHTS_ENV}: {err}") from None
    return build_app(model, max_upload_mb=max_mb, queue=queue, device=env.get("MDAN_ZOO_DEVICE"))


def load_served_model(
    *, weights: str | None, model_name: str | None, pretrained: bool, token: str | None
) -> Any:
    """The model the command names: ``--weights`` (anything ``from_pretrained`` reads, or a zoo
    name with ``--pretrained``) or ``--model NAME`` (random weights unless ``--pretrained``)."""
    from ..zoo import create_model, list_models, load_pretrained

    try:
        if model_name is not None:
            return create_model(model_name, pretrained=pretrained, token=token)
        assert weights is not None
        if weights in list_models() and not os.path.exists(weights):
            if not pretrained:
                raise UsageError(
                    f"--weights {weights} is a zoo model name, not a checkpoint: add --pretrained "
                    f"for its published weights, or use --model {weights} to see the page with "
                    "random weights"
                )
            return create_model(weights, pretrained=True, token=token)
        return load_pretrained(weights, token=token)
    except UsageError:
        raise
    except (LookupError, ValueError, TypeError, WeightsError, OSError) as err:
        what = f"--weights {weights}" if weights is not None else f"--model {model_name}"
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UsageError(f"cannot load {what}: {reason}") from None
