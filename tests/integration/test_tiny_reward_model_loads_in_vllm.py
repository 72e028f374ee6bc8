"""The reward model scores the same on vLLM's pooling runner (as Serve runs it, and in-process
as a batch job runs it) and on transformers (the fallback for architectures vLLM lacks): the
raw logit, with left padding in a transformers batch."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from llamaray.config import ModelConfig
    from llamaray.engines.reward import RewardEngine

    async def main():
        conversations = [
            [{"role": "user", "content": "What is the secret code?"}, {"role": "assistant", "content": answer}]
            for answer in ("banana-42", "I do not know.", "A much longer answer that needs padding in a batch. " * 3)
        ]
        scores = {}
        runs = (("vllm", "vllm", False), ("vllm_offline", "vllm", True), ("transformers", "transformers", False))
        for name, backend, offline in runs:
            model = ModelConfig(model_id="reward", path=sys.argv[1], kind="reward", reward_backend=backend,
                                dtype="float32",
                                enforce_eager=True, max_model_len=256, gpu_memory_utilization=0.3)
            engine = RewardEngine(model, offline=offline)
            scores[name] = await engine.score(conversations)
            scores[name + "_one_by_one"] = [(await engine.score([c]))[0] for c in conversations]
        print("SCORES", json.dumps(scores), flush=True)

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def test_reward_scores_agree_across_backends(tiny_models):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "platform")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models / "tiny-llama-reward")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    line = next((text for text in out.stdout.splitlines() if text.startswith("SCORES")), None)
    assert line is not None, out.stderr[-3000:]
    scores = json.loads(line[len("SCORES ") :])
    vllm, hf = scores["vllm"], scores["transformers"]
    assert len(set(vllm)) == 3  # different answers, different scores
    for a, b in zip(vllm, hf):
        assert abs(a - b) < 1e-3, scores
    for a, b in zip(hf, scores["transformers_one_by_one"]):  # padding does not change a score
        assert abs(a - b) < 1e-4, scores
    assert scores["vllm"] == scores["vllm_one_by_one"] == scores["vllm_offline"]  # Serve's engine and a batch job's
