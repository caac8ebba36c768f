"""mongo-test-server seen through pymongo: a second, independent client.

The built binary is started with ``--port 0 --seed none`` (path from
``MONGO_TEST_SERVER_BIN``, else ``target/debug/mongo-test-server``); its
``listening on HOST:PORT`` line says where to connect.

    cargo build -p mongo-test-server --bin mongo-test-server
    .venv/bin/pytest tests/python/test_pymongo.py
"""

import datetime
import os
import queue
import re
import struct
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import bson
import pytest
from bson import (
    DBRef,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)
from bson.binary import Binary
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, MongoClient, monitoring
from pymongo.errors import OperationFailure

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (\S+):(\d+)")
START_TIMEOUT = 60


def server_binary():
    path = os.environ.get("MONGO_TEST_SERVER_BIN")
    return Path(path) if path else REPO / "target" / "debug" / "mongo-test-server"


class Server:
    """One running mongo-test-server process."""

    def __init__(self, *args, seed="none"):
        binary = server_binary()
        if not binary.exists():
            raise FileNotFoundError(
                f"{binary} does not exist: build it with "
                "`cargo build -p mongo-test-server --bin mongo-test-server` "
                "or set MONGO_TEST_SERVER_BIN"
            )
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(binary), "--port", "0", "--seed", seed, *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        # readline() would block forever on a server that hangs before printing, so a
        # thread reads and the wait below has a deadline.
        lines = queue.Queue()

        def pump():
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"no 'listening on' line within {START_TIMEOUT}s: {self.log()}")
            if line is None:
                self.stop()
                raise RuntimeError(f"server exited before listening: {self.log()}")
            match = LISTENING.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def client(self, **kwargs):
        kwargs.setdefault("serverSelectionTimeoutMS", 10000)
        kwargs.setdefault("directConnection", True)
        return MongoClient(self.host, self.port, **kwargs)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()
    assert s.process.returncode == 0, f"server did not stop cleanly: {s.log()}"


