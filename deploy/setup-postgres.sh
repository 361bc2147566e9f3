#!/bin/sh
# One-shot: creates Temporal's two databases and brings their schemas up to date
# (temporal-sql-tool from the temporalio/admin-tools image). Safe to run again.
set -eu
until nc -z -w 10 postgresql 5432; do echo "waiting for postgresql"; sleep 1; done
tool="temporal-sql-tool --plugin postgres12 --ep postgresql -u ${POSTGRES_USER} -p 5432"
schema=/etc/temporal/schema/postgresql/v12
$tool --db temporal create || true
$tool --db temporal setup-schema -v 0.0 || true
$tool --db temporal update-schema -d $schema/temporal/versioned
$tool --db temporal_visibility create || true
$tool --db temporal_visibility setup-schema -v 0.0 || true
$tool --db temporal_visibility update-schema -d $schema/visibility/versioned
echo "Temporal schemas ready"
