#!/usr/bin/env python3
"""Builds the Fréchet-distance goldens under Tests/EngineTests/Goldens/: pairs of float32 feature sets
(frechet.safetensors) and, for each pair, the FID as pytorch-fid computes it (frechet.json):
statistics in float64 (mean, unbiased covariance: np.cov(rowvar=False)), then
  ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr sqrtm(Σ₁Σ₂)
with scipy.linalg.sqrtm, adding 1e-6·I to both covariances when the square root is not finite and
dropping an imaginary part (pytorch-fid's calculate_frechet_distance). Cases include rank-deficient
covariances (fewer samples than dimensions) and nearly equal distributions (a small FID).

Also writes frechet.npz (pytorch-fid's statistics format: `mu`, `sigma`) for the first pair's A side,
compressed as pytorch-fid's save_fid_stats writes it, to test the .npz reader.

Run: .venv-ref/bin/python scripts/goldens/make_fid_goldens.py   (needs numpy, scipy, safetensors, torch)
"""
import json
import os

import numpy as np
from scipy import linalg
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")


def stats(act):
    a = act.astype(np.float64)
    return a.mean(axis=0), np.cov(a, rowvar=False)


def sqrtm(a):
    """scipy.linalg.sqrtm's root; SciPy versions without `disp=` return the root alone."""
    try:
        return linalg.sqrtm(a, disp=False)[0]
    except TypeError:
        return linalg.sqrtm(a)


def frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean = sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_symmetric(mu1, sigma1, mu2, sigma2):
    """tr √(Σ₁Σ₂) = Σ √λ(√Σ₁ Σ₂ √Σ₁): the symmetric form, for comparison."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root @ sigma2 @ root)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def main():
    rng = np.random.default_rng(7)
    cases = []
    tensors = {}

    def add(name, a, b):
        a = a.astype(np.float32)
        b = b.astype(np.float32)
        m1, s1 = stats(a)
        m2, s2 = stats(b)
        fid = frechet(m1, s1, m2, s2)
        sym = frechet_symmetric(m1, s1, m2, s2)
        tensors[f"{name}.a"] = np.ascontiguousarray(a)
        tensors[f"{name}.b"] = np.ascontiguousarray(b)
        cases.append({"name": name, "dims": a.shape[1], "n_a": a.shape[0], "n_b": b.shape[0], "fid": fid,
                      "fid_symmetric_form": sym})
        print(f"{name}: d={a.shape[1]} n={a.shape[0]},{b.shape[0]} fid={fid!r} symmetric={sym!r} rel={abs(fid - sym) / abs(fid):.2e}")

    def correlated(n, d, scale=1.0, shift=0.0):
        mix = rng.normal(size=(d, d)) / np.sqrt(d)
        return (rng.normal(size=(n, d)) @ mix) * scale + shift

    add("full_rank_16", correlated(300, 16), correlated(250, 16, 1.3, 0.2))
    add("full_rank_64", correlated(300, 64), correlated(250, 64, 0.8, -0.1))
    x = correlated(800, 32)
    add("nearly_equal_32", x[:400], x[400:] + 0.01)
    add("relu_like_128", np.maximum(correlated(400, 128), 0), np.maximum(correlated(300, 128, 1.1, 0.05), 0))
    add("rank_deficient_both_64", correlated(40, 64), correlated(30, 64, 1.2, 0.3))
    add("rank_deficient_one_32", correlated(20, 32), correlated(200, 32, 0.9))
    add("rank_deficient_128_n100", np.maximum(correlated(100, 128), 0), np.maximum(correlated(100, 128, 1.05), 0))

    save_file(tensors, os.path.join(ROOT, "frechet.safetensors"))
    with open(os.path.join(ROOT, "frechet.json"), "w") as f:
        json.dump({"generated_by": "scripts/goldens/make_fid_goldens.py", "scipy": __import__("scipy").__version__,
                   "numpy": np.__version__, "cases": cases}, f, indent=1)
    mu, sigma = stats(tensors["full_rank_16.a"])
    np.savez_compressed(os.path.join(ROOT, "frechet.npz"), mu=mu, sigma=sigma)


if __name__ == "__main__":
    main()
