"""LLM backends behind one interface: in-process vLLM, an OpenAI-compatible endpoint, plain transformers.

Each takes chat requests with a JSON schema and returns the answer text. vLLM and the endpoint constrain
decoding to the schema; transformers cannot, so its answers are validated and retried by the runner.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

BACKENDS = ("vllm", "openai", "transformers")


@dataclass(frozen=True)
class LLMSettings:
    backend: str = "vllm"
    model: str = "resources/models/smollm2-135m-instruct"
    max_model_len: int = 2048
    dtype: str = "bfloat16"
    seed: int = 0
    temperature: float = 0.0
    batch_size: int = 64  # prompts per checkpoint: answers are cached after each batch
    max_attempts: int = 3
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    allow_remote: bool = False
    concurrency: int = 4
    timeout: float = 120.0
    kv_cache_gb: int = 1
    gpu_memory_utilization: float = 0.85
    workdir: str = "resources/llm-runtime"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"llm.backend must be one of {BACKENDS}, not {self.backend!r}")


@dataclass(frozen=True)
class Request:
    messages: list[dict]
    schema: dict
    max_tokens: int
    attempt: int = 0  # retries decode with sampling, so that a malformed answer is not repeated


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int


def decoding(settings: LLMSettings, request: Request) -> dict:
    """The decoding parameters of a request: greedy first, sampling with a new seed on retries."""
    retry = request.attempt > 0
    return {
        "temperature": 0.7 if retry and settings.temperature == 0 else settings.temperature,
        "seed": settings.seed + request.attempt,
        "max_tokens": request.max_tokens,
    }


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


class VLLMBackend:
    """In-process offline batch inference with vLLM; the engine starts on the first uncached request."""

    def __init__(self, settings: LLMSettings, identity: str) -> None:
        self.settings = settings
        self.identity = f"vllm:{identity}"
        self._engine = None
        self._on_gpu = False

    def _start(self):
        import torch

        runtime = Path(self.settings.workdir).resolve()
        for name in ("vllm-cache", "inductor"):
            (runtime / name).mkdir(parents=True, exist_ok=True)
        # In-process engine core: Snakemake scripts cannot be re-imported by spawned workers. (TMPDIR stays
        # as it is: vLLM puts IPC sockets there, whose paths may not exceed 107 characters.)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CACHE_ROOT", str(runtime / "vllm-cache"))
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(runtime / "inductor"))
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        kwargs = {}
        self._on_gpu = torch.cuda.is_available()
        if self._on_gpu:
            kwargs["gpu_memory_utilization"] = self.settings.gpu_memory_utilization
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.kv_cache_gb))
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            kwargs["enforce_eager"] = True
        from vllm import LLM

        started = time.perf_counter()
        self._engine = LLM(
            model=self.settings.model, dtype=self.settings.dtype, max_model_len=self.settings.max_model_len,
            seed=self.settings.seed, **kwargs,
        )
        log.info("vLLM engine started in %.1f s", time.perf_counter() - started)

    def generate(self, requests: list[Request]) -> list[Answer]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if self._engine is None:
            self._start()
        params = []
        for r in requests:
            values = decoding(self.settings, r)
            if not self._on_gpu:  # per-request seeds break sampling in the CPU build; the engine is seeded
                values.pop("seed")
            params.append(SamplingParams(**values, structured_outputs=StructuredOutputsParams(json=r.schema)))
        outputs = self._engine.chat([r.messages for r in requests], sampling_params=params, use_tqdm=False)
        return [Answer(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outputs]


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (e.g. `vllm serve`), with concurrency, timeouts and retries.

    Clinical text must not leave the machine by accident: hosts other than loopback are refused unless
    ``llm.allow_remote`` is set.
    """

    def __init__(self, settings: LLMSettings) -> None:
        if not settings.allow_remote and not is_loopback(settings.base_url):
            raise ValueError(
                f"llm.base_url {settings.base_url} is not a loopback address; clinical text would leave this machine."
                " Set llm.allow_remote: true only if that host may receive it."
            )
        self.settings = settings
        self.identity = f"openai:{settings.model}@{urlparse(settings.base_url).netloc}"

    def _post(self, request: Request) -> Answer:
        body = {
            "model": self.settings.model,
            "messages": request.messages,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": request.schema}},
            **decoding(self.settings, request),
        }
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.settings.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.settings.api_key_env]}"
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        delay = 1.0
        for attempt in range(4):
            try:
                http = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
                with urllib.request.urlopen(http, timeout=self.settings.timeout) as response:
                    payload = json.loads(response.read())
                usage = payload.get("usage") or {}
                return Answer(payload["choices"][0]["message"]["content"] or "", int(usage.get("completion_tokens", 0)))
            except urllib.error.HTTPError as err:
                if err.code < 500 and err.code != 429:
                    raise RuntimeError(f"{url} answered HTTP {err.code}") from err
                reason = f"HTTP {err.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                reason = type(err).__name__
            log.warning("endpoint request failed (%s); retry %d in %.0f s", reason, attempt + 1, delay)
            time.sleep(delay)
            delay *= 2
        raise RuntimeError(f"{url}: no answer after retries")

    def generate(self, requests: list[Request]) -> list[Answer]:
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(self._post, requests))


class TransformersBackend:
    """Plain generation with transformers: no constrained decoding, so the runner validates and retries."""

    def __init__(self, settings: LLMSettings, identity: str) -> None:
        self.settings = settings
        self.identity = f"transformers:{identity}"
        self._model = None

    def generate(self, requests: list[Request]) -> list[Answer]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
            self._model = AutoModelForCausalLM.from_pretrained(self.settings.model, dtype=torch.float32).eval()
        answers = []
        for request in requests:
            params = decoding(self.settings, request)
            prompt = self._tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, return_tensors="pt",
                                                         return_dict=True)
            torch.manual_seed(params["seed"])
            sample = params["temperature"] > 0
            with torch.no_grad():
                output = self._model.generate(
                    **prompt, max_new_tokens=params["max_tokens"], do_sample=sample,
                    temperature=params["temperature"] if sample else None, top_p=None, top_k=None,
                    pad_token_id=self._tokenizer.eos_token_id,
                )
            new = output[0, prompt["input_ids"].shape[1] :]
            answers.append(Answer(self._tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])))
        return answers


def make_backend(settings: LLMSettings):
    from emerge_ehr.text.encoder import model_identity

    if settings.backend == "openai":
        return OpenAIBackend(settings)
    if not Path(settings.model).exists():
        raise ValueError(f"llm.model {settings.model} is not a model directory (runs are offline)")
    identity = model_identity(settings.model)
    return VLLMBackend(settings, identity) if settings.backend == "vllm" else TransformersBackend(settings, identity)
