#!/usr/bin/env bash
# docs/SCALE.md, "Walkthrough": a Ray cluster scanning S3-compatible storage, every command echoed before its
# output. Needs exposure-cli with the ray and test extras (moto's server stands in for MinIO) on the PATH.
# Usage: benchmarks/scale_s3_walkthrough.sh [WORKDIR]   (a fresh folder; ports 9000 and 6379 must be free)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work" || exit 1
export OMP_NUM_THREADS=1
step() { echo "\$ $*"; eval "$@"; echo "[exit $?]"; echo; }
step 'exposure samples --copy photos/ && ls photos/*.jpg | wc -l'
# 1. the S3-compatible server (moto here; MinIO, Ceph or R2 alike), signature checks on after 3 admin calls
step 'INITIAL_NO_AUTH_ACTION_COUNT=3 moto_server -H 127.0.0.1 -p 9000 > moto.log 2>&1 &'
sleep 8
step "eval \"\$(python $here/scale_s3_setup.py http://127.0.0.1:9000 photos/)\""
# 2. the cluster: a head node on this machine's loopback, token auth, statistics off, no egress
step 'export RAY_AUTH_MODE=token RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0'
step 'env RAY_USAGE_STATS_ENABLED=0 http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 no_proxy=127.0.0.1,localhost,::1 NO_PROXY=127.0.0.1,localhost,::1 ray start --head --block --node-ip-address=127.0.0.1 --port=6379 --num-cpus=2 --include-dashboard=false --disable-usage-stats > head.log 2>&1 &'
for _ in $(seq 1 60); do sleep 5; grep -q "Ray runtime started\|Error\|Exception" head.log && break; done
step 'grep -E "Local node IP|Ray runtime started|Token authentication" head.log | cut -c25-'
step 'ray status --address 127.0.0.1:6379 | sed -n "/^Resources/,/^Demands/p"'
# 3. the scan: credentials and endpoint in the driver's environment only; the workers get them with the job
step 'export AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000'
step 'time exposure scan s3://photos/shoot/ --engine ray --ray-address 127.0.0.1:6379 --out audit'
step 'python -c "import pandas as pd; df = pd.read_parquet(\"audit/report.parquet\"); print(df[[\"path\", \"status\", \"size_bytes\", \"bad_pct\"]].to_string(index=False))"'
# 4. the same to a pipe: stdout is the CSV and nothing else
step 'exposure scan s3://photos/shoot/ --engine ray --ray-address 127.0.0.1:6379 --out - --format csv -q 2>/dev/null | python -c "import sys, pandas as pd; df = pd.read_csv(sys.stdin); print(len(df), \"rows,\", df[\"status\"].value_counts().to_dict())"'
# 5. what the scans left on the cluster
step 'python -c "import ray; ray.init(address=\"127.0.0.1:6379\", logging_level=\"ERROR\"); print(ray.util.list_named_actors(all_namespaces=True))" 2>/dev/null'
# the credentials are in none of the cluster's log files (Ray's runtime-env agent logs every runtime_env in full)
step 'grep -rlF -e "$AWS_SECRET_ACCESS_KEY" -e "$AWS_ACCESS_KEY_ID" "${RAY_TMPDIR:-/tmp}/ray/session_latest/logs" | wc -l'
# 6. joining without token mode
step 'env -u RAY_AUTH_MODE exposure scan s3://photos/shoot/ --engine ray --ray-address 127.0.0.1:6379 --out audit2 -q 2> err.txt; echo "exit code $?"; grep -v InvalidAuthToken err.txt; grep -c InvalidAuthToken err.txt'
# 7. a wrong secret: the listing is refused (one error row), and a scan where everything failed exits 4
step 'AWS_SECRET_ACCESS_KEY=wrong exposure scan s3://photos/shoot/ --out audit3 -q; echo "exit code $?"'
# stop the cluster (SIGTERM to `ray start --block`; `ray stop` would stop every Ray on the machine) and the server
step 'kill %2 %1; wait'
