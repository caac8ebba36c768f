//! Bulk benchmark data (`--seed bench:<size>` and `--seed bench:<n>docs`).
//!
//! Three collections of realistic mixed documents, about 1 KiB on average, with nested
//! documents, arrays, dates, ObjectIds and text drawn from a few hundred words, so that gzip
//! shrinks them about as much as it does real application data (3–5×):
//!
//! | namespace | share | `_id` | indexes |
//! |---|---|---|---|
//! | `bench_shop.customers` | 20 % | int64 from 1 | unique `email_1` |
//! | `bench_shop.orders` | 45 % | ObjectId | `customerId_1`, `createdAt_-1` |
//! | `bench_logs.events` | 35 % | ObjectId | `ts_1` |
//!
//! A share is of the requested bytes or documents; the last collection takes the rounding
//! remainder. With a byte target each collection stops at the first document that reaches its
//! share, so the total exceeds the request by less than three documents. Indexes are created
//! after the data, as mongorestore does.
//!
//! Documents are written as raw BSON straight into the insert command, which is what makes
//! generation fast (hundreds of MB/s on one core in a release build).

use bson::RawDocumentBuf;

use super::raw::{push_decimal, RawWriter};
use super::rng::SplitMix64;
use super::words::{CITIES, COUNTRIES, FIRST_NAMES, LAST_NAMES, WORDS};
use super::Seed;

/// How much bulk data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amount {
    Bytes(u64),
    Documents(u64),
}

/// The benchmark namespaces as `(database, collection, percent of the total)`, in the order
/// they are generated.
pub const BENCH_COLLECTIONS: &[(&str, &str, u64)] = &[
    ("bench_shop", "customers", 20),
    ("bench_shop", "orders", 45),
    ("bench_logs", "events", 35),
];

const MAX_BATCH_DOCS: u64 = 1000;
/// Close a batch once it passes this, leaving room below mongod's 16 MiB for the next document.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024 - 64 * 1024;

/// 2024-01-01T00:00:00Z.
const BASE_MILLIS: i64 = 1_704_067_200_000;

/// Generates one collection's documents.
#[derive(Debug, Clone)]
struct Generator {
    kind: usize,
    rng: SplitMix64,
    produced_docs: u64,
    produced_bytes: u64,
    target: Amount,
}

impl Generator {
    fn new(kind: usize, target: Amount) -> Self {
        Self {
            kind,
            rng: SplitMix64::new(
                0xBE4C_0000_0000_0000 ^ (kind as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1),
            ),
            produced_docs: 0,
            produced_bytes: 0,
            target,
        }
    }

    fn done(&self) -> bool {
        match self.target {
            Amount::Bytes(b) => self.produced_bytes >= b,
            Amount::Documents(n) => self.produced_docs >= n,
        }
    }
}

/// Digits of `n` in decimal: the length of an array index key.
fn decimal_len(n: u64) -> usize {
    let mut digits = 1;
    let mut v = n / 10;
    while v > 0 {
        digits += 1;
        v /= 10;
    }
    digits
}

