"""The gradio page: wiring only. What it shows comes from :mod:`._session` and :mod:`._render`.

Imported only when a page is built, so ``mdan-zoo --help`` and ``import mdan_zoo`` never load
gradio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._render import model_panel, results_html, warning_banner
from ._session import Session, Upload, model_info

__all__ = ["build_blocks"]

log = logging.getLogger(__name__)

TITLE = "MDAN: see what the model sees"

INTRO = (
    "Drop one or several photos (or take a webcam snapshot, or paste one). For each, every "
    "level of the emotion hierarchy shows its top labels with their overall probability P_O, "
    "the hierarchy-consistent answer is the path with the highest product of P_O, and the "
    "attention maps show where each level looked (L-CAM, Sec. 4.2 of the paper)."
)


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app calls no one
    import gradio as gr

    return gr


def _uploads(files: Sequence[Any] | None, snapshot: str | None) -> list[Upload]:
    uploads = []
    for item in files or []:
        path = item if isinstance(item, str) else getattr(item, "name", str(item))
        uploads.append(Upload(path=path, name=Path(path).name))
    if snapshot:
        uploads.append(Upload(path=snapshot, name="webcam-or-pasted.png"))
    return uploads


def build_blocks(session: Session, *, device: str) -> Any:
    """The page as a ``gradio.Blocks`` (not launched)."""
    gr = _gradio()
    info = model_info(session.model, device=device)
    headers = ["source", "ok", "label", "joint_prob", "consistent"]

    def analyse(
        files: Sequence[Any] | None, snapshot: str | None, branches: bool
    ) -> tuple[Any, ...]:
        """The labels: what the user waits for, sent before anything else is computed."""
        uploads = _uploads(files, snapshot)
        try:
            preds = session.predict(uploads) if uploads else []
        except Exception as err:  # noqa: BLE001 - said on the page; the server keeps serving
            log.exception("prediction failed")
            raise gr.Error(f"the model could not answer: {type(err).__name__}: {err}") from None
        return results_html(preds, branches=branches), [], None, None, None, (uploads, preds)

    def details(
        done: tuple[list[Upload], list[Any]] | None, with_maps: bool = True
    ) -> tuple[Any, ...]:
        """Then the table, the files and the attention pictures (a second event, started by
        the browser once the labels are on the page, so it never delays them)."""
        uploads, preds = done or ([], [])
        if not preds:
            return None, None, None, []
        try:
            dl = session.downloads(preds)
            pictures = session.attention(uploads, preds) if with_maps else []
        except Exception as err:  # noqa: BLE001
            log.exception("attention maps failed")
            raise gr.Error(f"the attention maps failed: {type(err).__name__}: {err}") from None
        return gr.Dataframe(value=dl.rows, headers=dl.header), dl.csv, dl.jsonl, pictures

    def rerender(done: tuple[list[Upload], list[Any]] | None, branches: bool) -> str:
        return results_html(done[1] if done else [], branches=branches)

    with gr.Blocks(title=TITLE, delete_cache=(3600, 3600)) as blocks:
        state = gr.State(None)
        gr.HTML(warning_banner(session.untrained, element_id="mdan-untrained"))
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    files = gr.File(
                        file_count="multiple",
                        file_types=["image"],
                        label=f"Photos (up to {session.max_upload_bytes / 2**20:g} MB each)",
                        height=200,
                        elem_id="mdan-upload",
                    )
                    snapshot = gr.Image(
                        sources=["webcam", "clipboard"],
                        type="filepath",
                        format="png",
                        label="Webcam snapshot or pasted image",
                        height=200,
                        elem_id="mdan-snapshot",
                    )
                with gr.Row(equal_height=True):
                    branches = gr.Checkbox(
                        value=False,
                        label="show P_L and P_G beside P_O (the local and global branches)",
                        elem_id="mdan-branches",
                    )
                    with_maps = gr.Checkbox(
                        value=True,
                        label="attention maps (a second pass of the model, after the labels)",
                        elem_id="mdan-with-maps",
                    )
                    run = gr.Button("Analyse again", elem_id="mdan-run")
                gallery = gr.Gallery(
                    label="Where each level looks: L-CAM attention (as predict --save-attention)",
                    columns=1,
                    object_fit="contain",
                    elem_id="mdan-attention",
                )
                results = gr.HTML(results_html([]), elem_id="mdan-results")
                table = gr.Dataframe(
                    headers=headers, label="Batch", interactive=False, elem_id="mdan-table"
                )
                with gr.Row():
                    csv_file = gr.File(label="CSV (predict --output format)", elem_id="mdan-csv")
                    jsonl_file = gr.File(label="JSON lines", elem_id="mdan-jsonl")
            with gr.Column(scale=1):
                gr.HTML(warning_banner(session.untrained))
                gr.HTML(model_panel(info))
        gr.on(
            [files.upload, snapshot.input, run.click],
            fn=analyse,
            inputs=[files, snapshot, branches],
            outputs=[results, gallery, table, csv_file, jsonl_file, state],
            api_name="analyse",
            concurrency_id="model",  # one model call at a time, whichever event asks
        ).then(
            details,
            inputs=[state, with_maps],
            outputs=[table, csv_file, jsonl_file, gallery],
            api_name="details",
            concurrency_id="model",
        )
        branches.change(rerender, inputs=[state, branches], outputs=results, api_name=False)
    return blocks
