"""`heteroserve generate`: send one prompt to a gateway and stream the answer.

    heteroserve generate "Once upon a time" --url http://127.0.0.1:8000 --model tiny --max-tokens 32
    heteroserve generate --chat "Hello" --grpc 127.0.0.1:9000 --slo-class interactive --show-route

The API key is read from the environment variable named by `--api-key-env` (default
HETEROSERVE_API_KEY), never from the command line. Text streams to stdout; with `--show-route` the
route (worker, cache hits, retries) and usage go to stderr at the end.
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "send one prompt to a gateway and stream the answer"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the prompt text (or the user message with --chat)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="gateway REST base URL")
    parser.add_argument("--grpc", default=None, metavar="HOST:PORT", help="use the gRPC transport instead")
    parser.add_argument("--model", default="tiny", help="model id (default: tiny)")
    parser.add_argument("--chat", action="store_true", help="send the prompt as one chat user message")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--slo-class", default="", help="SLO class hint (interactive, standard, batch)")
    parser.add_argument("--session-id", default="", help="session id for worker affinity")
    parser.add_argument("--api-key-env", default="HETEROSERVE_API_KEY", metavar="VAR")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--show-route", action="store_true", help="print route and usage on stderr")


def run(args: argparse.Namespace) -> int:
    from heteroserve.client import Client

    api_key = os.environ.get(args.api_key_env) or None
    target, transport = (args.grpc, "grpc") if args.grpc else (args.url, "rest")
    options = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed,
               "slo_class": args.slo_class, "session_id": args.session_id}
    last = None
    with Client(target, api_key=api_key, transport=transport, timeout_seconds=args.timeout) as client:
        chunks = (client.chat_stream([("user", args.prompt)], model=args.model, **options) if args.chat
                  else client.stream(args.prompt, model=args.model, **options))
        for chunk in chunks:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            last = chunk
    sys.stdout.write("\n")
    if args.show_route and last is not None and last.route is not None:
        r, u = last.route, last.usage
        print(f"route: worker={r.worker_id} pool={r.pool} class={r.request_class} "
              f"disaggregated={r.disaggregated} prefill_worker={r.prefill_worker_id or '-'} "
              f"cached_prompt_tokens={r.cached_prompt_tokens} retries={r.retries} migrations={r.migrations}",
              file=sys.stderr)
        if u is not None:
            print(f"usage: prompt_tokens={u.prompt_tokens} completion_tokens={u.completion_tokens}",
                  file=sys.stderr)
    return 0
