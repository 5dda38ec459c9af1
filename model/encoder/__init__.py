"""pSp style encoder (``encoder.pt``) mapping an aligned 256x256 face to an 18x512 Z+ style code.

* :mod:`model.encoder.encoders.psp_encoders` -- :class:`GradualStyleEncoder` (the network);
* :mod:`model.encoder.psp` -- :func:`load_psp_standalone` (load ``encoder.pt`` ready to use).
"""
