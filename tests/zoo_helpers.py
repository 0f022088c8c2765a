"""Shared bits of the zoo tests: a tiny MDAN and a batch of real photographs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy

TINY_CONFIG = MDANConfig(backbone="resnet18", fpn_channels=32)
TINY_PRE = Preprocessing(
    input_size=64, resize_size=72, mean=(0.5, 0.45, 0.4), std=(0.25, 0.25, 0.25)
)


def tiny_mdan(taxonomy: str = "fashion_mnist", seed: int = 0) -> MDAN:
    """A small MDAN (ResNet-18, FPN width 32, 64 x 64 input) with seeded random weights."""
    torch.manual_seed(seed)
    return MDAN(get_taxonomy(taxonomy), TINY_CONFIG, preprocessing=TINY_PRE).eval()


def photos() -> list[Image.Image]:
    """Real photographs shipped with scikit-image (astronaut, coffee, cat)."""
    from skimage import data

    return [Image.fromarray(np.asarray(f())) for f in (data.astronaut, data.coffee, data.chelsea)]


def batch(model: MDAN) -> torch.Tensor:
    """The photographs through the model's own eval transform."""
    transform = model.eval_transform()
    return torch.stack([transform(im) for im in photos()])


def same_state(a: MDAN, b: MDAN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class FakeHub:
    """A Hub-like HTTP server on 127.0.0.1 that answers every request (HEAD, GET, POST) with
    ``status``, a commit header, an ETag and ``body``, and records what it was asked.

    It would happily serve any revision: a test that sees no request proves that mdan_zoo
    refused before asking. ``status=401`` answers as the Hub does for a refused token.
    """

    def __init__(self, status: int = 200, body: bytes = b'{"format_version": 1}') -> None:
        import hashlib
        import http.server
        import threading

        hub = self
        self.status, self.body = status, body
        self.requests: list[tuple[str, str, str | None]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(hub.status)
                if hub.status == 401:
                    self.send_header(
                        "X-Error-Message", "Invalid credentials in Authorization header"
                    )
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(hub.body).hexdigest()}"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(hub.body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(hub.body)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def do_POST(self) -> None:  # noqa: N802
                self._answer(True)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def files_under(root: object) -> list[str]:
    """Every file and folder below ``root`` (relative paths, sorted)."""
    from pathlib import Path

    base = Path(str(root))
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")) if base.exists() else []
