"""Large files: the fast CSV reader agrees with the careful one to the bit, and falls back
to it for every error; assignments.csv and posterior.npy are written without a row loop."""
import csv
import io as stdio
import os

import numpy as np
import pytest

from vcm_jax import io

NAMES = ["a", "b,c", 'say "d"', "e"]  # quoted in the header: a comma, a quote


def _header(names):
  out = stdio.StringIO()
  csv.writer(out, lineterminator="").writerow(names)
  return out.getvalue()


def _cells(rng, shape):
  """Numbers written the ways people write them: signs, exponents, no leading digit."""
  x = rng.normal(size=shape) * 10.0 ** rng.integers(-6, 7, size=shape)
  forms = [lambda v: f"{v:.6f}", lambda v: f"{v:.3e}", lambda v: f"{v:.17g}", lambda v: f"{v:E}",
           lambda v: repr(float(v)), lambda v: f"{v:+.4g}"]
  pick = rng.integers(0, len(forms), size=shape)
  return [[forms[p](v) for p, v in zip(prow, xrow)] for prow, xrow in zip(pick, x)]


def _write_csv(path, rows, *, names=NAMES, labels=None, label_at=None, bom=False, newline="\n"):
  lines = []
  for i, row in enumerate(rows):
    row = list(row)
    if labels is not None:
      row.insert(label_at, labels[i])
    lines.append(",".join(row))
  head = list(names)
  if labels is not None:
    head.insert(label_at, "regime")
  text = newline.join([_header(head)] + lines) + newline
  path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
  return str(path)


def _reference(cells):
  """The slow NumPy reference: Python's float on every cell."""
  return np.array([[float(c) for c in row] for row in cells], np.float64)


@pytest.fixture
def fast_only(monkeypatch):
  """Fail the test if the careful reader is used: the fast path must take this file."""
  def refuse(*args, **kwargs):
    raise AssertionError("fell back to the careful reader")
  monkeypatch.setattr(io.readers, "_read_csv_careful", refuse)  # read_data looks it up there


@pytest.mark.parametrize("bom, newline, label_at", [(False, "\n", 4), (True, "\r\n", 1),
                                                     (True, "\n", 0)])
def test_fast_reader_equals_careful_and_float(tmp_path, bom, newline, label_at):
  rng = np.random.default_rng(0)
  cells = _cells(rng, (500, 4))
  labels = rng.choice(np.array(["observational", "b,c", ' "q" ', "x"], dtype=object), 500)
  quoted = [_header([l]) for l in labels]  # a label with a comma or quotes is quoted
  path = _write_csv(tmp_path / "d.csv", cells, labels=quoted, label_at=label_at, bom=bom,
                    newline=newline)
  careful = io._read_csv_careful(path, "regime")
  fast = io._read_csv_fast(path, "regime")
  assert fast is not None
  assert fast[0] == careful[0] == NAMES
  np.testing.assert_array_equal(fast[1], careful[1])
  np.testing.assert_array_equal(fast[1], _reference(cells))  # bit for bit, not allclose
  np.testing.assert_array_equal(fast[2], careful[2])
  np.testing.assert_array_equal(fast[2], [l.strip() for l in labels])
  table = io.read_data(path, labels="regime")
  assert table.names == NAMES
  np.testing.assert_array_equal(table.values, careful[1])


def test_fast_path_takes_a_plain_file(tmp_path, fast_only):
  rng = np.random.default_rng(1)
  cells = _cells(rng, (300, 4))
  path = _write_csv(tmp_path / "d.csv", cells + [[""] * 0] * 0, bom=True)
  table = io.read_data(path)
  np.testing.assert_array_equal(table.values, _reference(cells))
  assert table.labels is None


def test_fast_path_skips_empty_lines_like_the_careful_one(tmp_path, fast_only):
  path = tmp_path / "d.csv"
  path.write_text("a,b\n1,2\n\n3,4\n5,7\n\n")
  np.testing.assert_array_equal(io.read_data(str(path)).values, [[1, 2], [3, 4], [5, 7]])


@pytest.mark.parametrize("body", ["1,2\n , \n3,4\n5,6\n",     # a row of blank cells: skipped
                                  '"1",2\n3,"4"\n5,6\n',       # quoted numbers
                                  "1,2\n   \n3,4\n5,6\n",       # a line of spaces
                                  "1_0,2\n3,4\n5,6\n"])         # Python's float takes 1_0
