"""The sparse network a run ends with, stored and run sparsely: kernels (CSR products on the CPU and the
timing that chooses them), the export file format, and its measurement against the dense network.

    export(model, masks, arch, folder) -> description     load(folder) -> model     measure(...) -> figures
"""
from dynprune.sparse.file_format import ExportError, export, load
from dynprune.sparse.kernels import CLEAR, NOISE, SMALL_BATCH, SparseLayer
from dynprune.sparse.measurement import measure
