"""Print the integration matrix's log (EDGEPACK_MATRIX_LOG) as a Markdown table.

    EDGEPACK_MATRIX_LOG=/tmp/matrix.jsonl pytest tests/integration -m "slow or not slow"
    python tests/integration/matrix_table.py /tmp/matrix.jsonl
"""

import json
import sys

rows = [json.loads(ln) for ln in open(sys.argv[1]) if ln.strip()]
print("| cell | result | drop pt | bytes | s | refusal |")
print("|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: r["cell"]):
    drop = "" if r.get("drop_pt") is None else f"{r['drop_pt']:.2f}"
    print(f"| {r['cell']} | {r['result']} | {drop} | {r.get('bytes', '') or ''} | {r.get('wall_s', '')} | {r.get('message', '')[:140]} |")
counts = {}
for r in rows:
    counts[r["result"]] = counts.get(r["result"], 0) + 1
print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
