"""The engine: from an image to probabilities, with the device and out-of-core as options.

:mod:`.run` resolves a run once (device, precision, batch, tile, overlap, layout, engine);
:mod:`.predict` carries it out with one of the engines: tiles on the host (:mod:`.tiling`
around the torch predictor of :mod:`.inference`), each plane on the GPU (:mod:`.device`),
whole images resized (:mod:`.whole_image`) or blocks out of core (:mod:`.scale`, which also
runs many files on a dask cluster). :mod:`.planes` splits an image into the planes a
network sees and scales them; :mod:`.tile_choice` picks a tile per image; :mod:`.process`
holds the process-wide settings a run changes; :mod:`.layout` the channels-last layout of
planes and volumes.
"""
