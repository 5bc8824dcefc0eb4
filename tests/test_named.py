"""vcm_jax.named: data columns and graph nodes matched by name, whatever the order."""
import networkx as nx
import numpy as np
import pytest

from vcm_jax import named

pytestmark = pytest.mark.fast

NAMES = ("a", "b", "c", "d")
EDGES = [("a", "b"), ("b", "c"), ("a", "d")]


def _expected():
  adj = np.zeros((4, 4), np.int64)
  for s, t in EDGES:
    adj[NAMES.index(s), NAMES.index(t)] = 1
  return adj


def test_every_named_graph_form_matches_by_name_in_any_order():
  x = np.arange(12.0).reshape(3, 4)
  shuffled = nx.DiGraph()
  shuffled.add_nodes_from(sorted(NAMES, reverse=True))  # another node order
  shuffled.add_edges_from(EDGES)
  children = {"b": ["c"], "a": ("d", "b")}  # a dict of children lists; "c", "d" leaves
  for graph in (shuffled, EDGES, [list(e) for e in reversed(EDGES)], children):
    values, adj, names = named.as_arrays(x, graph, names=NAMES)
    np.testing.assert_array_equal(adj, _expected())
    assert names == NAMES and values is not None


def test_a_dataframe_and_a_named_adjacency():
  pd = pytest.importorskip("pandas")
  frame = pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=list(NAMES))
  order = ["d", "c", "b", "a"]
  adjacency = pd.DataFrame(_expected(), index=list(NAMES), columns=list(NAMES)).loc[order, order]
  values, adj, names = named.as_arrays(frame, adjacency)
  np.testing.assert_array_equal(adj, _expected())
  np.testing.assert_array_equal(values, frame.to_numpy())
  assert names == NAMES


def test_mismatched_names_are_one_line_errors_naming_them():
  x = np.zeros((3, 4))
  misspelt = [("a", "bb"), ("bb", "c"), ("a", "d")]
  with pytest.raises(ValueError, match=r"edge list names 'bb', not in the data") as err:
    named.as_arrays(x, misspelt, names=NAMES)
  assert "\n" not in str(err.value)
  # A networkx graph lists its nodes: the column it lacks is named too.
  with pytest.raises(ValueError, match=r"'bb', not in the data.*column\(s\) 'b' missing"):
    named.as_arrays(x, nx.DiGraph(misspelt), names=NAMES)
  with pytest.raises(ValueError, match="duplicate names: a"):
    named.as_arrays(x, EDGES, names=("a", "a", "c", "d"))
  g = nx.DiGraph(EDGES)
  g.add_node("e")
  with pytest.raises(ValueError, match="'e', not in the data"):
    named.as_arrays(x, g, names=NAMES)
  # An array without names and a graph over names: an error, never a guess by position.
  with pytest.raises(ValueError, match="named nodes.*no names"):
    named.as_arrays(x, nx.DiGraph(EDGES))
  with pytest.raises(ValueError, match="names has 3 entries but x has 4 columns"):
    named.as_arrays(x, EDGES, names=NAMES[:3])


def test_integer_nodes_and_plain_arrays_stay_positional():
  x = np.zeros((3, 4))
  g = nx.DiGraph([(0, 1), (1, 2)])  # node 3 has no edge: still a column
  _, adj, _ = named.as_arrays(x, g)
  expected = np.zeros((4, 4), np.int64)
  expected[0, 1] = expected[1, 2] = 1
  np.testing.assert_array_equal(adj, expected)
  _, adj, _ = named.as_arrays(x, expected.astype(bool), names=NAMES)
  np.testing.assert_array_equal(adj, expected)


def test_a_dict_of_children_needs_lists():
  with pytest.raises(ValueError, match=r"graph\['a'\] must list 'a''s children; got 'b'"):
    named.as_arrays(np.zeros((3, 4)), {"a": "b"}, names=NAMES)


def test_a_two_by_two_list_is_the_adjacency_of_two_columns():
  """[[0, 1], [0, 0]] for two columns is 0 -> 1; read as two edges it held a self-loop
  (it was read so: adjacency [[1, 1], [0, 0]]). With three columns it stays an edge list."""
  _, adj, _ = named.as_arrays(np.zeros((3, 2)), [[0, 1], [0, 0]])
  np.testing.assert_array_equal(adj, [[0, 1], [0, 0]])
  _, adj, _ = named.as_arrays(np.zeros((3, 2)), [[0, 1]])
  np.testing.assert_array_equal(adj, [[0, 1], [0, 0]])
  _, adj, _ = named.as_arrays(np.zeros((3, 3)), [[0, 1], [1, 2]])
  np.testing.assert_array_equal(adj, [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
