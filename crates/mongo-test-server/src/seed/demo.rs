//! The demo data set (`--seed demo`): small (about 18 MB, most of it one near-limit document),
//! deterministic, and shaped to exercise what a backup tool must carry through unchanged.
//!
//! | namespace | what it holds |
//! |---|---|
//! | `admin.system.version` | `{_id: "authSchema", currentVersion: 5}` |
//! | `admin.system.users` | one user document `app-users.reporter` in mongod's stored shape (SCRAM-SHA-256 credentials are fixed placeholder bytes: no password matches them) |
//! | `shop.products` | 200 products; indexes: unique `sku_1`, compound `category_1_price_-1`, text `product_text` with weights |
//! | `shop.orders` | 500 orders (every 5th pair `open`: 200 open); indexes: hashed `customerId_hashed`, partial `open_by_customer`, hidden `createdAt_-1` |
//! | `shop.orders.archive.2024` | 300 delivered orders: a dotted collection name |
//! | `shop.café` | 40 documents with unicode `_id`s and text: a unicode collection name |
//! | `shop.customer notes` | 25 notes: a collection name with a space |
//! | `shop.stores` | 30 stores with GeoJSON points; index `location_2dsphere` |
//! | `shop.empty` | no documents, one extra index `never_used_1` |
//! | `shop.open_orders` | view on `orders`: `$match {status: "open"}` then `$project` |
//! | `shop.big_documents` | 5 documents of exactly 14 B, 1 KiB, 64 KiB, 1 MiB and 16 672 358 B (15.9 MiB) |
//! | `analytics.events` | 1000 events; TTL index `expiresAt_1` (`expireAfterSeconds: 0`, dates in 2200 so nothing expires), compound `type_1_userId_1` |
//! | `analytics.measurements` | time-series (`timeField: "ts"`, `metaField: "sensor"`, `granularity: "minutes"`), 480 measurements |
//! | `analytics.daily_rollup` | capped (`size: 1048576`, `max: 100`), 60 documents |
//! | `analytics.all_types` | every BSON type: [`every_type_document`] plus documents of edge values (doubles, dates, decimals, binaries, integers, strings, keys, deep nesting) |
//! | `app-users.accounts` | 120 accounts; `validator` (`$jsonSchema`), `validationLevel: "moderate"`, `validationAction: "error"`, collation `en`/2; indexes: unique `email_1`, `username_de` with its own collation |
//!
//! [`DEMO_NAMESPACES`] states the same in data; a unit test keeps it equal to what
//! [`crate::seed::commands`] generates.

use bson::RawDocumentBuf;

use super::raw::RawWriter;
use super::rng::SplitMix64;
use super::words::{CITIES, COUNTRIES, FIRST_NAMES, LAST_NAMES, WORDS};

/// What `listCollections` reports as a namespace's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    Collection,
    View,
    Timeseries,
}

impl NamespaceKind {
    /// The `type` string of `listCollections` and of mongodump's prelude.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Collection => "collection",
            NamespaceKind::View => "view",
            NamespaceKind::Timeseries => "timeseries",
        }
    }
}

/// One namespace of the demo data set, as a client should find it after seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoNamespace {
    pub db: &'static str,
    pub collection: &'static str,
    pub kind: NamespaceKind,
    /// Documents `find` returns: for a view, those its pipeline selects from the seeded source;
    /// for a time-series collection, the measurements. In `admin` the server may hold more
    /// documents of its own (the featureCompatibilityVersion document, users made by `--user`).
    pub documents: u64,
    /// Index names `listIndexes` reports, in creation order. `_id_` comes first for
    /// collections; views have none; a time-series collection has mongod 7.0's automatic
    /// `<metaField>_1_<timeField>_1` index and no `_id_`.
    pub indexes: &'static [&'static str],
    /// The option names given to `create` (and so expected in `listCollections` `options`),
    /// in order. Empty for collections created implicitly by their first insert.
    pub options: &'static [&'static str],
}

impl DemoNamespace {
    /// `db.collection`.
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.db, self.collection)
    }
}

const fn ns(
    db: &'static str,
    collection: &'static str,
    kind: NamespaceKind,
    documents: u64,
    indexes: &'static [&'static str],
    options: &'static [&'static str],
) -> DemoNamespace {
    DemoNamespace {
        db,
        collection,
        kind,
        documents,
        indexes,
        options,
    }
}

use NamespaceKind::{Collection, Timeseries, View};

