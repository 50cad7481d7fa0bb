"""Network builders: each returns a plain, built `keras.Model`.

Training logic lives in the model families (`gan.py`, `cgan.py`, `vae.py`); these functions only
wire layers, so exporters and users can take a generator without any training code attached.

Conventions: images are NHWC floats in [-1, 1]; conditional networks take a second input
`label` of int32 class indices with shape (batch,). Normalization layers are synchronized across
replicas so one step on N replicas equals one step on one device with the same global batch.
"""

from __future__ import annotations

import keras
from keras import layers

MAX_UPSAMPLINGS = 4
MIN_START_SIZE = 3


def upsampling_plan(image_shape) -> tuple[int, int, int]:
    """How a conv generator reaches `image_shape`: (start_height, start_width, n_doublings).

    Picks the most doublings (up to 4) whose start size is a whole number of at least 3 pixels:
    28 -> 7x7 and 2 doublings, 32 -> 4x4 and 3, 64 -> 4x4 and 4, 8 -> 4x4 and 1.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    doublings = 0
    for n in range(1, MAX_UPSAMPLINGS + 1):
        factor = 2**n
        if height % factor or width % factor:
            break
        if min(height, width) // factor < MIN_START_SIZE:
            break
        doublings = n
    if doublings == 0:
        raise ValueError(
            f"image_shape={tuple(image_shape)} cannot be reached by doubling a start size of at "
            f"least {MIN_START_SIZE} pixels: height and width must be even and at least 6 "
            "(e.g. (8, 8, 1), (28, 28, 1), (32, 32, 3), (64, 64, 3))."
        )
    return height // 2**doublings, width // 2**doublings, doublings


def _label_input() -> keras.KerasTensor:
    return keras.Input(shape=(), dtype="int32", name="label")


def _single_or_list(inputs):
    """One input as a tensor (what callers pass), several as a list [image_or_z, label]."""
    return inputs[0] if len(inputs) == 1 else inputs


def _normalization(name: str) -> layers.Layer:
    return layers.BatchNormalization(synchronized=True, momentum=0.9, name=name)


def dcgan_generator(
    latent_dim: int,
    image_shape,
    num_classes: int = 0,
    base_filters: int = 64,
    embedding_dim: int = 50,
    upsampling: str = "transpose",
    name: str = "generator",
) -> keras.Model:
    """DCGAN generator: z [, label] -> tanh image. Width halves at each doubling.

    `upsampling="transpose"` uses Conv2DTranspose (classic DCGAN); `"resize"` uses nearest
    upsampling + Conv2D, which some mobile runtimes handle better.
    """
    if upsampling not in UPSAMPLING_BLOCKS:
        raise ValueError(
            f"upsampling={upsampling!r} is not one of {sorted(UPSAMPLING_BLOCKS)}"
        )
    start_h, start_w, doublings = upsampling_plan(image_shape)
    channels = int(image_shape[-1])
    top_filters = base_filters * 2 ** (doublings - 1)

    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    h = z
    if num_classes:
        label = _label_input()
        inputs.append(label)
        embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        h = layers.Concatenate(name="z_and_label")([z, embedded])
    h = layers.Dense(start_h * start_w * top_filters, use_bias=False, name="project")(h)
    h = _normalization("project_bn")(h)
    h = layers.ReLU(name="project_relu")(h)
    h = layers.Reshape((start_h, start_w, top_filters), name="to_feature_map")(h)
    for i in range(doublings - 1):
        filters = top_filters // 2 ** (i + 1)
        h = UPSAMPLING_BLOCKS[upsampling](h, filters, f"up{i}", use_bias=False)
        h = _normalization(f"up{i}_bn")(h)
        h = layers.ReLU(name=f"up{i}_relu")(h)
    h = UPSAMPLING_BLOCKS[upsampling](h, channels, "to_image", use_bias=True)
    images = layers.Activation("tanh", name="image", dtype="float32")(h)
    return keras.Model(_single_or_list(inputs), images, name=name)


def _transpose_block(h, filters, name, use_bias):
    return layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", use_bias=use_bias, name=name
    )(h)


def _resize_block(h, filters, name, use_bias):
    h = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(h)
    return layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=name)(h)


UPSAMPLING_BLOCKS = {"transpose": _transpose_block, "resize": _resize_block}


def dcgan_discriminator(
    image_shape,
    num_classes: int = 0,
    base_filters: int = 64,
    conditioning: str = "projection",
    embedding_dim: int = 50,
    name: str = "discriminator",
) -> keras.Model:
    """DCGAN discriminator: image [, label] -> one logit per image.

    No batch statistics (so real and fake batches never mix) and no dropout (so a step is
    deterministic for a seed). Conditioning is `"projection"` (Miyato & Koyama 2018: logit +=
    <embed(label), features>) or `"embedding"` (label embedded as an extra image channel).
    """
    if num_classes and conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning={conditioning!r} is not one of {sorted(CONDITIONINGS)}")
    _, _, doublings = upsampling_plan(image_shape)
    image = keras.Input(shape=tuple(image_shape), name="image")
    inputs = [image]
    h = image
    if num_classes:
        label = _label_input()
        inputs.append(label)
        if conditioning == "embedding":
            h = _label_as_channel(image, label, image_shape, num_classes, embedding_dim)
    for i in range(doublings):
        h = layers.Conv2D(
            base_filters * 2**i, 4, strides=2, padding="same", name=f"down{i}"
        )(h)
        h = layers.LeakyReLU(0.2, name=f"down{i}_lrelu")(h)
    features = layers.Flatten(name="features")(h)
    logit = layers.Dense(1, name="logit")(features)
    if num_classes and conditioning == "projection":
        embedded = layers.Embedding(
            num_classes, features.shape[-1], name="label_projection"
        )(label)
        projection = layers.Dot(axes=1, name="projection")([embedded, features])
        logit = layers.Add(name="logit_plus_projection")([logit, projection])
    logit = layers.Reshape((), name="score", dtype="float32")(logit)
    return keras.Model(_single_or_list(inputs), logit, name=name)


def _label_as_channel(image, label, image_shape, num_classes, embedding_dim):
    height, width = int(image_shape[0]), int(image_shape[1])
    embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
    plane = layers.Dense(height * width, name="label_plane")(embedded)
    plane = layers.Reshape((height, width, 1), name="label_channel")(plane)
    return layers.Concatenate(name="image_and_label")([image, plane])


CONDITIONINGS = ("projection", "embedding")


def mlp_generator(
    latent_dim: int,
    image_shape,
    num_classes: int = 0,
    hidden_units=(128, 128),
    embedding_dim: int = 50,
    name: str = "generator",
) -> keras.Model:
    """The classic fully connected GAN generator (latent -> 128 -> 128 -> pixels, tanh)."""
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    h = z
    if num_classes:
        label = _label_input()
        inputs.append(label)
        embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        h = layers.Concatenate(name="z_and_label")([z, embedded])
    for i, units in enumerate(hidden_units):
        h = layers.Dense(units, name=f"hidden{i}")(h)
        h = layers.LeakyReLU(0.2, name=f"hidden{i}_lrelu")(h)
    pixels = 1
    for d in image_shape:
        pixels *= int(d)
    h = layers.Dense(pixels, activation="tanh", name="pixels")(h)
    images = layers.Reshape(tuple(image_shape), name="image", dtype="float32")(h)
    return keras.Model(_single_or_list(inputs), images, name=name)


def mlp_discriminator(
    image_shape,
    num_classes: int = 0,
    hidden_units=(128, 128),
    embedding_dim: int = 50,
    name: str = "discriminator",
) -> keras.Model:
    """Fully connected discriminator: pixels -> 128 -> 128 -> logit."""
    image = keras.Input(shape=tuple(image_shape), name="image")
    inputs = [image]
    h = layers.Flatten(name="pixels")(image)
    if num_classes:
        label = _label_input()
        inputs.append(label)
        embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        h = layers.Concatenate(name="pixels_and_label")([h, embedded])
    for i, units in enumerate(hidden_units):
        h = layers.Dense(units, name=f"hidden{i}")(h)
        h = layers.LeakyReLU(0.2, name=f"hidden{i}_lrelu")(h)
    logit = layers.Dense(1, name="logit")(h)
    logit = layers.Reshape((), name="score", dtype="float32")(logit)
    return keras.Model(_single_or_list(inputs), logit, name=name)


@keras.saving.register_keras_serializable(package="zoo")
class ScaledTanh(layers.Layer):
    """tanh(scale * x): maps unbounded decoder outputs to images in [-1, 1] (exports as Tanh)."""

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return keras.ops.tanh(x * self.scale) if self.scale != 1.0 else keras.ops.tanh(x)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def conv_encoder(
    image_shape, latent_dim: int, base_filters: int = 32, name: str = "encoder"
) -> keras.Model:
    """VAE encoder: image -> (z_mean, z_log_var), each (batch, latent_dim)."""
    _, _, doublings = upsampling_plan(image_shape)
    image = keras.Input(shape=tuple(image_shape), name="image")
    h = image
    for i in range(doublings):
        h = layers.Conv2D(
            base_filters * 2**i, 3, strides=2, padding="same", activation="relu",
            name=f"down{i}",
        )(h)
    h = layers.Flatten(name="features")(h)
    h = layers.Dense(256, activation="relu", name="hidden")(h)
    z_mean = layers.Dense(latent_dim, name="z_mean", dtype="float32")(h)
    z_log_var = layers.Dense(latent_dim, name="z_log_var", dtype="float32")(h)
    return keras.Model(image, [z_mean, z_log_var], name=name)


def conv_decoder(
    latent_dim: int, image_shape, base_filters: int = 32, name: str = "decoder"
) -> keras.Model:
    """VAE decoder: z -> unbounded per-pixel parameters (logits or pre-tanh means)."""
    start_h, start_w, doublings = upsampling_plan(image_shape)
    top_filters = base_filters * 2 ** (doublings - 1)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = layers.Dense(256, activation="relu", name="hidden")(z)
    h = layers.Dense(start_h * start_w * top_filters, activation="relu", name="project")(h)
    h = layers.Reshape((start_h, start_w, top_filters), name="to_feature_map")(h)
    for i in range(doublings):
        h = layers.Conv2DTranspose(
            top_filters // 2**i, 3, strides=2, padding="same", activation="relu",
            name=f"up{i}",
        )(h)
    params = layers.Conv2D(
        int(image_shape[-1]), 3, padding="same", name="pixel_params", dtype="float32"
    )(h)
    return keras.Model(z, params, name=name)
