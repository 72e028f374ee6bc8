"""Synthetic data generation as a Ray Job (a Ray Data pipeline: generate, score, filter):

    ray job submit --working-dir . -- python jobs/sdg.py --config jobs/configs/sdg.yaml

The config's `request:` is the body of `POST /synthetic_data_generation/generate`; the output
is registered as a dataset that `/post_training/*` reads, and the job shows in
`/data_jobs/status`.
"""

import sys

from llamaray.pipelines.job import main

if __name__ == "__main__":
    sys.exit(main("sdg"))
