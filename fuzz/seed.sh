#!/usr/bin/env bash
# Fills corpus/<target>/ (not committed) with the committed seeds/<target>/ and, when
# ../../shared/fixtures exists, the forges' published webhook examples, each with its event
# header on the first line as the webhook targets expect. Run from fuzz/ before a long run.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=${FIXTURES:-../../shared/fixtures}
for seeds in seeds/*/; do
  target=$(basename "$seeds")
  mkdir -p "corpus/$target"
  cp "$seeds"* "corpus/$target/"
done
if [ -d "$fixtures/github" ]; then
  for f in "$fixtures"/github/*.payload.json; do
    name=$(basename "$f" .payload.json)
    { printf '%s\n' "${name%%.*}"; cat "$f"; } > "corpus/github_webhook/fixture-$name"
  done
fi
if [ -d "$fixtures/gitlab" ]; then
  for pair in "push:Push Hook" "merge_request:Merge Request Hook" "note_issue:Note Hook" \
              "note_merge_request:Note Hook" "emoji:Emoji Hook"; do
    name=${pair%%:*}
    { printf '%s\n' "${pair#*:}"; cat "$fixtures/gitlab/$name.json"; } > "corpus/gitlab_webhook/fixture-$name"
  done
fi
