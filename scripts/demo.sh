#!/usr/bin/env bash
# Start InterFormer Studio on this machine with the bundled default model:
#   set-up (scripts/setup.sh) -> export the default model to var/models/default when that folder
#   is missing or holds other weights -> `interformer serve --demo` on http://127.0.0.1:${PORT:-5000}/
#   (SQLite in var/, the in-process precompute worker; on a new database it creates the demo
#   logins admin/admin-demo and annotator/annotator-demo and a project of the sample images).
# Extra arguments go to `interformer serve` (e.g. --host 0.0.0.0 --port 8000).
set -euo pipefail
# The demo runs on SQLite in var/ (a DATABASE_URL meant for other things is not used).
unset DATABASE_URL
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL_DIR=${INTERFORMER_MODEL_DIR:-var/models/default}
if ! .venv/bin/python - "$MODEL_DIR" <<'PY' 2>/dev/null
import json, sys
from pathlib import Path
from model_export.default_model import DEFAULT_CHECKPOINT
from model_export.export.manifest import load_manifest, sha256_file, verify_files
m = load_manifest(Path(sys.argv[1]))
verify_files(m, Path(sys.argv[1]))
sys.exit(0 if m["checkpoint"]["sha256"] == sha256_file(DEFAULT_CHECKPOINT) else 1)
PY
then
  echo "exporting the default model to $MODEL_DIR ..."
  .venv/bin/interformer export --model default --out "$MODEL_DIR" --threads 2
fi
exec .venv/bin/interformer serve --model-dir "$MODEL_DIR" --port "${PORT:-5000}" --demo "$@"
