#!/bin/sh
# One-shot: waits for the Temporal server, creates the namespace and registers the search
# attributes the SellWindow workflow upserts (a workflow task fails on an unknown one).
set -eu
ns="${TEMPORAL_NAMESPACE:-default}"
addr="${TEMPORAL_ADDRESS:-temporal:7233}"
until temporal operator cluster health --address "$addr"; do echo "waiting for temporal"; sleep 2; done
temporal operator namespace describe -n "$ns" --address "$addr" >/dev/null 2>&1 \
  || temporal operator namespace create -n "$ns" --address "$addr"
for name in SellWindowId ProductId ListingPhase; do
  if temporal operator search-attribute list -n "$ns" --address "$addr" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create -n "$ns" --address "$addr" --name "$name" --type Keyword
  fi
done
echo "namespace $ns and search attributes ready"
