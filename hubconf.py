"""torch.hub entry points for mdan_zoo: ``torch.hub.load(repo, "mdan_fi", pretrained=True)``.

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
