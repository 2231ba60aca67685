#!/usr/bin/env bash
# Plays a compliance officer, a deployment pipeline and an auditor against a running
# server, end to end, and prints what each sees.
# Usage: scripts/demo.sh [base URL, default http://127.0.0.1:8080] [data dir, default ./veritrail-data]
set -euo pipefail
base=${1:-http://127.0.0.1:8080}
data=${2:-./veritrail-data}
admin=$(cat "$data/admin-token")
suffix=$(date +%s)
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
call() { # method path token [json]
  local m=$1 p=$2 t=$3; shift 3
  if [ $# -gt 0 ]; then
    curl -s -X "$m" "$base$p" -H "Authorization: Bearer $t" -H 'content-type: application/json' -d "$1"
  else
    curl -s -X "$m" "$base$p" -H "Authorization: Bearer $t"
  fi
}
token() { call POST /v1/tokens "$admin" "{\"name\":\"$1-$suffix\",\"role\":\"$2\"}" | j 'd["token"]'; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

pipeline=$(token pipeline pipeline)
officer=$(token officer officer)
officer2=$(token officer2 officer)
auditor=$(token auditor auditor)
sys="credit-$suffix"
sha=$(printf 'model artifact' | sha256sum | cut -d' ' -f1)

say "officer: registers the AI system $sys (high risk, EU AI Act + GDPR Art. 22)"
call POST /v1/systems "$officer" "{\"id\":\"$sys\",\"name\":\"Credit scoring\",\"purpose\":\"Scores consumer credit applications\",
  \"owner\":{\"name\":\"Dana Officer\",\"email\":\"dana@example.com\"},\"risk_class\":\"high\",
  \"regulations\":[\"eu-ai-act\",\"gdpr-art22\"],\"policy\":{\"required_tests\":[\"external\"]}}" \
  | j '"  revision", d["system"]["revision"], "at log index", d["receipt"]["index"]'

say "pipeline: registers model version 1.0.0"
call POST "/v1/systems/$sys/models" "$pipeline" "{\"version\":\"1.0.0\",\"artifact_sha256\":\"$sha\",
  \"training_data\":{\"ref\":\"s3://data/2026q3\",\"sha256\":\"$sha\"}}" | j '"  status:", d["model_version"]["status"]'

say "pipeline: logs a decision before any review -> refused"
dec() { echo "{\"decision_id\":\"$1\",\"model_version\":\"1.0.0\",\"occurred_at\":\"2026-11-25T10:00:00Z\",\"subject_ref\":\"applicant-4711\",
  \"input_sha256\":\"$sha\",\"inputs\":{\"income\":52000},\"output\":{\"approved\":true},\"confidence\":0.91,\"reasons\":[\"income_ok\"]}"; }
call POST "/v1/systems/$sys/decisions" "$pipeline" "$(dec d-1)" | j '"  ", d["status"], d["type"]'

say "pipeline: records a bias test computed by Fairlearn"
test_id=$(call POST "/v1/systems/$sys/models/1.0.0/tests" "$pipeline" "{\"evaluator\":\"external\",\"result\":{\"tool\":\"fairlearn\",
  \"tool_version\":\"0.12.0\",\"kind\":\"bias\",\"metrics\":{\"demographic_parity_difference\":0.03},\"passed\":true,\"report_sha256\":\"$sha\"}}" | j 'd["id"]')
echo "  test id $test_id"

say "officer 2: approves the version, citing the test"
call POST "/v1/systems/$sys/models/1.0.0/reviews" "$officer2" "{\"outcome\":\"approved\",\"rationale\":\"bias within tolerance\",\"evidence\":[$test_id]}" \
  | j '"  status:", d["status"], "reviewer:", d["reviewer"]'

say "pipeline: deploys it (the review gate passes) and logs the decision again"
call POST "/v1/systems/$sys/models/1.0.0/deployments" "$pipeline" '{"environment":"production"}' | j '"  deployed", d["version"]'
receipt=$(call POST "/v1/systems/$sys/decisions" "$pipeline" "$(dec d-1)")
echo "$receipt" | j '"  ", d["status"], "at index", d["receipt"]["index"], "under checkpoint of size", d["receipt"]["tree_size"]'

say "auditor: reads the decision back, personal fields opened from the vault"
call GET "/v1/systems/$sys/decisions/d-1" "$auditor" | j '"  subject_ref:", d["subject_ref"]["value"], "commitment:", d["subject_ref"]["commitment"][:16] + "..."'

say "auditor: checks the receipt with nothing but the public key"
vkey=$(curl -s "$base/v1/log/key" | j 'd["verifier_key"]')
echo "  verifier key: $vkey"
echo "$receipt" | j 'd["receipt"]["checkpoint"]' | sed 's/^/  | /'
echo "  inclusion proof: $(echo "$receipt" | j 'len(d["receipt"]["inclusion_proof"])') hashes"

say "officer: compliance status of $sys"
call GET "/v1/systems/$sys/compliance" "$officer" | j '"  status:", d["status"], "| findings:", ", ".join(f["code"] for f in d["findings"]) or "none"'

bin=${VERITRAIL_BIN:-$(dirname "$0")/../target/release/veritrail}
[ -x "$bin" ] || bin=$(dirname "$0")/../target/debug/veritrail
if [ -x "$bin" ]; then
  say "auditor: fetches the decision's audit bundle and checks it offline with the key alone"
  bundle=$(mktemp)
  call GET "/v1/systems/$sys/decisions/d-1/audit" "$auditor" > "$bundle"
  "$bin" verify-bundle "$bundle" --key "$vkey" | tail -1 | sed 's/^/  /'
  rm -f "$bundle"
fi
