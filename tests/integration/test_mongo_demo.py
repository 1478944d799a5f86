"""The demo collection (docs/demo-spec: chinook.customers) read with 2 partitions, then resumed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from etl.records import Partition
from etl.sources.base import BatchLimits
from etl.sources.mongo import Config, open_source
from tests.conftest import MONGO_URI

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_db(mongo_db):
    """The demo data, loaded by the project's own loader into this test's scratch database."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "load_demo_data.py"), "--uri", MONGO_URI,
                    "--database", mongo_db.name], check=True, capture_output=True)
    return mongo_db


def demo_source(db, limits=BatchLimits(records=10, bytes=1 << 20)):
    config = Config(type="mongo", uri=MONGO_URI, database=db.name,
                    tables={"customers": {"mapping": "mappings/chinook_customers.yaml", "partitions": 2}})
    return open_source("mongo", config, limits)


def test_two_partitions_read_the_whole_demo_collection(demo_db):
    source = demo_source(demo_db)
    source.check()
    plan = source.plan("customers", 2)
    assert [p.index for p in plan] == [0, 1] and plan[0].upper == plan[1].lower
    per_partition = [[r for b in source.read(p) for r in b.records] for p in plan]
    customers = per_partition[0] + per_partition[1]
    assert sorted(c["_id"] for c in customers) == list(range(1, 60))
    assert all(per_partition)  # both partitions hold documents
    invoices = [i for c in customers for i in c["invoices"]]
    lines = [line for i in invoices for line in i["lines"]]
    assert (len(customers), len(invoices), len(lines)) == (59, 412, 2240)
    assert sum(i["total"] for i in invoices) == Decimal("2328.60")
    assert all(type(i["total"]) is Decimal and type(line["unit_price"]) is Decimal
               for i in invoices for line in i["lines"])
    first = customers[0]
    assert first["invoices"][0]["invoice_date"].tzinfo is not None
    assert min(i["invoice_date"] for i in invoices) == datetime(2021, 1, 1, tzinfo=UTC)
    # missing stays missing, null stays null
    assert sum("fax" not in c for c in customers) == 47
    assert sum(c["company"] is None for c in customers) == 49 and all("company" in c for c in customers)
    assert source.key_text("customers", first) == "_id=1"


def test_projection_and_resume_on_the_demo_collection(demo_db):
    source = demo_source(demo_db)
    partition = Partition.from_json(source.plan("customers", 2)[1].to_json())
    batches = list(source.read(partition, fields=["email"]))
    assert all(set(r) == {"_id", "email"} for b in batches for r in b.records)
    resume = batches[0].resume_after
    resumed = [r["_id"] for b in source.read(partition, resume_after=resume) for r in b.records]
    assert resumed == [r["_id"] for b in batches[1:] for r in b.records]
    assert resume == '{"v": {"$numberInt": "' + str(batches[0].records[-1]["_id"]) + '"}}'
