#!/usr/bin/env bash
# Build the sdist and, from it, the wheel; check both carry the themes, stylesheets and data files;
# install the wheel into a fresh venv and run the installed `localllm` command.
#
#   scripts/check_wheel.sh            PYTHON=/path/to/python3.11 scripts/check_wheel.sh
#   KEEP=1 scripts/check_wheel.sh     (keep the temp folder, to look at what was built)
#
# Dependencies come from the package index and pip's cache (llama-cpp-python's built wheel is cached
# after the first install, so it is not rebuilt). Nothing is written into the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/localllm-wheel-check.XXXXXX")
if [[ "${KEEP:-0}" == 1 ]]; then
    echo "keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi

step() { printf '\n==> %s\n' "$*"; }
# pip's config here may name index folders that do not exist; its warnings about them are noise.
pip_quiet() { "$@" 2> >(grep -v 'is neither a file nor a directory' >&2); }
fail() { printf 'wheel check FAILED: %s\n' "$*" >&2; exit 1; }

step "copying the working tree (a build in place could pick up stale files from build/)"
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/unpacked" "$WORK/run" "$WORK/home"
tar -C "$ROOT" --exclude-vcs --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$WORK/src" -xf -

step "building the sdist"
if "$PY" -m build --version >/dev/null 2>&1; then
    "$PY" -m build --sdist --outdir "$WORK/dist" "$WORK/src"
else
    # No `build` module: the sdist comes from this Python's setuptools (the wheel below is built
    # by pip in an isolated environment, as `python -m build` would).
    "$PY" - "$WORK/src" "$WORK/dist" <<'EOF' || fail "cannot build the sdist (needs setuptools>=77 in $PY or the build module)"
import os, sys
import setuptools, setuptools.build_meta as backend
if int(setuptools.__version__.split(".")[0]) < 77:
    sys.exit(f"setuptools {setuptools.__version__} is too old")
src, dist = sys.argv[1:]
os.chdir(src)
print(backend.build_sdist(dist))
EOF
fi
SDIST=$(ls "$WORK"/dist/localllm-*.tar.gz)

step "checking the sdist holds the themes, stylesheets, data files, the tests and the benchmarks"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | sort > "$WORK/sdist.txt"
for f in $(cd "$ROOT" && ls themes/*.toml localllm/ui/*.tcss $(find localllm/data -type f -not -name "*.pyc") tests/conftest.py tests/hubserver.py \
           tests/ui/__snapshots__/*/*.svg benchmarks/*.py packaging/README.md CHANGELOG.md); do
    grep -qxF "$f" "$WORK/sdist.txt" || fail "$f is missing from the sdist $SDIST"
done

step "building the wheel from the sdist"
tar -C "$WORK/unpacked" -xzf "$SDIST"
pip_quiet "$PY" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$WORK"/unpacked/localllm-*
WHEEL=$(ls "$WORK"/dist/localllm-*.whl)

step "checking the wheel holds every module, the themes, stylesheets and data files"
(cd "$WORK/src" && find localllm -name '*.py' -not -path '*/__pycache__/*'; ls localllm/ui/*.tcss; find localllm/data -type f) \
    > "$WORK/expected.txt"
(cd "$WORK/src/themes" && ls *.toml | sed 's|^|localllm/themes/|') >> "$WORK/expected.txt"
"$PY" - "$WHEEL" "$WORK/expected.txt" <<'EOF' || fail "the wheel is incomplete (a new subpackage missing from [tool.setuptools] packages in pyproject.toml?)"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [line.strip() for line in open(sys.argv[2]) if line.strip() and line.strip() not in names]
for name in missing:
    print(f"  missing from the wheel: {name}", file=sys.stderr)
sys.exit(1 if missing else 0)
EOF

step "installing $(basename "$WHEEL") into a fresh venv"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
pip_quiet "$VPY" -m pip install --quiet "$WHEEL"
BIN="$WORK/venv/bin/localllm"

# From an empty folder, with no PYTHONPATH: the installed package runs, not the repository's.
cd "$WORK/run"
unset PYTHONPATH
export LOCALLLM_HOME="$WORK/home"

step "localllm --version"
VERSION=$("$BIN" --version)
echo "$VERSION"
EXPECTED=$(basename "$WHEEL" | cut -d- -f2)
[[ "$VERSION" == "localllm $EXPECTED" ]] || fail "--version printed '$VERSION', expected 'localllm $EXPECTED'"

step "the installed package and its themes"
"$VPY" - "$WORK/venv" <<'EOF' || fail "the installed package or its themes are not right"
import sys
from pathlib import Path
import localllm
from localllm.ui.themes import load_themes, shipped_themes_dir
venv = Path(sys.argv[1]).resolve()
where = Path(localllm.__file__).resolve()
assert venv in where.parents, f"localllm imported from {where}, not the venv"
folder = shipped_themes_dir()
assert folder is not None and venv in folder.resolve().parents, f"themes found at {folder}"
themes, warnings = load_themes()
names = sorted(t.name for t in themes)
assert not warnings and names == ["localllm-dark", "localllm-high-contrast", "localllm-light"], (names, warnings)
print(f"localllm at {where.parent}; themes {', '.join(names)}")
EOF

if "$BIN" --help | grep -qE '^\s+hw\b|[{,]hw[,}]'; then
    step "localllm hw --json"
    "$BIN" hw --json > "$WORK/hw.json" || fail "localllm hw --json failed"
    "$VPY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print("hw:", ", ".join(sorted(d))[:200])' \
        "$WORK/hw.json" || fail "localllm hw --json did not print JSON"
else
    step "localllm hw: not in this version's --help, skipped"
fi

step "localllm chat -p 'Say hi' --max-tokens 8 --json (the embedded model)"
"$BIN" chat -p "Say hi" --max-tokens 8 --json > "$WORK/chat.json" || fail "localllm chat failed"
"$VPY" - "$WORK/chat.json" <<'EOF' || fail "the chat record is not right: $(head -c 2000 "$WORK/chat.json")"
import json, sys
record = json.load(open(sys.argv[1]))
stats = record["stats"]
assert isinstance(record["reply"], str) and record["reply"].strip(), "empty reply"
assert 0 < stats["completion_tokens"] <= 8, stats["completion_tokens"]
assert stats["wall_s"] > 0 and stats["prompt_tokens"] > 0, stats
print(f"reply {record['reply'].strip()!r} from {record['model']['name']}: {stats['completion_tokens']} tokens, "
      f"wall {stats['wall_s']:.2f} s, decode {stats['decode_tok_s']} tok/s")
EOF

step "wheel check passed: $(basename "$WHEEL") and $(basename "$SDIST")"
