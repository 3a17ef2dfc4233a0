#!/usr/bin/env bash
# The embedded demo: MMRL and MMRL++ on a synthetic world, on a CPU, with nothing downloaded.
#   bash demo.sh            # 3 seeds of MMRL and MMRL++; about 8 minutes on 2 busy cores (measured 2026-12-05)
#   bash demo.sh --quick    # 1 seed of MMRL on a smaller world (what tests/test_demo.py runs)
# Results: demo_output/results.json, report.md and base_to_novel.png, and the usual log.txt / parse.txt
# under demo_output/output/.
set -euo pipefail
cd "$(dirname "$0")"
exec "${PYTHON:-python}" -m demo "$@"
