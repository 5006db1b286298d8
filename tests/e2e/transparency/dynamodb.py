"""DynamoDB scenarios: item CRUD with conditions, indexes and queries, transactions, batches, table settings."""

from __future__ import annotations

from typing import Any

from transparency.core import Context, Observations, Scenario, error_of


def scan_all(ddb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of a table, page after page, in scan order."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def table_state(ddb: Any, table: str) -> dict[str, Any]:
    """A table's description, tags and items."""
    description = ddb.describe_table(TableName=table)["Table"]
    return {
        "table": description,
        "tags": ddb.list_tags_of_resource(ResourceArn=description["TableArn"]).get("Tags", []),
        "items": scan_all(ddb, table),
    }


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | str) -> dict[str, str]:
    return {"N": str(value)}


class ItemsWithConditions(Scenario):
    """A customers table: puts, a get with a projection, an update expression with return values, a put and a
    delete guarded by conditions (one met, one failing with the old item returned), and a scan."""

    name = "ddb-items-conditions"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        obs["create"] = ddb.create_table(
            TableName="tp-ddb-customers",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            Tags=[{"Key": "team", "Value": "crm"}],
        )
        for number, name in enumerate(["Ada", "Grace", "Linus"], 1):
            ddb.put_item(
                TableName="tp-ddb-customers",
                Item={"id": s(f"c{number}"), "name": s(name), "visits": n(0), "tags": {"SS": ["new"]}},
            )
        obs["get"] = ddb.get_item(
            TableName="tp-ddb-customers",
            Key={"id": s("c2")},
            ProjectionExpression="#n, visits",
            ExpressionAttributeNames={"#n": "name"},
        )
        obs["update"] = ddb.update_item(
            TableName="tp-ddb-customers",
            Key={"id": s("c1")},
            UpdateExpression="SET visits = visits + :one, email = :e ADD tags :t",
            ExpressionAttributeValues={":one": n(1), ":e": s("ada@example.org"), ":t": {"SS": ["vip"]}},
            ReturnValues="ALL_NEW",
        )
        obs["guarded put"] = ddb.put_item(
            TableName="tp-ddb-customers",
            Item={"id": s("c3"), "name": s("Linus T."), "visits": n(5)},
            ConditionExpression="attribute_exists(id) AND visits = :zero",
            ExpressionAttributeValues={":zero": n(0)},
            ReturnValues="ALL_OLD",
        )
        obs["failed put"] = error_of(
            ddb.put_item,
            TableName="tp-ddb-customers",
            Item={"id": s("c2"), "name": s("impostor")},
            ConditionExpression="attribute_not_exists(id)",
        )
        obs["failed delete"] = error_of(
            ddb.delete_item,
            TableName="tp-ddb-customers",
            Key={"id": s("c1")},
            ConditionExpression="visits > :many",
            ExpressionAttributeValues={":many": n(10)},
        )
        obs["delete"] = ddb.delete_item(TableName="tp-ddb-customers", Key={"id": s("c2")}, ReturnValues="ALL_OLD")
        obs["scan"] = ddb.scan(TableName="tp-ddb-customers")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return table_state(ctx.client("dynamodb"), "tp-ddb-customers")


