"""Training and fine-tuning: :mod:`.train` (the trainer), :mod:`.config`, the data it
samples (:mod:`.data`), :mod:`.augment`, :mod:`.losses` and the held-out split
(:mod:`.heldout`)."""
