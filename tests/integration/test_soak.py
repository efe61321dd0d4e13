"""The 20-second soak (bench/soak.py): mixed REST/gRPC client processes, a hot swap every 5 s, no
failed request. RSS growth is a reported figure here; the run fails only above 50% (short runs are
dominated by allocator warm-up, so the 10% target belongs to the full 5-minute run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_soak_20_seconds_with_hot_swaps(models) -> None:
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "soak.py"),
            "--seconds=20",
            "--swap-every=5",
            "--max-rss-growth=50",
            f"--model_base_path={models.digits}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["all_failures"] == 0
    assert figures["rest_requests"] > 0 and figures["grpc_requests"] > 0
    assert figures["swaps"] >= 3 and figures["versions_answered"] >= 2
