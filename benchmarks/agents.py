"""Agent turns per second, and the platform's own time per turn, against the same turn by hand.

The turn: the demo agent (the taught `tiny-llama-agent` adapter) is asked `CODE_QUESTION`; it
calls the code interpreter, the sandbox runs `print(6 * 7)`, and the model is called again with
the output (steps: inference, tool_execution, inference). Two systems run it, one after the
other in one run, `--turns` turns at each concurrency after a warm-up:

  1. by hand (the baseline): vLLM's own OpenAI server serving the same adapter on the same
     engine layout, sent the exact prompts the agent renders (`/v1/completions`), with the same
     sandbox run in this process between the two calls;
  2. llamaray: `POST /agentic_system/execute` on the platform (Serve proxy, gateway, agent
     service, LLMServer replica, sandbox in the gateway).

The platform's own time per turn is the difference of the median turn latencies (everything
the by-hand turn does not do: HTTP into the gateway, the store, shields-free step bookkeeping,
Serve hops). vLLM's server runs at nice 15, as Ray runs every Serve replica and engine (ENV.md),
so both engines have the same CPU priority. Goal: overhead under 10% of the turn.

    python benchmarks/agents.py --turns 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

from llamaray.agents.sandbox import Sandbox  # noqa: E402
from llamaray.agents.tools import interpreter_output  # noqa: E402
from llamaray.api.common import Message, Role, ToolCall  # noqa: E402
from llamaray.config import SandboxSettings  # noqa: E402
from llamaray.inference.chat_format import encode_dialog  # noqa: E402
from llamaray.inference.tool_parser import parse_tool_calls  # noqa: E402
from llamaray.models import teach  # noqa: E402
from loadgen import wait_http, write_result  # noqa: E402

MODEL_ID = "tiny-llama-chat"
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048, "gpu_memory_utilization": 0.3}
ENGINE_ENV = {"VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
MAX_TOKENS = 64


async def timed_turns(turn, turns: int, concurrency: int) -> list[float]:
    """Each turn's latency; `concurrency` turns in flight at once."""
    latencies: list[float] = []
    queue = list(range(turns))

    async def worker() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            await turn()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def measure(name: str, turn, args) -> list[dict]:
    await timed_turns(turn, 4, 2)  # warm-up: adapter loaded, sandbox paths cached
    rows = []
    for concurrency in args.concurrency:
        started = time.perf_counter()
        latencies = await timed_turns(turn, args.turns, concurrency)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "system": name,
                "concurrency": concurrency,
                "turns": args.turns,
                "turns_per_s": args.turns / seconds,
                "latency_p50_s": statistics.median(latencies),
            }
        )
        print(
            f"  {name:10s} c={concurrency:<3d} {rows[-1]['turns_per_s']:.2f} turns/s, "
            f"p50 {rows[-1]['latency_p50_s']:.3f}s",
            flush=True,
        )
    return rows


def by_hand_turn(client: httpx.AsyncClient, sandbox: Sandbox):
    system = Message(role=Role.system, content=teach.DEMO_INSTRUCTIONS)
    question = Message(role=Role.user, content=teach.CODE_QUESTION)

    async def complete(messages: list[Message]) -> str:
        prompt = encode_dialog([system, *messages], teach.demo_tools())
        body = {
            "model": teach.AGENT_ADAPTER_DIR,
            "prompt": prompt,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stop": ["<|eot_id|>", "<|eom_id|>"],
            "skip_special_tokens": False,
            "add_special_tokens": False,  # the prompt starts with its BOS, as the platform sends it
        }
        response = await client.post("/v1/completions", json=body)
        response.raise_for_status()
        return response.json()["choices"][0]["text"]

    async def turn() -> None:
        (call,) = parse_tool_calls(await complete([question])).tool_calls
        output = interpreter_output(await sandbox.run(call.arguments["code"]))
        called = Message(
            role=Role.assistant, content="", tool_calls=[ToolCall(tool_name=call.tool_name, arguments=call.arguments)]
        )
        answer = await complete([question, called, Message(role=Role.tool, content=output)])
        assert answer.strip() == teach.CODE_ANSWER, answer

    return turn


