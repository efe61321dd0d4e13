"""Servables: loaded model versions with TF Serving's signature metadata."""

from nbserve.servables.base import Servable
from nbserve.servables.saved_model import SavedModelServable

__all__ = ["SavedModelServable", "Servable"]
