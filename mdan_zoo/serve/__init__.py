"""``mdan-zoo serve``: a local web page that shows what the model sees.

Upload photos (or a webcam snapshot), get every level's labels with P_O bars, the
hierarchy-consistent path with its joint probability, P_L and P_G on a switch, the L-CAM
attention of each level, and a batch table with CSV / JSON lines downloads in the ``mdan-zoo
predict --output`` format. Built on gradio, an optional extra: ``pip install 'mdan_zoo[serve]'``.

Python::

    from mdan_zoo import MDAN
    from mdan_zoo.serve import build_app, launch

    model = MDAN.from_pretrained("mdan-demo/model")
    launch(build_app(model), port=7860)        # or build_app(model).launch() as gradio does

The page's answers are ``model.predict``'s on the uploaded files: the app adds no model logic.
"""

from ._command import run_serve
from ._launch import (
    DEFAULT_PORT,
    PIP_COMMAND,
    WEIGHTS_ENV,
    App,
    ServeExtraMissing,
    app_from_env,
    build_app,
    free_port,
    launch,
    load_served_model,
    require_gradio,
)

__all__ = [
    "DEFAULT_PORT",
    "PIP_COMMAND",
    "WEIGHTS_ENV",
    "App",
    "ServeExtraMissing",
    "app_from_env",
    "build_app",
    "free_port",
    "launch",
    "load_served_model",
    "require_gradio",
    "run_serve",
]
