"""The web app as a Hugging Face Space runs it (``sdk: gradio``, ``app_file: app.py``).

The weights come from the environment: ``MDAN_ZOO_WEIGHTS=hf-hub:your-name/mdan-fi@<commit>``
(a Space variable), or any folder / file ``mdan-zoo serve --weights`` takes. docs/serve.md
gives the Space's README front matter. Locally: ``MDAN_ZOO_WEIGHTS=mdan-demo/model python
app.py``.
"""

import os

from mdan_zoo.serve import app_from_env, launch

app = app_from_env()
demo = app.blocks  # the name `gradio app.py` (reload mode) looks for

if __name__ == "__main__":
    launch(
        app,
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),  # a Space sets 0.0.0.0
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