/// Splits `amount` over the collections by their shares.
fn split(amount: Amount) -> Vec<Amount> {
    let total = match amount {
        Amount::Bytes(b) | Amount::Documents(b) => b,
    };
    let mut left = total;
    BENCH_COLLECTIONS
        .iter()
        .enumerate()
        .map(|(i, (_, _, share))| {
            let part = if i + 1 == BENCH_COLLECTIONS.len() {
                left
            } else {
                // u128 keeps `total * share` from overflowing for any u64 total.
                (u128::from(total) * u128::from(*share) / 100) as u64
            };
            left -= part;
            match amount {
                Amount::Bytes(_) => Amount::Bytes(part),
                Amount::Documents(_) => Amount::Documents(part),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Create,
    Insert,
    Indexes,
}

/// The lazy command stream of a benchmark seed.
#[derive(Debug)]
pub(crate) struct Commands {
    generators: Vec<Generator>,
    current: usize,
    stage: Stage,
}

pub(crate) fn commands(amount: Amount) -> Commands {
    with_generators(
        split(amount)
            .into_iter()
            .enumerate()
            .map(|(i, a)| Generator::new(i, a))
            .collect(),
    )
}

/// Every byte in one collection (`bench_shop.orders`); the other benchmark collections are
/// created empty, with their indexes.
pub(crate) fn single_collection_commands(bytes: u64) -> Commands {
    with_generators(single(bytes))
}

fn single(bytes: u64) -> Vec<Generator> {
    (0..BENCH_COLLECTIONS.len())
        .map(|i| Generator::new(i, Amount::Bytes(if i == SINGLE_KIND { bytes } else { 0 })))
        .collect()
}

/// The collection a single-collection seed fills: orders, the one with two indexes.
const SINGLE_KIND: usize = 1;

fn with_generators(generators: Vec<Generator>) -> Commands {
    Commands {
        generators,
        current: 0,
        stage: Stage::Create,
    }
}

impl Iterator for Commands {
    type Item = (String, RawDocumentBuf);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (db, coll, _) = *BENCH_COLLECTIONS.get(self.current)?;
            let generator = self.generators.get_mut(self.current)?;
            match self.stage {
                Stage::Create => {
                    self.stage = Stage::Insert;
                    let mut w = RawWriter::new();
                    w.str("create", coll);
                    return Some((db.to_string(), w.finish()));
                }
                Stage::Insert => {
                    if generator.done() {
                        self.stage = Stage::Indexes;
                        continue;
                    }
                    let mut w = RawWriter::with_capacity(1024 * 1024 + 64 * 1024);
                    w.str("insert", coll);
                    w.bool("ordered", true);
                    w.start_array("documents");
                    let mut count = 0;
                    while count < MAX_BATCH_DOCS && w.len() < MAX_BATCH_BYTES && !generator.done() {
                        generator.write_next_in_batch(&mut w, count);
                        count += 1;
                    }
                    return Some((db.to_string(), w.finish()));
                }
                Stage::Indexes => {
                    self.stage = Stage::Create;
                    self.current += 1;
                    return Some((db.to_string(), index_command(self.current - 1, coll)));
                }
            }
        }
    }
}

impl Generator {
    /// Writes the next document as element `index` of an open array.
    fn write_next_in_batch(&mut self, w: &mut RawWriter, index: u64) {
        let before = w.len();
        w.start_doc("");
        let n = self.produced_docs;
        match self.kind {
            0 => customer(&mut self.rng, w, n),
            1 => order(&mut self.rng, w, n),
            _ => event(&mut self.rng, w, n),
        }
        w.end();
        // The element header is the type byte, the decimal index and its terminator.
        let header = 1 + decimal_len(index) + 1;
        self.produced_bytes += (w.len() - before - header) as u64;
        self.produced_docs += 1;
    }
}

fn index_command(kind: usize, coll: &str) -> RawDocumentBuf {
    let mut w = RawWriter::new();
    w.str("createIndexes", coll);
    w.start_array("indexes");
    let specs: &[(&str, i32, &str, bool)] = match kind {
        0 => &[("email", 1, "email_1", true)],
        1 => &[
            ("customerId", 1, "customerId_1", false),
            ("createdAt", -1, "createdAt_-1", false),
        ],
        _ => &[("ts", 1, "ts_1", false)],
    };
    for (field, direction, name, unique) in specs {
        w.start_doc("");
        w.start_doc("key");
        w.i32(field, *direction);
        w.end();
        w.str("name", name);
        if *unique {
            w.bool("unique", true);
        }
        w.end();
    }
    w.end();
    w.finish()
}

/// Every document of a benchmark seed as `(namespace, document)`, without the command
/// framing; yields nothing for other seeds. Useful to measure generation speed alone.
pub fn bench_documents(
    seed: &Seed,
) -> impl Iterator<Item = (String, RawDocumentBuf)> + Send + 'static {
    let amount = match *seed {
        Seed::Bench { bytes } => Some(Amount::Bytes(bytes)),
        Seed::Docs { count } => Some(Amount::Documents(count)),
        Seed::None | Seed::Demo | Seed::Single { .. } | Seed::Many { .. } => None,
    };
    let generators: Vec<Generator> = match *seed {
        Seed::Single { bytes } => single(bytes),
        _ => amount
            .map(|a| {
                split(a)
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| Generator::new(i, a))
                    .collect()
            })
            .unwrap_or_default(),
    };
    generators.into_iter().flat_map(|mut g| {
        let (db, coll, _) = BENCH_COLLECTIONS[g.kind];
        let namespace = format!("{db}.{coll}");
        std::iter::from_fn(move || {
            if g.done() {
                return None;
            }
            let mut w = RawWriter::with_capacity(2048);
            g.write_next_fields(&mut w);
            Some((namespace.clone(), w.finish()))
        })
    })
}

