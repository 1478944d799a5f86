# Sourced by the scripts: where the shared test data lives. It sits beside the project
# (../shared/data); a clone elsewhere falls back to the workplace's copy. ETL_SHARED_DATA wins.
if [ -z "${ETL_SHARED_DATA:-}" ]; then
  for candidate in "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/data" /work/shared/data; do
    if [ -d "$candidate" ]; then ETL_SHARED_DATA=$candidate; break; fi
  done
fi
if [ ! -d "${ETL_SHARED_DATA:-}" ]; then
  echo "the shared test data (chinook, oracle-customer-orders) was not found beside the project; set ETL_SHARED_DATA" >&2
  exit 2
fi
export ETL_SHARED_DATA
