"""The shared base of every model family: config, optimizers, noise, sampling, distribution.

A family subclasses `GenerativeModel`, builds its networks in `__init__` (each a plain
keras.Model from `zoo.networks`), names its optimizers in `optimizer_roles` and writes
`train_step`/`test_step` with the helpers here:

- `replica_noise` draws noise for the GLOBAL batch from the model's SeedGenerator and keeps this
  replica's rows, so N replicas see exactly the noise one device would see;
- `average_over_global_batch` divides per-example losses by the global batch, so the gradients
  Keras sums across replicas are the gradient of the true mean;
- `minimize` applies loss scaling (mixed precision) and one optimizer step.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging

import keras
import numpy as np
import tensorflow as tf

# Private Keras APIs only through compat; the TF-free tier owns the sampling-input rules, so
# Keras and exported models agree (check_labels is re-exported for the families).
from exporters import compat, style_controls
from exporters.sampling import check_count as check_sample_count
from exporters.sampling import check_labels, short_repr
from exporters.sampling import latents as latent_normal
from zoo import distribute

DEFAULT_SAMPLE_BATCH = 256
log = logging.getLogger("zoo")


def check_count(n, what: str = "n") -> int:
    """A positive int, no upper cap (Keras sampling runs in batches): the runtime's rule."""
    return check_sample_count(n, None, what)


def check_image_shape(image_shape) -> tuple[int, int, int]:
    shape = tuple(image_shape) if isinstance(image_shape, (list, tuple)) else None
    if not shape or len(shape) != 3 or not all(
        isinstance(d, (int, np.integer)) and d > 0 for d in shape
    ):
        raise ValueError(
            f"image_shape must be (height, width, channels) of positive integers, "
            f"got {image_shape!r}"
        )
    return tuple(int(d) for d in shape)


def check_no_style_controls(family: str, truncation, mix, edits) -> None:
    """The style controls on a model without per-layer styles: one clear error naming the value."""
    style_controls.check_mix(mix, None)
    for what, value, verb in (("truncation", truncation, "needs"), ("edits", edits, "need")):
        if value is not None and value != (1.0 if what == "truncation" else {}):
            raise ValueError(f"{what}={short_repr(value)} {verb} a style-based generator "
                             f"(stylegan; per-layer styles); this {family or 'model'} has none")


def unpack_batch(data):
    """(images, labels or None) from what `fit` hands `train_step`: x, (x,), (x, y), (x, y, w)."""
    if isinstance(data, (tuple, list)):
        images = data[0]
        labels = data[1] if len(data) > 1 else None
    else:
        images, labels = data, None
    return images, labels


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Build layers under `policy` (a name, a DTypePolicy or its config); None keeps the global one."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(policy))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _builds_under_own_policy(init):
    """Wrap a family's `__init__` so networks built inside it follow the model's `dtype` argument.

    `zoo.build("gan", dtype="mixed_bfloat16")` (and from_config / load_model, which pass the saved
    policy back as `dtype`) then gives a model whose generator, discriminator, ... all compute
    in that policy, like a global `keras.config.set_dtype_policy` would, without changing it.
    """

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        with dtype_policy_scope(kwargs.get("dtype")):
            init(self, *args, **kwargs)

    # Keras reads __init__'s arguments both ways (getfullargspec and signature): keep them equal.
    wrapper.__signature__ = inspect.signature(init)
    return wrapper


