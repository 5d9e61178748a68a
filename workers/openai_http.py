"""A worker's OpenAI-compatible HTTP front, so any OpenAI-speaking router (vllm-router, a plain load
balancer) can front heteroserve workers as it fronts vLLM servers.

Routes: `POST /v1/completions` and `POST /v1/chat/completions` (JSON or SSE with `"stream": true`;
`stream_options.include_usage` adds a last chunk with usage and no choices, as vLLM does), `GET /v1/models`,
`GET /health` (200, or 503 once the worker drains; no auth, as in vLLM) and `GET /metrics` (no auth:
vLLM's metric names over the engine's live stats, then the worker's own registry).

Every generation runs through the worker's gRPC `Generate` path (`generate`, see `servicer_generate`), on
the same event loop and engine: the drain gate, the prompt hashing, the shared-tier read-through and the
worker metrics apply to HTTP requests exactly as to gRPC ones. Requests need `Authorization: Bearer
<cluster token>`. Errors are OpenAI-shaped: `{"error": {"message", "type", "param", "code"}}`, with the
status of the domain error (400 bad field, 401 bad token, 404 unknown model, 503 draining).
Prompts are text (tokenized with the model's `tokenizer.json`, post-processor included) or token ids;
chat messages are rendered with the model's `chat_template` (tokenizer_config.json) or, without one, the
gateway's default (`role: content` lines, then `assistant:`).
`usage.prompt_tokens_details.cached_tokens` reports the prompt tokens served from cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment
from prometheus_client import CollectorRegistry, generate_latest
from tokenizers import Tokenizer

from common.errors import AuthenticationError, InvalidRequestError, NotFoundError
from common.http_errors import install_error_handlers
from heteroserve.v1 import common_pb2, worker_pb2
from workers.openai_reply import Reply, ServedEngine, vllm_metrics
from workers.openai_schema import ChatRequest, CompletionRequest, OpenAIRequest, sampling

if TYPE_CHECKING:
    from grpc import aio

    from workers.config import WorkerConfig

log = logging.getLogger(__name__)
Generate = Callable[[worker_pb2.GenerateRequest], AsyncIterator[common_pb2.TokenChunk]]
DEFAULT_CHAT_TEMPLATE = (  # the gateway's default (control_plane/gateway/models.py), kept identical
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}")


class GenerateServicer(Protocol):
    def Generate(self, request: worker_pb2.GenerateRequest,
                 context: aio.ServicerContext) -> AsyncIterator[common_pb2.TokenChunk]: ...


class DrainState(Protocol):
    @property
    def draining(self) -> bool: ...


class HostedWorker(Protocol):
    """What the front needs of `workers.service.server.WorkerServer` (structural: importing the server
    here would make an import cycle, as the server starts the front)."""

    @property
    def config(self) -> WorkerConfig: ...

    @property
    def engine(self) -> ServedEngine: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def servicer(self) -> GenerateServicer: ...

    @property
    def gate(self) -> DrainState: ...


def servicer_generate(server: HostedWorker) -> Generate:
    """The worker's gRPC `Generate` as a plain function (it never reads its gRPC context)."""
    def generate(request: worker_pb2.GenerateRequest) -> AsyncIterator[common_pb2.TokenChunk]:
        return server.servicer.Generate(request, cast("aio.ServicerContext", None))
    return generate


