"""Reading a user's data and graph, checking them, writing results (host side, NumPy).

The only part of the library that touches files: ``readers`` (data files and
labels), ``graph_files`` (graph files matched to the data's columns) and
``writers`` (atomic writers, ``assignments.csv``). Every problem with the input
raises ``InputError`` with one line that names it.
"""
from vcm_jax.io.errors import InputError
from vcm_jax.io.graph_files import EDGE_LIST_HEADERS, read_graph
from vcm_jax.io.readers import (OBSERVATIONAL_LABELS, Table, _read_csv_careful, _read_csv_fast,
                                label_targets, read_data)
from vcm_jax.io.writers import (FULL_POSTERIOR_MAX, TOP_REGIMES, _csv_cell, assignments_chunks,
                                assignments_csv, write_assignments, write_chunks_atomic,
                                write_json_atomic, write_npy_atomic, write_text_atomic)

__all__ = ["EDGE_LIST_HEADERS", "FULL_POSTERIOR_MAX", "OBSERVATIONAL_LABELS", "TOP_REGIMES",
           "InputError", "Table", "assignments_chunks", "assignments_csv", "label_targets",
           "read_data", "read_graph", "write_assignments", "write_chunks_atomic",
           "write_json_atomic", "write_npy_atomic", "write_text_atomic"]
