"""StyleGAN2-style networks (mapping, synthesis), each a plain keras.Model, export-friendly.

Mapping: z [, label] -> w. Pixel-norm of z (and of the label's embedding), then dense layers
with equalized learning rate (weights stored N(0, 1/lr_mul), scaled at run time by
lr_mul / sqrt(fan_in): a constant multiply in the exported graph) and StyleGAN's small
learning-rate multiplier (0.01), so w moves slowly against the synthesis network.

Synthesis: ws [n, num_ws, w_dim] -> images in [-1, 1]: a learned constant, modulated 3x3
convolutions (two per resolution after the first), resize-then-conv upsampling (no
Conv2DTranspose: dynamic-batch and full-int8 TFLite trouble) and toRGB skips at every
resolution (StyleGAN2's "skip" architecture), tanh at the end like the other families.

Why the modulation is applied to the ACTIVATIONS: StyleGAN2's reference code folds the style
into per-sample weights and runs a grouped convolution, which ONNX Runtime and TFLite builtins
cannot run with a dynamic batch. Scaling the input channels by the style s, convolving with the
shared kernel W and then multiplying each output channel by d = rsqrt(sum((W s)^2) + eps) is the
same function (Karras et al. 2020, "fused_modconv=False"), and every op is a builtin
(Mul, Conv2D, MatMul, Rsqrt): d is s^2 @ sum_taps(W^2), one small matmul.

Noise: each modulated conv adds per-pixel noise scaled by a learned strength. The sampling and
export graph reads a fixed buffer (a non-trainable weight drawn once at build: StyleGAN's
noise_mode="const"), so a seed gives the same image everywhere and no random op is exported;
training feeds fresh noise through extra inputs of a training-only model sharing the layers.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from zoo.networks import upsampling_plan

LRELU_GAIN = math.sqrt(2.0)


@keras.saving.register_keras_serializable(package="zoo")
class PixelNorm(layers.Layer):
    """x / sqrt(mean(x^2) + eps) over the last axis (StyleGAN's normalization of z)."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        # x * x, not square(): LiteRT's 16x8 quantization has no SQUARE kernel
        return x * ops.rsqrt(ops.mean(x * x, axis=-1, keepdims=True) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zoo")
class EqualizedDense(layers.Layer):
    """Dense with equalized learning rate: y = x @ (W * lr_mul / sqrt(fan_in)) + b * lr_mul.

    Adam's step is about the same size for every stored weight, so scaling at run time gives
    every layer the same effective learning rate (times lr_multiplier)."""

    def __init__(self, units: int, lr_multiplier: float = 1.0, bias_init: float = 0.0,
                 activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.lr_multiplier = float(lr_multiplier)
        self.bias_init = float(bias_init)
        self.activation = activation

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight(
            shape=(fan_in, self.units), name="kernel",
            initializer=keras.initializers.RandomNormal(stddev=1.0 / self.lr_multiplier),
        )
        self.bias = self.add_weight(
            shape=(self.units,), name="bias",
            initializer=keras.initializers.Constant(self.bias_init / self.lr_multiplier),
        )
        self.weight_gain = self.lr_multiplier / math.sqrt(fan_in)

    def call(self, x):
        y = ops.matmul(x, self.kernel * self.weight_gain) + self.bias * self.lr_multiplier
        if self.activation == "lrelu":
            y = ops.leaky_relu(y, 0.2) * LRELU_GAIN
        return y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "lr_multiplier": self.lr_multiplier,
                "bias_init": self.bias_init, "activation": self.activation}


@keras.saving.register_keras_serializable(package="zoo")
class ConstantInput(layers.Layer):
    """The learned start feature map [h, w, c], one copy per row of the styles it is given."""

    def __init__(self, height: int, width: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width, self.channels = int(height), int(width), int(channels)

    def build(self, input_shape):
        self.constant = self.add_weight(
            shape=(1, self.height, self.width, self.channels), name="constant",
            initializer=keras.initializers.RandomNormal(stddev=1.0),
        )

    def call(self, ws):
        # A broadcast multiply by ones of the batch (no Shape/Tile ops for the exporters).
        ones = ops.reshape(ws[:, 0, :1] * 0.0 + 1.0, (-1, 1, 1, 1))
        return self.constant * ones

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, self.channels)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "channels": self.channels}


@keras.saving.register_keras_serializable(package="zoo")
class BroadcastStyles(layers.Layer):
    """w [n, w_dim] -> ws [n, num_ws, w_dim]: every layer gets the same style (no truncation)."""

    def __init__(self, num_ws: int, **kwargs):
        super().__init__(**kwargs)
        self.num_ws = int(num_ws)

    def call(self, w):
        return ops.expand_dims(w, 1) * ops.ones((1, self.num_ws, 1), dtype=w.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_ws, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_ws": self.num_ws}


@keras.saving.register_keras_serializable(package="zoo")
class ModulatedConv2D(layers.Layer):
    """x, ws [, noise] -> conv(x * s) * d (+ noise * strength) + b, s = affine(ws[:, index]).

    The modulation on the activations (see the module docstring for why): s scales the input
    channels, the kernel is shared by the batch, d = rsqrt(s^2 @ sum_taps(W^2) + eps)
    demodulates each output channel. `upsample` doubles the input first (bilinear resize).
    With `use_noise`, the third input (training) or the fixed buffer (sampling, export) is
    added after demodulation, scaled by a learned strength that starts at 0.
    """

    def __init__(self, filters: int, style_index: int, kernel_size: int = 3,
                 demodulate: bool = True, upsample: bool = False, use_noise: bool = True,
                 activation: str | None = "lrelu", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.style_index = int(style_index)
        self.kernel_size = int(kernel_size)
        self.demodulate = bool(demodulate)
        self.upsample = bool(upsample)
        self.use_noise = bool(use_noise)
        self.activation = activation

    def build(self, input_shape):
        x_shape, ws_shape = input_shape[0], input_shape[1]
        in_channels = int(x_shape[-1])
        self.affine = EqualizedDense(in_channels, bias_init=1.0, name="affine")
        self.affine.build((None, int(ws_shape[-1])))
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters), name="kernel",
            initializer=keras.initializers.RandomNormal(stddev=1.0),
        )
        self.bias = self.add_weight(shape=(self.filters,), name="bias", initializer="zeros")
        self.weight_gain = 1.0 / math.sqrt(in_channels * self.kernel_size**2)
        if self.use_noise:
            factor = 2 if self.upsample else 1
            height, width = int(x_shape[1]) * factor, int(x_shape[2]) * factor
            self.noise_strength = self.add_weight(shape=(), name="noise_strength",
                                                  initializer="zeros")
            self.noise_buffer = self.add_weight(
                shape=(1, height, width, 1), name="noise_buffer", trainable=False,
                initializer=keras.initializers.RandomNormal(stddev=1.0),
            )

    def call(self, inputs):
        x, ws = inputs[0], inputs[1]
        if self.upsample:
            height, width = x.shape[1], x.shape[2]
            x = ops.image.resize(x, (2 * height, 2 * width), interpolation="bilinear")
        styles = self.affine(ws[:, self.style_index])
        kernel = self.kernel * self.weight_gain
        x = x * styles[:, None, None, :]
        x = ops.conv(x, kernel, padding="same")
        if self.demodulate:
            squared = ops.sum(ops.square(kernel), axis=(0, 1))  # [in, out]
            # styles * styles, not square(): LiteRT's 16x8 quantization has no SQUARE kernel
            x = x * ops.rsqrt(ops.matmul(styles * styles, squared) + 1e-8)[:, None, None, :]
        if self.use_noise:
            noise = inputs[2] if len(inputs) > 2 else self.noise_buffer
            x = x + noise * self.noise_strength
        x = x + self.bias
        if self.activation == "lrelu":
            x = ops.leaky_relu(x, 0.2) * LRELU_GAIN
        return x

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0]
        factor = 2 if self.upsample else 1
        height = None if x_shape[1] is None else x_shape[1] * factor
        width = None if x_shape[2] is None else x_shape[2] * factor
        return (x_shape[0], height, width, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "style_index": self.style_index,
                "kernel_size": self.kernel_size, "demodulate": self.demodulate,
                "upsample": self.upsample, "use_noise": self.use_noise,
                "activation": self.activation}


