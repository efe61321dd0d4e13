"""Transport codecs: numpy arrays <-> TF Serving's wire formats (JSON bodies and TensorProto).

The public surface is re-exported by :mod:`nbserve.tensors`; import from there.
"""