async def bench_by_hand(models: Path, args) -> list[dict]:
    port = 8111
    cmd = [
        "nice", "-n", "15",  # the priority Ray gives every Serve replica and engine
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(models / "tiny-llama-chat"), "--served-model-name", MODEL_ID,
        "--port", str(port), "--host", "127.0.0.1", "--dtype", ENGINE["dtype"], "--enforce-eager",
        "--max-model-len", str(ENGINE["max_model_len"]),
        "--gpu-memory-utilization", str(ENGINE["gpu_memory_utilization"]),
        "--uvicorn-log-level", "warning", "--enable-lora", "--max-loras", "4", "--max-lora-rank", "16",
        "--lora-modules", f"{teach.AGENT_ADAPTER_DIR}={models / teach.AGENT_ADAPTER_DIR}",
    ]  # fmt: skip
    with open(Path(tempfile.gettempdir()) / "bench-agents-vllm.log", "w") as log:
        server = subprocess.Popen(cmd, env={**os.environ, **ENGINE_ENV}, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=300, process=server)
            sandbox = Sandbox(SandboxSettings())
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                return await measure("by hand", by_hand_turn(client, sandbox), args)
        finally:
            server.terminate()
            server.wait(timeout=60)


async def bench_llamaray(models: Path, args) -> list[dict]:
    import ray
    from ray import serve

    from llamaray.serve.app import build_app
    from llamaray.serve.runtime import serve_env

    os.environ.update(serve_env())
    port = 8112
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    config = {
        "data_dir": tempfile.mkdtemp(),
        "agents": {"max_tokens": MAX_TOKENS},
        "models": [
            {
                "model_id": MODEL_ID,
                "path": str(models / "tiny-llama-chat"),
                **ENGINE,
                "adapters": {teach.AGENT_ADAPTER_DIR: str(models / teach.AGENT_ADAPTER_DIR)},
                "max_ongoing_requests": 256,
                "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            }
        ],
    }
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="llamaray", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", timeout=300)
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            agent = {
                "uuid": "bench-agent",
                "instructions": teach.DEMO_INSTRUCTIONS,
                "model": teach.AGENT_ADAPTER_DIR,
                "available_tools": [t.model_dump(mode="json", exclude_none=True) for t in teach.demo_tools()],
                "executable_tools": ["code_interpreter"],
            }
            (await client.post("/agentic_system/create", json=agent)).raise_for_status()

            async def turn() -> None:
                body = {
                    "agent_uuid": "bench-agent",
                    "messages": [{"role": "user", "content": teach.CODE_QUESTION}],
                    "turn_history": [],
                }
                response = await client.post("/agentic_system/execute", json=body)
                response.raise_for_status()
                assert response.json()["turn"]["response_message"]["content"] == teach.CODE_ANSWER, response.text

            return await measure("llamaray", turn, args)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()

    from llamaray.models.tiny import build_tiny_models, tiny_models_present

    if not tiny_models_present(args.models_dir):
        build_tiny_models(args.models_dir)
    hand = asyncio.run(bench_by_hand(args.models_dir, args))
    ours = asyncio.run(bench_llamaray(args.models_dir, args))
    print(
        f"\n{'concurrency':>11} {'by hand t/s':>12} {'llamaray t/s':>13} {'ratio':>6} "
        f"{'own time/turn':>14} {'share':>6}"
    )
    record = {"rows": hand + ours, "ratios": {}}
    for h, o in zip(hand, ours):
        ratio = o["turns_per_s"] / h["turns_per_s"]
        own = o["latency_p50_s"] - h["latency_p50_s"]
        share = own / o["latency_p50_s"]
        record["ratios"][str(h["concurrency"])] = {"throughput_ratio": ratio, "own_time_s": own, "own_share": share}
        print(
            f"{h['concurrency']:>11} {h['turns_per_s']:>12.2f} {o['turns_per_s']:>13.2f} {ratio:>6.2f} "
            f"{own:>13.3f}s {share:>6.1%}"
        )
    print("goal: the platform's own time under 10% of the turn")
    write_result("agents", record)


if __name__ == "__main__":
    main()
