"""Networks and their cards: what a model is (:mod:`.card`), how its network is built
(:mod:`.architectures`, :mod:`.nets`), the registry that loads and saves models
(:mod:`.model`), the recipes of new models (:mod:`.recipes`), and imported packages' own
weights run as a network (:mod:`.packaged`).

A 3D network starts here: the card's ``spatial_dims`` reaches every architecture.
"""