@pytest.fixture(scope="module")
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def db(client, request):
    """A database of the test's own (the server is fresh per module), so tests never see each
    other's data."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return client[name]


RAW = CodecOptions(document_class=RawBSONDocument)
UUID_BYTES = uuid.UUID("01234567-89ab-4cde-8f01-23456789abcd").bytes


def every_type():
    """One document with every type pymongo can encode, special values included."""
    return {
        "_id": "every-type",
        "double": 1.25,
        "double_nan": float("nan"),
        "double_inf": float("inf"),
        "double_neg_inf": float("-inf"),
        "double_neg_zero": -0.0,
        "string": "héllo wörld ✓ 🌍 日本 \u05e2\u05d1\u05e8\u05d9\u05ea",
        "document": {"a": 1, "b": {"c": "d"}},
        "array": [1, "two", 3.0, {"four": 4}, [5, [6, []]]],
        "binary_generic": Binary(b"\x00\x01\x02\xff", 0),
        "binary_function": Binary(b"function", 1),
        "binary_old": Binary(b"old", 2),
        "binary_uuid_old": Binary(UUID_BYTES, 3),
        "binary_uuid": Binary(UUID_BYTES, 4),
        "binary_md5": Binary(bytes(range(16)), 5),
        "binary_encrypted": Binary(b"\x01encrypted", 6),
        "binary_column": Binary(b"\x00column", 7),
        "binary_sensitive": Binary(b"sensitive", 8),
        "binary_user_defined": Binary(b"user defined", 0x80),
        "objectId": ObjectId("659200000000000000000001"),
        "bool_true": True,
        "bool_false": False,
        "date": datetime.datetime(2024, 1, 1, 12, 30, 15, 123000),
        "date_negative": DatetimeMS(-2_208_988_800_000),
        "date_far_future": DatetimeMS(253_402_300_799_999),
        "date_max": DatetimeMS(2**63 - 1),
        "null": None,
        "regex": Regex("^caf[ée]\\s+\\d+$", "imsux"),
        "javascript": Code("function () { return 42; }"),
        "javascriptWithScope": Code("function () { return x + y; }", {"x": 1, "y": "two"}),
        "int32": -42,
        "int32_min": -(2**31),
        "timestamp": Timestamp(1_700_000_000, 7),
        "int64": Int64(1 << 40),
        "int64_small": Int64(3),
        "int64_min": Int64(-(2**63)),
        "decimal128": Decimal128("1234.5678"),
        "decimal128_nan": Decimal128("NaN"),
        "decimal128_inf": Decimal128("Infinity"),
        "decimal128_neg_inf": Decimal128("-Infinity"),
        "decimal128_neg_zero": Decimal128("-0"),
        "decimal128_max": Decimal128("9.999999999999999999999999999999999E+6144"),
        "minKey": MinKey(),
        "maxKey": MaxKey(),
        "dbref": DBRef("products", ObjectId("659200000000000000000002"), "shop", extra="x"),
        "nested": {"deeper": {"list": [{"x": Int64(1)}, {"y": Decimal128("-1.5")}]}},
    }


def element(kind, name, payload):
    return bytes([kind]) + name.encode() + b"\x00" + payload


def string(s):
    data = s.encode()
    return struct.pack("<i", len(data) + 1) + data + b"\x00"


def document(*elements):
    body = b"".join(elements)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def test_every_bson_type_round_trips_byte_for_byte(db):
    original = every_type()
    db.types.insert_one(original)
    raw = db.get_collection("types", codec_options=RAW).find_one({"_id": "every-type"})
    assert raw is not None
    assert raw.raw == bson.encode(original)

    options = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    typed = db.get_collection("types", codec_options=options).find_one({"_id": "every-type"})
    assert isinstance(typed["int64"], Int64)
    assert isinstance(typed["int64_small"], Int64)
    assert isinstance(typed["int32"], int) and not isinstance(typed["int32"], Int64)
    assert typed["decimal128_neg_zero"] == Decimal128("-0")
    assert str(typed["decimal128_max"]) == "9.999999999999999999999999999999999E+6144"
    assert typed["double_nan"] != typed["double_nan"]
    assert str(typed["double_neg_zero"]) == "-0.0"
    assert typed["date_negative"] == datetime.datetime(1900, 1, 1)
    assert typed["date_max"] == DatetimeMS(2**63 - 1)
    for name, subtype in [
        ("binary_generic", 0), ("binary_function", 1), ("binary_old", 2),
        ("binary_uuid_old", 3), ("binary_uuid", 4), ("binary_md5", 5),
        ("binary_encrypted", 6), ("binary_column", 7), ("binary_sensitive", 8),
        ("binary_user_defined", 0x80),
    ]:
        value = typed[name]
        got = value.subtype if isinstance(value, Binary) else 0
        assert got == subtype, name
    assert typed["javascriptWithScope"].scope == {"x": 1, "y": "two"}
    assert typed["dbref"] == original["dbref"]
    assert typed["timestamp"] == Timestamp(1_700_000_000, 7)
    assert isinstance(typed["minKey"], MinKey) and isinstance(typed["maxKey"], MaxKey)


def test_deprecated_types_round_trip_byte_for_byte(db):
    """undefined, DBPointer and symbol cannot be written from Python objects; raw bytes can."""
    oid = bytes.fromhex("6592000000000000000000ff")
    raw = document(
        element(0x02, "_id", string("legacy")),
        element(0x06, "undefined", b""),
        element(0x0C, "dbPointer", string("shop.products") + oid),
        element(0x0E, "symbol", string("a_symbol")),
        element(0x03, "inside", document(element(0x06, "u", b""), element(0x0E, "s", string("ß")))),
    )
    db.legacy.insert_one(RawBSONDocument(raw))
    back = db.get_collection("legacy", codec_options=RAW).find_one({"_id": "legacy"})
    assert back.raw == raw
    typed = db.legacy.find_one({"_id": "legacy"})
    assert typed["undefined"] is None
    assert typed["symbol"] == "a_symbol"
    assert typed["dbPointer"] == DBRef("shop.products", ObjectId(oid))


def test_large_document_round_trips(db):
    big = {"_id": 1, "blob": Binary(os.urandom(4 * 1024 * 1024)), "text": "x" * (11 * 1024 * 1024)}
    db.big.insert_one(big)
    raw = db.get_collection("big", codec_options=RAW).find_one({"_id": 1})
    assert raw.raw == bson.encode(big)


def collection_infos(db):
    return {c["name"]: c for c in db.list_collections()}


def test_list_collections_round_trips_options(db):
    db.create_collection("capped", capped=True, size=65536, max=50)
    validator = {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["email"],
            "properties": {"email": {"bsonType": "string", "pattern": "@"}},
        }
    }
    db.create_collection(
        "validated",
        validator=validator,
        validationLevel="moderate",
        validationAction="warn",
        collation={"locale": "fr", "strength": 2},
    )
    pipeline = [{"$match": {"status": "open"}}, {"$project": {"_id": 1, "total": 1}}]
    db.create_collection("plain")
    db.create_collection("open_view", viewOn="plain", pipeline=pipeline)
    db.create_collection(
        "series", timeseries={"timeField": "ts", "metaField": "meta", "granularity": "hours"}
    )

    infos = collection_infos(db)
    assert {"capped", "validated", "plain", "open_view", "series"} <= set(infos)

    capped = infos["capped"]
    assert capped["type"] == "collection"
    assert capped["options"]["capped"] is True
    assert capped["options"]["size"] == 65536
    assert capped["options"]["max"] == 50
    assert isinstance(capped["info"]["uuid"], (uuid.UUID, Binary))
    assert capped["info"]["readOnly"] is False
    assert capped["idIndex"]["key"] == {"_id": 1}

    validated = infos["validated"]["options"]
    assert validated["validator"] == validator
    assert validated["validationLevel"] == "moderate"
    assert validated["validationAction"] == "warn"
    assert validated["collation"]["locale"] == "fr"
    assert validated["collation"]["strength"] == 2

    view = infos["open_view"]
    assert view["type"] == "view"
    assert view["options"] == {"viewOn": "plain", "pipeline": pipeline}
    assert "uuid" not in view.get("info", {})

    series = infos["series"]
    assert series["type"] == "timeseries"
    ts = series["options"]["timeseries"]
    assert (ts["timeField"], ts["metaField"], ts["granularity"]) == ("ts", "meta", "hours")

    assert infos["plain"]["options"] == {}
    names_only = db.list_collection_names(filter={"type": "view"})
    assert names_only == ["open_view"]

    # A capped collection keeps only its newest `max` documents.
    db.capped.insert_many([{"_id": i} for i in range(80)])
    assert [d["_id"] for d in db.capped.find()] == list(range(30, 80))


def test_view_reads_through_its_pipeline(db):
    db.plain.insert_many(
        [{"_id": i, "status": "open" if i % 2 else "closed", "total": i * 10} for i in range(10)]
    )
    db.create_collection(
        "open_view",
        viewOn="plain",
        pipeline=[{"$match": {"status": "open"}}, {"$project": {"_id": 1, "total": 1}}],
    )
    assert list(db.open_view.find().sort("_id", ASCENDING)) == [
        {"_id": i, "total": i * 10} for i in range(1, 10, 2)
    ]


def test_list_indexes_round_trips_options(db):
    coll = db.indexed
    coll.insert_many(
        [
            {"_id": i, "sku": f"S{i}", "cat": "c", "price": i, "status": "open",
             "at": datetime.datetime(2200, 1, 1), "body": "text here",
             "loc": {"type": "Point", "coordinates": [10.0 + i / 100, 50.0]}}
            for i in range(20)
        ]
    )
    coll.create_index("sku", unique=True)
    coll.create_index([("cat", ASCENDING), ("price", DESCENDING)], name="cat_price")
    coll.create_index("at", expireAfterSeconds=3600)
    coll.create_index(
        "status", name="open_only", partialFilterExpression={"status": {"$eq": "open"}}
    )
    coll.create_index([("body", "text")], weights={"body": 5}, default_language="english")
    coll.create_index([("loc", "2dsphere")])
    coll.create_index([("sku", "hashed")])
    coll.create_index("price", name="hidden_price", hidden=True)
    coll.create_index("cat", name="cat_de", collation={"locale": "de", "strength": 1})
    coll.create_index("maybe", sparse=True)

    indexes = {i["name"]: i for i in coll.list_indexes()}
    assert list(indexes) == [
        "_id_", "sku_1", "cat_price", "at_1", "open_only", "body_text",
        "loc_2dsphere", "sku_hashed", "hidden_price", "cat_de", "maybe_1",
    ]
    assert all(i["v"] == 2 for i in indexes.values())
    assert indexes["_id_"]["key"] == {"_id": 1}
    assert indexes["sku_1"]["unique"] is True
    assert list(indexes["cat_price"]["key"].items()) == [("cat", 1), ("price", -1)]
    assert indexes["at_1"]["expireAfterSeconds"] == 3600
    assert indexes["open_only"]["partialFilterExpression"] == {"status": {"$eq": "open"}}
    text = indexes["body_text"]
    assert text["key"] == {"_fts": "text", "_ftsx": 1}
    assert text["weights"] == {"body": 5}
    assert text["default_language"] == "english"
    assert indexes["loc_2dsphere"]["key"] == {"loc": "2dsphere"}
    assert indexes["sku_hashed"]["key"] == {"sku": "hashed"}
    assert indexes["hidden_price"]["hidden"] is True
    assert indexes["cat_de"]["collation"]["locale"] == "de"
    assert indexes["cat_de"]["collation"]["strength"] == 1
    assert indexes["maybe_1"]["sparse"] is True

    with pytest.raises(OperationFailure) as dup:
        coll.insert_one({"_id": 100, "sku": "S1"})
    assert dup.value.code == 11000


class CommandNames(monitoring.CommandListener):
    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_cursor_over_many_batches(server, db):
    docs = [{"_id": i, "payload": "p" * (i % 50), "n": Int64(i)} for i in range(2500)]
    db.many.insert_many(docs)
    listener = CommandNames()
    watched = server.client(event_listeners=[listener])
    try:
        coll = watched[db.name].many
        seen = [d["_id"] for d in coll.find({}, batch_size=100).sort("_id", ASCENDING)]
        assert seen == list(range(2500))
        assert listener.names.count("find") == 1
        assert listener.names.count("getMore") >= 24

        # A cursor left half-read is killed when closed, and the server forgets it.
        cursor = coll.find({}, batch_size=10)
        next(cursor)
        cursor.close()
        assert "killCursors" in listener.names
        assert coll.count_documents({"n": {"$gte": Int64(2000)}}) == 500
    finally:
        watched.close()


def test_demo_seed_decodes_in_pymongo():
    """The seed's hand-written BSON is read by an independent decoder: every document of the
    demo data set decodes, and the unusual names and types are there."""
    s = Server(seed="demo")
    try:
        with s.client() as c:
            assert {"admin", "shop", "analytics", "app-users"} <= set(c.list_database_names())
            names = set(c.shop.list_collection_names())
            assert {"café", "customer notes", "orders.archive.2024", "empty", "open_orders"} <= names
            options = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
            total = 0
            for db_name in ["shop", "analytics", "app-users"]:
                for name in c[db_name].list_collection_names():
                    if name.startswith("system."):
                        continue
                    raw = c[db_name].get_collection(name, codec_options=RAW)
                    for doc in raw.find():
                        bson.decode(doc.raw, codec_options=options)
                        total += 1
            assert total > 2000
            every = c.analytics.get_collection("all_types", codec_options=options).find_one(
                {"_id": "every-type"}
            )
            assert every["symbol"] == "a_symbol"
            assert every["undefined"] is None
            assert isinstance(every["dbPointer"], DBRef)
            assert every["dbPointer"].collection == "shop.products"
            assert every["javascriptWithScope"].scope == {"x": 1, "y": "two"}
            assert every["decimal128_nan"].to_decimal().is_nan()
            assert every["binary_uuid"].subtype == 4
            sizes = [
                len(d.raw)
                for d in c.shop.get_collection("big_documents", codec_options=RAW).find().sort("_id")
            ]
            assert sizes[-1] == 16_672_358
    finally:
        s.stop()


@pytest.fixture(scope="module")
def auth_server():
    s = Server("--user", "alice:s3cret-p@ss", "--user", "bob:hunter2")
    yield s
    s.stop()


def test_scram_sha_256_login_works(auth_server):
    with auth_server.client(
        username="alice", password="s3cret-p@ss", authSource="admin", authMechanism="SCRAM-SHA-256"
    ) as c:
        assert c.admin.command("ping")["ok"] == 1.0
        c.app.things.insert_one({"_id": 1})
        assert c.app.things.find_one() == {"_id": 1}
        status = c.admin.command("connectionStatus")
        users = status["authInfo"]["authenticatedUsers"]
        assert users == [{"user": "alice", "db": "admin"}]


def test_scram_sha_1_and_negotiated_login_work(auth_server):
    with auth_server.client(username="bob", password="hunter2", authMechanism="SCRAM-SHA-1") as c:
        assert c.admin.command("ping")["ok"] == 1.0
    with auth_server.client(username="bob", password="hunter2") as c:
        assert c.admin.command("ping")["ok"] == 1.0


def test_wrong_password_fails(auth_server):
    with auth_server.client(username="alice", password="wrong") as c:
        with pytest.raises(OperationFailure) as failure:
            c.admin.command("ping")
    assert failure.value.code == 18  # AuthenticationFailed


def test_unknown_user_fails(auth_server):
    with auth_server.client(username="mallory", password="s3cret-p@ss") as c:
        with pytest.raises(OperationFailure) as failure:
            c.admin.command("ping")
    assert failure.value.code == 18


def test_without_credentials_commands_are_refused(auth_server):
    with auth_server.client() as c:
        # hello and ping need no authentication, as with mongod --auth.
        assert c.admin.command("ping")["ok"] == 1.0
        with pytest.raises(OperationFailure) as failure:
            c.app.things.find_one()
    assert failure.value.code == 13  # Unauthorized
