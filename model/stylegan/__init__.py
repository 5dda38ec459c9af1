"""StyleGAN2 building blocks (``model.stylegan.model``) and custom ops (``model.stylegan.op``)."""
