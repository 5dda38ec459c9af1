"""VToonify networks: StyleGAN2 (``model.stylegan``), DualStyleGAN, VToonify, the pSp style encoder
(``model.encoder``) and the BiSeNet face parser (``model.bisenet``)."""