@compat.build_without_reading_a_batch  # built in __init__: fit under a strategy reads no batch
class GenerativeModel(keras.Model):
    """Common ground of the zoo's families. Subclasses set `family` and `optimizer_roles`.

    Constructors: `image_shape` and `latent_dim` (and `num_classes` for conditional families)
    may be positional, every other argument is keyword-only, and a subclass forwards to its
    base by keyword, so reordering a signature can never silently swap two values.

    `model(x)` runs `call`, whose meaning each family documents: by default the generator
    (z [, labels] -> images; a diffusion family's generator is its denoiser). `export`
    always writes the generator, whatever `call` is.

    Precision: pass `dtype="mixed_float16"` or `"mixed_bfloat16"` (or set Keras' global dtype
    policy) when building. Variables, the networks' outputs and every loss stay float32; under
    mixed_float16, `compile` wraps every optimizer in LossScaleOptimizer and `minimize` scales.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _builds_under_own_policy(cls.__dict__["__init__"])

    family = ""
    conditional = False
    # optimizer attribute -> name of the network attribute it trains (None: all trainables).
    optimizer_roles: dict[str, str | None] = {"optimizer": None}
    tracker_names: tuple[str, ...] = ("loss",)
    # What `generator` returns: "image" (NHWC in [-1, 1]), or for a diffusion family the
    # denoiser's "prediction" (noise or v, unbounded) that a sampler turns into images.
    generator_output = "image"

    def __init__(self, image_shape, latent_dim: int, num_classes: int = 0, seed=None, **kwargs):
        # Subclasses call this by keyword: super().__init__(image_shape=..., latent_dim=..., ...).
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or (
            latent_dim <= 0
        ):
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        if self.conditional:
            if isinstance(num_classes, bool) or not isinstance(
                num_classes, (int, np.integer)
            ) or num_classes < 2:
                raise ValueError(
                    f"{self.family} is conditional: num_classes must be an integer >= 2, "
                    f"got {num_classes!r}"
                )
        elif num_classes:
            raise ValueError(f"{self.family} is unconditional: num_classes must be 0")
        self.num_classes = int(num_classes)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}

    # ---- config -------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=list(self.image_shape), latent_dim=self.latent_dim, seed=self.seed
        )
        return config

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ---- Keras' own entry points: call, export -------------------------------------------
    def call(self, inputs, training=False):
        """The generator: z [, labels] -> images NHWC in [-1, 1] (a diffusion family's
        generator is its denoiser). Families whose `model(x)` means something else override it.

        Training never goes through `call` (each family's `train_step` calls its networks), so
        `model(x)`, `model.predict` and `model.summary()` are for inference and inspection.
        """
        return self.generator(inputs, training=training)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Keras' `Model.export` of the GENERATOR (`self.generator`), not of `call`.

        The generator is what every artifact of the zoo holds (DESIGN: exporters only ever see
        `model.generator`), and `call` is not always it (a VAE's `call` is the reconstruction).
        Exporting the whole model would also trace the discriminator/encoder variables into
        the artifact. `exporters.export(model, ...)` is the checked route (float32, manifest,
        verification); this keeps `model.export(path)` meaning the same for every family.
        """
        return self.generator.export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    # ---- compile: one optimizer per role, built up front --------------------------------
    def default_optimizer(self, role: str) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(learning_rate=1e-3)

    def compile(self, jit_compile="auto", **kwargs):
        """Compile with the family's default optimizers, or the ones passed by role name.

        Optimizers are built on their variables here (inside the caller's strategy scope), which
        `fit` under a strategy and BackupAndRestore both need. `jit_compile` is "auto" (XLA where
        it is measured faster and known to work: `zoo.distribute.choose_jit_compile`), or
        True/False ("on"/"off"); the choice and its reason are in `self.jit_choice`.
        """
        unknown = sorted(set(kwargs) - set(self.optimizer_roles) - {"steps_per_execution"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.compile() got unexpected arguments {unknown}; "
                f"it takes {sorted(self.optimizer_roles)}, steps_per_execution and jit_compile"
            )
        optimizers = {}
        for role in self.optimizer_roles:
            given = kwargs.pop(role, None)
            optimizer = self.default_optimizer(role) if given is None else keras.optimizers.get(given)
            if self.dtype_policy.name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizers[role] = optimizer
        keras_optimizer = optimizers.pop("optimizer", None)
        self.jit_choice = distribute.choose_jit_compile(jit_compile)
        self.jit_setting = jit_compile
        log.info("%s: %s", type(self).__name__, self.jit_choice)
        super().compile(optimizer=keras_optimizer, jit_compile=self.jit_choice.enabled, **kwargs)
        for role, optimizer in optimizers.items():
            setattr(self, role, optimizer)
        for role in self.optimizer_roles:
            getattr(self, role).build(self.variables_for(role))

    def variables_for(self, role: str):
        network = self.optimizer_roles[role]
        return self.trainable_variables if network is None else getattr(
            self, network
        ).trainable_variables

    def get_compile_config(self):
        if not all(hasattr(self, role) for role in self.optimizer_roles):
            return None  # never compiled: saved without a compile config, like any Keras model
        config = {
            role: keras.saving.serialize_keras_object(getattr(self, role))
            for role in self.optimizer_roles
        }
        setting = getattr(self, "jit_setting", "auto")
        # "auto" is resolved again where the model is loaded (another device, another choice).
        config["jit_compile"] = setting if setting == "auto" else bool(self.jit_compile)
        return config

    def compile_from_config(self, config):
        config = dict(config)
        jit_compile = config.pop("jit_compile", "auto")
        optimizers = {
            role: keras.saving.deserialize_keras_object(value) for role, value in config.items()
        }
        self.compile(jit_compile=jit_compile, **optimizers)

    # ---- train-step helpers --------------------------------------------------------------
    def replica_noise(self, local_batch, shape=None):
        """Standard-normal noise (local_batch, *shape) that does not depend on the replica count.

        Every replica draws the same global block from the shared SeedGenerator state and keeps
        its own rows, in the order tf.distribute splits a global batch.
        """
        shape = (self.latent_dim,) if shape is None else tuple(shape)
        return self.replica_draw(
            lambda global_shape: keras.random.normal(
                global_shape, seed=self.seed_generator, dtype="float32"
            ),
            local_batch,
            shape,
        )

    def replica_uniform(self, local_batch, shape=(), minval=0.0, maxval=1.0):
        """Uniform [minval, maxval) draws (local_batch, *shape), replica-count independent."""
        return self.replica_draw(
            lambda global_shape: keras.random.uniform(
                global_shape, minval, maxval, seed=self.seed_generator, dtype="float32"
            ),
            local_batch,
            shape,
        )

    @staticmethod
    def replica_draw(draw, local_batch, shape=()):
        """This replica's rows of `draw((global_batch, *shape))`, a draw for the GLOBAL batch.

        `draw` must take its randomness from the model's SeedGenerator (as `replica_noise` and
        `replica_uniform` do), so every replica draws the same block and N replicas see exactly
        what one device would.
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        replica = context.replica_id_in_sync_group if context else 0
        values = draw((local_batch * replicas, *tuple(shape)))
        return values[replica * local_batch : (replica + 1) * local_batch]

    @staticmethod
    def average_over_global_batch(per_example_loss):
        """Sum over this replica's examples divided by the GLOBAL batch size."""
        return tf.nn.compute_average_loss(tf.cast(per_example_loss, tf.float32))

    def minimize(self, optimizer, loss_fn, variables):
        """One optimizer step on `loss_fn()` -> (loss, aux), with loss scaling. Returns them."""
        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
            loss = tf.cast(loss, tf.float32)  # mixed precision: reduce and scale in float32
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss, aux

    def update_trackers(self, **per_example_values):
        for name, values in per_example_values.items():
            self.trackers[name].update_state(tf.cast(values, tf.float32))
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if distribute.is_multi_worker():
            # Keras 3.15 reduces step outputs across workers with strategy.reduce("MEAN", v,
            # axis=0), which fails on scalars (keras-team/keras#20585): give it shape (1,).
            # The epoch logs are read from the (synchronized) trackers, so they stay scalars.
            results = {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results

    def example_generator_inputs(self, n: int, seed=0):
        """Inputs for `self.generator` with batch `n`, for checks and export verification.

        The default is what an image generator takes: standard-normal z [, labels 0, 1, ...].
        Families whose `generator` takes other inputs (a diffusion denoiser) override this.
        """
        n = check_count(n)
        labels = (np.arange(n) % self.num_classes).astype(np.int32) if self.num_classes else None
        return self.with_labels(latent_normal(n, self.latent_dim, seed), labels)

    def with_labels(self, z, labels):
        return [z, labels] if self.num_classes else z

    def batch_labels(self, labels):
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError(
                f"{self.family} is conditional: the dataset must yield (images, labels)"
            )
        return tf.cast(tf.reshape(labels, (-1,)), tf.int32)

    # ---- fit: check the data before Keras traces anything -------------------------------
    def fit(self, x=None, y=None, *args, **kwargs):
        self.check_data(x)
        return super().fit(x, y, *args, **kwargs)

    def check_data(self, x):
        """A clear error when the images do not fit this model (instead of a shape trace)."""
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            image_spec = spec[0] if isinstance(spec, (tuple, list)) else spec
            image_shape = tuple(image_spec.shape[1:])
            has_labels = isinstance(spec, (tuple, list)) and len(spec) > 1
        elif x is not None and hasattr(x, "shape"):
            image_shape, has_labels = tuple(x.shape[1:]), True
        else:
            return
        if len(image_shape) != 3 or any(
            d is not None and d != want for d, want in zip(image_shape, self.image_shape)
        ):
            raise ValueError(
                f"the data's images have shape {image_shape} but this {self.family} was built for "
                f"image_shape={self.image_shape}"
            )
        if self.num_classes and not has_labels:
            raise ValueError(f"{self.family} is conditional: the data must yield (images, labels)")

    # ---- sampling -----------------------------------------------------------------------
    def sample(self, n: int, labels=None, seed=None, batch_size: int = DEFAULT_SAMPLE_BATCH, *,
               truncation=1.0, mix=None, edits=None):
        """n images as float32 NHWC in [-1, 1]; the same seed gives the same images.

        `truncation`, `mix` and `edits` are the style-based families' controls (zoo.stylegan);
        anything but their neutral values is a clear error here."""
        check_no_style_controls(self.family, truncation, mix, edits)
        n = check_count(n)
        labels = check_labels(labels, n, self.num_classes)
        z = latent_normal(n, self.latent_dim, seed)
        return self.generate(z, labels, batch_size=batch_size)

    def generate(self, z, labels=None, batch_size: int = DEFAULT_SAMPLE_BATCH, *,
                 truncation=1.0, mix=None, edits=None) -> np.ndarray:
        """Run the generator on given latents (and labels) in inference mode."""
        check_no_style_controls(self.family, truncation, mix, edits)
        return self.run_in_batches(self.generator, z, labels, batch_size)

    def run_in_batches(self, network, z, labels=None,
                       batch_size: int = DEFAULT_SAMPLE_BATCH) -> np.ndarray:
        """network(z [, labels]) in inference mode, `batch_size` rows at a time, as float32 numpy."""
        outputs = []
        for start in range(0, len(z), batch_size):
            inputs = self.with_labels(
                z[start : start + batch_size],
                None if labels is None else labels[start : start + batch_size],
            )
            outputs.append(keras.ops.convert_to_numpy(network(inputs, training=False)))
        return np.concatenate(outputs).astype(np.float32)
