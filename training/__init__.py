"""Training code for VToonify (used by ``train_vtoonify.py``).

* :mod:`training.dist`: the ``torchrun`` process group and rank helpers;
* :mod:`training.setup`: pre-flight checks, loading the teachers and building the student;
* :mod:`training.data`: latent sampling and batch synthesis for stage 1 and stage 2;
* :mod:`training.losses`: the adversarial, reconstruction, perceptual, temporal and mask losses;
* :mod:`training.state`: released-format checkpoints and the bit-exact resumable training state (files);
* :mod:`training.divergence`: the stop at the first NaN or infinite loss or weight, before anything is written;
* :mod:`training.loop`: the :class:`~training.loop.Trainer` (steps, EMA, logging, the loop).
"""
