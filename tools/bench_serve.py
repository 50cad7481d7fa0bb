"""Benchmark `zoo serve` against the runtime it serves, as JSON + markdown in bench-results/.

    python tools/bench_serve.py [--artifact saved_models/cgan-mnist5k/export/generator.onnx]
                                [--workers 2] [--requests 200] [--n 16] [--concurrency 32]
                                [--rounds 3] [--out bench-results]

1. in-process: `exporters.runtime` generating requests x n images, in calls of 256 and in one
   call (images/s; the better of the two is the figure the server is compared with);
2. the server (`zoo serve --workers W --quiet`, started by tools/serve_probe.py) under `requests`
   concurrent requests of n images each from `concurrency` keep-alive connections, three ways:
     v1-json   POST /v1/generate, nested uint8 lists (what clients get by default)
     v1-raw    POST /v1/generate with Accept: application/octet-stream (uint8 bytes)
     v2-binary POST /v2/models/generator/infer, binary tensor extension (z and label in,
               images FP32 out; the client draws z)
   images/s over the whole burst and p50/p95 latency per request, median of `rounds` bursts
   after one warm-up burst. Every answer is checked (status, size).

The client is a small asyncio HTTP/1.1 client (one connection per concurrent client, no
threads), so it costs the shared cores as little as it can; it runs on the same machine as the
server, so both figures include its cost. Server and client are on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_probe import serving

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACT = ROOT / "saved_models" / "cgan-mnist5k" / "export" / "generator.onnx"
MODES = ("v1-json", "v1-raw", "v2-binary")


def in_process(artifact, total: int, rounds: int, batches=(256, None)) -> dict:
    """images/s of `runtime.generate(total)` in calls of each batch size (None: one call); the
    best of them is the in-process figure the server is compared with (the conservative one)."""
    from exporters import runtime

    generator = runtime.load(artifact)
    labels = (np.arange(total) % max(generator.num_classes, 1)).tolist() \
        if generator.num_classes else None
    generator.generate(total, labels, seed=0)  # warm-up
    per_batch = {}
    for batch in batches:
        times = []
        for i in range(rounds):
            start = time.perf_counter()
            generator.generate(total, labels, seed=i, batch_size=batch)
            times.append(time.perf_counter() - start)
        per_batch[str(batch or total)] = total / statistics.median(times)
    best = max(per_batch, key=per_batch.get)
    return {"images": total, "images_per_s": per_batch[best], "best_batch": int(best),
            "images_per_s_by_batch": per_batch, "latent_dim": generator.latent_dim,
            "num_classes": generator.num_classes, "image_shape": list(generator.image_shape)}


# ---- the client ---------------------------------------------------------------------------------
def make_requests(mode: str, count: int, n: int, meta: dict) -> list[tuple[bytes, int]]:
    """(raw HTTP request bytes, expected body size or 0 for 'JSON, check by parsing')."""
    from exporters.sampling import latents

    pixels = int(np.prod(meta["image_shape"]))
    conditional = meta["num_classes"] > 0
    requests = []
    for i in range(count):
        labels = [(i + j) % max(meta["num_classes"], 1) for j in range(n)]
        headers = {"Host": "bench", "Content-Type": "application/json"}
        if mode.startswith("v1"):
            body = {"n": n, "seed": i}
            if conditional:
                body["labels"] = labels
            payload = json.dumps(body).encode()
            path = "/v1/generate"
            expected = 0
            if mode == "v1-raw":
                headers["Accept"] = "application/octet-stream"
                expected = n * pixels
        else:
            z = latents(n, meta["latent_dim"], i)
            inputs = [{"name": "z", "datatype": "FP32", "shape": [n, meta["latent_dim"]],
                       "parameters": {"binary_data_size": z.nbytes}}]
            blobs = [z.tobytes()]
            if conditional:
                inputs.append({"name": "label", "datatype": "INT32", "shape": [n],
                               "parameters": {"binary_data_size": 4 * n}})
                blobs.append(np.asarray(labels, np.int32).tobytes())
            header = json.dumps({"inputs": inputs, "outputs": [
                {"name": "images", "parameters": {"binary_data": True}}]}).encode()
            headers["Inference-Header-Content-Length"] = str(len(header))
            headers["Content-Type"] = "application/octet-stream"
            payload = header + b"".join(blobs)
            path = "/v2/models/generator/infer"
            expected = -(n * pixels * 4)  # negative: at least this many bytes (header + data)
        headers["Content-Length"] = str(len(payload))
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        requests.append(((head + "\r\n").encode() + payload, expected))
    return requests


async def read_response(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines[1:]
                  if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def burst(port: int, requests, concurrency: int) -> tuple[float, list[float]]:
    queue = list(enumerate(requests))
    latencies = [0.0] * len(requests)

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                i, (raw, expected) = queue.pop()
                start = time.perf_counter()
                writer.write(raw)
                status, body = await read_response(reader)
                latencies[i] = time.perf_counter() - start
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                if expected > 0 and len(body) != expected:
                    raise RuntimeError(f"got {len(body)} bytes, expected {expected}")
                if expected < 0 and len(body) < -expected:
                    raise RuntimeError(f"got {len(body)} bytes, expected > {-expected}")
                if expected == 0:
                    json.loads(body)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    return time.perf_counter() - start, latencies


def measure(port, mode, meta, args) -> dict:
    requests = make_requests(mode, args.requests, args.n, meta)
    asyncio.run(burst(port, requests, args.concurrency))  # warm-up
    rounds = [asyncio.run(burst(port, requests, args.concurrency)) for _ in range(args.rounds)]
    rounds.sort(key=lambda r: r[0])
    wall, latencies = rounds[len(rounds) // 2]
    images = args.requests * args.n
    return {"mode": mode, "images_per_s": images / wall, "wall_s": wall,
            "best_images_per_s": images / rounds[0][0],
            "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p95_ms": 1000 * float(np.percentile(latencies, 95))}


def markdown(result: dict) -> str:
    base = result["in_process"]["images_per_s"]
    lines = [
        "# zoo serve vs the runtime in-process",
        "",
        (f"`python tools/bench_serve.py` on {result['machine']} ({result['cpus']} cores), "
        f"{result['artifact']}: {result['requests']} concurrent requests of n={result['n']} "
        f"from {result['concurrency']} keep-alive connections, `--workers "
        f"{result['workers']}`, median of {result['rounds']} bursts after a warm-up. The "
        "client runs on the same cores; 1-minute load average before the run: "
        f"{result['load_average_before']:.1f} (other work on the machine moves both columns)."),
        "",
        "| path | images/s | x in-process | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|",
        (f"| runtime in-process ({result['in_process']['images']} images in calls of "
         f"{result['in_process']['best_batch']}, the best of "
         f"{', '.join(result['in_process']['images_per_s_by_batch'])}) | {base:,.0f} | 1.00 "
         "| | |"),
    ]
    for row in result["server"]:
        lines.append(f"| {row['mode']} | {row['images_per_s']:,.0f} | "
                     f"{row['images_per_s'] / base:.2f} | {row['p50_ms']:.1f} | "
                     f"{row['p95_ms']:.1f} |")
    best = max(result["server"], key=lambda r: r["images_per_s"])
    lines += ["", (f"Best HTTP path: {best['mode']}, {best['images_per_s'] / base:.2f}x of "
              "in-process.")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=str(DEFAULT_ARTIFACT))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `zoo serve` argument (repeatable), e.g. --max-delay-ms=2")
    args = parser.parse_args(argv)

    total = args.requests * args.n
    result = {"artifact": str(Path(args.artifact).relative_to(ROOT)
                              if Path(args.artifact).resolve().is_relative_to(ROOT)
                              else args.artifact),
              "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
              "workers": args.workers, "requests": args.requests, "n": args.n,
              "concurrency": args.concurrency, "rounds": args.rounds,
              "server_args": args.server_arg, "load_average_before": os.getloadavg()[0]}
    result["in_process"] = in_process(args.artifact, total, args.rounds)
    print(f"in-process: {result['in_process']['images_per_s']:,.0f} images/s", flush=True)
    meta = result["in_process"]
    result["server"] = []
    extra = ["--workers", str(args.workers), "--quiet", *args.server_arg]
    with serving([sys.executable, "-m", "zoo.cli"], args.artifact, timeout=120, cwd=ROOT,
                 extra=extra) as (url, process, _):
        port = int(url.rsplit(":", 1)[1])
        for mode in args.modes.split(","):
            row = measure(port, mode, meta, args)
            result["server"].append(row)
            print(f"{mode}: {row['images_per_s']:,.0f} images/s, p50 {row['p50_ms']:.1f} ms, "
                  f"p95 {row['p95_ms']:.1f} ms", flush=True)
    stderr = process.stderr.read()
    if "Traceback" in stderr:
        print(stderr[-3000:], file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "serve.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
