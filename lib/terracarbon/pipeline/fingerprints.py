"""Input fingerprints: content hashes of the files a stage reads, part of its skip decision.

A stage is rerun when its parameters, its upstream stages *or the content of its input files*
changed. Parameters name the files (``data.layers.*.path`` with ``{year}`` patterns,
``data.boundary``, ``data.plots.path``, ``maps.lookup_table``); :func:`input_fingerprints`
hashes each one. A STAC layer (``data.layers.*.stac``) reads its catalog's JSON documents
(root, child catalogs, items) and the assets of the study's years; all of them are hashed
(:func:`terracarbon.data.stac.source_files`), so editing an item, or swapping the file an
asset points to, reruns data prep. A remote document or asset (a URL) is recorded by its
address only (fingerprint ``"remote"``): nothing is downloaded to hash it.

Cost (measured, benchmarks/README.md): files up to :data:`FULL_HASH_MAX_BYTES` are hashed
whole (60 MiB in 44 ms here), so content decides and a mere touch does not rerun anything.
Larger files are hashed by their size, modification time, the first and last MiB and
:data:`SAMPLED_BLOCKS` blocks of 64 KiB spread evenly between (1 GiB in 5 ms): an edit of the
header, the georeferencing, a sampled tile or the length changes the content part, and any
in-place write changes the modification time, so no edit is missed; touching such a file
reruns the stages that read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FULL_HASH_MAX_BYTES = 64 * 2**20
"""Files up to this size are hashed whole."""
SAMPLED_BLOCKS = 64
EDGE_BYTES = 2**20
BLOCK_BYTES = 64 * 2**10


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (16 hex digits) of a file's content, sampled beyond 64 MiB (see module notes)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= FULL_HASH_MAX_BYTES:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
        else:
            # the modification time too: an in-place edit between the sampled blocks still
            # changes it (a mere touch then reruns the stage, the safe side)
            digest.update(f"size={size};mtime_ns={path.stat().st_mtime_ns};".encode())
            offsets = [0, size - EDGE_BYTES]
            step = (size - 2 * EDGE_BYTES) // (SAMPLED_BLOCKS + 1)
            offsets += [EDGE_BYTES + step * (i + 1) for i in range(SAMPLED_BLOCKS)]
            for offset in offsets:
                fh.seek(offset)
                digest.update(fh.read(EDGE_BYTES if offset in (0, size - EDGE_BYTES)
                                      else BLOCK_BYTES))
    return digest.hexdigest()[:16]


def _expand(pattern: str, years: Iterable[int]) -> list[str]:
    if "{year}" in pattern:
        return [pattern.format(year=y) for y in years]
    return [pattern]


def input_files(sections: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{parameter key: [file, …]}`` of every input file named in the parameter ``sections``.

    The synthetic study reads no user file (it is generated from its parameters).
    """
    files: dict[str, list[str]] = {}
    synthetic = sections.get("synthetic") or {}
    data = sections.get("data") or {}
    if data and not synthetic.get("enabled", False):
        years = data.get("years") or []
        for name, layer in (data.get("layers") or {}).items():
            if isinstance(layer, Mapping) and layer.get("stac"):
                files[f"data.layers.{name}.stac"] = _stac_files(name, layer, years)
            elif isinstance(layer, Mapping) and layer.get("path"):
                files[f"data.layers.{name}.path"] = _expand(str(layer["path"]), years)
        if data.get("boundary"):
            files["data.boundary"] = [str(data["boundary"])]
        plots = data.get("plots")
        if isinstance(plots, Mapping) and plots.get("path"):
            files["data.plots.path"] = [str(plots["path"])]
    lookup = (sections.get("maps") or {}).get("lookup_table")
    if lookup:
        files["maps.lookup_table"] = [str(lookup)]
    return files


def _stac_files(name: str, layer: Mapping[str, Any], years: Iterable[int]) -> list[str]:
    """A STAC layer's documents and assets; only its source when it cannot be read (the
    parameter check reports why before any stage runs)."""
    from terracarbon.data import stac
    from terracarbon.errors import TerracarbonError

    try:
        return stac.source_files(layer, years or None, name=name)
    except TerracarbonError:
        return [str(layer["stac"])]


def input_fingerprints(sections: Mapping[str, Any]) -> dict[str, str]:
    """``{file path: fingerprint}`` of the input files of ``sections`` (sorted by path).

    A file that does not exist gets the fingerprint ``"missing"`` (the parameter check
    reports it before any stage runs); a URL (a remote STAC document or asset) ``"remote"``.
    """
    from terracarbon.data.stac import is_url

    out: dict[str, str] = {}
    for paths in input_files(sections).values():
        for path in paths:
            if path in out:
                continue
            if is_url(path):
                out[path] = "remote"
            else:
                out[path] = file_fingerprint(path) if Path(path).is_file() else "missing"
    return dict(sorted(out.items()))


def fingerprints_hash(fingerprints: Mapping[str, str]) -> str:
    """One hash of a fingerprint mapping (16 hex digits)."""
    blob = json.dumps(dict(sorted(fingerprints.items()))).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
