#!/bin/sh
# The v2 docs' "Create a Service Binding" curl (seed 001), verbatim but for the host and token.
# Needs `tether seed-demo` first (it creates the example's app and instance GUIDs).
# Usage: TETHER_API=http://127.0.0.1:8080 TOKEN=$(tether token) sh tests/clients/seed_curl.sh
set -eu
curl -sS -i "${TETHER_API:-http://127.0.0.1:8080}/v2/service_bindings?accepts_incomplete=false" -d '{
  "service_instance_guid": "a0029c76-7017-4a74-94b0-54a04ad94b80",
  "app_guid": "081d55a0-1bfa-4e51-8d08-273f764988db",
  "parameters": {
    "the_service_broker": "wants this object"
  },
  "name": "prod-db"
}' -X POST \
	-H "Authorization: bearer $TOKEN" \
	-H "Host: example.org" \
	-H "Content-Type: application/json" \
	-H "Cookie: "
