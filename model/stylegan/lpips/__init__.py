"""LPIPS perceptual distance (v0.1, VGG16 'net-lin') for VToonify's training perceptual loss.

Public names:

* :class:`PerceptualLoss` - the loss module, called like the original ``lpips.PerceptualLoss``;
* :class:`LPIPS` - the underlying network (scaling layer, VGG16 trunk, five linear heads);
* :class:`VGG16Features` - VGG16 convolutional trunk with torchvision's ``features.*`` parameter names;
* :func:`load_vgg16_weights` - load torchvision's ``vgg16-397923af.pth`` (classifier ignored);
* :func:`load_lpips_weights` - load the LPIPS ``weights/v0.1/vgg.pth`` linear heads.

No weights are bundled or downloaded; both files are supplied by the user.
"""
from .lpips import LPIPS, PerceptualLoss, load_lpips_weights
from .vgg import VGG16Features, load_vgg16_weights

__all__ = ["PerceptualLoss", "LPIPS", "VGG16Features", "load_vgg16_weights", "load_lpips_weights"]
