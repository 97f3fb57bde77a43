"""The convolutional networks of the reference implementation (``supervised_reptile/models.py``).

>>> model = omniglot_cnn(5)
>>> phi = model.init_params(np.random.default_rng(0))
>>> images = np.ones((10, 28, 28), np.float32)       # (batch, 28, 28)
>>> labels = np.arange(10) % 5                       # (batch,) in 0..4
>>> loss, grad = model.loss_and_grad(phi, images, labels)
>>> model.predict(phi, images).shape                 # logits
(10, 5)

Both networks are four blocks of 3×3 convolutions with batch norm and ReLU, then a dense
layer to the class logits, trained with softmax cross-entropy. Activations are NHWC and
convolution kernels ``(kh, kw, in, out)``, TensorFlow's layouts, so each tensor (and the
flatten order before the dense layer) matches the reference model's variable of the same
role. Batch norm always uses the statistics of the batch at hand, as the reference does
(``training=True`` at test time too).

``image_size`` and ``filters`` exist for tests (small variants for finite differences); the
defaults are the reference models.
"""

import numpy as np

from ..errors import check_positive_int
from ..nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Reshape, Sequential
from .model import Model

BLOCKS = 4
# Channels of every convolution in the reference's networks.
OMNIGLOT_FILTERS = 64
MINIIMAGENET_FILTERS = 32


def _check(num_classes, image_size, filters):
    for name, value in (("num_classes", num_classes), ("image_size", image_size),
                        ("filters", filters)):
        check_positive_int(name, value)


def _name(network, image_size, num_classes, filters, reference_filters):
    """``"omniglot cnn 28x28 (20 classes)"``, naming the width when it is not the reference's
    (so that a checkpoint of another width is told apart by its name)."""
    width = f", {filters} filters" if filters != reference_filters else ""
    return f"{network} {image_size}x{image_size} ({num_classes} classes{width})"


def _with_head(layers, input_shape, num_classes):
    """Append Flatten and the dense output layer sized from the feature map's shape."""
    (features,) = Sequential(*layers, Flatten()).output_shape(input_shape)
    return Sequential(*layers, Flatten(), Linear(features, int(num_classes), init="glorot"))


def omniglot_cnn(num_classes, dtype=np.float32, image_size=28, filters=OMNIGLOT_FILTERS):
    """The reference Omniglot network.

    ``(batch, 28, 28)`` → add a channel axis → 4 × [conv ``filters``×3×3, stride 2, ``same``
    → batch norm → ReLU] (28 → 14 → 7 → 4 → 2) → flatten (2·2·64 = 256) → dense
    ``num_classes``.

    Parameters
    ----------
    num_classes : int
    dtype : float32 or float64
    image_size : int
        Side of the square grey-scale input (28 in the reference).
    filters : int
        Channels of every convolution (64 in the reference).

    Returns
    -------
    Model
        Loss ``"cross_entropy"``; input shape ``(image_size, image_size)``. With the defaults
        and 5 classes it has 113,221 parameters, the count TensorFlow creates as trainable.

    Examples
    --------
    >>> omniglot_cnn(5).size
    113221
    >>> small = omniglot_cnn(3, image_size=16, filters=8)   # for one's own small images
    >>> small.input_shape, small.output_shape, small.size
    ((16, 16), (3,), 1923)
    """
    _check(num_classes, image_size, filters)
    layers = [Reshape((image_size, image_size, 1))]
    channels = 1
    for _ in range(BLOCKS):
        layers.append(Conv2d(channels, filters, 3, strides=2, padding="same"))
        layers.append(BatchNorm2d(filters, relu=True))
        channels = filters
    input_shape = (image_size, image_size)
    network = _with_head(layers, input_shape, num_classes)
    return Model(network, "cross_entropy", input_shape, dtype=dtype,
                 name=_name("omniglot cnn", image_size, num_classes, filters,
                            OMNIGLOT_FILTERS))


def miniimagenet_cnn(num_classes, dtype=np.float32, image_size=84,
                     filters=MINIIMAGENET_FILTERS):
    """The reference Mini-ImageNet network.

    ``(batch, 84, 84, 3)`` → 4 × [conv ``filters``×3×3, stride 1, ``same`` → batch norm →
    max-pool 2×2, stride 2, ``same`` → ReLU] (84 → 42 → 21 → 11 → 6) → flatten (6·6·32 =
    1152) → dense ``num_classes``.

    Batch norm comes before pooling, as in the reference's current ``models.py`` (an early
    version pooled first): its statistics are those of the full-resolution activations. The
    ReLU is fused into the batch norm, ahead of the pooling: max-pooling and ReLU commute
    (both are monotone and the padding never wins), so the output is the same.

    Parameters
    ----------
    num_classes : int
    dtype : float32 or float64
    image_size : int
        Side of the square RGB input (84 in the reference).
    filters : int
        Channels of every convolution (32 in the reference).

    Returns
    -------
    Model
        Loss ``"cross_entropy"``; input shape ``(image_size, image_size, 3)``. With the
        defaults and 5 classes it has 34,661 parameters.

    Examples
    --------
    >>> model = miniimagenet_cnn(5)
    >>> model.input_shape, model.size
    ((84, 84, 3), 34661)
    """
    _check(num_classes, image_size, filters)
    layers = []
    channels = 3
    for _ in range(BLOCKS):
        layers.append(Conv2d(channels, filters, 3, strides=1, padding="same"))
        layers.append(BatchNorm2d(filters, relu=True))
        layers.append(MaxPool2d(2, strides=2, padding="same"))
        channels = filters
    input_shape = (image_size, image_size, 3)
    network = _with_head(layers, input_shape, num_classes)
    return Model(network, "cross_entropy", input_shape, dtype=dtype,
                 name=_name("mini-imagenet cnn", image_size, num_classes, filters,
                            MINIIMAGENET_FILTERS))