def test_files_the_fast_path_declines_read_as_before(tmp_path, body):
  path = tmp_path / "d.csv"
  path.write_text("a,b\n" + body)
  expected = io._read_csv_careful(str(path), None)[1]
  np.testing.assert_array_equal(io.read_data(str(path)).values, expected)
  assert expected.shape == (3, 2)


def _message(path, **kwargs):
  with pytest.raises(io.InputError) as info:
    io.read_data(path, **kwargs)
  return str(info.value)


def _careful_message(path, labels=None):
  with pytest.raises(io.InputError) as info:
    io._read_csv_careful(path, labels)
  return str(info.value)


# (rows of cells, labels argument, expected message tail): several problems in one file
# name the same one as before (ragged rows, then the label column, then the bad cell of
# the leftmost column, its first row; NaN and text alike).
BAD = [
    ([["1", "2", "3"], ["4", "NaN", "6"], ["abc", "8", "9"], ["1", "2", "3"]], None,
     "non-numeric value 'abc' at row 2, column 'x'"),
    ([["1", "2", "3"], ["4", "abc", "6"], ["7", "8", "-inf"], ["1", "2", "3"]], None,
     "non-numeric value 'abc' at row 1, column 'y'"),
    ([["1", "2", "3"], ["4", "5", "nan"], ["7", "8", "inf"], ["1", "2", "3"]], None,
     "NaN at row 1, column 'z'"),
    ([["1", "2", "3"], ["4", "5", "6"], ["7", "8", "inf"], ["1", "2", "3"]], None,
     "infinite value at row 2, column 'z'"),
    ([["1", "2", "3"], ["4", "", "6"], ["7", "8", "9"], ["1", "2", "3"]], None,
     "an empty cell at row 1, column 'y'"),
    ([["1", "2", "x"], ["4", "nan", "6"], ["7", "8", "9", "0"], ["1", "2", "3"]], None,
     "row 2 has 4 fields, the header has 3"),
    ([["1", "2", "3"], ["4", "abc", "6"], ["7", "8", "9"], ["1", "2", "3"]], "label",
     "label column 'label' is not among its columns (x, y, z)"),
    ([["1", "2", "3"], ["4", "5", "6"], ["7", "8", "9"], ["1", "2", "3"]], "label",
     "label column 'label' is not among its columns (x, y, z)"),
    ([["1", "2", "3"], ["1", "5", "6"], ["1", "8", "9"], ["1", "2", "3"]], None,
     "column 'x' is constant (1 in every row); it carries no information about the regimes"),
]


@pytest.mark.parametrize("rows, labels, tail", BAD)
def test_errors_as_the_careful_reader_names_them(tmp_path, rows, labels, tail):
  path = tmp_path / "bad.csv"
  path.write_text("x,y,z\n" + "\n".join(",".join(r) for r in rows) + "\n")
  message = _message(str(path), labels=labels)
  assert message == f"data file {path}: {tail}"
  if "constant" not in tail:  # the careful reader alone (read_data checks constancy)
    assert _careful_message(str(path), labels) == message


def test_non_finite_found_by_the_fast_path_without_falling_back(tmp_path, fast_only):
  path = tmp_path / "d.csv"
  path.write_text("x,y,z\n1,2,3\n4,5,inf\n7,-Infinity,nan\n1,2,3\n")
  assert _message(str(path)).endswith("infinite value at row 2, column 'y'")


def test_a_column_of_words_is_said_to_look_like_labels(tmp_path):
  path = tmp_path / "d.csv"
  path.write_text("x,regime,y\n1,obs,2\n3,x,4\n5,y,6\n")
  assert _message(str(path)).endswith(
      "non-numeric value 'obs' at row 0, column 'regime' (every cell of 'regime' is text: if "
      "it holds the regime labels, name it with --config.data.labels=regime)")
  path.write_text("x,regime,y\n1,obs,2\n3,4,4\n5,y,6\n")  # some numbers: no such hint
  assert _message(str(path)).endswith("non-numeric value 'obs' at row 0, column 'regime'")


def test_only_the_label_column(tmp_path):
  path = tmp_path / "d.csv"
  path.write_text("regime\nobs\nx\n")
  assert _message(str(path), labels="regime").endswith("has no variable columns")


