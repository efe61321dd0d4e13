"""The servable contract: one loaded model version that the manager hands to request threads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from nbserve.signature import Signature


class Servable(ABC):
    """A loaded model version.

    ``run`` is called concurrently from many threads. ``unload`` only marks the servable as retired:
    requests that already hold it must still complete, so resources are released when the last
    reference goes away.
    """

    name: str
    version: int
    signatures: dict[str, Signature]

    @abstractmethod
    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run ``signature`` on ``inputs`` (keyed by alias); return the ``output_keys`` outputs
        (all outputs when ``output_keys`` is empty)."""

    def unload(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called once by the manager after the servable left the serving map."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} version {self.version}>"
