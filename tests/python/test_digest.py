"""The content digest documented in docs/manifest.md, recomputed with pymongo from the live
collection and compared with what `nightdump backup` wrote in the manifest.

    cargo build --workspace --bins
    .venv/bin/pytest tests/python/test_digest.py
"""

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from bson import Decimal128, Int64, ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from test_pymongo import REPO, Server


def nightdump_binary():
    path = os.environ.get("NIGHTDUMP_BIN")
    return Path(path) if path else REPO / "target" / "debug" / "nightdump"


def digest(raw_documents):
    """docs/manifest.md: the sum, mod 2^128, of each document's SHA-256 first 16 bytes read as
    a little-endian integer, as 32 lowercase hex digits."""
    total = 0
    for raw in raw_documents:
        total += int.from_bytes(hashlib.sha256(raw).digest()[:16], "little")
    return f"{total % (1 << 128):032x}"


def test_the_manifest_digest_is_recomputed_by_another_driver():
    server = Server()
    try:
        client = server.client()
        coll = client.shop.orders
        coll.insert_many(
            [
                {"_id": i, "total": Decimal128(f"{i}.50"), "n": Int64(i), "tags": ["a", "b"][: i % 3], "ref": ObjectId()}
                for i in range(500)
            ]
        )
        client.shop.empty.insert_one({"_id": "only"})
        client.shop.empty.delete_many({})
        with tempfile.TemporaryDirectory() as dest:
            uri = f"mongodb://{server.host}:{server.port}/?directConnection=true"
            run = subprocess.run(
                [str(nightdump_binary()), "backup", "--uri", uri, "--to", dest, "--allow-inconsistent", "--quiet"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            (manifest_path,) = Path(dest).glob("*/manifest.json")
            manifest = json.loads(manifest_path.read_text())
        entries = {(n["db"], n["collection"]): n for n in manifest["namespaces"]}
        raw = client.shop.get_collection("orders", codec_options=CodecOptions(document_class=RawBSONDocument))
        # The order documents come back in does not matter.
        documents = [d.raw for d in raw.find({}).sort("_id", -1)]
        assert len(documents) == 500
        assert entries[("shop", "orders")]["digest"] == digest(documents)
        assert entries[("shop", "empty")]["digest"] == "0" * 32
        client.close()
    finally:
        server.stop()


def canonical(doc, drop=()):
    """docs/manifest.md: top-level fields in order of name, nested documents as they are."""
    from bson import SON, encode

    return encode(SON((k, doc[k]) for k in sorted(doc) if k not in drop))


def indexes_digest(specs):
    h = hashlib.sha256()
    for spec in sorted(specs, key=lambda s: s["name"].encode()):
        h.update(canonical(spec, drop=("v", "ns")))
    return h.hexdigest()


def options_digest(options):
    return hashlib.sha256(canonical(options)).hexdigest()


def test_the_index_and_options_digests_are_recomputed_by_another_driver():
    server = Server()
    try:
        client = server.client()
        db = client.shop
        db.create_collection("events", capped=True, size=1 << 20, max=5000)
        db.create_collection(
            "orders", validator={"$jsonSchema": {"bsonType": "object", "required": ["total"]}}, validationLevel="moderate"
        )
        db.orders.create_index([("customer", 1), ("createdAt", -1)], name="customer_recent")
        db.orders.create_index("ref", unique=True, partialFilterExpression={"ref": {"$exists": True}})
        db.orders.insert_one({"_id": 1, "total": 3, "ref": "a"})
        db.events.insert_one({"_id": 1})
        with tempfile.TemporaryDirectory() as dest:
            uri = f"mongodb://{server.host}:{server.port}/?directConnection=true"
            run = subprocess.run(
                [str(nightdump_binary()), "backup", "--uri", uri, "--to", dest, "--allow-inconsistent", "--quiet"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            (manifest_path,) = Path(dest).glob("*/manifest.json")
            manifest = json.loads(manifest_path.read_text())
        entries = {(n["db"], n["collection"]): n for n in manifest["namespaces"]}
        infos = {c["name"]: c for c in db.list_collections()}
        for name in ("events", "orders"):
            entry = entries[("shop", name)]
            specs = list(db[name].list_indexes())
            assert entry["indexes_digest"] == indexes_digest(specs), name
            assert entry["options_digest"] == options_digest(infos[name]["options"]), name
        # Either digest changes with what it covers.
        assert indexes_digest(list(db.orders.list_indexes())) != indexes_digest(list(db.events.list_indexes()))
        assert options_digest(infos["orders"]["options"]) != options_digest({})
        client.close()
    finally:
        server.stop()
