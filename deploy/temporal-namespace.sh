#!/bin/sh
# One-shot (temporalio/admin-tools image, `temporal` CLI): waits for the Temporal server, creates
# the namespace and registers the search attributes the SellWindow workflow upserts (a workflow
# task that upserts an unregistered one fails). Idempotent: an existing namespace is left as
# is, and `search-attribute create` with an existing name of the same type is a no-op (a
# different type is an error, which is wanted).
set -eu
addr="${TEMPORAL_ADDRESS:-temporal:7233}"
ns="${NAMESPACE:-default}"
retention="${NAMESPACE_RETENTION:-72h}"
attrs="SellWindowId ProductId ListingPhase"
attempts="${MAX_ATTEMPTS:-60}"

# retry DESCRIPTION COMMAND...: run COMMAND until it succeeds, at most $attempts times.
retry() {
  what="$1"
  shift
  n=1
  until "$@"; do
    if [ "$n" -ge "$attempts" ]; then
      echo "giving up: $what"
      return 1
    fi
    echo "not ready: $what ($n/$attempts)"
    n=$((n + 1))
    sleep 2
  done
}

ensure_namespace() {
  temporal operator namespace describe -n "$ns" --address "$addr" >/dev/null 2>&1 \
    || temporal operator namespace create -n "$ns" --retention "$retention" --address "$addr"
}

create_attributes() {
  set --
  for a in $attrs; do set -- "$@" --name "$a" --type Keyword; done
  temporal operator search-attribute create -n "$ns" --address "$addr" "$@"
}

attributes_listed() {
  list="$(temporal operator search-attribute list -n "$ns" --address "$addr")" || return 1
  for a in $attrs; do
    printf '%s\n' "$list" | grep -qw "$a" || return 1
  done
}

retry "temporal cluster health at $addr" temporal operator cluster health --address "$addr"
retry "namespace $ns" ensure_namespace
# A namespace just created reaches the server's namespace cache within a few seconds
# (system.namespaceCacheRefreshInterval); until then the create below fails and is retried.
retry "search attributes $attrs" create_attributes
retry "search attributes listed" attributes_listed
# With SQL visibility the attributes are namespace aliases: give every service's namespace
# cache time to pick them up before the workers start.
sleep 5
echo "namespace $ns with search attributes $attrs ready"