/// Every namespace the demo seed creates, in creation order.
pub const DEMO_NAMESPACES: &[DemoNamespace] = &[
    ns("admin", "system.version", Collection, 1, &["_id_"], &[]),
    ns("admin", "system.users", Collection, 1, &["_id_"], &[]),
    ns(
        "shop",
        "products",
        Collection,
        PRODUCTS as u64,
        &["_id_", "sku_1", "category_1_price_-1", "product_text"],
        &[],
    ),
    ns(
        "shop",
        "orders",
        Collection,
        ORDERS as u64,
        &[
            "_id_",
            "customerId_hashed",
            "open_by_customer",
            "createdAt_-1",
        ],
        &[],
    ),
    ns(
        "shop",
        "orders.archive.2024",
        Collection,
        ARCHIVED_ORDERS as u64,
        &["_id_"],
        &[],
    ),
    ns("shop", "café", Collection, CAFE as u64, &["_id_"], &[]),
    ns(
        "shop",
        "customer notes",
        Collection,
        NOTES as u64,
        &["_id_"],
        &[],
    ),
    ns(
        "shop",
        "stores",
        Collection,
        STORES as u64,
        &["_id_", "location_2dsphere"],
        &[],
    ),
    ns(
        "shop",
        "empty",
        Collection,
        0,
        &["_id_", "never_used_1"],
        &[],
    ),
    ns(
        "shop",
        "open_orders",
        View,
        OPEN_ORDERS as u64,
        &[],
        &["viewOn", "pipeline"],
    ),
    ns(
        "shop",
        "big_documents",
        Collection,
        BIG_SIZES.len() as u64,
        &["_id_"],
        &[],
    ),
    ns(
        "analytics",
        "events",
        Collection,
        EVENTS as u64,
        &["_id_", "expiresAt_1", "type_1_userId_1"],
        &[],
    ),
    ns(
        "analytics",
        "measurements",
        Timeseries,
        (SENSORS * MINUTES) as u64,
        &["sensor_1_ts_1"],
        &["timeseries"],
    ),
    ns(
        "analytics",
        "daily_rollup",
        Collection,
        ROLLUP_DAYS as u64,
        &["_id_"],
        &["capped", "size", "max"],
    ),
    ns("analytics", "all_types", Collection, 9, &["_id_"], &[]),
    ns(
        "app-users",
        "accounts",
        Collection,
        ACCOUNTS as u64,
        &["_id_", "email_1", "username_de"],
        &[
            "validator",
            "validationLevel",
            "validationAction",
            "collation",
        ],
    ),
];

const PRODUCTS: u32 = 200;
const ORDERS: u32 = 500;
/// Orders whose `i % 5` is 0 or 1 are open.
const OPEN_ORDERS: u32 = ORDERS / 5 * 2;
const ARCHIVED_ORDERS: u32 = 300;
const CAFE: u32 = 40;
const NOTES: u32 = 25;
const STORES: u32 = 30;
const EVENTS: u32 = 1000;
const SENSORS: u32 = 4;
const MINUTES: u32 = 120;
const ROLLUP_DAYS: u32 = 60;
const ACCOUNTS: u32 = 120;

/// Exact encoded sizes of the `shop.big_documents` documents; the last is 15.9 MiB, just under
/// mongod's 16 MiB limit for stored documents.
pub const BIG_SIZES: [usize; 5] = [14, 1024, 64 * 1024, 1024 * 1024, 16_672_358];

/// 2024-01-01T00:00:00Z.
const BASE_MILLIS: i64 = 1_704_067_200_000;
/// 2200-01-01T00:00:00Z, far enough ahead that TTL never removes demo documents.
const FAR_FUTURE_MILLIS: i64 = 7_258_118_400_000;

const MAX_BATCH_DOCS: usize = 1000;
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A deterministic ObjectId: creation second, a fixed marker, the collection tag and a counter.
fn oid(tag: u8, n: u32) -> [u8; 12] {
    let t = (BASE_MILLIS / 1000) as u32 + n;
    let t = t.to_be_bytes();
    let c = n.to_be_bytes();
    [
        t[0], t[1], t[2], t[3], 0x6e, 0x64, 0x6d, 0x6f, tag, c[1], c[2], c[3],
    ]
}

/// Decimal128 of `coefficient * 10^exponent` (non-negative coefficient below 2^64).
fn decimal(negative: bool, coefficient: u64, exponent: i32) -> (u64, u64) {
    let biased = (6176 + exponent) as u64;
    let sign = if negative { 1u64 << 63 } else { 0 };
    (sign | (biased << 49), coefficient)
}

const DEC_NAN: (u64, u64) = (0x7C00_0000_0000_0000, 0);
const DEC_INF: (u64, u64) = (0x7800_0000_0000_0000, 0);
const DEC_NEG_INF: (u64, u64) = (0xF800_0000_0000_0000, 0);
const DEC_NEG_ZERO: (u64, u64) = (0xB040_0000_0000_0000, 0);
/// 9.999999999999999999999999999999999E+6144, the largest finite decimal128.
const DEC_MAX: (u64, u64) = (0x5FFF_ED09_BEAD_87C0, 0x378D_8E63_FFFF_FFFF);
/// 1E-6176, the smallest positive decimal128.
const DEC_MIN_POSITIVE: (u64, u64) = (0, 1);

fn words(rng: &mut SplitMix64, n: u32) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}

/// Collects commands, batching inserts as mongorestore does.
struct Commands {
    out: Vec<(String, RawDocumentBuf)>,
}

impl Commands {
    fn push(&mut self, db: &str, w: RawWriter) {
        self.out.push((db.to_string(), w.finish()));
    }

    fn create(&mut self, db: &str, coll: &str, options: impl FnOnce(&mut RawWriter)) {
        let mut w = RawWriter::new();
        w.str("create", coll);
        options(&mut w);
        self.push(db, w);
    }

    /// `specs` writes each index spec's fields (`key`, `name`, options) into an open document.
    fn create_indexes(&mut self, db: &str, coll: &str, specs: &[&dyn Fn(&mut RawWriter)]) {
        let mut w = RawWriter::new();
        w.str("createIndexes", coll);
        w.start_array("indexes");
        for spec in specs {
            w.start_doc("");
            spec(&mut w);
            w.end();
        }
        w.end();
        self.push(db, w);
    }

