"""Every framework's RMSProp, exactly, on PyTorch's tensors.

``rmsprop.torch`` holds the optimizers (``RMSprop``, ``RMSpropTF``); the arithmetic is the
Rust crate ``rmsprop``'s, reached through ``rmsprop._core``.
"""

from ._core import OPTIMIZERS

__all__ = ["OPTIMIZERS"]
__version__ = "0.1.0"
