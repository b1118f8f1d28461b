#!/usr/bin/env bash
# Seeds the ssmix2_pipeline corpus with the shared SS-MIX2 fixture files (real ISO-2022-JP sample,
# broken files, ssmixtwins LF files) plus a few hand-made edge cases.
# Usage: fuzz/seed.sh   (from anywhere; writes fuzz/corpus/ssmix2_pipeline/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${SHARED:-$here/../../shared}"
out="$here/corpus/ssmix2_pipeline"
mkdir -p "$out"
n=0
while IFS= read -r -d '' f; do
  case "$(basename "$f")" in LICENSE*) continue ;; esac
  cp "$f" "$out/fixture-$(sha1sum "$f" | cut -c1-16)"
  n=$((n + 1))
done < <(find "$shared/fixtures" -type f -print0)
printf 'MSH|^~\\&|\r' > "$out/edge-msh-only"
printf 'MSH|^~\\&|||||||ADT^A08|1|P|2.5\rPID|1||1^^^^PI||\x1b$B35<T\x1b(B^\x1b$BB@O:\x1b(B\r' > "$out/edge-jis-name"
printf 'MSH|^~\\&|||||||OUL^R22|1|P|2.5\nPID|1||1\nOBX|1|NM|x||1.5e3|\\\\X41\\\\||\n' > "$out/edge-lf-escape"
printf '9999013_-_ADT-00_999999999999999_20111220224447339_-_1' > "$out/edge-file-name"
echo "seeded $n fixture files + 4 edge cases into $out"