    fn insert(&mut self, db: &str, coll: &str, docs: impl IntoIterator<Item = RawDocumentBuf>) {
        let mut batch: Option<(RawWriter, usize)> = None;
        for doc in docs {
            let full = batch.as_ref().is_some_and(|(w, n)| {
                *n >= MAX_BATCH_DOCS || w.len() + doc.as_bytes().len() > MAX_BATCH_BYTES
            });
            if full {
                if let Some((w, _)) = batch.take() {
                    self.push(db, w);
                }
            }
            let (w, n) = batch.get_or_insert_with(|| {
                let mut w = RawWriter::with_capacity(64 * 1024);
                w.str("insert", coll);
                w.bool("ordered", true);
                w.start_array("documents");
                (w, 0)
            });
            w.raw_doc("", doc.as_bytes());
            *n += 1;
        }
        if let Some((w, _)) = batch {
            self.push(db, w);
        }
    }
}

/// Builds every demo command, in order.
pub(crate) fn commands() -> Vec<(String, RawDocumentBuf)> {
    let mut c = Commands { out: Vec::new() };
    admin(&mut c);
    shop(&mut c);
    analytics(&mut c);
    app_users(&mut c);
    c.out
}

fn admin(c: &mut Commands) {
    let mut w = RawWriter::new();
    w.str("_id", "authSchema");
    w.i32("currentVersion", 5);
    c.insert("admin", "system.version", [w.finish()]);

    let mut rng = SplitMix64::new(0xAD_0001);
    let mut key = |len: usize| {
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes);
        base64(&bytes)
    };
    let (salt, stored, server) = (key(28), key(32), key(32));
    let mut w = RawWriter::new();
    w.str("_id", "app-users.reporter");
    w.binary(
        "userId",
        4,
        &[
            0x5e, 0xed, 0xde, 0x30, 0x00, 0x01, 0x40, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 1,
        ],
    );
    w.str("user", "reporter");
    w.str("db", "app-users");
    w.start_doc("credentials");
    w.start_doc("SCRAM-SHA-256");
    w.i32("iterationCount", 15000);
    w.str("salt", &salt);
    w.str("storedKey", &stored);
    w.str("serverKey", &server);
    w.end();
    w.end();
    w.start_array("roles");
    w.start_doc("");
    w.str("role", "read");
    w.str("db", "app-users");
    w.end();
    w.end();
    c.insert("admin", "system.users", [w.finish()]);
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

const CATEGORIES: &[&str] = &[
    "books", "garden", "kitchen", "toys", "music", "outdoor", "office", "tea",
];
const ORDER_STATUS: [&str; 5] = ["open", "open", "shipped", "delivered", "cancelled"];

