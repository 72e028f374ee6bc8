"""Preference optimisation (DPO) as a Ray Job:

    ray job submit --working-dir . -- python jobs/dpo.py --config jobs/configs/dpo.yaml

The config's `request:` is the body of `POST /post_training/preference_optimize/`.
"""

import sys

from llamaray.training.job import main

if __name__ == "__main__":
    sys.exit(main("dpo"))
