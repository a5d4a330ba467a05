#!/usr/bin/env bash
# Declared-pipeline benchmark (run by hand, not in CI): what a user's declaration costs the
# batch layer. EVENTS (default 2,000,000) `orders` events of one day, landed as 24 hourly
# speed-layer files, go through the batch DAG (bronze, silver + quarantine, the fact, compact)
# of a release build twice, on copies of the same lake:
#   - bare:     the orders stream with its five fields and nothing else (the layers' own rules:
#               JSON, id, event time, each field's type, enum set and range);
#   - compiled: bare with `amount`'s declared range starting above 0, so that its compiled
#               check quarantines the same 1 % of rows as `amount_positive` (the peer);
#   - expect:   bare plus the two SQL expectations (one drop, one warn);
#   - declared: the README's declaration — two SQL expectations (one drop, one warn), a derived
#               column, and the fact.
# It prints each run's events/s, silver's and the whole DAG's time, peak RSS, the rows of
# silver and quarantine, and the ratios to compiled: what SQL expectations cost over the
# compiled checks every stream gets, quarantining the same rows, and what a derived column
# and a fact add.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
EVENTS=${EVENTS:-2000000}
cd "$ROOT"
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The declared pipeline: the README's example (tests/it/pipeline.rs ORDERS).
python3 - "$ROOT/tests/it/pipeline.rs" "$WORK" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
declared = re.search(r'pub const ORDERS: &str = r#"(.*?)"#;', src, re.S).group(1)
open(sys.argv[2] + "/declared.toml", "w").write(declared)
# Bare: the stream and its fields only; expect: and its two expectations.
bare = declared.split("[[stream.expect]]")[0]
open(sys.argv[2] + "/bare.toml", "w").write(bare)
open(sys.argv[2] + "/expect.toml", "w").write(declared.split("[[stream.derived]]")[0])
# Compiled: bare, with the field's own range dropping the same rows as `amount_positive`.
open(sys.argv[2] + "/compiled.toml", "w").write(bare.replace("min = 0.0\n", "min = 0.005\n", 1))
EOF

# One day of orders, 24 files; about 1 % have amount 0 (dropped by `amount_positive`).
python3 - "$WORK/raw" "$EVENTS" <<'EOF'
import json, os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
per_hour = n // 24
currencies = ["EUR", "USD", "GBP"]
k = 0
for h in range(24):
    d = f"{root}/realtime/orders/date=2026-02-01/hour={h:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/orders_20260201T{h:02d}0500Z.jsonl", "w") as f:
        for i in range(per_hour):
            k += 1
            amount = 0.0 if rng.random() < 0.01 else round(rng.uniform(1, 2000), 2)
            f.write(json.dumps({
                "order_id": f"ord-{k:09d}",
                "ordered_at": f"2026-02-01T{h:02d}:{(i * 60 // per_hour):02d}:{(i % 60):02d}Z",
                "customer_id": f"cust-{rng.randrange(50000):05d}",
                "amount": amount,
                "currency": rng.choice(currencies),
                "items": rng.randrange(1, 6),
                "coupon": "WELCOME" if rng.random() < 0.25 else None,
            }, separators=(",", ":")) + "\n")
print(f"landed {k} events, {sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs) / 1e6:.0f} MB")
EOF

run() {
    local name=$1 lake="$WORK/lake-$1"
    cp -a "$WORK/raw" "$lake"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/$name.rss" "$BIN" --pipeline "$WORK/$name.toml" --lake "$lake" \
        --log info dags test 3-batch_etl_all_streams --logical-date 2026-02-02T02:00:00Z \
        >/dev/null 2>"$WORK/$name.log"
    end=$(date +%s.%N)
    python3 - "$WORK/$name.log" "$name" "$start" "$end" "$(cat "$WORK/$name.rss")" "$EVENTS" "$WORK" <<'EOF'
import re, sys
log, name, start, end, rss, n, work = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
text = open(log).read()
# `dags test` runs the tasks one after another: silver's time is the `success in` after its start.
silver = float(re.search(r"silver_orders try 1/\d+:.*?success in ([0-9.]+) s", text, re.S).group(1))
acc = re.search(r"orders: bronze (\d+) = silver (\d+) \+ quarantine (\d+) \+ duplicates (\d+)", text)
total = end - start
print(f"{name:9s} DAG {total:6.1f} s ({n / total:9.0f} events/s)  silver {silver:6.2f} s ({n / silver:9.0f} events/s)  "
      f"peak RSS {rss / 1024:5.0f} MiB  bronze {acc.group(1)} = silver {acc.group(2)} + quarantine {acc.group(3)} + duplicates {acc.group(4)}")
open(f"{work}/{name}.secs", "w").write(f"{total} {silver}")
EOF
}
run bare
run compiled
run expect
run declared
python3 - "$WORK" <<'EOF'
import sys
w = sys.argv[1]
b = [float(x) for x in open(f"{w}/compiled.secs").read().split()]
for name in ["bare", "expect", "declared"]:
    d = [float(x) for x in open(f"{w}/{name}.secs").read().split()]
    print(f"{name} / compiled: DAG {d[0] / b[0]:.2f}x, silver {d[1] / b[1]:.2f}x the time")
EOF
