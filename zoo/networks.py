"""Network builders: each returns a plain, built `keras.Model`.

Training logic lives in the model families (`gan.py` for GAN and CGAN, `wgan_gp.py`, `vae.py`,
`cvae.py`, `diffusion/model.py`); these functions only wire layers, so exporters and users can
take a generator without any training code attached.

Conventions: images are NHWC floats in [-1, 1]; conditional networks take a second input
`label` of int32 class indices with shape (batch,). Normalization layers are synchronized across
replicas so one step on N replicas equals one step on one device with the same global batch.
"""

from __future__ import annotations

import numbers

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
    class_norm: bool = False,
    name: str = "generator",
) -> keras.Model:
    """DCGAN generator: z [, label] -> tanh image. Width halves at each doubling.

    `upsampling="transpose"` uses Conv2DTranspose (classic DCGAN); `"resize"` uses nearest
    upsampling + Conv2D, which some mobile runtimes handle better. `class_norm` (conditional
    only) makes every batch norm class-conditional: its scale and shift are looked up per
    label (de Vries et al. 2017; the generator of Miyato & Koyama's projection cGAN), so the
    label steers every layer, not only the first.
    """
    if class_norm and not num_classes:
        raise ValueError("class_norm needs a conditional generator (num_classes > 0)")
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
    def normalize(h, bn_name):
        if not class_norm:
            return _normalization(bn_name)(h)
        return _class_normalization(h, label, num_classes, bn_name)

    h = layers.Dense(start_h * start_w * top_filters, use_bias=False, name="project")(h)
    h = normalize(h, "project_bn")
    h = layers.ReLU(name="project_relu")(h)
    h = layers.Reshape((start_h, start_w, top_filters), name="to_feature_map")(h)
    for i in range(doublings - 1):
        filters = top_filters // 2 ** (i + 1)
        h = UPSAMPLING_BLOCKS[upsampling](h, filters, f"up{i}", use_bias=False)
        h = normalize(h, f"up{i}_bn")
        h = layers.ReLU(name=f"up{i}_relu")(h)
    h = UPSAMPLING_BLOCKS[upsampling](h, channels, "to_image", use_bias=True)
    images = layers.Activation("tanh", name="image", dtype="float32")(h)
    return keras.Model(_single_or_list(inputs), images, name=name)


def _class_normalization(h, label, num_classes: int, name: str):
    """Batch norm without its own scale/shift, then (1 + gamma[label]) * h + beta[label]; the
    tables start at zero, so an untrained model is the plain batch-normalized one."""
    channels = h.shape[-1]
    h = layers.BatchNormalization(
        synchronized=True, momentum=0.9, center=False, scale=False, name=name
    )(h)
    shape = (1,) * (len(h.shape) - 2) + (channels,)
    gamma = layers.Embedding(num_classes, channels, embeddings_initializer="zeros",
                             name=f"{name}_class_scale")(label)
    beta = layers.Embedding(num_classes, channels, embeddings_initializer="zeros",
                            name=f"{name}_class_shift")(label)
    gamma = layers.Reshape(shape, name=f"{name}_scale_shape")(gamma)
    beta = layers.Reshape(shape, name=f"{name}_shift_shape")(beta)
    scaled = layers.Add(name=f"{name}_scaled")([h, layers.Multiply(name=f"{name}_gamma_h")(
        [h, gamma])])
    return layers.Add(name=f"{name}_shifted")([scaled, beta])


def _transpose_block(h, filters, name, use_bias):
    return layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", use_bias=use_bias, name=name
    )(h)


def _resize_block(h, filters, name, use_bias):
    h = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(h)
    return layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=name)(h)


UPSAMPLING_BLOCKS = {"transpose": _transpose_block, "resize": _resize_block}


def _spectral(layer: layers.Layer, spectral_norm: bool) -> layers.Layer:
    """`layer`, or Keras' SpectralNormalization of it: in training each call divides the kernel
    by its largest singular value (one power iteration), keeping D about 1-Lipschitz."""
    if not spectral_norm:
        return layer
    # the power iteration in float32 whatever the policy: under mixed_float16 it overflowed
    # float16 while normalizing the kernel (numpy "overflow encountered in cast")
    return layers.SpectralNormalization(layer, name=f"{layer.name}_sn", dtype="float32")


