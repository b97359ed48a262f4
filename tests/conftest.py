"""Shared test set-up: passive OpenMP waiting (set before torch loads) and a small thread count."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
