"""torchvision for tests, when installed: the transforms work without its compiled extension.

A torchvision wheel built for another torch (or for CUDA, on a CPU-only torch) fails at import while
registering fake kernels for its detection ops (nms, roi_align), which transforms never use. We skip
only those registrations; everything else is torchvision as shipped.
"""

from __future__ import annotations

import torch.library


def load():
    """``torchvision.transforms.v2.functional`` or None when torchvision is not installed."""
    original = torch.library.register_fake
    torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
    try:
        import torchvision.transforms.v2.functional as TF
    except ImportError:
        return None
    finally:
        torch.library.register_fake = original
    return TF
