"""What the parity tests against diffusers share: the engine binary, the relative L2 error, the check of
an engine run's output files against diffusers' latents and images, and DeepCache's own helper as a
context a test can remove. Not a test module (no test classes)."""
import os
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FLEXIFFUSION_BIN", REPO / ".build" / "debug" / "flexiffusion"))


def relative_l2(a, b):
    return float((a - b).norm() / b.norm())


def require_binary():
    if not (BIN.is_file() and os.access(BIN, os.X_OK)):
        raise AssertionError(f"no flexiffusion binary at {BIN}: build it (swift build) or set FLEXIFFUSION_BIN")


def check_outputs(test, name, latents_file, images_file, want, want_images, label=None, tolerance=1e-3):
    """The engine's final latents (tensor `latents`) and decoded images (tensor `sample`) against diffusers'
    within `tolerance` relative L2; prints both errors. Returns the engine's latents."""
    got = load_file(latents_file)["latents"]
    got_images = load_file(images_file)["sample"]
    test.assertEqual(tuple(got.shape), tuple(want.shape))
    test.assertEqual(tuple(got_images.shape), tuple(want_images.shape))
    e_latents, e_images = relative_l2(got, want), relative_l2(got_images, want_images)
    print(f"{label or name}: latents {e_latents:.2e}, images {e_images:.2e}")
    test.assertLessEqual(e_latents, tolerance, name)
    test.assertLessEqual(e_images, tolerance, name)
    return got


def deepcache_helper(interval, branch_id):
    """A function enabling DeepCache's DeepCacheSDHelper (PyPI deepcache 0.1.1) on a pipeline at
    `set_params(cache_interval=interval, cache_branch_id=branch_id)`; it returns a handle whose
    remove() disables the helper."""
    from DeepCache import DeepCacheSDHelper

    def enable(pipe):
        h = DeepCacheSDHelper(pipe=pipe)
        h.set_params(cache_interval=interval, cache_branch_id=branch_id)
        h.enable()

        class Handle:
            def remove(self):
                h.disable()
        return Handle()
    return enable
