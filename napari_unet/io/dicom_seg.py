"""A mask written back as DICOM SEG (highdicom), on the series it was predicted from.

The SEG references the source series and its frame of reference, one segment per class the
mask holds, its frames on the source slices, so 3D Slicer, OHIF or a PACS lays it over the
scan. DICOM files it with the study by the patient module copied from the source images
(highdicom requires it); that is the one output that carries them, as any DICOM object of the
study does. highdicom and pydicom are imported only here, when a SEG is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._atomic import atomic_write, check_output_folder
from napari_unet.io._image import ImageData

__all__ = ["segments_from_objects", "write_dicom_seg"]


def write_dicom_seg(
    path: str | os.PathLike,
    mask: Any,
    image: ImageData,
    *,
    class_names: dict[int, str],
    model_name: str,
) -> Path | None:
    """Write ``mask`` (class ids, 0 = background, on the image's ``(Z,) Y, X`` grid) as a DICOM SEG.

    Parameters
    ----------
    mask : array-like of int
        Labels on the source image's voxels: each class ``k`` the mask holds becomes a segment
        named ``class_names[k]`` (segments are numbered 1..N in the order of ``k``).
    image : ImageData or napari layer
        The DICOM series as :func:`~napari_unet.io.dicom.read_dicom` read it, or the napari
        layer napari-unet's reader made of it: what has its ``metadata["dicom"]`` (the series'
        UIDs and files; the source files are read here, their pixels are not needed from the caller).

    Returns the path written, or None when the mask is empty (a SEG of no segment is not valid).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from napari_unet import __version__
    from napari_unet.io.dicom_series import quiet_read

    info = image.metadata.get("dicom")
    if not info:
        raise ValueError(f"{image.name}: not read from DICOM, so there is no series for a DICOM SEG to reference")
    labels = np.asarray(mask)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.shape[0] != len(info["files"]):
        raise ValueError(f"a mask of {labels.shape[0]} slices for a series of {len(info['files'])}")
    present = [int(v) for v in np.unique(labels) if v > 0]
    if not present:
        return None
    if max(present) > 65535:
        raise ValueError("a DICOM SEG holds at most 65535 segments; write the labels as NIfTI instead")
    sources = {f: quiet_read(f) for f in dict.fromkeys(info["files"])}
    frames = info["frames"]
    if any(k is not None for k in frames):  # an enhanced multi-frame source: one file, its frames
        source_images = list(sources.values())
        array = labels[np.argsort(frames)]  # SEG frames follow the source frame order
    else:
        source_images = [sources[f] for f in info["files"]]
        array = labels
    algorithm = hd.AlgorithmIdentificationSequence(
        name="napari-unet", family=codes.DCM.ArtificialIntelligence, version=__version__, source=model_name[:64]
    )
    descriptions = []
    for k in present:
        name = class_names.get(k, f"class {k}")
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=k,
                segment_label=str(name)[:64],
                segmented_property_category=codes.SCT.Tissue,
                segmented_property_type=codes.SCT.Tissue,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    # segment numbers must run 1..N without gaps: renumber the classes present
    lookup = np.zeros(max(present) + 1, np.uint16)
    for n, k in enumerate(present, start=1):
        lookup[k] = n
    for n, d in enumerate(descriptions, start=1):
        d.SegmentNumber = n
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=lookup[array] if len(present) > 1 else (array > 0).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9000 + int(info.get("series_number") or 0) % 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-unet",
        manufacturer_model_name=model_name[:64] or "napari-unet",
        software_versions=__version__,
        device_serial_number="napari-unet",
        series_description=f"napari-unet {model_name}"[:64],
        content_label="NAPARIUNET",
    )
    path = Path(path)
    check_output_folder(path)
    atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    return path


def segments_from_objects(
    labels: Any, classes: dict[int, str] | None, *, name: str
) -> tuple[np.ndarray, dict[int, str]]:
    """Counted objects as the class map a SEG holds: one segment per class named in ``classes``
    (object id -> class name, as Count's table gives them), or one segment ``name`` for all
    objects; an object without a class (drawn after counting) goes to the segment ``name``.

    >>> seg, names = segments_from_objects(np.array([[0, 1, 2, 3]]), {1: "lesion", 2: "vessel"}, name="objects")
    >>> seg.tolist(), names
    ([[0, 1, 2, 3]], {1: 'lesion', 2: 'vessel', 3: 'objects'})
    >>> segments_from_objects(np.array([[0, 5, 7]]), None, name="nuclei")[0].tolist()
    [[0, 1, 1]]
    """
    labels = np.asarray(labels)
    if not classes:
        return (labels > 0).astype(np.uint8), {1: name}
    names = sorted(set(classes.values()))
    number = {n: k for k, n in enumerate(names, start=1)}
    rest = len(names) + 1
    lookup = np.full(int(labels.max(initial=0)) + 1, rest, np.uint16)
    lookup[0] = 0
    for obj, cls in classes.items():
        if 0 < obj < len(lookup):
            lookup[obj] = number[cls]
    out = lookup[labels]
    return out, {**{k: n for n, k in number.items()}, **({rest: name} if (out == rest).any() else {})}
