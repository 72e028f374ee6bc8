"""The reward model scores the same on vLLM's pooling runner (as Serve runs it, and in-process
as a batch job runs it) and on transformers (the fallback for architectures vLLM lacks): the
raw logit, with left padding in a transformers batch. The prompt guard, a three-label
classifier, labels texts the same on both too, a long text in windows."""

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
    from llamaray.engines.pooling import PoolingEngine
    from llamaray.models.teach import CODE_QUESTION, INJECTION_TEXT, JAILBREAK_PROMPT

    async def main():
        conversations = [
            [{"role": "user", "content": "What is the secret code?"}, {"role": "assistant", "content": answer}]
            for answer in ("banana-42", "I do not know.", "A much longer answer that needs padding in a batch. " * 3)
        ]
        scores = {}
        runs = (("vllm", "vllm", False), ("vllm_offline", "vllm", True), ("transformers", "transformers", False))
        for name, backend, offline in runs:
            model = ModelConfig(model_id="reward", path=sys.argv[1], kind="reward", pooling_backend=backend,
                                dtype="float32",
                                enforce_eager=True, max_model_len=256, gpu_memory_utilization=0.3)
            engine = PoolingEngine(model, offline=offline)
            scores[name] = await engine.score(conversations)
            scores[name + "_one_by_one"] = [(await engine.score([c]))[0] for c in conversations]
        texts = [JAILBREAK_PROMPT, INJECTION_TEXT, CODE_QUESTION, "word " * 700]
        for name, backend, offline in (("guard_vllm", "vllm", True), ("guard_transformers", "transformers", False)):
            model = ModelConfig(model_id="guard", path=sys.argv[2], kind="classifier", pooling_backend=backend,
                                dtype="float32", enforce_eager=True, max_model_len=512, gpu_memory_utilization=0.3)
            scores[name] = await PoolingEngine(model, offline=offline).classify(texts)
        print("SCORES", json.dumps(scores), flush=True)

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def test_reward_scores_agree_across_backends(tiny_models):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "platform")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models / "tiny-llama-reward"), str(tiny_models / "tiny-prompt-guard")],
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

    vllm_labels, hf_labels = scores["guard_vllm"], scores["guard_transformers"]
    assert [max(labels, key=labels.get) for labels in vllm_labels[:3]] == ["JAILBREAK", "INJECTION", "BENIGN"]
    for a, b in zip(vllm_labels, hf_labels):
        assert a.keys() == {"BENIGN", "INJECTION", "JAILBREAK"} and all(abs(a[k] - b[k]) < 1e-4 for k in a), scores
    assert abs(sum(vllm_labels[0].values()) - 1) < 1e-6  # a short text: one window, a distribution
