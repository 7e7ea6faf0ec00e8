"""A person's work, free of napari and Qt: the state the dock's steps share
(:mod:`.workflow`: works, checked slices, prediction runs and their rules), its autosave
(:mod:`.session`) and the prediction jobs the dock runs (:mod:`.plane_jobs`)."""
