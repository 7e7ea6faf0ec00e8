"""Write the shipped nuclei model's ``input_stats`` (for the "image unlike the training
data" warning) from its training split, and its measured ``receptive_field``, without
touching its weights.

    python scripts/card_input_stats.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from mnfinder import iter_split  # noqa: E402

from napari_unet.engine.planes import normalise_plane  # noqa: E402
from napari_unet.networks.model import SHIPPED_DIR, ModelCard  # noqa: E402
from napari_unet.objects.fit import input_statistics  # noqa: E402


def main() -> None:
    card_path = SHIPPED_DIR / "nuclei.json"
    card = ModelCard.from_dict(json.loads(card_path.read_text()))
    pairs = [
        (normalise_plane(image[None].astype(np.float32), card.normalisation), labels)
        for _, image, labels in iter_split("training")
    ]
    stats = {k: [round(v, 4) for v in vals] for k, vals in input_statistics(pairs).items()}
    print(f"{len(pairs)} training images: {stats}")
    data = json.loads(card_path.read_text())
    data["input_stats"] = stats
    from napari_unet.networks.architectures import measure_receptive_field
    from napari_unet.networks.model import load_model

    data["receptive_field"] = measure_receptive_field(load_model("nuclei"))
    print(f"receptive field: {data['receptive_field']}")
    card_path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {card_path} (the safetensors header keeps the card it was trained with; the JSON beside it wins)")


if __name__ == "__main__":
    main()