impl Generator {
    /// Writes the next document's fields into the top-level document of `w`.
    fn write_next_fields(&mut self, w: &mut RawWriter) {
        let n = self.produced_docs;
        match self.kind {
            0 => customer(&mut self.rng, w, n),
            1 => order(&mut self.rng, w, n),
            _ => event(&mut self.rng, w, n),
        }
        // The top-level document's terminator is not written yet.
        self.produced_bytes += w.len() as u64 + 1;
        self.produced_docs += 1;
    }
}

/// A unique ObjectId for document `n` of collection `tag`: a creation second that advances with
/// `n`, the tag, and `n` itself.
fn object_id(tag: u8, n: u64) -> [u8; 12] {
    let t = ((BASE_MILLIS / 1000) as u64 + n / 1000) as u32;
    let t = t.to_be_bytes();
    let c = n.to_be_bytes();
    [
        t[0], t[1], t[2], t[3], tag, c[1], c[2], c[3], c[4], c[5], c[6], c[7],
    ]
}

/// Appends `count` words separated by spaces. One random draw picks four words.
fn text(rng: &mut SplitMix64, buf: &mut Vec<u8>, count: u32) {
    let len = WORDS.len() as u64;
    let mut left = count;
    while left > 0 {
        let r = rng.next_u64();
        for k in 0..4.min(left) {
            let idx = ((((r >> (16 * k)) & 0xFFFF) * len) >> 16) as usize;
            if left != count || k != 0 {
                buf.push(b' ');
            }
            buf.extend_from_slice(WORDS[idx].as_bytes());
        }
        left -= 4.min(left);
    }
}

fn hex(rng: &mut SplitMix64, buf: &mut Vec<u8>, bytes: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut left = bytes;
    while left > 0 {
        let r = rng.next_u64().to_le_bytes();
        for b in &r[..left.min(8)] {
            buf.push(DIGITS[(b >> 4) as usize]);
            buf.push(DIGITS[(b & 15) as usize]);
        }
        left -= left.min(8);
    }
}

fn digits(rng: &mut SplitMix64, buf: &mut Vec<u8>, count: usize) {
    let r = rng.next_u64();
    for i in 0..count {
        buf.push(b'0' + ((r >> (4 * i)) % 10) as u8);
    }
}

const TIERS: &[&str] = &["none", "bronze", "silver", "gold", "platinum"];
const STREET_KINDS: &[&str] = &["Street", "Road", "Avenue", "Lane", "Way", "Square"];
const LABELS: &[&str] = &["home", "work", "billing", "other"];

fn address(rng: &mut SplitMix64, w: &mut RawWriter, key: &str) {
    w.start_doc(key);
    w.str_with("street", |b| {
        push_decimal(b, rng.below(400) + 1);
        b.push(b' ');
        b.extend_from_slice(rng.pick(WORDS).as_bytes());
        b.push(b' ');
        b.extend_from_slice(rng.pick(STREET_KINDS).as_bytes());
    });
    let city = rng.below(CITIES.len() as u32) as usize;
    w.str("city", CITIES[city]);
    w.str_with("zip", |b| digits(rng, b, 5));
    w.str("country", COUNTRIES[city]);
    w.end();
}

fn customer(rng: &mut SplitMix64, w: &mut RawWriter, n: u64) {
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    w.i64("_id", n as i64 + 1);
    w.str_with("name", |b| {
        b.extend_from_slice(first.as_bytes());
        b.push(b' ');
        b.extend_from_slice(last.as_bytes());
    });
    w.str_with("email", |b| {
        b.extend_from_slice(first.to_ascii_lowercase().as_bytes());
        b.push(b'.');
        b.extend_from_slice(last.to_ascii_lowercase().as_bytes());
        push_decimal(b, (n + 1) as u32);
        if n >= u64::from(u32::MAX) {
            b.push(b'x');
            push_decimal(b, (n >> 32) as u32);
        }
        b.extend_from_slice(b"@example.com");
    });
    w.str_with("phone", |b| {
        b.push(b'+');
        digits(rng, b, 2);
        b.push(b' ');
        digits(rng, b, 10);
    });
    w.datetime(
        "createdAt",
        BASE_MILLIS - (rng.below(2000) as i64) * 86_400_000,
    );
    w.start_array("addresses");
    for _ in 0..=rng.below(2) {
        w.start_doc("");
        w.str("label", rng.pick(LABELS));
        address(rng, w, "address");
        w.end();
    }
    w.end();
    w.start_doc("loyalty");
    w.str("tier", rng.pick(TIERS));
    w.i32("points", rng.below(50_000) as i32);
    w.bool("marketing", rng.chance(35));
    w.end();
    w.str_with("bio", |b| {
        let words = 70 + rng.below(100);
        text(rng, b, words);
    });
    w.start_array("tags");
    for _ in 0..rng.below(5) {
        w.str("", rng.pick(WORDS));
    }
    w.end();
}

