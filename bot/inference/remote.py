"""The remote backend: an OpenAI-compatible completions server (vLLM, TGI, ``transformers serve``).

:class:`OpenAIBackend` POSTs ``{base_url}/completions`` with ``stream: true`` and turns the
server-sent events into :class:`~bot.inference.types.Chunk` values, exactly as the local
worker does for its callers: text deltas, then a last chunk carrying the finish reason;
closing or cancelling the iterator closes the HTTP connection, which vLLM and
``transformers serve`` take as an abort; every failure is a
:class:`~bot.errors.GenerationError` with a short message, and the next request is unaffected.

Prompts are still rendered here, with the model's real tokenizer (the token budget needs
it), and sent as the sanitized token ids, so a special-token string typed by a user stays
plain text on the server too. ``send_token_ids=False`` sends ``prompt.text`` instead, for
servers that only take strings (``transformers serve`` answers 400 "prompt must be a
string"); the server's tokenizer then sees the raw text, special-token strings included.
Stop strings are sent to the server and also applied here, because not every server cuts
them from the text (``transformers serve`` leaves them in).

Sampling: ``temperature``, ``top_p``, ``max_tokens`` (capped to what the context window
leaves, which vLLM would otherwise refuse) always; ``seed`` when set; ``repetition_penalty``
only when it is not 1.0, under that name (vLLM and TGI take it; OpenAI's
``frequency_penalty`` is an additive, count-scaled penalty, a different knob, so it is not
faked from it).

Why aiohttp and a small SSE parser rather than a client package: aiohttp is already a
dependency (discord.py is built on it) and gives direct control over the one connection a
request owns (``response.close()`` drops it at once, which is how the server learns of a
cancel). The official ``openai`` SDK streams well but reads ambient ``OPENAI_API_KEY``,
``OPENAI_ADMIN_KEY``, ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID`` and ``OPENAI_CUSTOM_HEADERS``
and would forward them to a self-hosted server, retries on its own, and brings its own HTTP
stack; ``httpx-sse`` would add httpx and its stack for the same small parser; and
``aiohttp-sse-client2`` is not on the package index. The SSE framing a completions stream
uses is small and fully specified (WHATWG "server-sent events", section 9.2.6): the stream is read here and
decoded by :mod:`bot.inference.completions`, which also validates each event's JSON with pydantic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import ModelConfig, cache_path
from bot.errors import BotError, GenerationError, ModelLoadError, ShuttingDownError
from bot.inference.completions import SSEDecoder, StreamedReply, error_message
from bot.inference.servers import DEFAULT_RETRY_AFTER, Server, ServerPool
from bot.inference.stops import StopMatcher
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Chunk, Prompt, SamplingParams

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
"""Connect within 10 s; then at most 300 s between two pieces of the stream (a busy server may queue)."""

_TAIL_TIMEOUT = 5.0
"""After the finish reason, how long to wait for the usage event and ``[DONE]``."""
_MAX_ERROR_BYTES = 65536


def _load_tokenizer(variant: ModelConfig, cache_dir: Path) -> tuple[HFTokenizer, int]:
    """The local tokenizer for ``variant`` and its context window (a blocking call); see ``load_tokenizer``."""
    # Imported here: loading sets HF_HUB_OFFLINE before transformers loads, and brings torch with it.
    from bot.inference.loading import load_tokenizer

    return load_tokenizer(variant, cache_dir=cache_dir)


class OpenAIBackend:
    """Serves one model variant from an OpenAI-compatible completions server; see the module docstring.

    ``session`` is an aiohttp session to share (one is opened in :meth:`start` otherwise);
    ``tokenizer`` skips loading one (with ``variant.context_length`` it skips the files entirely);
    ``timeout`` bounds connecting and each wait for the stream; ``retry_after`` is how long a failed
    server is skipped when the variant lists several (see :mod:`bot.inference.servers`).

    A request that fails before any byte of the response arrived is sent again, never one whose
    stream began: once on a fresh connection when the pooled keep-alive connection it went out on
    had been closed by the server (llama.cpp's server closes it after a streamed reply, and aiohttp
    may have pooled it a moment before), and on another server when one cannot be reached.
    """

    def __init__(
        self,
        variant: ModelConfig,
        *,
        cache_dir: str | Path | None = None,
        max_batch_size: int = 8,
        send_token_ids: bool = True,
        session: aiohttp.ClientSession | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        tokenizer: HFTokenizer | None = None,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        if not variant.base_urls or variant.model is None:
            raise ModelLoadError(f'model {variant.name!r}: backend = "openai" needs both base_url and model')
        self.name = variant.name
        self.variant = variant
        self.max_batch_size = max_batch_size
        self.send_token_ids = send_token_ids
        self.servers = ServerPool(variant.base_urls, retry_after=retry_after)
        self._cache_dir = cache_path(cache_dir)
        self._session = session
        self._owns_session = False
        self._fresh: aiohttp.ClientSession | None = None
        """For a request sent again: a new connection every time, never a pooled one."""
        self._timeout = timeout
        self._tokenizer = tokenizer
        self._context_length = variant.context_length
        self._headers: dict[str, str] = {}
        self._live: set[aiohttp.ClientResponse] = set()
        self._closing = False

    @property
    def tokenizer(self) -> HFTokenizer:
        if self._tokenizer is None:
            raise BotError(f"model {self.name!r} is not started yet")
        return self._tokenizer

    @property
    def context_length(self) -> int:
        if self._context_length is None:
            raise BotError(f"model {self.name!r} is not started yet")
        return self._context_length

    async def start(self) -> None:
        """Read the API key, load the local tokenizer, open the HTTP session."""
        self._headers = self._auth_headers()
        if self._tokenizer is None or self._context_length is None:
            if self.variant.tokenizer is None and "path" not in self.variant.model_fields_set:
                _log.warning(
                    "Model %s sets neither tokenizer nor path; using the embedded model's tokenizer, "
                    "which must be the one %s at %s uses",
                    self.name, self.variant.model, ", ".join(self.variant.base_urls),
                )  # fmt: skip
            tokenizer, context = await asyncio.to_thread(_load_tokenizer, self.variant, self._cache_dir)
            self._tokenizer = self._tokenizer or tokenizer
            self._context_length = context
        if not self.send_token_ids:
            _log.warning(
                "Model %s sends prompts as text: special-token strings typed by users reach the server's tokenizer",
                self.name,
            )
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._closing = False
        urls = ", ".join(server.url for server in self.servers.servers)
        _log.info("Model %s is served by %s as %r", self.name, urls, self.variant.model)

    def _auth_headers(self) -> dict[str, str]:
        variable = self.variant.api_key_env
        if variable is None:
            return {}
        key = os.environ.get(variable, "").strip()
        if not key:
            raise ModelLoadError(f"model {self.name!r}: api_key_env names {variable}, which is not set or empty")
        return {"Authorization": f"Bearer {key}"}

    async def close(self) -> None:
        """Stop serving: in-flight generations end with :class:`GenerationError`; an owned session is closed."""
        self._closing = True
        for response in list(self._live):
            response.close()  # the reader wakes up with a connection error
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session, self._owns_session = None, False
        if self._fresh is not None:
            await self._fresh.close()
            self._fresh = None

    def healthy(self) -> bool:
        """Started, not closing, and some server not marked down (so servers that went away show)."""
        return self._session is not None and not self._closing and self.servers.up()

    def _request_body(self, prompt: Prompt, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.variant.model,
            "prompt": list(prompt.token_ids) if self.send_token_ids else prompt.text,
            "max_tokens": min(params.max_new_tokens, self.context_length - len(prompt)),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prompt.stop:
            body["stop"] = list(prompt.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        return body

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[Chunk, None]:
        """Stream the reply to ``prompt``; see :class:`~bot.inference.types.Backend`."""
        if self._closing:
            raise ShuttingDownError()
        if self._session is None:
            raise BotError(f"model {self.name!r} is not started yet")
        if len(prompt) >= self.context_length:
            raise GenerationError("The prompt fills the whole context window.")
        body = self._request_body(prompt, params)
        server: Server | None = None
        response: aiohttp.ClientResponse | None = None
        try:
            try:
                server, response = await self._post(body)
                self._live.add(response)
                await self._check(server, response)
                async with contextlib.aclosing(self._stream(server, response, prompt.stop)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except (aiohttp.ClientError, TimeoutError) as error:
                assert server is not None  # _post raises GenerationError itself
                raise self._failure(server, error) from None
            except GenerationError:
                if self._closing:
                    raise ShuttingDownError() from None
                raise
        finally:
            if server is not None:
                server.in_flight -= 1
            if response is not None:
                self._live.discard(response)
                if response.content.at_eof():
                    response.release()  # read to the end: the connection can be reused
                else:
                    response.close()  # the server sees the disconnect and aborts the request

    async def _post(self, body: dict[str, Any]) -> tuple[Server, aiohttp.ClientResponse]:
        """Send the request; the server that answered (its ``in_flight`` counted) and the response's head.

        Sent again only while no byte of a response has arrived (see the class docstring): a request is not
        idempotent, but one the server never answered was not taken up either (the RFC 9112 retry rule).
        """
        assert self._session is not None and self._fresh is not None
        server = self.servers.choose()
        tried: list[Server] = []
        fresh = False
        while server is not None:
            session = self._fresh if fresh else self._session
            server.in_flight += 1
            try:
                return server, await session.post(server.url, json=body, headers=self._headers, timeout=self._timeout)
            except (aiohttp.ClientError, TimeoutError) as error:
                server.in_flight -= 1
                if _stale_connection(error) and not fresh and not self._closing:
                    _log.info("%s closed a kept-alive connection (%s); sending again", server.url, type(error).__name__)
                    fresh = True
                    continue
                failure = self._failure(server, error)
                tried.append(server)
                if not _unreachable(error) or self._closing or (server := self.servers.choose(tried)) is None:
                    raise failure from None
                fresh = False
            except BaseException:
                server.in_flight -= 1
                raise
        raise AssertionError("unreachable: the pool has at least one server")

    async def _check(self, server: Server, response: aiohttp.ClientResponse) -> None:
        """Raise :class:`GenerationError` unless ``response`` is a 2xx event stream."""
        if response.status >= 400:
            body = b""
            while len(body) < _MAX_ERROR_BYTES and (piece := await response.content.read(_MAX_ERROR_BYTES - len(body))):
                body += piece
            message = error_message(body, response.reason)
            _log.warning("%s answered %d for model %s: %s", server.url, response.status, self.name, message)
            if response.status >= 500:
                self.servers.failed(server)
            else:
                self.servers.answered(server)
            what = "refused the request" if response.status < 500 else "failed"
            raise GenerationError(f"The model server {what} ({response.status}): {message}")
        self.servers.answered(server)
        if response.content_type != "text/event-stream":
            raise GenerationError(f"The model server did not stream its answer (it sent {response.content_type}).")

    async def _stream(
        self, server: Server, response: aiohttp.ClientResponse, stops: Iterable[str]
    ) -> AsyncGenerator[Chunk, None]:
        decoder = SSEDecoder()
        reply = StreamedReply(StopMatcher(tuple(stops)))
        async for data in response.content.iter_any():
            for event in decoder.feed(data):
                text = reply.apply(event)
                if text:
                    yield Chunk(text, reply.tokens)
            if reply.finish is not None:
                break
        else:
            for event in decoder.end():
                reply.apply(event)
        if reply.finish is None:
            if self._closing:
                raise ShuttingDownError()
            _log.warning("The stream from %s for model %s ended without a finish reason", server.url, self.name)
            self.servers.failed(server)
            raise GenerationError("The model server ended the reply early; please try again.")
        if not reply.stopped_here:
            await self._read_tail(server, response, decoder, reply)
        yield reply.last_chunk()

    async def _read_tail(
        self, server: Server, response: aiohttp.ClientResponse, decoder: SSEDecoder, reply: StreamedReply
    ) -> None:
        """After the finish reason: take the usage event and ``[DONE]``; the reply is complete whatever happens."""
        try:
            async with asyncio.timeout(_TAIL_TIMEOUT):
                while not reply.done and (data := await response.content.readany()):
                    for event in decoder.feed(data):
                        reply.apply(event)
                if reply.done:
                    await response.content.read()  # the end of the body, so the connection can be reused
        except (aiohttp.ClientError, TimeoutError, GenerationError) as error:
            _log.debug("After the finish reason from %s: %s: %s", server.url, type(error).__name__, error)

    def _failure(self, server: Server, error: BaseException) -> GenerationError:
        """The user's error for a connection failure or timeout on ``server``, which is marked down."""
        if self._closing:
            return ShuttingDownError()
        self.servers.failed(server)
        # Only the class and str(): an aiohttp error's repr can hold the request headers, API key included.
        _log.warning("Request to %s for model %s failed: %s: %s", server.url, self.name, type(error).__name__, error)
        if _unreachable(error):
            return GenerationError("The model server cannot be reached; please try again later.")
        if isinstance(error, TimeoutError):
            return GenerationError("The model server took too long to answer; please try again.")
        return GenerationError("The connection to the model server broke off; please try again.")


def _unreachable(error: BaseException) -> bool:
    """No connection could be made: nothing was sent, so another server may take the request."""
    return isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError | aiohttp.InvalidURL)


def _stale_connection(error: BaseException) -> bool:
    """The connection broke before any byte of a response: the server had closed it while it sat in the pool."""
    stale = aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError | aiohttp.ClientOSError
    return isinstance(error, stale) and not _unreachable(error)