def dcgan_discriminator(
    image_shape,
    num_classes: int = 0,
    base_filters: int = 64,
    conditioning: str = "projection",
    embedding_dim: int = 50,
    spectral_norm: bool = False,
    class_head: bool = False,
    name: str = "discriminator",
) -> keras.Model:
    """DCGAN discriminator: image [, label] -> one logit per image (and, with `class_head`,
    [logit, class logits]: an auxiliary classifier on the same features, AC-GAN style).

    No batch statistics (so real and fake batches never mix) and no dropout (so a step is
    deterministic for a seed). Conditioning is `"projection"` (Miyato & Koyama 2018: logit +=
    <embed(label), features>) or `"embedding"` (label embedded as an extra image channel).
    `spectral_norm` wraps the convolutions and the logit in SpectralNormalization (Miyato et
    al. 2018).
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
        h = _spectral(layers.Conv2D(
            base_filters * 2**i, 4, strides=2, padding="same", name=f"down{i}"
        ), spectral_norm)(h)
        h = layers.LeakyReLU(0.2, name=f"down{i}_lrelu")(h)
    features = layers.Flatten(name="features")(h)
    logit = _spectral(layers.Dense(1, name="logit"), spectral_norm)(features)
    if num_classes and conditioning == "projection":
        # not spectral-normalized: Keras' wrapper casts its output to the input's dtype (int32)
        embedded = layers.Embedding(
            num_classes, features.shape[-1], name="label_projection"
        )(label)
        projection = layers.Dot(axes=1, name="projection")([embedded, features])
        logit = layers.Add(name="logit_plus_projection")([logit, projection])
    logit = layers.Reshape((), name="score", dtype="float32")(logit)
    if class_head:
        if not num_classes:
            raise ValueError("class_head needs a conditional discriminator (num_classes > 0)")
        class_logits = layers.Dense(num_classes, name="class_logits", dtype="float32")(features)
        return keras.Model(_single_or_list(inputs), [logit, class_logits], name=name)
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
    spectral_norm: bool = False,
    name: str = "discriminator",
) -> keras.Model:
    """Fully connected discriminator: pixels -> 128 -> 128 -> logit (`spectral_norm`: each
    Dense in SpectralNormalization)."""
    image = keras.Input(shape=tuple(image_shape), name="image")
    inputs = [image]
    h = layers.Flatten(name="pixels")(image)
    if num_classes:
        label = _label_input()
        inputs.append(label)
        embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        h = layers.Concatenate(name="pixels_and_label")([h, embedded])
    for i, units in enumerate(hidden_units):
        h = _spectral(layers.Dense(units, name=f"hidden{i}"), spectral_norm)(h)
        h = layers.LeakyReLU(0.2, name=f"hidden{i}_lrelu")(h)
    logit = _spectral(layers.Dense(1, name="logit"), spectral_norm)(h)
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


# Activations after the decoder's transposed convolutions. LiteRT's XNNPACK delegate takes an
# int8 LEAKY_RELU but not an unfused int8 RELU, so with "relu" every upsampling step leaves the
# delegate and int8 runs 3x slower than float32; with "leaky_relu" int8 runs ~4x faster
# (tools/bench_export.py). "relu" stays for models saved before the option existed.
DECODER_ACTIVATIONS = ("leaky_relu", "relu")
LEAKY_SLOPE = 0.01


def check_decoder_activation(activation: str) -> str:
    if activation not in DECODER_ACTIVATIONS:
        raise ValueError(
            f"decoder_activation={activation!r} is not one of {list(DECODER_ACTIVATIONS)}")
    return activation


def _decoder_activation(activation: str, name: str) -> layers.Layer:
    if activation == "leaky_relu":
        return layers.LeakyReLU(LEAKY_SLOPE, name=name)
    return layers.ReLU(name=name)


def conv_decoder(
    latent_dim: int, image_shape, base_filters: int = 32, name: str = "decoder",
    activation: str = "leaky_relu",
) -> keras.Model:
    """VAE decoder: z -> unbounded per-pixel parameters (logits or pre-tanh means)."""
    check_decoder_activation(activation)
    start_h, start_w, doublings = upsampling_plan(image_shape)
    top_filters = base_filters * 2 ** (doublings - 1)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = layers.Dense(256, activation="relu", name="hidden")(z)
    h = layers.Dense(start_h * start_w * top_filters, activation="relu", name="project")(h)
    h = layers.Reshape((start_h, start_w, top_filters), name="to_feature_map")(h)
    for i in range(doublings):
        if activation == "relu":  # the original layout, so older saved models load unchanged
            h = layers.Conv2DTranspose(
                top_filters // 2**i, 3, strides=2, padding="same", activation="relu",
                name=f"up{i}",
            )(h)
            continue
        h = layers.Conv2DTranspose(
            top_filters // 2**i, 3, strides=2, padding="same", name=f"up{i}")(h)
        h = _decoder_activation(activation, f"up{i}_{activation}")(h)
    params = layers.Conv2D(
        int(image_shape[-1]), 3, padding="same", name="pixel_params", dtype="float32"
    )(h)
    return keras.Model(z, params, name=name)


# ---- conditional VAE networks: the VAE's builders, wrapped with a label input -------------


def conditional_conv_encoder(
    image_shape,
    latent_dim: int,
    num_classes: int,
    base_filters: int = 32,
    embedding_dim: int = 50,
    name: str = "encoder",
) -> keras.Model:
    """CVAE encoder: [image, label] -> (z_mean, z_log_var). The label, embedded, becomes an
    extra image channel (as in the CGAN's "embedding" discriminator) before `conv_encoder`."""
    height, width, channels = (int(d) for d in image_shape)
    image = keras.Input(shape=(height, width, channels), name="image")
    label = _label_input()
    h = _label_as_channel(image, label, image_shape, num_classes, embedding_dim)
    encoder = conv_encoder(
        (height, width, channels + 1), latent_dim, base_filters, name="image_encoder"
    )
    return keras.Model([image, label], encoder(h), name=name)


def conditional_conv_decoder(
    latent_dim: int,
    image_shape,
    num_classes: int,
    base_filters: int = 32,
    embedding_dim: int = 50,
    name: str = "decoder",
    activation: str = "leaky_relu",
) -> keras.Model:
    """CVAE decoder: [z, label] -> per-pixel parameters; `conv_decoder` on z joined with the
    label's embedding."""
    z = keras.Input(shape=(latent_dim,), name="z")
    label = _label_input()
    embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
    h = layers.Concatenate(name="z_and_label")([z, embedded])
    decoder = conv_decoder(latent_dim + embedding_dim, image_shape, base_filters,
                           name="latent_decoder", activation=activation)
    return keras.Model([z, label], decoder(h), name=name)


# ---- diffusion: a small U-Net denoiser (Ho et al. 2020; Nichol & Dhariwal 2021) ------------


@keras.saving.register_keras_serializable(package="zoo")
class SinusoidalEmbedding(layers.Layer):
    """Timesteps t (batch,) -> (batch, dim): [sin(t f_k), cos(t f_k)], f_k = 10000^(-k / half)."""

    def __init__(self, dim: int, max_period: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if dim % 2:
            raise ValueError(f"SinusoidalEmbedding dim must be even, got {dim!r}")
        self.dim = int(dim)
        self.max_period = float(max_period)

    def call(self, t):
        half = self.dim // 2
        frequencies = keras.ops.convert_to_tensor(
            [self.max_period ** (-k / half) for k in range(half)], dtype="float32"
        )
        angles = keras.ops.expand_dims(keras.ops.cast(t, "float32"), -1) * frequencies
        return keras.ops.concatenate([keras.ops.sin(angles), keras.ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "max_period": self.max_period}


@keras.saving.register_keras_serializable(package="zoo")
class SpatialSelfAttention(layers.Layer):
    """Single-head self-attention over the pixels of a feature map, (batch, H, W, C) in and out:
    softmax(q k^T / sqrt(C)) v with q, k, v from 1x1 projections; plain MatMul/Softmax ops that
    ONNX and TFLite builtins cover (no Einsum)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.qkv = layers.Dense(3 * channels, name="qkv")
        self.qkv.build(input_shape)
        self.output_projection = layers.Dense(channels, name="output_projection")
        self.output_projection.build(input_shape)

    def call(self, x):
        ops = keras.ops
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        qkv = ops.reshape(self.qkv(x), (-1, height * width, 3 * channels))
        q = qkv[..., :channels]
        k = qkv[..., channels : 2 * channels]
        v = qkv[..., 2 * channels :]
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * (channels**-0.5)
        attended = ops.matmul(ops.softmax(scores, axis=-1), v)
        attended = ops.reshape(attended, (-1, height, width, channels))
        return self.output_projection(attended)

    def compute_output_shape(self, input_shape):
        return input_shape


def _groups(channels: int, max_groups: int = 8, min_channels: int = 1) -> int:
    """The most groups (up to max_groups) that divide `channels` with at least `min_channels`
    channels each, for GroupNormalization. min_channels=1 is the rule of U-Nets saved before
    `min_group_channels` existed: at 8 channels it makes 8 one-channel groups, which erase any
    per-channel constant -- the time/label embedding the residual block adds before its norm."""
    fits = [g for g in range(1, max_groups + 1) if channels % g == 0 and channels // g >= min_channels]
    return max(fits or [1])


def _residual_block(h, embedding, filters: int, name: str, min_group_channels: int = 1):
    """GroupNorm-SiLU-Conv, + projected time(/label) embedding, GroupNorm-SiLU-Conv, + skip."""
    def norm(x, suffix):
        groups = _groups(x.shape[-1], min_channels=min_group_channels)
        return layers.GroupNormalization(groups, name=f"{name}_{suffix}")(x)

    x = norm(h, "norm1")
    x = layers.Activation("silu", name=f"{name}_act1")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
    e = layers.Dense(filters, name=f"{name}_embedding")(embedding)
    x = layers.Add(name=f"{name}_plus_embedding")(
        [x, layers.Reshape((1, 1, filters), name=f"{name}_embedding_map")(e)]
    )
    x = norm(x, "norm2")
    x = layers.Activation("silu", name=f"{name}_act2")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(x)
    skip = h if h.shape[-1] == filters else layers.Conv2D(filters, 1, name=f"{name}_skip")(h)
    return layers.Add(name=f"{name}_out")([skip, x])


def _attention_block(h, name: str, min_group_channels: int = 1):
    groups = _groups(h.shape[-1], min_channels=min_group_channels)
    x = layers.GroupNormalization(groups, name=f"{name}_norm")(h)
    x = SpatialSelfAttention(name=f"{name}_attention")(x)
    return layers.Add(name=f"{name}_out")([h, x])


# U-Net layouts: "classic" (Ho et al. 2020's: blocks_per_level + 1 decoder blocks per level, each
# taking a skip from every encoder output incl. the stem and the downsamplers; the upsampling conv
# keeps the lower level's channels) and "lean", sized for small images on CPUs: blocks_per_level
# decoder blocks per level, skips from the encoder's residual blocks only, and the upsampling conv
# already at the upper level's channels -- about 0.6x the multiply-adds at 28x28, most of them
# cut at full resolution, where the time goes.
UNET_LAYOUTS = ("classic", "lean")


def check_unet_layout(layout: str) -> str:
    if layout not in UNET_LAYOUTS:
        raise ValueError(f"unet={layout!r} is not one of {list(UNET_LAYOUTS)}")
    return layout


def check_min_group_channels(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"min_group_channels must be an integer >= 1, got {value!r}")
    return int(value)


def unet_denoiser(
    image_shape,
    num_classes: int = 0,
    base_filters: int = 32,
    channel_multipliers=(1, 2, 2),
    blocks_per_level: int = 1,
    attention: bool = False,
    name: str = "denoiser",
    *,
    unet: str = "classic",
    min_group_channels: int = 1,
) -> keras.Model:
    """A small DDPM U-Net: [x_t, t [, label]] -> prediction with the shape of x_t.

    Inputs: `x_t` (batch, H, W, C) float32; `t` (batch,) float32 timesteps (0 .. T-1, embedded
    sinusoidally then by a 2-layer MLP); with `num_classes`, `label` (batch,) int32 in
    [0, num_classes], where `num_classes` itself is the "no label" class that classifier-free
    guidance uses. Each of the len(channel_multipliers) levels has `blocks_per_level` residual
    blocks (GroupNorm, SiLU, the embedding added in) at base_filters * multiplier channels; the
    resolution halves between levels (stride-2 conv) and doubles back (nearest + conv), with
    skip connections laid out as `unet` says (UNET_LAYOUTS). `attention=True` adds pixel
    self-attention at the lowest resolution. GroupNorm groups have at least
    `min_group_channels` channels (1: the layout of U-Nets saved before the option existed).
    No batch statistics (GroupNorm), so examples are independent and replicas agree.
    """
    check_unet_layout(unet)
    min_group_channels = check_min_group_channels(min_group_channels)
    lean = unet == "lean"
    height, width, channels = (int(d) for d in image_shape)
    multipliers = tuple(int(m) for m in channel_multipliers)
    levels = len(multipliers)
    if levels < 1 or any(m < 1 for m in multipliers):
        raise ValueError(f"channel_multipliers must be positive integers, got {channel_multipliers!r}")
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"image_shape={tuple(image_shape)} cannot be halved {levels - 1} times "
            f"(len(channel_multipliers)={levels}): height and width must be multiples of {factor}"
        )
    embedding_dim = 4 * base_filters

    def block(h, filters, block_name):
        return _residual_block(h, e, filters, block_name, min_group_channels)

    def attend(h, block_name):
        return _attention_block(h, block_name, min_group_channels)

    x_t = keras.Input(shape=(height, width, channels), name="x_t")
    t = keras.Input(shape=(), dtype="float32", name="t")
    inputs = [x_t, t]
    e = SinusoidalEmbedding(base_filters, name="time_sinusoidal")(t)
    e = layers.Dense(embedding_dim, activation="silu", name="time_mlp1")(e)
    e = layers.Dense(embedding_dim, name="time_mlp2")(e)
    if num_classes:
        label = _label_input()
        inputs.append(label)
        embedded = layers.Embedding(num_classes + 1, embedding_dim, name="label_embedding")(label)
        e = layers.Add(name="time_and_label")([e, embedded])
    e = layers.Activation("silu", name="embedding_act")(e)

    h = layers.Conv2D(base_filters, 3, padding="same", name="stem")(x_t)
    skips = [] if lean else [h]
    for level, multiplier in enumerate(multipliers):
        for index in range(blocks_per_level):
            h = block(h, base_filters * multiplier, f"down{level}_{index}")
            if attention and level == levels - 1:
                h = attend(h, f"down{level}_{index}_attn")
            skips.append(h)
        if level < levels - 1:
            h = layers.Conv2D(
                h.shape[-1], 3, strides=2, padding="same", name=f"downsample{level}"
            )(h)
            if not lean:
                skips.append(h)
    h = block(h, h.shape[-1], "middle0")
    if attention:
        h = attend(h, "middle_attn")
    h = block(h, h.shape[-1], "middle1")
    for level in reversed(range(levels)):
        for index in range(blocks_per_level + (0 if lean else 1)):
            h = layers.Concatenate(name=f"up{level}_{index}_concat")([h, skips.pop()])
            h = block(h, base_filters * multipliers[level], f"up{level}_{index}")
            if attention and level == levels - 1:
                h = attend(h, f"up{level}_{index}_attn")
        if level > 0:
            h = layers.UpSampling2D(2, interpolation="nearest", name=f"upsample{level}")(h)
            upsampled = base_filters * multipliers[level - 1] if lean else h.shape[-1]
            h = layers.Conv2D(upsampled, 3, padding="same", name=f"upsample{level}_conv")(h)
    groups = _groups(h.shape[-1], min_channels=min_group_channels)
    h = layers.GroupNormalization(groups, name="out_norm")(h)
    h = layers.Activation("silu", name="out_act")(h)
    prediction = layers.Conv2D(
        channels, 3, padding="same", name="prediction", dtype="float32"
    )(h)
    return keras.Model(inputs, prediction, name=name)