const STATUSES: &[&str] = &[
    "pending",
    "paid",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
];
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "JPY"];
const METHODS: &[&str] = &["standard", "express", "pickup"];

fn order(rng: &mut SplitMix64, w: &mut RawWriter, n: u64) {
    w.oid("_id", object_id(2, n));
    w.str_with("orderNo", |b| {
        b.extend_from_slice(b"ORD-");
        push_decimal(b, (n % 1_000_000_000) as u32 + 1_000_000_000);
    });
    w.i64("customerId", i64::from(rng.below(1_000_000)) + 1);
    w.str("status", rng.pick(STATUSES));
    let created = BASE_MILLIS + (n as i64) * 1_000 + i64::from(rng.below(1000));
    w.datetime("createdAt", created);
    w.datetime("updatedAt", created + i64::from(rng.below(86_400)) * 1000);
    w.start_array("items");
    let mut total = 0.0;
    for _ in 0..1 + rng.below(6) {
        let qty = 1 + rng.below(4);
        let price = f64::from(rng.below(20_000) + 99) / 100.0;
        total += price * f64::from(qty);
        w.start_doc("");
        w.str_with("sku", |b| {
            b.extend_from_slice(b"SKU-");
            push_decimal(b, rng.below(100_000));
        });
        w.str_with("name", |b| text(rng, b, 3));
        w.i32("qty", qty as i32);
        w.f64("unitPrice", price);
        w.end();
    }
    w.end();
    w.f64("total", (total * 100.0).round() / 100.0);
    w.str("currency", rng.pick(CURRENCIES));
    w.start_doc("shipping");
    w.str("method", rng.pick(METHODS));
    address(rng, w, "address");
    w.str_with("trackingNo", |b| hex(rng, b, 6));
    w.end();
    w.str_with("notes", |b| {
        let words = 20 + rng.below(80);
        text(rng, b, words);
    });
}

const LEVELS: &[&str] = &["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"];
const SERVICES: &[&str] = &[
    "checkout", "catalog", "search", "auth", "payments", "shipping",
];

