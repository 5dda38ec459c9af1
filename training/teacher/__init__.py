"""Style teachers from your own pictures: the FFHQ StyleGAN2 fine-tuned into a Toonify generator.

:mod:`training.teacher.data` aligns and caches the pictures; :mod:`training.teacher.finetune` holds the
few-shot (JoJoGAN) and collection (Toonify) recipes and their resumable loop. ``train_style.py`` is the
command line, which can continue into VToonify-T training (``--vtoonify``).
"""
from training.teacher.data import NoUsableImages, align_references, list_images
from training.teacher.finetune import STATE_NAME, TeacherConfig, TeacherTrainer, finetune_name

__all__ = ["NoUsableImages", "align_references", "list_images", "STATE_NAME", "TeacherConfig", "TeacherTrainer",
           "finetune_name"]
