"""PNG plots a person reads at the end of a synthetic run."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(path, rows):
  steps = [r["step"] for r in rows]
  keys = [k for k in ("loss", "elbo", "log_px", "expected_loglik", "kl", "beta") if k in rows[0]]
  fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3))
  for ax, key in zip(np.atleast_1d(axes), keys):
    ax.plot(steps, [r[key] for r in rows])
    ax.set_title(key)
    ax.set_xlabel("step")
  fig.suptitle("training (mean over runs and restarts; standardised units)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def confusion(path, table, run=0):
  fig, ax = plt.subplots(figsize=(5, 4.5))
  im = ax.imshow(np.log1p(table), cmap="viridis")
  ax.set_xlabel("inferred regime (0 = observational, k = node k-1)")
  ax.set_ylabel("true regime")
  ax.set_title(f"held-out confusion, run {run} (log1p counts)")
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def mechanisms(path, details):
  pairs = [("learned_shift", "true_shift", "mean shift of the intervened state"),
           ("learned_noise_scale", "true_noise_scale", "observational noise scale"),
           ("learned_int_scale", "true_int_scale", "intervened noise scale")]
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
  for ax, (learned, true, title) in zip(axes, pairs):
    t, l = np.ravel(details[true]), np.ravel(details[learned])
    ax.scatter(t, l, s=8)
    lo, hi = min(t.min(), l.min()), max(t.max(), l.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true")
    ax.set_ylabel("learned")
    ax.set_title(title)
  fig.suptitle("learned against true mechanisms (all runs and nodes, data units)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def confidence(path, probability):
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.hist(np.ravel(probability), bins=40, range=(0, 1))
  ax.set_xlabel("posterior probability of the assigned regime")
  ax.set_ylabel("held-out samples (all runs)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_all(workdir, rows, details):
  if rows:
    training_curves(os.path.join(workdir, "training_curves.png"), rows)
  confusion(os.path.join(workdir, "confusion.png"), details["confusion"][0])
  mechanisms(os.path.join(workdir, "mechanisms.png"), details)
  confidence(os.path.join(workdir, "confidence.png"), details["probability"])
