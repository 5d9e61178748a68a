"""vLLM's offline `LLM.generate` as the reference of the vLLM worker tests, in a child process.

`python -m tests.workers.vllm.offline_reference` reads a JSON spec from stdin (model, memory fraction,
KV bytes, prompts as token ids, max_tokens) and prints one JSON line: the greedy token ids per prompt.
vLLM spawns its engine core, hence the `__main__` guard; running it in a child keeps the test process
free of vLLM's engine and its memory.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    spec = json.loads(sys.stdin.read())
    llm = LLM(model=spec["model"], dtype="float32", block_size=32, enable_prefix_caching=True,
              gpu_memory_utilization=spec["memory_fraction"], kv_cache_memory_bytes=spec["kv_cache_bytes"],
              seed=0)
    params = SamplingParams(max_tokens=spec["max_tokens"], temperature=0.0)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]], params,
                           use_tqdm=False)
    print(json.dumps({"tokens": [list(o.outputs[0].token_ids) for o in outputs]}), flush=True)


if __name__ == "__main__":
    main()