class Prompts:
    """Text → token ids for one model: its tokenizer and chat template."""

    def __init__(self, model_dir: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template = config.get("chat_template") or DEFAULT_CHAT_TEMPLATE
        if isinstance(template, list):  # HF allows a list of named templates
            template = next((t["template"] for t in template if t.get("name") == "default"),
                            template[0]["template"])
        self._template = ImmutableSandboxedEnvironment().from_string(template)
        self._special = {k: v.get("content", "") if isinstance(v, dict) else str(v or "")
                         for k, v in config.items() if k in ("bos_token", "eos_token")}

    def completion(self, request: CompletionRequest) -> list[int]:
        prompt = request.prompt_parts()
        if isinstance(prompt, tuple):
            return list(prompt)
        return list(self._tokenizer.encode(prompt).ids)

    def chat(self, request: ChatRequest) -> list[int]:
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        try:
            text = self._template.render(messages=messages, add_generation_prompt=True, **self._special)
        except Exception as exc:  # a template error is the request's fault or the model's: say which
            raise InvalidRequestError(f"the model's chat template failed: {exc}", field="messages") from None
        return list(self._tokenizer.encode(str(text)).ids)


class OpenAIFront:
    """The FastAPI app over one worker. `generate` runs one generation (the worker's `Generate`)."""

    def __init__(self, engine: ServedEngine, model_dir: Path, generate: Generate, token: str, *,
                 registry: CollectorRegistry | None = None, draining: Callable[[], bool] = lambda: False
                 ) -> None:
        self.engine = engine
        self.model = engine.model_id
        self._prompts = Prompts(model_dir)
        self._generate = generate
        self._token = token
        self._registry = registry
        self._draining = draining
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(title="heteroserve worker (OpenAI-compatible)", docs_url=None, redoc_url=None)

        install_error_handlers(app, "worker")

        @app.get("/health")
        async def health() -> Response:
            return Response(status_code=503 if self._draining() else 200)

        @app.get("/metrics")
        async def metrics() -> Response:
            own = generate_latest(self._registry).decode() if self._registry is not None else ""
            return PlainTextResponse(vllm_metrics(self.engine) + own,
                                     media_type="text/plain; version=0.0.4; charset=utf-8")

        @app.get("/v1/models")
        async def models(request: Request) -> dict[str, Any]:
            self._authorize(request)
            return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                "owned_by": "heteroserve",
                                                "max_model_len": self.engine.max_context_tokens}]}

        @app.post("/v1/completions")
        async def completions(body: CompletionRequest, request: Request) -> Response:
            self._authorize(request)
            return await self._respond(body, self._prompts.completion(body), "text_completion")

        @app.post("/v1/chat/completions")
        async def chat(body: ChatRequest, request: Request) -> Response:
            self._authorize(request)
            return await self._respond(body, self._prompts.chat(body), "chat.completion")

        return app

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token != self._token:
            raise AuthenticationError("missing or wrong bearer token (the worker's cluster token)")

    async def _respond(self, body: OpenAIRequest, prompt: list[int], kind: str) -> Response:
        if body.model not in ("", self.model):
            raise NotFoundError(f"model {body.model!r} is not served here (this worker serves "
                                f"{self.model!r})", field="model")
        room = self.engine.max_context_tokens - len(prompt)
        limit = body.limit()
        max_tokens = limit if limit is not None else 16 if kind == "text_completion" else max(1, room)
        request_id = ("cmpl-" if kind == "text_completion" else "chatcmpl-") + uuid.uuid4().hex
        chunks = self._generate(worker_pb2.GenerateRequest(
            request_id=request_id, prompt_token_ids=prompt, sampling=sampling(body, max_tokens)))
        first = await anext(chunks)  # errors of admission and validation become this call's status
        reply = Reply(request_id, int(time.time()), self.model, kind)
        if body.stream:
            return StreamingResponse(reply.stream(first, chunks, body.include_usage()),
                                     media_type="text/event-stream")
        return JSONResponse(await reply.whole(first, chunks))


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handling: the worker's `serve` owns SIGINT/SIGTERM (and drains)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OpenAIHttp:
    """Uvicorn serving `OpenAIFront(server)` on the running event loop; `start()` returns the port."""

    def __init__(self, server: HostedWorker, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"openai_port must be in 0..65535, got {port}")
        front = OpenAIFront(server.engine, server.config.model_dir, servicer_generate(server),
                            server.config.cluster_token, registry=server.registry,
                            draining=lambda: server.gate.draining)
        self._uvicorn = _QuietServer(uvicorn.Config(front.app, host=host, port=port, log_level="warning",
                                                    lifespan="off", access_log=False))
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> int:
        self._task = asyncio.create_task(self._uvicorn.serve(), name="openai-http")
        while not self._uvicorn.started:
            if self._task.done():
                self._task.result()  # a bind failure: raise it here
                raise RuntimeError(f"OpenAI HTTP front did not start on port {self.port}")
            await asyncio.sleep(0.02)
        self.port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def start_openai_http(server: HostedWorker, port: int) -> OpenAIHttp:
    """Serve `server`'s OpenAI front on its host and `port` (0 = a free one); logs the bound address."""
    front = OpenAIHttp(server, server.config.host, port)
    bound = await front.start()
    log.info("OpenAI-compatible HTTP on http://%s:%d", server.config.host, bound)
    return front