def test_npz_columns_of_every_kind(tmp_path):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 3))
  path = str(tmp_path / "d.npz")
  np.savez(path, a=x[:, 0].astype(np.float32), b=np.arange(50), c=np.char.mod("%.17g", x[:, 2]),
           regime=np.array(["obs", " a "] * 25))
  table = io.read_data(path, labels="regime")
  assert table.names == ["a", "b", "c"]
  np.testing.assert_array_equal(table.values[:, 0], x[:, 0].astype(np.float32))
  np.testing.assert_array_equal(table.values[:, 1], np.arange(50))
  np.testing.assert_array_equal(table.values[:, 2], x[:, 2])
  assert list(table.labels[:2]) == ["obs", "a"]
  bad = np.char.mod("%.17g", x[:, 2])
  bad[7] = "seven"
  np.savez(path, a=x[:, 0], b=np.where(np.arange(50) == 9, np.nan, x[:, 1]), c=bad)
  assert _message(path).endswith("NaN at row 9, column 'b'")
  np.savez(path, a=x[:, 0], b=x[:, 1], c=bad)
  assert _message(path).endswith("non-numeric value 'seven' at row 7, column 'c'")


def test_label_targets_vectorised_equals_per_row():
  names = ["x", "y", "z"]
  rng = np.random.default_rng(3)
  labels = rng.choice(np.array(["observational", "x", "y", "z", "Control"]), 1000)
  expected = [-1 if l.lower() in io.OBSERVATIONAL_LABELS else names.index(l) for l in labels]
  np.testing.assert_array_equal(io.label_targets(labels, names), expected)
  ids = rng.integers(0, 4, 1000)
  np.testing.assert_array_equal(io.label_targets(ids.astype(str), names), ids - 1)


# ---- writing ---------------------------------------------------------------------------------

def _old_assignments(posterior, targets):
  """The per-row writer this module used to have: the reference for small K."""
  regime = posterior.argmax(1)
  prob = posterior[np.arange(len(regime)), regime]
  k = posterior.shape[1]
  lines = [",".join(["row", "regime", "target", "probability"] + [f"p_{j}" for j in range(k)])]
  body = np.char.mod("%.6g", posterior)
  for i in range(len(regime)):
    lines.append(f"{i},{regime[i]},{io._csv_cell(targets[regime[i]])},{prob[i]:.6g},"
                 + ",".join(body[i]))
  return "\n".join(lines) + "\n"


def _posterior(rng, s, k):
  post = rng.dirichlet(np.full(k, 0.3), size=s).astype(np.float32)
  post[:3] = 0
  post[:3, 2] = 1  # ties among the rest: the lower id wins
  return post


def test_assignments_small_k_as_before():
  rng = np.random.default_rng(4)
  post = _posterior(rng, 70000, 6)  # more than one block of rows
  targets = ["", "x", 'y,"z"', "w", "v", "u"]
  assert io.assignments_csv(post, targets) == _old_assignments(post.astype(np.float64), targets)


def test_assignments_large_k_keeps_the_top_regimes(tmp_path):
  rng = np.random.default_rng(5)
  s, k = 3000, io.FULL_POSTERIOR_MAX + 9
  post = _posterior(rng, s, k)
  targets = [""] + [f"n{j}" for j in range(k - 1)]
  targets[4] = "a,b"
  path = str(tmp_path / "assignments.csv")
  io.write_assignments(path, post, targets)
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["row", "regime", "target", "probability", "top2_regime", "top2_target",
                           "top2_probability", "top3_regime", "top3_target", "top3_probability"]
  assert len(rows) == s
  ranked = np.argsort(-post, axis=1, kind="stable")[:, :3]
  for i in (0, 1, 2, 3, 17, 1234, s - 1):
    r = rows[i]
    assert int(r["row"]) == i
    for t, field in enumerate(("", "top2_", "top3_")):
      regime = int(r[f"{field}regime"])
      assert regime == ranked[i, t]
      assert r[f"{field}target"] == targets[regime]
      assert float(r[f"{field}probability"]) == pytest.approx(post[i, regime], rel=1e-5, abs=1e-12)
  assert [int(r["regime"]) for r in rows] == post.argmax(1).tolist()
  assert os.listdir(tmp_path) == ["assignments.csv"]


def test_npy_written_atomically(tmp_path):
  post = np.random.default_rng(6).random((40, 7)).astype(np.float32)
  path = str(tmp_path / "posterior.npy")
  io.write_npy_atomic(path, post)
  back = np.load(path)
  assert back.dtype == np.float32
  np.testing.assert_array_equal(back, post)
  assert os.listdir(tmp_path) == ["posterior.npy"]


def test_failed_write_keeps_the_earlier_file(tmp_path):
  path = str(tmp_path / "assignments.csv")
  io.write_text_atomic(path, "earlier\n")

  def chunks():
    yield "row,regime\n"
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError):
    io.write_chunks_atomic(path, chunks())
  assert open(path).read() == "earlier\n"
  assert os.listdir(tmp_path) == ["assignments.csv"]
