"""From probabilities to objects, and what is measured of them.

:mod:`.pipeline` is the one pipeline (:func:`napari_unet.segment`) with its
:mod:`.settings`; :mod:`.instances` parts touching objects; :mod:`.label_cleanup` fills
and filters labels; :mod:`.count` measures and counts (:mod:`.geometry` the outlines,
:mod:`.micronuclei` the small ones); :mod:`.metrics` compares with the truth;
:mod:`.continuation` follows drawn regions across slices; :mod:`.interpolate` fills between
drawn slices; :mod:`.fit` warns of images
unlike the training ones; :mod:`.report` draws overlays.
"""