class IndexesAndQueries(Scenario):
    """An orders table with a global and a local secondary index: key conditions, filters, a paginated query
    (Limit and ExclusiveStartKey), a backwards query, and a query on each index."""

    name = "ddb-indexes-queries"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        obs["create"] = ddb.create_table(
            TableName="tp-ddb-orders",
            KeySchema=[
                {"AttributeName": "customer", "KeyType": "HASH"},
                {"AttributeName": "order", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "customer", "AttributeType": "S"},
                {"AttributeName": "order", "AttributeType": "N"},
                {"AttributeName": "status", "AttributeType": "S"},
                {"AttributeName": "total", "AttributeType": "N"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-status",
                    "KeySchema": [
                        {"AttributeName": "status", "KeyType": "HASH"},
                        {"AttributeName": "order", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]},
                }
            ],
            LocalSecondaryIndexes=[
                {
                    "IndexName": "by-total",
                    "KeySchema": [
                        {"AttributeName": "customer", "KeyType": "HASH"},
                        {"AttributeName": "total", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for order in range(1, 9):
            ddb.put_item(
                TableName="tp-ddb-orders",
                Item={
                    "customer": s("alice" if order % 2 else "bob"),
                    "order": n(order),
                    "status": s(["new", "paid", "shipped"][order % 3]),
                    "total": n(order * 7 % 11),
                    "note": s(f"order number {order}"),
                },
            )
        key = {"KeyConditionExpression": "customer = :c", "ExpressionAttributeValues": {":c": s("alice")}}
        obs["page 1"] = ddb.query(TableName="tp-ddb-orders", Limit=2, **key)
        obs["page 2"] = ddb.query(
            TableName="tp-ddb-orders", Limit=2, ExclusiveStartKey=obs["page 1"]["LastEvaluatedKey"], **key
        )
        obs["backwards"] = ddb.query(TableName="tp-ddb-orders", ScanIndexForward=False, **key)
        obs["filtered"] = ddb.query(
            TableName="tp-ddb-orders",
            KeyConditionExpression="customer = :c AND #o BETWEEN :lo AND :hi",
            FilterExpression="#t > :min",
            ExpressionAttributeNames={"#o": "order", "#t": "total"},
            ExpressionAttributeValues={":c": s("bob"), ":lo": n(2), ":hi": n(8), ":min": n(3)},
        )
        obs["gsi"] = ddb.query(
            TableName="tp-ddb-orders",
            IndexName="by-status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": s("paid")},
        )
        obs["lsi"] = ddb.query(
            TableName="tp-ddb-orders",
            IndexName="by-total",
            KeyConditionExpression="customer = :c AND #t >= :t",
            ExpressionAttributeNames={"#t": "total"},
            ExpressionAttributeValues={":c": s("alice"), ":t": n(5)},
        )
        obs["count"] = ddb.scan(TableName="tp-ddb-orders", Select="COUNT")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return table_state(ctx.client("dynamodb"), "tp-ddb-orders")


class Transactions(Scenario):
    """A bank ledger moved by transactions: a transfer (two updates and a condition check) that succeeds, one
    that is cancelled by a failed condition (with its cancellation reasons), and a transactional get."""

    name = "ddb-transactions"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        ddb.create_table(
            TableName="tp-ddb-ledger",
            KeySchema=[{"AttributeName": "account", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "account", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for account, balance in [("checking", 100), ("savings", 50), ("frozen", 10)]:
            ddb.put_item(TableName="tp-ddb-ledger", Item={"account": s(account), "balance": n(balance)})

        def transfer(source: str, target: str, amount: int) -> list[dict[str, Any]]:
            return [
                {
                    "Update": {
                        "TableName": "tp-ddb-ledger",
                        "Key": {"account": s(source)},
                        "UpdateExpression": "SET balance = balance - :a",
                        "ConditionExpression": "balance >= :a",
                        "ExpressionAttributeValues": {":a": n(amount)},
                    }
                },
                {
                    "Update": {
                        "TableName": "tp-ddb-ledger",
                        "Key": {"account": s(target)},
                        "UpdateExpression": "SET balance = balance + :a",
                        "ExpressionAttributeValues": {":a": n(amount)},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": "tp-ddb-ledger",
                        "Key": {"account": s("frozen")},
                        "ConditionExpression": "balance = :ten",
                        "ExpressionAttributeValues": {":ten": n(10)},
                    }
                },
            ]

        obs["transfer"] = ddb.transact_write_items(TransactItems=transfer("checking", "savings", 30))
        obs["overdraft"] = error_of(ddb.transact_write_items, TransactItems=transfer("savings", "checking", 500))
        obs["put and delete"] = ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "tp-ddb-ledger", "Item": {"account": s("travel"), "balance": n(0)}}},
                {"Delete": {"TableName": "tp-ddb-ledger", "Key": {"account": s("frozen")}}},
            ]
        )
        obs["read"] = ddb.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": "tp-ddb-ledger", "Key": {"account": s(a)}}}
                for a in ("checking", "savings", "frozen", "travel")
            ]
        )
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return table_state(ctx.client("dynamodb"), "tp-ddb-ledger")


class Batches(Scenario):
    """Batch writes (puts and deletes mixed) and a batch get across two tables, including keys that do not
    exist; the unprocessed parts come back empty."""

    name = "ddb-batches"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        for table in ("tp-ddb-products", "tp-ddb-stock"):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "sku", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "sku", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        obs["write"] = ddb.batch_write_item(
            RequestItems={
                "tp-ddb-products": [
                    {"PutRequest": {"Item": {"sku": s(f"sku-{i}"), "title": s(f"Product {i}"), "price": n(i * 3)}}}
                    for i in range(12)
                ],
                "tp-ddb-stock": [
                    {
                        "PutRequest": {
                            "Item": {"sku": s(f"sku-{i}"), "count": n(100 - i), "bins": {"NS": ["1", str(i + 2)]}}
                        }
                    }
                    for i in range(6)
                ],
            }
        )
        obs["delete"] = ddb.batch_write_item(
            RequestItems={"tp-ddb-products": [{"DeleteRequest": {"Key": {"sku": s(f"sku-{i}")}}} for i in (0, 11)]}
        )
        got = ddb.batch_get_item(
            RequestItems={
                "tp-ddb-products": {"Keys": [{"sku": s(f"sku-{i}")} for i in (0, 1, 5)], "ConsistentRead": True},
                "tp-ddb-stock": {
                    "Keys": [{"sku": s("sku-5")}, {"sku": s("sku-9")}],
                    "ProjectionExpression": "sku, #c",
                    "ExpressionAttributeNames": {"#c": "count"},
                },
            }
        )
        obs["get"] = {
            **got,
            "Responses": {
                table: sorted(items, key=lambda i: i["sku"]["S"]) for table, items in got["Responses"].items()
            },
        }
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ddb = ctx.client("dynamodb")
        return {table: table_state(ddb, table) for table in ("tp-ddb-products", "tp-ddb-stock")}


class TableSettings(Scenario):
    """Table settings: TTL turned on, tags added and removed, a stream enabled by update_table, billing mode
    switched, point-in-time recovery enabled, and the resulting descriptions."""

    name = "ddb-table-settings"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        arn = ddb.create_table(
            TableName="tp-ddb-sessions",
            KeySchema=[{"AttributeName": "token", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "token", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        )["TableDescription"]["TableArn"]
        obs["ttl"] = ddb.update_time_to_live(
            TableName="tp-ddb-sessions", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
        )
        obs["tag"] = ddb.tag_resource(
            ResourceArn=arn, Tags=[{"Key": "app", "Value": "web"}, {"Key": "temp", "Value": "1"}]
        )
        obs["untag"] = ddb.untag_resource(ResourceArn=arn, TagKeys=["temp"])
        obs["stream"] = ddb.update_table(
            TableName="tp-ddb-sessions",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        obs["billing"] = ddb.update_table(TableName="tp-ddb-sessions", BillingMode="PAY_PER_REQUEST")
        obs["pitr"] = ddb.update_continuous_backups(
            TableName="tp-ddb-sessions",
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
        ddb.put_item(TableName="tp-ddb-sessions", Item={"token": s("abc"), "expires": n(4102444800)})
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ddb = ctx.client("dynamodb")
        return {
            **table_state(ddb, "tp-ddb-sessions"),
            "ttl": ddb.describe_time_to_live(TableName="tp-ddb-sessions"),
            "backups": ddb.describe_continuous_backups(TableName="tp-ddb-sessions")["ContinuousBackupsDescription"][
                "ContinuousBackupsStatus"
            ],
        }


class BackupAndRestore(Scenario):
    """An on-demand backup of a small table, listed and described, restored into a new table that holds the
    same items; a missing table's backup fails."""

    name = "ddb-backup-restore"
    service = "dynamodb"

    def run(self, ctx: Context) -> Observations:
        ddb = ctx.client("dynamodb")
        obs: Observations = {}
        ddb.create_table(
            TableName="tp-ddb-settings",
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for key, value in [("theme", "dark"), ("lang", "en"), ("tz", "UTC")]:
            ddb.put_item(TableName="tp-ddb-settings", Item={"key": s(key), "value": s(value)})
        obs["backup"] = ddb.create_backup(TableName="tp-ddb-settings", BackupName="tp-ddb-settings-nightly")
        arn = obs["backup"]["BackupDetails"]["BackupArn"]
        ctx.kept["backup"] = arn
        obs["describe"] = ddb.describe_backup(BackupArn=arn)
        obs["list"] = ddb.list_backups(TableName="tp-ddb-settings")
        obs["restore"] = ddb.restore_table_from_backup(TargetTableName="tp-ddb-settings-restored", BackupArn=arn)
        obs["restored items"] = sorted(scan_all(ddb, "tp-ddb-settings-restored"), key=lambda i: i["key"]["S"])
        obs["missing table"] = error_of(ddb.create_backup, TableName="tp-ddb-nothing", BackupName="never")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ddb = ctx.client("dynamodb")
        return {
            "original": table_state(ddb, "tp-ddb-settings"),
            "restored": table_state(ddb, "tp-ddb-settings-restored"),
            "backup": ddb.describe_backup(BackupArn=ctx.kept["backup"]),
            "backups": ddb.list_backups(TableName="tp-ddb-settings")["BackupSummaries"],
        }
