"""Soak occ_node with good camera sets and hostile messages (see scaocc_ros/tools/soak.py).

    python bench/soak.py --seconds 120 --json bench/results/soak_120s.json
"""

from __future__ import annotations

import sys

from scaocc_ros.tools.soak import main

if __name__ == "__main__":
    sys.exit(main())
