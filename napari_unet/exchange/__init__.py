"""Models in and out through bioimage.io: export a napari-unet model as a bioimage.io model
package (deepImageJ, ilastik, QuPath, BiaPy and bioimageio.core run it), and import a
package as a napari-unet model.

A package holds the weights (``pytorch_state_dict`` with the network's source, which needs
nothing but torch; ``torchscript``; ``onnx`` where torch exports it), the pre-processing in
the spec's own terms (our normalisations map one to one), the sigmoid or softmax, axes and
halo that match our tiling, test tensors computed by napari-unet itself (so that
``bioimageio test`` checks that the package's processing is ours), a cover drawn from a real
prediction, documentation, licence, authors, citation and the parent model. The napari-unet
card rides along in ``config``, so that importing our own package gives back the very model.

Importing a package made by another tool keeps its torchscript (or ONNX) weights, maps its
processing to a card and runs it inside our pipeline, tiles and all; what cannot be mapped
is refused with one sentence that says why.

bioimageio.spec / bioimageio.core (the ``bioimageio`` extra), torch and onnx are imported
inside the functions. Nothing here reaches the network: every file is local.

:mod:`~napari_unet.exchange.export` writes packages, :mod:`~napari_unet.exchange.importer`
reads them (:mod:`~napari_unet.exchange.foreign_card` maps another tool's description to a card,
:mod:`~napari_unet.exchange.foreign_weights` checks its weights once, TorchScript only when
trusted), :mod:`~napari_unet.networks.packaged` runs an imported package's own weights.
"""

from napari_unet.exchange._common import EXTRA, ExchangeError
from napari_unet.exchange.export import ExportResult, check_package, export_package
from napari_unet.exchange.importer import import_package
from napari_unet.networks.packaged import packaged_network

__all__ = [
    "EXTRA",
    "ExchangeError",
    "ExportResult",
    "check_package",
    "export_package",
    "import_package",
    "packaged_network",
]
