"""ipywidgets 8 front ends over nbserve's public Python API."""
