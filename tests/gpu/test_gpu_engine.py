"""The GPU path: the CUDA vLLM in bf16 on the tiny model (skipped where there is no CUDA)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.gpu


def test_bf16_engine_generates_greedily_and_deterministically(tmp_path):
    from llamaray.config import ModelConfig
    from llamaray.engines.protocol import EngineRequest, GenerationParams
    from llamaray.engines.vllm_engine import VLLMEngine
    from llamaray.models.tiny import build_tiny_models

    paths = build_tiny_models(tmp_path)
    config = ModelConfig(
        model_id="tiny",
        path=str(paths["chat"]),
        accelerator="gpu",
        dtype="bfloat16",
        max_model_len=512,
        gpu_memory_utilization=0.2,
    )

    async def main() -> tuple[str, str]:
        engine = VLLMEngine(config)  # inside the loop: AsyncLLM binds its output handler to it
        try:
            texts = []
            for _ in range(2):
                request = EngineRequest(f"gpu-{uuid.uuid4().hex}", "Once upon a time", GenerationParams(max_tokens=16))
                texts.append((await engine.generate(request)).sequences[0].text)
            return texts[0], texts[1]
        finally:
            engine.shutdown()

    first, second = asyncio.run(main())
    assert first and first == second
