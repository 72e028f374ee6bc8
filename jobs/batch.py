"""Batch completion as a Ray Job (a Ray Data pipeline over vLLM engines):

    ray job submit --working-dir . -- python jobs/batch.py --config jobs/configs/batch.yaml

The config's `request:` is a batch completion over `content_batch`, `batch_dialogs` or a
registered dataset's column (see `BatchJobRequest`); the completions are registered as a dataset.
"""

import sys

from llamaray.pipelines.job import main

if __name__ == "__main__":
    sys.exit(main("batch"))
