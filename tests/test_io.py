"""Reading a user's data and graph: every format, and one clear error per bad input."""
import os

import networkx as nx
import numpy as np
import pytest

from vcm_jax import io

NAMES = ["a", "b", "c", "d"]
EDGES = [("a", "b"), ("b", "c"), ("a", "d")]


def _adj(names, edges):
  a = np.zeros((len(names), len(names)), int)
  for u, v in edges:
    a[names.index(u), names.index(v)] = 1
  return a


def _write(path, text):
  path.write_text(text)
  return str(path)


def _data_csv(tmp_path, rows=30, names=NAMES, name="data.csv", seed=0):
  x = np.random.default_rng(seed).normal(size=(rows, len(names)))
  lines = [",".join(names)] + [",".join(f"{v:.6f}" for v in row) for row in x]
  return _write(tmp_path / name, "\n".join(lines) + "\n"), x


def test_csv_values_and_labels(tmp_path):
  path, x = _data_csv(tmp_path, names=NAMES)
  table = io.read_data(path)
  assert table.names == NAMES and table.labels is None
  np.testing.assert_allclose(table.values, x, atol=1e-6)
  # A label column is kept out of the variables, wherever it is.
  lines = open(path).read().splitlines()
  labelled = [lines[0] + ",regime"] + [l + f",r{i % 3}" for i, l in enumerate(lines[1:])]
  path2 = _write(tmp_path / "labelled.csv", "\n".join(labelled) + "\n")
  table2 = io.read_data(path2, labels="regime")
  assert table2.names == NAMES
  np.testing.assert_array_equal(table2.values, table.values)
  assert list(table2.labels[:4]) == ["r0", "r1", "r2", "r0"]


def test_npz_matches_csv(tmp_path):
  path, x = _data_csv(tmp_path)
  np.savez(tmp_path / "data.npz", **{n: x[:, j] for j, n in enumerate(NAMES)})
  a, b = io.read_data(path), io.read_data(str(tmp_path / "data.npz"))
  assert a.names == b.names
  np.testing.assert_allclose(a.values, b.values, atol=1e-6)


@pytest.mark.parametrize("fmt", ["adjacency", "edges", "gml", "graphml", "adjacency_noext"])
def test_graph_formats_agree(tmp_path, fmt):
  """Every format gives the same DAG, in the data's column order (here not the file's)."""
  order = ["d", "c", "b", "a"]  # the file lists the nodes in another order
  a = _adj(order, EDGES)
  if fmt.startswith("adjacency"):
    lines = ["," + ",".join(order)] + [order[i] + "," + ",".join(map(str, a[i])) for i in range(4)]
    path = _write(tmp_path / ("g.txt" if fmt.endswith("noext") else "g.csv"), "\n".join(lines))
  elif fmt == "edges":
    path = _write(tmp_path / "g.csv", "source,target\n" + "\n".join(f"{u},{v}" for u, v in EDGES))
  else:
    g = nx.DiGraph()
    g.add_nodes_from(order)
    g.add_edges_from(EDGES)
    path = str(tmp_path / f"g.{fmt}")
    (nx.write_gml if fmt == "gml" else nx.write_graphml)(g, path)
  np.testing.assert_array_equal(io.read_graph(path, NAMES), _adj(NAMES, EDGES))


@pytest.mark.parametrize("header", ["source,target", "From,To", "parent,child,weight"])
def test_edge_list_declares_isolated_nodes(tmp_path, header):
  extra = ",0.5" if header.count(",") == 2 else ""
  path = _write(tmp_path / "g.csv", f"{header}\na,b{extra}\nb,c{extra}\nd,{extra}\n")
  np.testing.assert_array_equal(io.read_graph(path, NAMES), _adj(NAMES, [("a", "b"), ("b", "c")]))


def test_byte_order_mark_is_dropped(tmp_path):
  path = tmp_path / "bom.csv"
  path.write_bytes("\ufeffa,b\n1,2\n3,5\n".encode("utf-8"))
  assert io.read_data(str(path)).names == ["a", "b"]


def test_label_targets():
  names = ["x", "y"]
  np.testing.assert_array_equal(io.label_targets(np.array(["observational", "y", "x", ""]), names),
                                [-1, 1, 0, -1])
  np.testing.assert_array_equal(io.label_targets(np.array(["0", "2", "1"]), names), [-1, 1, 0])
  assert io.label_targets(np.array(["drug A", "drug B"]), names) is None


# ---- bad input: one line naming the problem --------------------------------------------------

def _error(fn, *args, **kwargs) -> str:
  with pytest.raises(io.InputError) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  return message