fn shop(c: &mut Commands) {
    let mut rng = SplitMix64::new(0x5809_0001);
    let products: Vec<_> = (0..PRODUCTS)
        .map(|i| {
            let mut w = RawWriter::new();
            w.oid("_id", oid(1, i));
            w.str("sku", &format!("SKU-{i:05}"));
            w.str("name", &format!("{} {}", rng.pick(WORDS), rng.pick(WORDS)));
            w.str("description", &words(&mut rng, 12));
            w.str("category", rng.pick(CATEGORIES));
            w.f64("price", rng.range_i64(199, 99_999) as f64 / 100.0);
            w.start_array("tags");
            for _ in 0..=rng.below(3) {
                w.str("", rng.pick(WORDS));
            }
            w.end();
            w.i32("stock", rng.below(500) as i32);
            w.start_doc("dimensions");
            w.f64("w", f64::from(rng.below(1000)) / 10.0);
            w.f64("h", f64::from(rng.below(1000)) / 10.0);
            w.f64("d", f64::from(rng.below(1000)) / 10.0);
            w.end();
            w.bool("active", i % 17 != 0);
            w.finish()
        })
        .collect();
    c.insert("shop", "products", products);
    c.create_indexes(
        "shop",
        "products",
        &[
            &|w| {
                w.start_doc("key");
                w.i32("sku", 1);
                w.end();
                w.str("name", "sku_1");
                w.bool("unique", true);
            },
            &|w| {
                w.start_doc("key");
                w.i32("category", 1);
                w.i32("price", -1);
                w.end();
                w.str("name", "category_1_price_-1");
            },
            &|w| {
                w.start_doc("key");
                w.str("name", "text");
                w.str("description", "text");
                w.end();
                w.str("name", "product_text");
                w.start_doc("weights");
                w.i32("name", 10);
                w.i32("description", 2);
                w.end();
                w.str("default_language", "english");
            },
        ],
    );

    let orders = (0..ORDERS).map(|i| order(&mut rng, 2, i, ORDER_STATUS[(i % 5) as usize], 2025));
    let orders: Vec<_> = orders.collect();
    c.insert("shop", "orders", orders);
    c.create_indexes(
        "shop",
        "orders",
        &[
            &|w| {
                w.start_doc("key");
                w.str("customerId", "hashed");
                w.end();
                w.str("name", "customerId_hashed");
            },
            &|w| {
                w.start_doc("key");
                w.i32("customerId", 1);
                w.i32("createdAt", -1);
                w.end();
                w.str("name", "open_by_customer");
                w.start_doc("partialFilterExpression");
                w.start_doc("status");
                w.str("$eq", "open");
                w.end();
                w.end();
            },
            &|w| {
                w.start_doc("key");
                w.i32("createdAt", -1);
                w.end();
                w.str("name", "createdAt_-1");
                w.bool("hidden", true);
            },
        ],
    );

    let archived: Vec<_> = (0..ARCHIVED_ORDERS)
        .map(|i| order(&mut rng, 3, i, "delivered", 2024))
        .collect();
    c.insert("shop", "orders.archive.2024", archived);

    const UNICODE: &[&str] = &[
        "crème brûlée",
        "naïve façade",
        "日本語のテキスト",
        "Ελληνικά γράμματα",
        "עברית מימין לשמאל",
        "العربية",
        "emoji 🎉☕🧁",
        "Z\u{0351}\u{036b}\u{0343}\u{036a} combining",
        "\u{10FFFF} last code point",
        "ẞ straße",
    ];
    let cafe: Vec<_> = (0..CAFE)
        .map(|i| {
            let mut w = RawWriter::new();
            w.str("_id", &format!("café-{i:02}"));
            w.str("nom", UNICODE[i as usize % UNICODE.len()]);
            w.str("catégorie", rng.pick(CATEGORIES));
            w.f64("prix", f64::from(rng.below(2000)) / 100.0);
            w.finish()
        })
        .collect();
    c.insert("shop", "café", cafe);

    let notes: Vec<_> = (0..NOTES)
        .map(|i| {
            let mut w = RawWriter::new();
            w.i32("_id", i as i32);
            w.i32("customerId", rng.below(97) as i32);
            w.str("author", rng.pick(FIRST_NAMES));
            w.str("note", &words(&mut rng, 20));
            w.datetime("at", BASE_MILLIS + i64::from(i) * 86_400_000);
            w.finish()
        })
        .collect();
    c.insert("shop", "customer notes", notes);

    let stores: Vec<_> = (0..STORES)
        .map(|i| {
            let mut w = RawWriter::new();
            w.i32("_id", i as i32 + 1);
            w.str("name", &format!("{} {}", rng.pick(CITIES), rng.pick(WORDS)));
            w.start_doc("location");
            w.str("type", "Point");
            w.start_array("coordinates");
            w.f64("", f64::from(rng.below(3_600_000)) / 10_000.0 - 180.0);
            w.f64("", f64::from(rng.below(1_700_000)) / 10_000.0 - 85.0);
            w.end();
            w.end();
            w.finish()
        })
        .collect();
    c.insert("shop", "stores", stores);
    c.create_indexes(
        "shop",
        "stores",
        &[&|w| {
            w.start_doc("key");
            w.str("location", "2dsphere");
            w.end();
            w.str("name", "location_2dsphere");
        }],
    );

    c.create("shop", "empty", |_| {});
    c.create_indexes(
        "shop",
        "empty",
        &[&|w| {
            w.start_doc("key");
            w.i32("never_used", 1);
            w.end();
            w.str("name", "never_used_1");
        }],
    );

    c.create("shop", "open_orders", |w| {
        w.str("viewOn", "orders");
        w.start_array("pipeline");
        w.start_doc("");
        w.start_doc("$match");
        w.str("status", "open");
        w.end();
        w.end();
        w.start_doc("");
        w.start_doc("$project");
        w.i32("customerId", 1);
        w.i32("total", 1);
        w.i32("createdAt", 1);
        w.end();
        w.end();
        w.end();
    });

    let big: Vec<_> = BIG_SIZES
        .iter()
        .enumerate()
        .map(|(i, size)| big_document(i as i32, *size))
        .collect();
    c.insert("shop", "big_documents", big);
}

fn order(rng: &mut SplitMix64, tag: u8, i: u32, status: &str, year: i64) -> RawDocumentBuf {
    let mut w = RawWriter::new();
    w.oid("_id", oid(tag, i));
    w.i32("customerId", (i * 7 % 97) as i32);
    w.str("status", status);
    w.start_array("items");
    let mut cents = 0u64;
    for _ in 0..=rng.below(3) {
        let qty = rng.below(5) + 1;
        let price = u64::from(rng.below(20_000) + 100);
        cents += price * u64::from(qty);
        w.start_doc("");
        w.str("sku", &format!("SKU-{:05}", rng.below(PRODUCTS)));
        w.i32("qty", qty as i32);
        let (hi, lo) = decimal(false, price, -2);
        w.decimal128("price", hi, lo);
        w.end();
    }
    w.end();
    let (hi, lo) = decimal(false, cents, -2);
    w.decimal128("total", hi, lo);
    let year_start = BASE_MILLIS + (year - 2024) * 31_622_400_000;
    w.datetime("createdAt", year_start + i64::from(i) * 3_600_000);
    w.start_doc("shipping");
    w.str("city", rng.pick(CITIES));
    w.str("country", rng.pick(COUNTRIES));
    w.end();
    w.finish()
}

