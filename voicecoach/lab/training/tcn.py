"""The temporal-convolution head (``Recipe.head = 1``), trained in numpy only.

Per-feature standardisation (one mean and scale per embedding dimension, shared by the
window's steps), a kernel-``k`` convolution over time 96 -> C with ReLU, a second one C -> C
(dilated) with ReLU, the remaining steps flattened into a dense softmax layer. Forward and
backward are written out with im2col matmuls; Adam on class-balanced, weighted cross-entropy
with the same L2 term as scikit-learn's MLP (``alpha * |W|^2 / 2`` per minibatch row count).

The arrays it exports are those of the run time (``listening.spotter.model``): ``mean`` and
``scale`` tiled over the window (so they are per-position like the MLP's), ``c{i}`` (k, in, out)
and ``cb{i}`` the convolutions, ``dilation`` one integer per convolution, ``w0``/``b0`` the
dense layer.
"""

from __future__ import annotations

import numpy as np

KERNEL = 3


def steps_after(window: int, dilations: tuple[int, ...]) -> int:
    """The window's steps left after kernel-:data:`KERNEL` convolutions of these dilations
    (under 1: they do not fit the window)."""
    return window - sum((KERNEL - 1) * d for d in dilations)


def _im2col(x: np.ndarray, k: int, d: int) -> np.ndarray:
    """(n, T, c) -> (n, T - (k-1) d, k c): each output step's taps side by side."""
    steps = x.shape[1] - (k - 1) * d
    return np.concatenate([x[:, j * d:j * d + steps] for j in range(k)], axis=2)


def forward(params: dict[str, np.ndarray], x: np.ndarray
            ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Standardised windows (n, T, D) -> logits (n, classes) and each convolution's
    (im2col input, pre-activation) for the backward pass."""
    saved = []
    h = x
    n_conv = len(params["dilation"])
    for i in range(n_conv):
        c = params[f"c{i}"]
        cols = _im2col(h, c.shape[0], int(params["dilation"][i]))
        pre = (cols.reshape(-1, cols.shape[2]) @ c.reshape(-1, c.shape[2])
               + params[f"cb{i}"]).reshape(cols.shape[0], cols.shape[1], c.shape[2])
        saved.append((cols, pre))
        h = np.maximum(pre, 0.0)
    z = h.reshape(len(h), -1) @ params["w0"] + params["b0"]
    return z, saved


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_grads(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   sw: np.ndarray, alpha: float) -> tuple[float, dict[str, np.ndarray]]:
    """Weighted mean cross-entropy plus ``alpha/2 |W|^2 / n`` over the weight arrays (not
    biases), and its gradient for every trainable array."""
    n = len(x)
    z, saved = forward(params, x)
    p = softmax(z)
    rows = np.arange(n)
    loss = float(-(sw * np.log(np.maximum(p[rows, y], 1e-30))).sum() / n)
    dz = p.copy()
    dz[rows, y] -= 1.0
    dz *= (sw / n)[:, None]
    n_conv = len(params["dilation"])
    h_last = np.maximum(saved[-1][1], 0.0)
    grads = {"w0": h_last.reshape(n, -1).T @ dz, "b0": dz.sum(axis=0)}
    dh = (dz @ params["w0"].T).reshape(h_last.shape)
    for i in reversed(range(n_conv)):
        cols, pre = saved[i]
        c = params[f"c{i}"]
        k, c_in, c_out = c.shape
        dpre = dh * (pre > 0)
        grads[f"c{i}"] = (cols.reshape(-1, k * c_in).T @ dpre.reshape(-1, c_out)).reshape(c.shape)
        grads[f"cb{i}"] = dpre.sum(axis=(0, 1))
        if i > 0:
            dcols = (dpre.reshape(-1, c_out) @ c.reshape(-1, c_out).T).reshape(
                n, dpre.shape[1], k * c_in)
            d = int(params["dilation"][i])
            steps = pre.shape[1]
            dh = np.zeros((n, steps + (k - 1) * d, c_in), dcols.dtype)
            for j in range(k):
                dh[:, j * d:j * d + steps] += dcols[:, :, j * c_in:(j + 1) * c_in]
    for name in [f"c{i}" for i in range(n_conv)] + ["w0"]:
        loss += 0.5 * alpha * float(np.sum(params[name] ** 2)) / n
        grads[name] = grads[name] + alpha * params[name] / n
    return loss, grads


def init_params(rng: np.random.Generator, steps: int, dims: int, channels: int,
                dilations: tuple[int, ...], classes: int, dtype: type = np.float32
                ) -> dict[str, np.ndarray]:
    """Glorot-uniform weights (as scikit-learn initialises its MLP's) and zero biases."""
    params: dict[str, np.ndarray] = {"dilation": np.asarray(dilations, np.int64)}
    steps = steps_after(steps, dilations)
    if steps < 1:
        raise ValueError(f"the convolutions need more than the window's steps ({dilations})")
    c_in = dims
    for i in range(len(dilations)):
        fan_in, fan_out = KERNEL * c_in, KERNEL * channels
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        params[f"c{i}"] = rng.uniform(-bound, bound, (KERNEL, c_in, channels)).astype(dtype)
        params[f"cb{i}"] = np.zeros(channels, dtype)
        c_in = channels
    bound = np.sqrt(6.0 / (steps * channels + classes))
    params["w0"] = rng.uniform(-bound, bound, (steps * channels, classes)).astype(dtype)
    params["b0"] = np.zeros(classes, dtype)
    return params


def fit_tcn(x: np.ndarray, y: np.ndarray, classes: int, sample_weight: np.ndarray, *,
            channels: int, dilation: int, alpha: float, epochs: int, batch: int,
            learning_rate: float, seed: int) -> dict[str, np.ndarray]:
    """Train on windows ``x`` (n, T, D) with labels ``y`` and per-row weights (mean 1)."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float32)
    mean = x.mean(axis=(0, 1))
    scale = x.std(axis=(0, 1)) + 1e-3
    xs = (x - mean) / scale
    sw = sample_weight.astype(np.float32)
    n, steps, dims = xs.shape
    params = init_params(rng, steps, dims, channels, (1, dilation), classes)
    names = [k for k in params if k != "dilation"]
    m = {k: np.zeros_like(params[k]) for k in names}
    v = {k: np.zeros_like(params[k]) for k in names}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    batch = min(batch, n)
    t = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            _, grads = loss_and_grads(params, xs[rows], y[rows], sw[rows], alpha)
            t += 1
            lr = learning_rate * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            for k in names:
                g = grads[k].astype(np.float32)
                m[k] *= beta1
                m[k] += (1 - beta1) * g
                v[k] *= beta2
                v[k] += (1 - beta2) * g * g
                params[k] -= (lr * m[k] / (np.sqrt(v[k]) + eps)).astype(np.float32)
    out = {"mean": np.tile(mean, steps).astype(np.float32),
           "scale": np.tile(scale, steps).astype(np.float32)}
    out.update({k: params[k].astype(np.float32) for k in names})
    out["dilation"] = params["dilation"]
    return out


def tcn_probs(head: dict[str, np.ndarray], windows: np.ndarray) -> np.ndarray:
    """(n, T, D) raw windows -> (n, classes), the training's own forward pass."""
    dims = head["c0"].shape[1]
    steps = head["mean"].size // dims
    x = (windows.reshape(len(windows), steps, dims) - head["mean"].reshape(steps, dims)) \
        / head["scale"].reshape(steps, dims)
    z, _ = forward(head, x.astype(np.float32))
    return softmax(z)
