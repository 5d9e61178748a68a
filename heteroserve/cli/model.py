"""`heteroserve model create DIR --preset tiny|small|bench [--seed N]`: write a generated model."""

from __future__ import annotations

import argparse

HELP = "generate deterministic Llama models in Hugging Face format (model create DIR --preset ...)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="write a generated Llama model into DIR",
                            description="Write config.json, model.safetensors, tokenizer.json, "
                                        "tokenizer_config.json and generation_config.json into DIR.")
    create.add_argument("dir", help="output directory (created if missing)")
    create.add_argument("--preset", default="tiny", choices=["tiny", "small", "bench"],
                        help="model size (default: tiny)")
    create.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "model_command", None) != "create":
        print("usage: heteroserve model create DIR --preset tiny|small|bench [--seed N]")
        return 2
    from heteroserve.modelgen import PRESETS, create_model

    path = create_model(args.dir, preset=args.preset, seed=args.seed)
    print(f"wrote {args.preset} model ({PRESETS[args.preset].num_params:,} parameters, seed {args.seed}) "
          f"to {path}")
    return 0