def test_cycle_is_named(tmp_path):
  path = _write(tmp_path / "g.csv", "source,target\na,b\nb,c\nc,a\nd,\n")
  msg = _error(io.read_graph, path, NAMES)
  assert msg.endswith("graph has a cycle: a -> b -> c -> a")


def test_self_loop(tmp_path):
  path = _write(tmp_path / "g.csv", "source,target\na,a\nb,c\nd,\n")
  assert "self-loop on node 'a'" in _error(io.read_graph, path, NAMES)


def test_graph_node_not_in_data(tmp_path):
  path = _write(tmp_path / "g.csv", "source,target\na,b\nb,c\nc,d\nd,zeta\n")
  assert "'zeta'" in _error(io.read_graph, path, NAMES)


def test_data_column_not_in_graph(tmp_path):
  path = _write(tmp_path / "g.csv", "source,target\na,b\nb,c\n")
  msg = _error(io.read_graph, path, NAMES)
  assert "'d'" in msg and "not in the graph" in msg


def test_duplicate_names(tmp_path):
  path = _write(tmp_path / "d.csv", "a,b,a\n1,2,3\n4,5,6\n")
  assert "duplicate name 'a'" in _error(io.read_data, path)
  graph = _write(tmp_path / "g.csv", ",a,b,b\na,0,1,0\nb,0,0,0\nb,0,0,0\n")
  assert "duplicate name 'b'" in _error(io.read_graph, graph, ["a", "b"])


def test_adjacency_entry_not_binary(tmp_path):
  path = _write(tmp_path / "g.csv", ",a,b\na,0,0.5\nb,0,0\n")
  assert "(a, b)" in _error(io.read_graph, path, ["a", "b"])


@pytest.mark.parametrize("cell, words", [("abc", "non-numeric value 'abc'"),
                                         ("", "an empty cell"),
                                         ("nan", "NaN"), ("inf", "infinite value"),
                                         ("-Infinity", "infinite value")])
def test_bad_cell_names_row_and_column(tmp_path, cell, words):
  path, _ = _data_csv(tmp_path)
  lines = open(path).read().splitlines()
  cells = lines[6].split(",")
  cells[2] = cell  # data row 5, column 'c'
  lines[6] = ",".join(cells)
  _write(tmp_path / "data.csv", "\n".join(lines))
  msg = _error(io.read_data, path)
  assert words in msg and "row 5" in msg and "column 'c'" in msg


def test_constant_column(tmp_path):
  path = _write(tmp_path / "d.csv", "a,b\n1,2\n1,3\n1,4\n")
  assert "column 'a' is constant" in _error(io.read_data, path)


def test_empty_and_header_only(tmp_path):
  assert "is empty" in _error(io.read_data, _write(tmp_path / "e.csv", ""))
  assert "no data rows" in _error(io.read_data, _write(tmp_path / "h.csv", "a,b\n"))
  assert "is empty" in _error(io.read_graph, _write(tmp_path / "g.csv", "\n"), ["a"])


def test_ragged_row(tmp_path):
  path = _write(tmp_path / "d.csv", "a,b\n1,2\n3\n")
  assert "row 1 has 1 fields" in _error(io.read_data, path)


def test_unreadable_files(tmp_path):
  assert "cannot read data file" in _error(io.read_data, str(tmp_path / "missing.csv"))
  assert "cannot read data file" in _error(io.read_data, str(tmp_path))  # a directory
  binary = tmp_path / "bin.csv"
  binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
  assert "cannot read data file" in _error(io.read_data, str(binary))
  assert "cannot read graph file" in _error(io.read_graph, str(tmp_path / "no.gml"), NAMES)
  bad_gml = _write(tmp_path / "bad.gml", "graph [ node [ id 0 label \"a\" ]")
  assert "cannot read graph file" in _error(io.read_graph, bad_gml, NAMES)


def test_label_column_missing(tmp_path):
  path, _ = _data_csv(tmp_path)
  assert "label column 'regime'" in _error(io.read_data, path, labels="regime")


def test_assignments_csv_format():
  post = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
  text = io.assignments_csv(post, ["", "x", "y,z"])
  lines = text.splitlines()
  assert lines[0] == "row,regime,target,probability,p_0,p_1,p_2"
  assert lines[1].startswith("0,0,,0.9,")
  assert lines[2].startswith('1,2,"y,z",0.5,')


def test_atomic_write_leaves_no_temp_files(tmp_path):
  io.write_json_atomic(str(tmp_path / "m.json"), {"a": 1})
  assert os.listdir(tmp_path) == ["m.json"]
