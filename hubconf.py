"""torch.hub entry points for mdan_zoo (https://github.com/mdan-zoo/mdan_zoo).

From a clone: ``torch.hub.load("path/to/mdan_zoo", "mdan_fi", source="local")``; from GitHub:
``torch.hub.load("mdan-zoo/mdan_zoo", "mdan_fi", weights="hf-hub:org/name@<commit>")``.
No checkpoint of the paper is published yet, so ``pretrained=True`` raises and says how to train
one; without ``weights=`` a model holds random weights (``predict`` warns).

Thin on purpose: each entry is a zoo factory (its docstring is what ``torch.hub.help`` shows);
the work lives in ``mdan_zoo``. Weights are safetensors from the Hugging Face Hub.
"""

dependencies = ["torch", "torchvision", "huggingface_hub", "safetensors"]

from mdan_zoo.zoo import (  # noqa: E402, F401 - the entry points torch.hub lists
    mdan,
    mdan_abstract,
    mdan_artphoto,
    mdan_emoset,
    mdan_emotion6,
    mdan_fi,
    mdan_findingemo,
    mdan_iaps,
    mdan_webemo,
)
