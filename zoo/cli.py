"""The `zoo` command line: list, train, export, sample, eval, plot, directions, serve.

The composition layer: the only part of zoo, with `zoo.train`, that calls the converters.
Bad input ends with one line on stderr (`zoo: error: ...`) and exit status 2, never a traceback.
This module imports no TensorFlow: each command imports what it needs, so `zoo --help`,
`zoo sample` and `zoo serve` on an artifact never load it. Where a command does load it,
TensorFlow's start-up lines are silenced unless `--tf-logs` or ZOO_TF_LOGS=1 asks for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from exporters import DEFAULT_FORMATS, QUANTIZATIONS
from exporters import FORMATS as EXPORT_FORMATS
from exporters.sampling import expand_labels, parse_labels
from zoo.import_hooks import around_first_import

STRATEGY_NAMES = ("auto", "cpu", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
JIT_CHOICES = ("auto", "on", "off")
EXIT_BAD_INPUT = 2
# what `zoo export` builds on an export-only run, by format (exporters' FROM_EXPORT)
FROM_EXPORT_BUILDS = {"triton": "a model repository",
                      "web": "a static page that runs it in the browser"}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line (`zoo train: error: ...`), no usage dump."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class CommandError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


# ---- argument types ------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def format_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown export format(s) {unknown or text!r}; valid: {','.join(EXPORT_FORMATS)}"
        )
    return names


def batch_size_list(text: str) -> tuple[int | None, ...]:
    """"1,64" -> (1, 64); "dynamic" in the list gives a dynamic-batch TFLite file (None)."""
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item == "dynamic":
            sizes.append(None)
            continue
        try:
            size = int(item)
        except ValueError:
            size = 0
        if size < 1:
            raise argparse.ArgumentTypeError(
                f"TFLite batch sizes must be positive integers or 'dynamic', got {text!r}")
        sizes.append(size)
    if not sizes:
        raise argparse.ArgumentTypeError(f"no TFLite batch size in {text!r}")
    return tuple(sizes)


def label_list(text: str) -> list[int]:
    try:
        return parse_labels(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_argument(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE parsed as JSON when it can be (numbers, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


# ---- commands ------------------------------------------------------------------------------
def command_list(args) -> None:
    import zoo

    print("models:   " + ", ".join(zoo.list_models()))
    print("datasets: " + ", ".join(zoo.data.list_datasets()))
    print("formats:  " + ", ".join(EXPORT_FORMATS))
    print("strategies: " + ", ".join(STRATEGY_NAMES))


def command_train(args) -> None:
    from zoo import train

    run_dir = train.train(
        args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        strategy=args.strategy,
        out=args.out,
        seed=args.seed,
        model_kwargs=dict(args.model_arg or []),
        steps_per_epoch=args.steps_per_epoch,
        export=args.export or (),
        quantize=args.quantize,
        verbose=args.verbose,
        precision=args.precision,
        jit_compile=args.jit_compile,
    )
    from exporters.run_folder import RunFolder

    run = RunFolder(run_dir)
    grid = run.latest_grid()
    print(f"run: {run}")
    print(f"model: {run.model_path}")
    if grid:
        print(f"samples: {grid}")
    if args.export:
        print(f"export: {run.export_dir}")


def _keras_source(source: str, command: str) -> tuple[Path, Path | None]:
    """(model.keras path, its run folder or None) for a run folder or a .keras file; checked
    without TensorFlow, so a wrong path fails at once with what is missing."""
    from exporters.run_folder import RunFolder

    path = Path(source)
    if path.is_file():
        if path.suffix != ".keras":
            raise CommandError(
                f"{source} is not a .keras file or a run folder ({command} needs the Keras model; "
                "`zoo sample` and `zoo serve` take exported artifacts)"
            )
        return path, None
    run = RunFolder.open(path)
    return run.require_model(command), run.path


def _export_only_run(source: str):
    """The RunFolder of a finished run that ships its export but no model.keras (the committed
    pretrained runs), else None."""
    from exporters.run_folder import RunFolder

    run = RunFolder(source)
    return run if run.path.is_dir() and run.is_export_only() else None


def _export_from_export(run, args) -> dict:
    """`zoo export` on an export-only run: what its shipped ONNX generator gives (triton, web)."""
    from exporters import manifest
    from exporters.converters import export as converters

    keras_only = [fmt for fmt in args.formats if fmt not in converters.FROM_EXPORT]
    if keras_only:
        shipped = ", ".join(sorted(manifest.read(run.export_dir)["artifacts"]))
        raise CommandError(
            f"{run.path} holds no model.keras, which --formats {','.join(keras_only)} needs; "
            f"its export/ already ships {shipped} (`zoo sample` and `zoo serve` take them), "
            "and from those " + ", ".join(
                f"`zoo export {run.path} --formats {fmt}` builds {FROM_EXPORT_BUILDS.get(fmt, fmt)}"
                for fmt in converters.FROM_EXPORT)
        )
    if args.quantize != "none":
        raise CommandError(
            f"--quantize {args.quantize} needs the Keras model and {run.path} holds no model.keras"
        )
    out = Path(args.out) if args.out else run.export_dir
    report = converters.export_from_export(
        run.export_dir, out, formats=args.formats, overwrite=args.overwrite
    )
    return {**report, "artifacts": {k: report["artifacts"][k] for k in report["added"]}}


def _quantization_gate(args, run_path):
    """The quality check of a quantized export (zoo.evaluate.quantization_gate), on the run's
    data set unless --gate-dataset names one; None without --quantize or with --gate-samples 0."""
    if args.quantize == "none":
        return None
    from zoo import evaluate

    if args.gate_samples == 0:
        return evaluate.unscored_quantization("--gate-samples 0")
    dataset = args.gate_dataset
    if dataset is None and run_path is not None:
        from exporters.run_folder import RunFolder

        dataset = (RunFolder(run_path).read_config() or {}).get("dataset")
    if not dataset:
        raise CommandError(
            f"--quantize {args.quantize} scores quantized samples against float32 ones on a data "
            f"set, and {args.source} names none: pass --gate-dataset NAME (or --gate-samples 0 to "
            "skip the check)")
    return evaluate.quantization_gate(dataset, n=args.gate_samples)


def command_export(args) -> None:
    run = _export_only_run(args.source)
    if run is not None:
        report = _export_from_export(run, args)
        out = Path(report["out_dir"])
    else:
        model_path, run_path = _keras_source(args.source, "zoo export")
        import exporters
        from exporters.run_folder import RunFolder

        out = Path(args.out) if args.out else (
            RunFolder(run_path).export_dir if run_path else model_path.with_suffix("")
        )
        report = exporters.export(
            str(model_path), str(out), formats=args.formats, quantize=args.quantize,
            overwrite=args.overwrite, quality_check=_quantization_gate(args, run_path),
            **({"tflite_batch_sizes": args.tflite_batch_sizes} if args.tflite_batch_sizes else {}),
        )
    print(f"export: {out}")
    for name, entry in report["artifacts"].items():
        check = entry["verification"]
        quality = entry.get("quality")
        print(
            f"  {name:28s} {entry['bytes'] / 1e6:8.2f} MB  max abs diff "
            f"{check['max_abs_diff']:.2e} (tolerance {check['tolerance']:g})"
            + (f"  FID {quality['fid_ratio']:.2f}x float32's" if quality
               and quality["fid_ratio"] is not None else "")
        )
    print(f"manifest: {report['manifest_path']}")


def _sampler(source: str):
    """generate(n, labels, seed) -> uint8 images, from an artifact (no TensorFlow) when there is
    one, else from a run folder's or .keras file's Keras model (same seed, same images)."""
    from exporters import runtime
    from exporters.run_folder import RunFolder

    path = Path(source)
    run = RunFolder(path)
    if path.is_file() and path.suffix == ".keras":
        keras_file = path
    elif path.is_dir() and run.is_run() and not run.has_export() and run.has_model():
        keras_file = run.model_path
    else:  # an artifact, an export folder or a run's export/ (errors say what is missing)
        return runtime.load(source).generate
    import keras

    from exporters.images import to_uint8
    from zoo import registry

    registry.register_all()  # every family known to Keras' deserialization

    model = keras.models.load_model(keras_file, compile=False)
    def generate(n, labels=None, seed=None, **options):
        if not hasattr(model, "num_ws"):  # the runtime's clear error for style controls
            runtime.no_style_controls(model.family, **{
                k: options.pop(k) for k in STYLE_OPTIONS if k in options})
        return to_uint8(model.sample(n, labels=labels, seed=seed, **options))

    return generate


STYLE_OPTIONS = ("truncation", "mix", "edits")


def style_options(args) -> dict:
    """--truncation PSI, --mix SEED_B:FROM_LAYER, --edit pc0=2,pc1=-1 as the keywords of
    generate/model.sample (checked there against the model: psi range, num_ws, directions);
    malformed text is a ValueError naming it (one line, exit 2)."""
    from exporters import style_controls

    options = {}
    if args.truncation is not None:
        try:
            options["truncation"] = float(args.truncation)
        except ValueError:
            raise ValueError(f"--truncation must be a number in [0, 1], got "
                             f"{args.truncation!r}") from None
    if args.mix is not None:
        seed_b, sep, layer = args.mix.partition(":")
        try:
            options["mix"] = (int(seed_b), int(layer))
        except ValueError:
            raise ValueError(f"--mix must be SEED_B:FROM_LAYER (two integers), got "
                             f"{args.mix!r}") from None
        if not sep:
            raise ValueError(f"--mix must be SEED_B:FROM_LAYER (two integers), got {args.mix!r}")
    if args.edit is not None:
        options["edits"] = style_controls.parse_edits(args.edit)
    return options


def command_sample(args) -> None:
    from exporters.images import save_grid

    styles = style_options(args)  # before loading anything: malformed flags fail at once
    generate = _sampler(args.source)
    options = {k: v for k, v in (("steps", args.steps), ("guidance_scale", args.guidance_scale))
               if v is not None}
    options.update(styles)
    try:
        images = generate(
            args.n, labels=expand_labels(args.labels, args.n), seed=args.seed, **options
        )
    except TypeError as error:  # a GAN/VAE's generate or sample has no steps/guidance_scale
        if not (options.keys() - STYLE_OPTIONS) or "unexpected keyword" not in str(error):
            raise
        raise CommandError(
            f"{args.source} is not a diffusion model: --steps and --guidance-scale apply to "
            "diffusion artifacts and runs only"
        ) from None
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise CommandError(f"--out must end in .png or .npy, got {args.out!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        import numpy as np

        np.save(out, images)
    else:
        save_grid(images, out)
    print(f"samples: {out} {tuple(images.shape)}")


def command_eval(args) -> None:
    # before TensorFlow loads: a wrong path fails at once (a run that ships only its export is
    # scored through its exported generator)
    if _export_only_run(args.run) is None:
        _keras_source(args.run, "zoo eval")
    from zoo import evaluate

    settings = evaluate.classifier_overrides(args.classifier_epochs, args.classifier_max_train)
    result = evaluate.evaluate_run(args.run, dataset=args.dataset, n=args.n,
                                   classifier_settings=settings)
    print(evaluate.format_table(result))
    print(f"scores: {result['run']}/{evaluate.EVAL_FILE}")


def command_plot(args) -> None:
    if _export_only_run(args.run) is None:  # else drawn from its exported generator
        _keras_source(args.run, "zoo plot")
    from zoo import plots

    for path in plots.plot_run(args.run, args.out):
        print(path)


def command_directions(args) -> None:
    """GANSpace directions of a stylegan run's w: stored in its model.keras (atomically, so
    `--edit` works on the run and its exports) and written to RUN/directions.json."""
    from exporters.run_folder import save_atomically, write_json_atomically
    from zoo import evaluate

    model_path, _ = evaluate.find_model(args.run, "zoo directions")
    model, _, run = evaluate.load_run(args.run, "zoo directions")
    if not callable(getattr(model, "find_directions", None)):
        raise CommandError(
            f"{args.run} holds a {getattr(model, 'family', type(model).__name__)} model: "
            "directions need a style-based generator (a stylegan run)"
        )
    directions = model.find_directions(n=args.n, k=args.k, seed=args.seed)
    save_atomically(model_path, model.save)
    summary = {"n": args.n, "k": args.k, "seed": args.seed, "directions": directions}
    write_json_atomically(Path(run.path) / "directions.json", summary)
    print("direction  explained variance  std of w along it")
    for name, entry in directions.items():
        print(f"{name:<9}  {entry['explained_variance']:>18.4f}  {entry['std']:>17.4f}")
    print(f"stored in {model_path} and {Path(run.path) / 'directions.json'}; "
          f"sample with --edit {next(iter(directions))}=2")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def command_serve(args) -> None:
    from exporters import server

    if args.port > 65535:
        raise CommandError(f"--port must be at most 65535, got {args.port}")
    if args.max_delay_ms > 10_000:
        raise CommandError(f"--max-delay-ms must be at most 10000, got {args.max_delay_ms}")
    server.serve(
        args.artifact, host=args.host, port=args.port, workers=args.workers,
        verbose=not args.quiet, cors_origin=args.cors_origin, model_name=args.model_name,
        max_batch=args.max_batch, max_delay=args.max_delay_ms / 1000, max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes, max_connections=args.max_connections,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        keep_alive=args.keep_alive,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="zoo", description="genzoo: train, export, sample, evaluate and serve image generators."
    )
    parser.add_argument(
        "--tf-logs", action="store_true",
        help="show TensorFlow's own start-up and C++ log lines (also: ZOO_TF_LOGS=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="models, datasets, export formats")
    p.set_defaults(handler=command_list)

    p = commands.add_parser("train", help="train a model and write a run folder")
    p.add_argument("model", help="model name (see `zoo list`)")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=128, help="global batch size")
    p.add_argument(
        "--strategy", default="auto",
        help="|".join(STRATEGY_NAMES) + " (multi_worker: a cluster from TF_CONFIG, see "
        "tools/launch_local_cluster.py)",
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="mixed_*: float16/bfloat16 compute, float32 variables and losses (default float32)",
    )
    p.add_argument(
        "--jit-compile", choices=JIT_CHOICES, default="auto",
        help="XLA for train steps; auto: on for one GPU, off on CPU and with several replicas",
    )
    p.add_argument(
        "--out",
        help="run folder (default runs/MODEL-DATASET, or runs/MODEL-DATASET-2, -3, ... when "
        "that holds another run; an unfinished run of the same settings is resumed)",
    )
    p.add_argument("--export", type=format_list, help="export after training, e.g. onnx,tflite")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none")
    p.add_argument("--seed", type=non_negative_int, help="makes runs repeatable")
    p.add_argument("--steps-per-epoch", type=positive_int, help="cap the batches per epoch")
    p.add_argument(
        "--model-arg", type=model_argument, action="append", metavar="KEY=VALUE",
        help="model constructor argument, e.g. latent_dim=2 or architecture=mlp (repeatable)",
    )
    p.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1,
        help="Keras verbosity: 0 silent, 1 progress bars (on a terminal; one line per epoch when "
        "output is redirected), 2 one line per epoch",
    )
    p.set_defaults(handler=command_train)

    p = commands.add_parser("export", help="export a run or .keras file")
    p.add_argument("source", metavar="RUN_OR_KERAS_FILE")
    p.add_argument("--out")
    p.add_argument("--formats", type=format_list, default=DEFAULT_FORMATS)
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing export (the old one stays until the new one verifies)")
    p.add_argument("--tflite-batch-sizes", type=batch_size_list, default=None, metavar="1,64",
                   help="static batch of each TFLite file ('dynamic' for a dynamic one; "
                   "default 1,64)")
    p.add_argument("--gate-dataset",
                   help="with --quantize: the data set whose classifier scores quantized samples "
                   "against float32 ones (default: the run's data set)")
    p.add_argument("--gate-samples", type=non_negative_int, default=2000,
                   help="with --quantize: samples per artifact for that score (0: do not score; "
                   "the manifest then says so)")
    p.set_defaults(handler=command_export)

    p = commands.add_parser("sample", help="write samples from an artifact or run as PNG or .npy")
    p.add_argument("source", metavar="ARTIFACT_OR_RUN")
    p.add_argument("--n", type=positive_int, default=64)
    p.add_argument("--labels", type=label_list)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--steps", type=positive_int,
                   help="diffusion only: sampling steps (default: the model's)")
    p.add_argument("--guidance-scale", type=float,
                   help="diffusion only: classifier-free guidance scale (default: the model's)")
    p.add_argument("--truncation", metavar="PSI",
                   help="stylegan only: truncation psi in [0, 1] (1: none, 0: the average image)")
    p.add_argument("--mix", metavar="SEED_B:FROM_LAYER",
                   help="stylegan only: style layers FROM_LAYER on come from seed SEED_B's "
                   "latents (0: seed B's image)")
    p.add_argument("--edit", metavar="pc0=2,pc1=-1",
                   help="stylegan only: move w along named directions by amounts in standard "
                   "deviations (`zoo directions RUN` finds them)")
    p.add_argument("--out", required=True, help="grid.png or samples.npy")
    p.set_defaults(handler=command_sample)

    p = commands.add_parser("eval", help="score a run; writes eval.json beside it")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--dataset")
    p.add_argument("--n", type=positive_int, default=10000)
    p.add_argument("--classifier-epochs", type=positive_int,
                   help="train the scoring classifier this many epochs (default 30); a cheaper "
                   "one for big data sets, cached under its own settings")
    p.add_argument("--classifier-max-train", type=positive_int,
                   help="train the scoring classifier on at most this many images")
    p.set_defaults(handler=command_eval)

    p = commands.add_parser("plot", help="pictures of a run (grids, interpolations, losses)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out")
    p.set_defaults(handler=command_plot)

    p = commands.add_parser(
        "directions", help="principal directions of a stylegan run's w, for --edit NAME=AMOUNT"
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("--n", type=positive_int, default=10000, help="latents mapped to w")
    p.add_argument("--k", type=positive_int, default=8, help="directions kept (pc0 .. pcK-1)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(handler=command_directions)

    p = commands.add_parser("serve", help="serve an exported artifact over HTTP")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=non_negative_int, default=8000)
    p.add_argument("--workers", type=positive_int, default=1, help="server processes")
    p.add_argument("--cors-origin", help="allow browser calls from this origin (default: none)")
    p.add_argument("--model-name", default="generator",
                   help="the model's name in the /v2 (Open Inference Protocol) paths")
    p.add_argument("--max-batch", type=positive_int, default=256,
                   help="dynamic batching: most images merged into one runtime call")
    p.add_argument("--max-delay-ms", type=non_negative_int, default=5,
                   help="dynamic batching: longest wait for other requests to join a batch")
    p.add_argument("--max-queue", type=positive_int, default=4096,
                   help="images waiting at most; beyond it requests get 503 + Retry-After")
    p.add_argument("--max-body-bytes", type=positive_int, default=4 * 1024 * 1024)
    p.add_argument("--max-connections", type=positive_int, default=512,
                   help="open connections at most (per worker); more get 503")
    p.add_argument("--header-timeout", type=positive_seconds, default=10.0,
                   help="seconds a connection may take to send a request's headers")
    p.add_argument("--body-timeout", type=positive_seconds, default=30.0,
                   help="seconds a request may take to send its body (else 408)")
    p.add_argument("--keep-alive", type=positive_int, default=5,
                   help="seconds an idle keep-alive connection stays open")
    p.add_argument("--quiet", action="store_true", help="no access log lines")
    p.set_defaults(handler=command_serve)
    return parser


@contextlib.contextmanager
def stderr_captured():
    """Send file descriptor 2 (C++ logs included) to a temporary file; replay it on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_quietly(exec_module, module) -> None:
    with stderr_captured():
        exec_module(module)


def quiet_tensorflow(show_logs: bool) -> None:
    """Unless `show_logs`: TensorFlow's C++ logs off (level 3 hides the cuInit and grappler
    "remapper failed" E-lines of every training run), and the lines it prints while importing,
    before its log level applies, captured. Nothing is imported here."""
    if show_logs:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # also over a 2 from the shell: ZOO_TF_LOGS asks
    around_first_import("tensorflow", _import_quietly)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.tf_logs or os.environ.get("ZOO_TF_LOGS", "") not in ("", "0"))
    try:
        args.handler(args)
    except (CommandError, ValueError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"zoo: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