/// A document of exactly `size` encoded bytes (`size >= 14`).
fn big_document(id: i32, size: usize) -> RawDocumentBuf {
    // {_id: int32} alone is 14 bytes.
    if size <= 14 {
        let mut w = RawWriter::new();
        w.i32("_id", id);
        return w.finish();
    }
    let mut w = RawWriter::with_capacity(size);
    w.i32("_id", id);
    w.i64("size", size as i64);
    if size > 1 << 20 {
        // Some incompressible bytes next to the compressible filler.
        let mut blob = vec![0u8; 1 << 20];
        SplitMix64::new(0xB16_0000 + id as u64).fill(&mut blob);
        w.binary("blob", 0, &blob);
    }
    // A string element named "fill" costs 1 + 5 + 4 + len + 1 bytes; the document's
    // terminator one more.
    let fill = size.saturating_sub(w.len() + 1 + 5 + 4 + 1 + 1);
    // A few KiB of words repeated: quick to build, and gzip shrinks it as it would a log.
    let mut rng = SplitMix64::new(0xF111 + id as u64);
    let paragraph = words(&mut rng, 1000) + "\n";
    w.str_with("fill", |buf| {
        let end = buf.len() + fill;
        while buf.len() < end {
            let take = paragraph.len().min(end - buf.len());
            buf.extend_from_slice(&paragraph.as_bytes()[..take]);
        }
    });
    w.finish()
}

const EVENT_TYPES: &[&str] = &[
    "page_view",
    "click",
    "search",
    "add_to_cart",
    "purchase",
    "logout",
];

fn analytics(c: &mut Commands) {
    let mut rng = SplitMix64::new(0xA7A1_0001);
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let mut w = RawWriter::new();
            w.oid("_id", oid(4, i));
            w.str("type", rng.pick(EVENT_TYPES));
            w.i64("userId", i64::from(rng.below(300)) + 1_000_000);
            w.datetime("at", BASE_MILLIS + i64::from(i) * 61_000);
            w.datetime("expiresAt", FAR_FUTURE_MILLIS + i64::from(i) * 60_000);
            w.start_doc("props");
            w.str(
                "page",
                &format!("/{}/{}", rng.pick(CATEGORIES), rng.pick(WORDS)),
            );
            w.i32("ms", rng.below(3000) as i32);
            w.bool("mobile", rng.chance(40));
            w.end();
            w.start_array("tags");
            for _ in 0..rng.below(4) {
                w.str("", rng.pick(WORDS));
            }
            w.end();
            w.finish()
        })
        .collect();
    c.insert("analytics", "events", events);
    c.create_indexes(
        "analytics",
        "events",
        &[
            &|w| {
                w.start_doc("key");
                w.i32("expiresAt", 1);
                w.end();
                w.str("name", "expiresAt_1");
                w.i32("expireAfterSeconds", 0);
            },
            &|w| {
                w.start_doc("key");
                w.i32("type", 1);
                w.i32("userId", 1);
                w.end();
                w.str("name", "type_1_userId_1");
            },
        ],
    );

    c.create("analytics", "measurements", |w| {
        w.start_doc("timeseries");
        w.str("timeField", "ts");
        w.str("metaField", "sensor");
        w.str("granularity", "minutes");
        w.end();
    });
    let measurements: Vec<_> = (0..MINUTES)
        .flat_map(|m| (0..SENSORS).map(move |s| (m, s)))
        .map(|(m, s)| {
            let mut w = RawWriter::new();
            w.datetime("ts", BASE_MILLIS + i64::from(m) * 60_000);
            w.start_doc("sensor");
            w.str("id", &format!("sensor-{s}"));
            w.str("site", CITIES[s as usize]);
            w.end();
            w.oid("_id", oid(5, m * SENSORS + s));
            w.f64("temperature", 15.0 + f64::from(rng.below(2000)) / 100.0);
            w.f64("humidity", f64::from(rng.below(1000)) / 10.0);
            w.finish()
        })
        .collect();
    c.insert("analytics", "measurements", measurements);

    c.create("analytics", "daily_rollup", |w| {
        w.bool("capped", true);
        w.i64("size", 1_048_576);
        w.i64("max", 100);
    });
    let rollup: Vec<_> = (0..ROLLUP_DAYS)
        .map(|d| {
            let mut w = RawWriter::new();
            w.i32("_id", d as i32);
            w.datetime("day", BASE_MILLIS + i64::from(d) * 86_400_000);
            w.i64("visits", i64::from(rng.below(100_000)));
            let (hi, lo) = decimal(false, u64::from(rng.below(10_000_000)), -2);
            w.decimal128("revenue", hi, lo);
            w.finish()
        })
        .collect();
    c.insert("analytics", "daily_rollup", rollup);

    c.insert("analytics", "all_types", edge_documents());
}

