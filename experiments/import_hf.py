"""Import a local HF GPT-2 / GPT-Neo / Llama / Qwen2 checkpoint as a step-0 base run the growth runner can widen.

`python -m experiments.import_hf --path DIR --out RUN_DIR [--seed 0]`
"""

import argparse

from experiments.cli import command
from growth.interop import hf_import


def import_hf(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="save_pretrained directory, or a weights file")
    parser.add_argument("--out", required=True, help="run directory; writes OUT/checkpoints/0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the saved config and dropout key")
    args = parser.parse_args(argv)
    print(hf_import.import_to_run_dir(args.path, args.out, args.seed))


main = command(import_hf)

if __name__ == "__main__":
    main()