def synthesis_plan(image_shape, base_filters: int, max_filters: int):
    """[(height, width, filters)] per resolution, start to end, and num_ws.

    Style layout (StyleGAN2's): index 0 styles the start conv, each later resolution's two
    convs take the next two, and each toRGB shares the index of the conv after it, so
    num_ws = 2 * doublings + 2 (28x28: 7 -> 14 -> 28, 6 styles)."""
    start_h, start_w, doublings = upsampling_plan(image_shape)
    levels = [
        (start_h * 2**i, start_w * 2**i, min(max_filters, base_filters * 2 ** (doublings - i)))
        for i in range(doublings + 1)
    ]
    return levels, 2 * doublings + 2


def mapping_network(latent_dim: int, w_dim: int, num_classes: int = 0, *, layers_count: int = 4,
                    lr_multiplier: float = 0.01, embedding_dim: int = 64,
                    name: str = "mapping") -> keras.Model:
    """z [, label] -> w. A label is embedded, pixel-normalized and joined to the normalized z."""
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    h = PixelNorm(name="z_norm")(z)
    if num_classes:
        label = keras.Input(shape=(), dtype="int32", name="label")
        inputs.append(label)
        embedded = layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        embedded = PixelNorm(name="label_norm")(embedded)
        h = layers.Concatenate(name="z_and_label")([h, embedded])
    for i in range(layers_count):
        h = EqualizedDense(w_dim, lr_multiplier=lr_multiplier, activation="lrelu",
                           name=f"dense{i}")(h)
    w = layers.Identity(name="w", dtype="float32")(h)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, w, name=name)


