"""vcm_jax.datasets: the shipped Sachs et al. (2005) data, checked number by number."""
import gzip
import hashlib
import importlib.resources
import os

import numpy as np
import pytest

from vcm_jax import graphs, io
from vcm_jax.datasets import load_sachs

NAMES = ["praf", "pmek", "plcg", "PIP2", "PIP3", "p44/42", "pakts473", "PKA", "PKC",
         "P38", "pjnk"]
# Condition blocks of cdt's cyto_full_data.csv, in file order (Sachs's files 1-9).
BLOCKS = [("cd3cd28", 853), ("cd3cd28icam2", 902), ("cd3cd28+aktinhib", 911),
          ("cd3cd28+g0076", 723), ("cd3cd28+psitect", 810), ("cd3cd28+u0126", 799),
          ("cd3cd28+ly", 848), ("pma", 913), ("b2camp", 707)]
# Recorded in SACHS_PROVENANCE.md when the file was derived.
SHA256_GZ = "c20a3fc3c09bcd147a4a9072274d6fcd6c5a6a9fe38e5453109821985f44e8e6"
SHA256_CSV = "2a07591b6043e9034576ec26d4ff9bed86a61ca2c923b14560b2991a31340032"
PROVENANCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "vcm_jax", "datasets", "SACHS_PROVENANCE.md")


@pytest.fixture(scope="module")
def raw_all():
  return load_sachs(log=False, all_conditions=True)


def test_shipped_file_checksums():
  blob = importlib.resources.files("vcm_jax.datasets").joinpath("sachs.csv.gz").read_bytes()
  assert hashlib.sha256(blob).hexdigest() == SHA256_GZ
  assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == SHA256_CSV
  text = open(PROVENANCE).read()
  assert SHA256_GZ in text and SHA256_CSV in text


def test_shapes_names_dtypes(raw_all):
  d = load_sachs()
  assert d.values.shape == (5846, 11) and d.values.dtype == np.float32
  assert d.labels.shape == (5846,)
  assert raw_all.values.shape == (7466, 11) and raw_all.labels.shape == (7466,)
  assert d.names == NAMES and raw_all.names == NAMES
  assert d.adjacency.shape == (11, 11)


def test_raw_cells_match_source(raw_all):
  v, col = raw_all.values, NAMES.index
  # Cells read off cdt 0.6.0's cyto_full_data.csv (row = data row, 0-based).
  np.testing.assert_array_equal(v[0], np.float32(
      [26.4, 13.2, 8.82, 18.3, 58.8, 6.61, 17.0, 414.0, 17.0, 44.9, 40.0]))
  assert v[853, col("PIP2")] == np.float32(142.0)      # first cd3cd28icam2 cell
  assert v[4199, col("pmek")] == np.float32(3685.0)    # first cd3cd28+u0126 cell
  np.testing.assert_array_equal(v[7465], np.float32(
      [30.5, 1.01, 7.3, 173.0, 22.9, 6.61, 13.7, 890.0, 1.0, 1.0, 1.65]))
  # Column sums and maxima of the source (float64 parse): a checksum over every cell.
  np.testing.assert_allclose(v.astype(np.float64).sum(0), [
      926321.03, 1085414.26, 409537.3, 1128267.43, 201843.03, 198828.49, 605994.42,
      4671913.62, 226530.82, 1008018.29, 547015.18], rtol=1e-8)
  np.testing.assert_array_equal(v.max(0), [4614, 7105, 6208, 9058, 1275, 2571, 3555,
                                           8896, 1611, 7499, 4740])
  assert v[2867, col("PIP2")] == np.float32(9058.0)   # the largest value, in g0076


def test_values_positive_floor_at_one(raw_all):
  # The source floors readings at 1.0: no value <= 0, so log needs no clipping.
  v = raw_all.values
  assert v.min() == 1.0 and np.all(v >= 1.0)
  assert int((v == 1.0).sum()) == 1669
  assert int((v[:, NAMES.index("PKC")] == 1.0).sum()) == 698


def test_condition_blocks_in_order(raw_all):
  start = 0
  for cond, n in BLOCKS:
    assert np.all(raw_all.labels[start:start + n] == cond), cond
    start += n
  assert start == len(raw_all.labels) == 7466


def test_default_labels_counts_and_subset(raw_all):
  d = load_sachs(log=False)
  got = dict(zip(*np.unique(d.labels, return_counts=True)))
  assert got == {"observational": 853 + 902, "pakts473": 911, "PKC": 723, "PIP2": 810,
                 "pmek": 799, "PIP3": 848}
  # The default is the first 5846 rows of the full file, values unchanged.
  np.testing.assert_array_equal(d.values, raw_all.values[:5846])
  assert d.targets == {"observational": (), "pakts473": ("pakts473",), "PKC": ("PKC",),
                       "PIP2": ("PIP2",), "pmek": ("pmek",), "PIP3": ("PIP3",)}


