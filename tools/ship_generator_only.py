"""Keep only the generator in an export folder: drop the other roles' files (a VAE's encoder)
and their manifest entries, so the manifest lists exactly the files shipped.

    python tools/ship_generator_only.py saved_models/vae-mnist5k/export

Used by tools/train_pretrained.sh for the committed runs (whose size budget has no room for an
encoder nobody samples from); the manifest is rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exporters import manifest as manifest_lib
from exporters.run_folder import write_json_atomically


def ship_generator_only(folder: Path) -> list[str]:
    """Removes every artifact whose role is not "generator"; returns their names."""
    path = folder / manifest_lib.MANIFEST_NAME
    manifest = json.loads(path.read_text())
    dropped = [name for name, entry in manifest["artifacts"].items()
               if entry.get("role", "generator") != "generator"]
    for name in dropped:
        del manifest["artifacts"][name]
    write_json_atomically(path, manifest)  # the manifest first: it never lists a missing file
    for name in dropped:
        (folder / name).unlink(missing_ok=True)
    return dropped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    if not (args.folder / manifest_lib.MANIFEST_NAME).is_file():
        parser.error(f"{args.folder} holds no {manifest_lib.MANIFEST_NAME}")
    for name in ship_generator_only(args.folder):
        print(f"dropped {args.folder / name}")


if __name__ == "__main__":
    main()