fn event(rng: &mut SplitMix64, w: &mut RawWriter, n: u64) {
    w.oid("_id", object_id(3, n));
    w.datetime("ts", BASE_MILLIS + (n as i64) * 250);
    w.str("level", rng.pick(LEVELS));
    w.str("service", rng.pick(SERVICES));
    w.str_with("host", |b| {
        b.extend_from_slice(b"host-");
        push_decimal(b, rng.below(64));
    });
    w.str_with("msg", |b| {
        let words = 50 + rng.below(80);
        text(rng, b, words);
    });
    w.start_doc("ctx");
    w.str_with("requestId", |b| hex(rng, b, 16));
    w.i64("userId", i64::from(rng.below(1_000_000)) + 1);
    w.str_with("path", |b| {
        b.push(b'/');
        b.extend_from_slice(rng.pick(WORDS).as_bytes());
        b.push(b'/');
        b.extend_from_slice(rng.pick(WORDS).as_bytes());
    });
    w.i32(
        "status",
        rng.pick(&[200, 200, 200, 201, 204, 304, 400, 404, 500]),
    );
    w.f64("durationMs", f64::from(rng.below(500_000)) / 100.0);
    w.end();
    w.start_array("tags");
    for _ in 0..rng.below(4) {
        w.str("", rng.pick(WORDS));
    }
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::commands as seed_commands;

    fn inserted(seed: Seed) -> (u64, u64, Vec<(String, RawDocumentBuf)>) {
        let cmds: Vec<_> = seed_commands(&seed).collect();
        let mut bytes = 0;
        let mut docs = 0;
        for (_, cmd) in &cmds {
            if let Ok(array) = cmd.get_array("documents") {
                let mut n = 0;
                for d in array {
                    bytes += d.unwrap().as_document().unwrap().as_bytes().len() as u64;
                    n += 1;
                }
                assert!(n <= MAX_BATCH_DOCS);
                assert!(cmd.as_bytes().len() <= 8 * 1024 * 1024);
                docs += n;
            }
        }
        (bytes, docs, cmds)
    }

    #[test]
    fn byte_target_is_met_within_two_percent() {
        for target in [256 * 1024u64, 3 * 1024 * 1024] {
            let (bytes, docs, _) = inserted(Seed::Bench { bytes: target });
            let error = (bytes as f64 - target as f64).abs() / target as f64;
            assert!(error < 0.02, "target {target}, got {bytes} in {docs} docs");
            let avg = bytes / docs;
            assert!((700..=1400).contains(&avg), "average document {avg} bytes");
        }
    }

    #[test]
    fn document_target_is_exact_and_split_by_share() {
        let (_, docs, cmds) = inserted(Seed::Docs { count: 2345 });
        assert_eq!(docs, 2345);
        let mut per_collection = std::collections::BTreeMap::new();
        for (db, cmd) in &cmds {
            if let Ok(array) = cmd.get_array("documents") {
                let coll = cmd.get_str("insert").unwrap();
                *per_collection.entry(format!("{db}.{coll}")).or_insert(0) +=
                    array.into_iter().count();
            }
        }
        assert_eq!(per_collection["bench_shop.customers"], 469);
        assert_eq!(per_collection["bench_shop.orders"], 1055);
        assert_eq!(per_collection["bench_logs.events"], 2345 - 469 - 1055);
    }

    #[test]
    fn same_seed_same_bytes() {
        let a: Vec<_> = seed_commands(&Seed::Bench { bytes: 512 * 1024 }).collect();
        let b: Vec<_> = seed_commands(&Seed::Bench { bytes: 512 * 1024 }).collect();
        assert_eq!(a, b);
        // A larger seed starts with the same documents.
        let c: Vec<_> = seed_commands(&Seed::Bench {
            bytes: 2 * 1024 * 1024,
        })
        .collect();
        assert_eq!(a[0], c[0]);
        assert_eq!(
            a[1].1
                .get_array("documents")
                .unwrap()
                .into_iter()
                .next()
                .unwrap()
                .unwrap(),
            c[1].1
                .get_array("documents")
                .unwrap()
                .into_iter()
                .next()
                .unwrap()
                .unwrap()
        );
    }

    #[test]
    fn commands_are_create_inserts_indexes_per_collection() {
        let (_, _, cmds) = inserted(Seed::Docs { count: 3000 });
        let verbs: Vec<String> = cmds
            .iter()
            .map(|(db, c)| {
                let (verb, value) = c.into_iter().next().unwrap().unwrap();
                format!("{db}.{}:{verb}", value.as_str().unwrap())
            })
            .collect();
        assert_eq!(
            verbs,
            [
                "bench_shop.customers:create",
                "bench_shop.customers:insert",
                "bench_shop.customers:createIndexes",
                "bench_shop.orders:create",
                "bench_shop.orders:insert",
                "bench_shop.orders:insert",
                "bench_shop.orders:createIndexes",
                "bench_logs.events:create",
                "bench_logs.events:insert",
                "bench_logs.events:insert",
                "bench_logs.events:createIndexes",
            ]
        );
    }

    #[test]
    fn ids_and_unique_emails_are_unique() {
        let mut ids = std::collections::HashSet::new();
        let mut emails = std::collections::HashSet::new();
        for (ns, doc) in bench_documents(&Seed::Docs { count: 5000 }) {
            let id = format!("{ns}/{:?}", doc.get("_id").unwrap().unwrap());
            assert!(ids.insert(id));
            if ns == "bench_shop.customers" {
                assert!(emails.insert(doc.get_str("email").unwrap().to_string()));
            }
        }
        assert_eq!(ids.len(), 5000);
    }

    #[test]
    fn bench_documents_matches_the_commands() {
        let seed = Seed::Bench { bytes: 300 * 1024 };
        let (bytes, docs, _) = inserted(seed);
        let standalone: Vec<_> = bench_documents(&seed).collect();
        assert_eq!(standalone.len() as u64, docs);
        assert_eq!(
            standalone
                .iter()
                .map(|(_, d)| d.as_bytes().len() as u64)
                .sum::<u64>(),
            bytes
        );
        assert_eq!(bench_documents(&Seed::Demo).count(), 0);
    }

    #[test]
    fn text_is_words_separated_by_single_spaces() {
        let mut rng = SplitMix64::new(9);
        for count in [0, 1, 3, 4, 5, 9] {
            let mut buf = Vec::new();
            text(&mut rng, &mut buf, count);
            let s = String::from_utf8(buf).unwrap();
            let words: Vec<&str> = if s.is_empty() {
                vec![]
            } else {
                s.split(' ').collect()
            };
            assert_eq!(words.len(), count as usize, "{s:?}");
            assert!(words.iter().all(|w| WORDS.contains(w)));
        }
    }
}