/// One document holding every BSON type (`_id: "every-type"`), with special values beside the
/// ordinary ones. Tests insert it and expect the same bytes back.
pub fn every_type_document() -> RawDocumentBuf {
    let mut w = RawWriter::new();
    w.str("_id", "every-type");
    w.f64("double", 1.25);
    w.f64("double_nan", f64::NAN);
    w.f64("double_inf", f64::INFINITY);
    w.f64("double_neg_inf", f64::NEG_INFINITY);
    w.f64("double_neg_zero", -0.0);
    w.str("string", "héllo wörld ✓ 🌍 日本");
    w.start_doc("document");
    w.i32("a", 1);
    w.start_doc("b");
    w.str("c", "d");
    w.end();
    w.end();
    w.start_array("array");
    w.i32("", 1);
    w.str("", "two");
    w.f64("", 3.0);
    w.start_doc("");
    w.i32("four", 4);
    w.end();
    w.start_array("");
    w.i32("", 5);
    w.start_array("");
    w.i32("", 6);
    w.end();
    w.end();
    w.end();
    w.binary("binary_generic", 0, b"\x00\x01\x02\xff");
    w.binary("binary_function", 1, b"function");
    // Subtype 2 carries its own length prefix inside the payload.
    w.binary("binary_old", 2, &[3, 0, 0, 0, b'o', b'l', b'd']);
    w.binary("binary_uuid_old", 3, &UUID_BYTES);
    w.binary("binary_uuid", 4, &UUID_BYTES);
    w.binary(
        "binary_md5",
        5,
        &[
            0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
            0x42, 0x7e,
        ],
    );
    w.binary("binary_encrypted", 6, b"\x01encrypted-payload");
    w.binary("binary_column", 7, b"\x00column");
    w.binary("binary_sensitive", 8, b"sensitive");
    w.binary("binary_user_defined", 0x80, b"user defined");
    w.undefined("undefined");
    w.oid(
        "objectId",
        [
            0x65, 0x92, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    w.bool("bool_true", true);
    w.bool("bool_false", false);
    w.datetime("date", BASE_MILLIS);
    w.datetime("date_negative", -2_208_988_800_000);
    w.datetime("date_far_future", 253_402_300_799_999);
    w.null("null");
    w.regex("regex", "^caf[ée]\\s+\\d+$", "imsux");
    w.db_pointer("dbPointer", "shop.products", oid(1, 0));
    w.code("javascript", "function () { return 42; }");
    w.symbol("symbol", "a_symbol");
    let mut scope = RawWriter::new();
    scope.i32("x", 1);
    scope.str("y", "two");
    let scope = scope.finish();
    w.code_with_scope(
        "javascriptWithScope",
        "function () { return x + y; }",
        scope.as_bytes(),
    );
    w.i32("int32", -42);
    w.timestamp("timestamp", 1_700_000_000, 7);
    w.i64("int64", 1 << 40);
    let (hi, lo) = decimal(false, 12_345_678, -4);
    w.decimal128("decimal128", hi, lo);
    w.decimal128("decimal128_nan", DEC_NAN.0, DEC_NAN.1);
    w.decimal128("decimal128_inf", DEC_INF.0, DEC_INF.1);
    w.decimal128("decimal128_neg_zero", DEC_NEG_ZERO.0, DEC_NEG_ZERO.1);
    w.min_key("minKey");
    w.max_key("maxKey");
    w.finish()
}

const UUID_BYTES: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde, 0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
];

/// `analytics.all_types`: the every-type document, then one document per family of edge values.
fn edge_documents() -> Vec<RawDocumentBuf> {
    let mut docs = vec![every_type_document()];

    let mut w = RawWriter::new();
    w.str("_id", "doubles");
    w.start_array("values");
    for v in [
        0.0,
        -0.0,
        1.5,
        -1.5,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        f64::MIN,
        std::f64::consts::PI,
        1e15 + 0.3,
    ] {
        w.f64("", v);
    }
    w.end();
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "dates");
    w.start_array("values");
    for v in [
        0,
        -1,
        -2_208_988_800_000,
        -62_135_596_800_000,
        253_402_300_799_999,
        4_102_444_800_000,
        i64::MIN,
        i64::MAX,
    ] {
        w.datetime("", v);
    }
    w.end();
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "decimals");
    w.start_array("values");
    for (hi, lo) in [
        DEC_NAN,
        DEC_INF,
        DEC_NEG_INF,
        decimal(false, 0, 0),
        DEC_NEG_ZERO,
        decimal(false, 10, -1),
        decimal(true, 15, -1),
        decimal(false, u64::MAX, 0),
        DEC_MAX,
        DEC_MIN_POSITIVE,
    ] {
        w.decimal128("", hi, lo);
    }
    w.end();
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "binaries");
    w.binary("empty", 0, &[]);
    for subtype in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0xff] {
        let name = format!("subtype_{subtype}");
        if subtype == 2 {
            w.binary(&name, 2, &[4, 0, 0, 0, 1, 2, 3, 4]);
        } else {
            w.binary(&name, subtype, &UUID_BYTES);
        }
    }
    let mut large = vec![0u8; 64 * 1024];
    SplitMix64::new(0xB1A5).fill(&mut large);
    w.binary("large", 0, &large);
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "integers");
    for (name, v) in [
        ("i32_min", i32::MIN),
        ("i32_max", i32::MAX),
        ("i32_zero", 0),
        ("i32_neg", -1),
    ] {
        w.i32(name, v);
    }
    for (name, v) in [
        ("i64_min", i64::MIN),
        ("i64_max", i64::MAX),
        ("i64_zero", 0),
    ] {
        w.i64(name, v);
    }
    w.start_doc("timestamps");
    w.timestamp("zero", 0, 0);
    w.timestamp("max", u32::MAX, u32::MAX);
    w.timestamp("one", 1, 1);
    w.end();
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "strings");
    w.str("empty", "");
    w.str("controls", "tab\tnewline\ncr\r\u{1}\u{7f}");
    w.str("astral", "𝄞 𐍈 🦀 \u{10FFFF}");
    w.str("replacement", "\u{FFFD}");
    w.str("long", &"0123456789abcdef".repeat(640));
    w.regex("regex_empty", "", "");
    w.regex("regex_unicode", "^日本.*ü$", "u");
    w.code("code_empty", "");
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "keys");
    w.i32("clé", 1);
    w.i32("日本", 2);
    w.i32("a key with spaces", 3);
    w.start_doc("nested");
    w.i32("a.b", 4);
    w.i32("$dollar", 5);
    w.end();
    docs.push(w.finish());

    let mut w = RawWriter::new();
    w.str("_id", "deep");
    const DEPTH: u32 = 50;
    for level in 0..DEPTH {
        if level % 2 == 0 {
            w.start_doc("d");
            w.i32("level", level as i32);
        } else {
            w.start_array("a");
            w.i32("", level as i32);
        }
    }
    for _ in 0..DEPTH {
        w.end();
    }
    docs.push(w.finish());

    docs
}