def synthesis_networks(image_shape, w_dim: int, *, base_filters: int = 32,
                       max_filters: int = 256, name: str = "synthesis"):
    """(synthesis, training_synthesis, noise_shapes), two keras.Models sharing every layer.

    synthesis: ws -> images with the fixed noise buffers (sampling and export).
    training_synthesis: [ws, noise_0, ...] -> images with the given noise (training only);
    noise_shapes lists each noise input's (h, w, 1)."""
    levels, num_ws = synthesis_plan(image_shape, base_filters, max_filters)
    channels = int(image_shape[-1])
    ws = keras.Input(shape=(num_ws, w_dim), name="ws")
    noise_shapes, blocks = [], []
    start_h, start_w, start_filters = levels[0]
    constant = ConstantInput(start_h, start_w, start_filters, name="const")
    first = ModulatedConv2D(start_filters, 0, name="b0_conv")
    noise_shapes.append((start_h, start_w, 1))
    torgb = [ModulatedConv2D(channels, 1, kernel_size=1, demodulate=False, use_noise=False,
                             activation=None, name="b0_torgb")]
    for i, (height, width, filters) in enumerate(levels[1:], start=1):
        blocks.append((
            ModulatedConv2D(filters, 2 * i - 1, upsample=True, name=f"b{i}_conv0"),
            ModulatedConv2D(filters, 2 * i, name=f"b{i}_conv1"),
        ))
        noise_shapes += [(height, width, 1), (height, width, 1)]
        torgb.append(ModulatedConv2D(channels, 2 * i + 1, kernel_size=1, demodulate=False,
                                     use_noise=False, activation=None, name=f"b{i}_torgb"))
    upsample_rgb = [layers.UpSampling2D(2, interpolation="bilinear", name=f"b{i}_rgb_up")
                    for i in range(1, len(levels))]
    add_rgb = [layers.Add(name=f"b{i}_rgb_add") for i in range(1, len(levels))]
    to_image = layers.Activation("tanh", name="images", dtype="float32")

    def run(noises):
        def noise_args(index):
            return [] if noises is None else [noises[index]]

        x = constant(ws)
        x = first([x, ws, *noise_args(0)])
        rgb = torgb[0]([x, ws])
        for i, (conv0, conv1) in enumerate(blocks):
            x = conv0([x, ws, *noise_args(2 * i + 1)])
            x = conv1([x, ws, *noise_args(2 * i + 2)])
            rgb = add_rgb[i]([upsample_rgb[i](rgb), torgb[i + 1]([x, ws])])
        return to_image(rgb)

    synthesis = keras.Model(ws, run(None), name=name)
    noises = [keras.Input(shape=shape, name=f"noise{i}") for i, shape in enumerate(noise_shapes)]
    training = keras.Model([ws, *noises], run(noises), name=f"{name}_training")
    return synthesis, training, noise_shapes


def style_generator(mapping: keras.Model, synthesis: keras.Model, num_ws: int,
                    name: str = "generator") -> keras.Model:
    """z [, label] -> images = synthesis(repeat(mapping(z [, label]), num_ws)), no truncation."""
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0])
              for t in mapping.inputs]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    ws = BroadcastStyles(num_ws, name="broadcast_w")(mapping(inputs))
    return keras.Model(inputs, synthesis(ws), name=name)


def check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
