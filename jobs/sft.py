"""Supervised fine-tuning as a Ray Job:

    ray job submit --working-dir . -- python jobs/sft.py --config jobs/configs/sft_lora.yaml

The config's `request:` is the body of `POST /post_training/supervised_fine_tune/`; the job
appears in `/post_training/job/status` like one submitted over HTTP.
"""

import sys

from llamaray.training.job import main

if __name__ == "__main__":
    sys.exit(main("sft"))