fn app_users(c: &mut Commands) {
    c.create("app-users", "accounts", |w| {
        w.start_doc("validator");
        w.start_doc("$jsonSchema");
        w.str("bsonType", "object");
        w.start_array("required");
        w.str("", "email");
        w.str("", "username");
        w.end();
        w.start_doc("properties");
        w.start_doc("email");
        w.str("bsonType", "string");
        w.str("pattern", "@");
        w.end();
        w.start_doc("age");
        w.str("bsonType", "int");
        w.i32("minimum", 0);
        w.end();
        w.end();
        w.end();
        w.end();
        w.str("validationLevel", "moderate");
        w.str("validationAction", "error");
        w.start_doc("collation");
        w.str("locale", "en");
        w.i32("strength", 2);
        w.end();
    });
    let mut rng = SplitMix64::new(0xACC0_0001);
    let accounts: Vec<_> = (0..ACCOUNTS)
        .map(|i| {
            let first = rng.pick(FIRST_NAMES);
            let last = rng.pick(LAST_NAMES);
            let mut w = RawWriter::new();
            w.i64("_id", 10_000 + i64::from(i));
            w.str("username", &format!("{first}{last}{i}"));
            w.str(
                "email",
                &format!(
                    "{}.{}{i}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
            );
            w.i32("age", 18 + rng.below(60) as i32);
            w.datetime(
                "createdAt",
                BASE_MILLIS - i64::from(rng.below(1000)) * 86_400_000,
            );
            w.start_array("roles");
            w.str("", "reader");
            if i % 10 == 0 {
                w.str("", "admin");
            }
            w.end();
            w.finish()
        })
        .collect();
    c.insert("app-users", "accounts", accounts);
    c.create_indexes(
        "app-users",
        "accounts",
        &[
            &|w| {
                w.start_doc("key");
                w.i32("email", 1);
                w.end();
                w.str("name", "email_1");
                w.bool("unique", true);
            },
            &|w| {
                w.start_doc("key");
                w.i32("username", 1);
                w.end();
                w.str("name", "username_de");
                w.start_doc("collation");
                w.str("locale", "de");
                w.i32("strength", 1);
                w.end();
            },
        ],
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bson::{RawBsonRef, RawDocument};

    use super::*;

    fn name(cmd: &RawDocument) -> (String, String) {
        let (k, v) = cmd.into_iter().next().unwrap().unwrap();
        (k.to_string(), v.as_str().unwrap().to_string())
    }

    #[derive(Default, Debug)]
    struct Seen {
        kind: Option<NamespaceKind>,
        options: Vec<String>,
        indexes: Vec<String>,
        docs: Vec<RawDocumentBuf>,
        view_on: Option<(String, String, String)>,
    }

    /// Replays the commands into a plain model, independent of DEMO_NAMESPACES.
    fn replay() -> BTreeMap<String, Seen> {
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let mut order = Vec::new();
        for (db, cmd) in commands() {
            let (verb, coll) = name(&cmd);
            let key = format!("{db}.{coll}");
            if !seen.contains_key(&key) {
                order.push(key.clone());
            }
            let entry = seen.entry(key).or_default();
            match verb.as_str() {
                "create" => {
                    entry.options = cmd
                        .iter()
                        .skip(1)
                        .map(|e| e.unwrap().0.to_string())
                        .collect();
                    entry.kind = Some(if cmd.get("viewOn").unwrap().is_some() {
                        let pipeline = cmd.get_array("pipeline").unwrap();
                        let first = pipeline.into_iter().next().unwrap().unwrap();
                        let matcher = first.as_document().unwrap().get_document("$match").unwrap();
                        let (field, value) = matcher.into_iter().next().unwrap().unwrap();
                        entry.view_on = Some((
                            format!("{db}.{}", cmd.get_str("viewOn").unwrap()),
                            field.to_string(),
                            value.as_str().unwrap().to_string(),
                        ));
                        NamespaceKind::View
                    } else if cmd.get("timeseries").unwrap().is_some() {
                        NamespaceKind::Timeseries
                    } else {
                        NamespaceKind::Collection
                    });
                }
                "createIndexes" => {
                    for spec in cmd.get_array("indexes").unwrap() {
                        let spec = spec.unwrap();
                        entry.indexes.push(
                            spec.as_document()
                                .unwrap()
                                .get_str("name")
                                .unwrap()
                                .to_string(),
                        );
                    }
                }
                "insert" => {
                    let docs = cmd.get_array("documents").unwrap();
                    let n = docs.into_iter().count();
                    assert!(n <= MAX_BATCH_DOCS);
                    assert!(n == 1 || cmd.as_bytes().len() <= MAX_BATCH_BYTES + 4096);
                    for d in docs {
                        entry
                            .docs
                            .push(d.unwrap().as_document().unwrap().to_raw_document_buf());
                    }
                }
                other => panic!("unexpected command {other}"),
            }
        }
        assert_eq!(
            order,
            DEMO_NAMESPACES
                .iter()
                .map(|n| n.namespace())
                .collect::<Vec<_>>(),
            "creation order"
        );
        seen
    }

    #[test]
    fn namespaces_table_matches_the_commands() {
        let seen = replay();
        assert_eq!(seen.len(), DEMO_NAMESPACES.len());
        for expected in DEMO_NAMESPACES {
            let got = &seen[&expected.namespace()];
            let kind = got.kind.unwrap_or(NamespaceKind::Collection);
            assert_eq!(kind, expected.kind, "{}", expected.namespace());
            assert_eq!(got.options, expected.options, "{}", expected.namespace());
            let documents = match &got.view_on {
                Some((source, field, value)) => seen[source]
                    .docs
                    .iter()
                    .filter(|d| d.get_str(field).ok() == Some(value.as_str()))
                    .count(),
                None => got.docs.len(),
            };
            assert_eq!(
                documents as u64,
                expected.documents,
                "{}",
                expected.namespace()
            );
            let mut indexes: Vec<String> = match kind {
                NamespaceKind::Collection => vec!["_id_".into()],
                NamespaceKind::View => vec![],
                NamespaceKind::Timeseries => vec!["sensor_1_ts_1".into()],
            };
            indexes.extend(got.indexes.iter().cloned());
            assert_eq!(indexes, expected.indexes, "{}", expected.namespace());
            let mut ids: Vec<String> = got
                .docs
                .iter()
                .map(|d| format!("{:?}", d.get("_id").unwrap().expect("explicit _id")))
                .collect();
            let n = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), n, "unique _ids in {}", expected.namespace());
        }
    }

    #[test]
    fn same_bytes_every_time() {
        let a = commands();
        let b = commands();
        assert_eq!(a, b);
        assert!(a.len() > 20);
    }

    #[test]
    fn big_documents_have_their_exact_sizes() {
        let seen = replay();
        let sizes: Vec<usize> = seen["shop.big_documents"]
            .docs
            .iter()
            .map(|d| d.as_bytes().len())
            .collect();
        assert_eq!(sizes, BIG_SIZES);
        assert!(BIG_SIZES[4] < 16 * 1024 * 1024 && BIG_SIZES[4] > 16 * 1024 * 1024 - 200 * 1024);
    }

    #[test]
    fn every_type_is_present_and_parses() {
        let doc = every_type_document();
        let mut types = std::collections::BTreeSet::new();
        fn walk(doc: &RawDocument, types: &mut std::collections::BTreeSet<u8>) {
            for e in doc {
                let (_, v) = e.unwrap();
                types.insert(v.element_type() as u8);
                match v {
                    RawBsonRef::Document(d) => walk(d, types),
                    RawBsonRef::Array(a) => {
                        walk(RawDocument::from_bytes(a.as_bytes()).unwrap(), types)
                    }
                    _ => {}
                }
            }
        }
        walk(&doc, &mut types);
        for t in [
            0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
            0x0F, 0x10, 0x11, 0x12, 0x13, 0xFF, 0x7F,
        ] {
            assert!(types.contains(&t), "type {t:#04x} missing");
        }
        let subtypes: Vec<u8> = doc
            .iter()
            .filter_map(|e| match e.unwrap().1 {
                RawBsonRef::Binary(b) => Some(u8::from(b.subtype)),
                _ => None,
            })
            .collect();
        assert_eq!(subtypes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x80]);
        // The whole document converts to an owned Document without loss of any field.
        let owned = bson::Document::try_from(doc.as_ref()).unwrap();
        assert_eq!(owned.len(), doc.iter().count());
        assert_eq!(bson::to_vec(&owned).unwrap(), doc.as_bytes());
    }

    #[test]
    fn decimal_constants_mean_what_they_say() {
        let show = |(hi, lo): (u64, u64)| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&lo.to_le_bytes());
            bytes[8..].copy_from_slice(&hi.to_le_bytes());
            bson::Decimal128::from_bytes(bytes).to_string()
        };
        assert_eq!(show(DEC_NAN), "NaN");
        assert_eq!(show(DEC_INF), "Infinity");
        assert_eq!(show(DEC_NEG_INF), "-Infinity");
        assert_eq!(show(DEC_NEG_ZERO), "-0");
        assert_eq!(show(DEC_MAX), "9.999999999999999999999999999999999E+6144");
        assert_eq!(show(DEC_MIN_POSITIVE), "1E-6176");
        assert_eq!(show(decimal(false, 12_345_678, -4)), "1234.5678");
        assert_eq!(show(decimal(true, 15, -1)), "-1.5");
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