def test_all_conditions_targets(raw_all):
  t = raw_all.targets
  assert t["cd3cd28"] == () and t["cd3cd28icam2"] == ()
  assert t["cd3cd28+u0126"] == ("pmek",) and t["cd3cd28+aktinhib"] == ("pakts473",)
  assert t["pma"] is None and t["b2camp"] is None
  assert set(t) == {c for c, _ in BLOCKS}


def test_labels_read_by_label_targets():
  d = load_sachs()
  tgt = io.label_targets(d.labels, d.names)
  assert tgt is not None and tgt.shape == (5846,)
  assert np.all(tgt[d.labels == "observational"] == -1)
  for label, node in [("pakts473", 6), ("PKC", 8), ("PIP2", 3), ("pmek", 1), ("PIP3", 4)]:
    assert np.all(tgt[d.labels == label] == node), label
  assert np.array_equal(np.bincount(tgt + 1, minlength=12)[[0, 2, 4, 5, 7, 9]],
                        [1755, 799, 810, 848, 911, 723])


def test_log_is_natural_log_of_raw(raw_all):
  d = load_sachs(log=True, all_conditions=True)
  assert d.values.dtype == np.float32
  np.testing.assert_allclose(d.values, np.log(raw_all.values), rtol=1e-6, atol=1e-6)
  assert d.values.min() == 0.0 and np.all(np.isfinite(d.values))
  assert np.isclose(d.values[0, NAMES.index("PKA")], np.log(414.0), rtol=1e-6)


def test_consensus_dag():
  d = load_sachs()
  adj, idx = d.adjacency, {n: i for i, n in enumerate(d.names)}
  graphs.validate_dag(adj, d.names)  # 0/1, no self-loop, no cycle
  assert adj.sum() == 17 and set(np.unique(adj)) == {0, 1}
  for a, b in [("PKC", "PKA"), ("praf", "pmek"), ("pmek", "p44/42"), ("plcg", "PIP3"),
               ("PIP3", "PIP2"), ("p44/42", "pakts473"), ("PKA", "praf")]:
    assert adj[idx[a], idx[b]] == 1, (a, b)
  # Not in bnlearn's consensus (cdt's own target list has PIP2 -> PKC).
  for a, b in [("pmek", "praf"), ("PIP2", "PKC"), ("PIP3", "pakts473")]:
    assert adj[idx[a], idx[b]] == 0, (a, b)
  # Out-degrees: PKA 6, PKC 5, plcg 2, others 0 or 1.
  out = dict(zip(d.names, adj.sum(1)))
  assert out["PKA"] == 6 and out["PKC"] == 5 and out["plcg"] == 2 and out["pjnk"] == 0


def test_sachs_config_reads_what_a_csv_user_would(tmp_path):
  """configs/sachs.py and configs/csv.py on the same rows written to a CSV (with the
  labels as a column and the DAG as an edge list) hand the fit identical inputs:
  values, graph, labels and held-out split. No setting only the Sachs config knows."""
  from configs import csv as csv_config
  from configs import sachs as sachs_config
  from experiments import own_data, sachs_csv
  sachs_csv.write(str(tmp_path))  # the shipped rows, in their order, as a user's files
  user = csv_config.get_config()
  user.data.update(dict(path=str(tmp_path / "data.csv"), graph=str(tmp_path / "graph.csv"),
                        labels="regime"))
  shipped = sachs_config.get_config()
  a, b = own_data.load(shipped), own_data.load(user)
  np.testing.assert_array_equal(a.x, b.x)
  np.testing.assert_array_equal(a.adj, b.adj)
  np.testing.assert_array_equal(a.labels, b.labels)
  np.testing.assert_array_equal(a.train_rows, b.train_rows)
  assert a.names == b.names
  shipped.data.dataset = ""
  assert shipped.to_dict() == dict(csv_config.get_config().to_dict(), data=shipped.data.to_dict())


@pytest.mark.fast
def test_sachs_as_csv_files_read_back_as_the_rows_in_the_seed_s_order(tmp_path):
  """experiments/sachs_csv.py: the files a user would have, read by the own-data reader:
  the same cells and labels, in the shuffled order, and the 17-arc graph by name."""
  from experiments import sachs_csv
  sachs_csv.write(str(tmp_path), shuffle_seed=7)
  d = load_sachs()
  table = io.read_data(str(tmp_path / "data.csv"), labels="regime")
  order = np.random.default_rng(7).permutation(len(d.values))
  assert table.names == NAMES and not np.array_equal(order, np.arange(len(order)))
  np.testing.assert_array_equal(table.values, d.values[order].astype(np.float64))
  np.testing.assert_array_equal(table.labels, d.labels[order])
  np.testing.assert_array_equal(io.read_graph(str(tmp_path / "graph.csv"), NAMES), d.adjacency)
