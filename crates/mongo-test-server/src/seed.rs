//! Deterministic data a server can be started with:
//! `--seed none | demo | bench:<size> | single:<size> | many:<collections>`.
//!
//! A seed is turned into ordinary mongod commands (`create` with options, `createIndexes`,
//! `insert` with at most 1000 documents or about 8 MiB per command) that the engine applies in
//! order at start, so seeded data goes through exactly the code paths a client's writes do.
//! Every byte comes from a constant-seeded generator and every `_id` is explicit: two servers
//! started with the same seed hold identical documents, and backups of them can be compared
//! byte for byte.
//!
//! * [`Seed::Demo`] is a small, hand-shaped data set of the things a backup tool must survive;
//!   see the [`demo`] module for what is where and [`DEMO_NAMESPACES`] for the expected
//!   namespaces.
//! * [`Seed::Bench`] and [`Seed::Docs`] are bulk, realistic-looking data for throughput tests;
//!   see the [`bench`](mod@bench) module.

pub mod bench;
pub mod demo;
pub mod many;
mod raw;
mod rng;
mod words;

use std::fmt;
use std::str::FromStr;

use bson::RawDocumentBuf;

pub use bench::{bench_documents, BENCH_COLLECTIONS};
pub use demo::{every_type_document, DemoNamespace, NamespaceKind, DEMO_NAMESPACES};

/// What a server holds when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Seed {
    /// No data at all.
    #[default]
    None,
    /// The demo data set described in [`demo`].
    Demo,
    /// Bulk data adding up to `bytes` of BSON documents (within one document per collection).
    Bench { bytes: u64 },
    /// Bulk data of exactly `count` documents.
    Docs { count: u64 },
    /// Bulk data adding up to `bytes`, all of it in one collection (`bench_shop.orders`).
    Single { bytes: u64 },
    /// `collections` small collections with an index each (see the [`many`] module).
    Many { collections: u32 },
}

/// Why a `--seed` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedParseError {
    #[error(
        "unknown seed '{0}': use none, demo, bench:<size> (e.g. bench:512MiB), bench:<n>docs, single:<size> or many:<collections>"
    )]
    Unknown(String),
    #[error("bad benchmark size '{0}': give a whole number with a unit B, KB, MB, GB, TB, KiB, MiB, GiB, TiB or docs (e.g. bench:1GiB, bench:100000docs)")]
    BadSize(String),
    #[error("benchmark size '{0}' is zero or too large: give between 1 byte and 16 EiB, or at least 1 document")]
    OutOfRange(String),
}

const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for Seed {
    type Err = SeedParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let lower = trimmed.to_ascii_lowercase();
        match lower.as_str() {
            "none" => return Ok(Seed::None),
            "demo" => return Ok(Seed::Demo),
            _ => {}
        }
        if let Some(n) = lower.strip_prefix("many:") {
            return match n.trim().parse::<u32>() {
                Ok(collections) if collections > 0 => Ok(Seed::Many { collections }),
                Ok(_) => Err(SeedParseError::OutOfRange(trimmed.to_string())),
                Err(_) => Err(SeedParseError::BadSize(trimmed.to_string())),
            };
        }
        if let Some(size) = lower.strip_prefix("single:") {
            return match format!("bench:{size}").parse::<Seed>()? {
                Seed::Bench { bytes } => Ok(Seed::Single { bytes }),
                _ => Err(SeedParseError::BadSize(trimmed.to_string())),
            };
        }
        let Some(size) = lower.strip_prefix("bench:") else {
            return Err(SeedParseError::Unknown(trimmed.to_string()));
        };
        let size = size.trim();
        let digits_end = size
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len());
        let (number, unit) = size.split_at(digits_end);
        let unit = unit.trim();
        if number.is_empty() {
            return Err(SeedParseError::BadSize(trimmed.to_string()));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| SeedParseError::OutOfRange(trimmed.to_string()))?;
        if unit == "docs" || unit == "doc" {
            if n == 0 {
                return Err(SeedParseError::OutOfRange(trimmed.to_string()));
            }
            return Ok(Seed::Docs { count: n });
        }
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| SeedParseError::BadSize(trimmed.to_string()))?
        };
        match n.checked_mul(multiplier) {
            Some(bytes) if bytes > 0 => Ok(Seed::Bench { bytes }),
            _ => Err(SeedParseError::OutOfRange(trimmed.to_string())),
        }
    }
}

impl fmt::Display for Seed {
    /// The canonical spelling, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::None => f.write_str("none"),
            Seed::Demo => f.write_str("demo"),
            Seed::Docs { count } => write!(f, "bench:{count}docs"),
            Seed::Many { collections } => write!(f, "many:{collections}"),
            Seed::Single { bytes } => {
                let bench = Seed::Bench { bytes: *bytes }.to_string();
                write!(f, "single:{}", bench.trim_start_matches("bench:"))
            }
            Seed::Bench { bytes } => {
                for (unit, size) in [
                    ("TiB", 1u64 << 40),
                    ("GiB", 1 << 30),
                    ("MiB", 1 << 20),
                    ("KiB", 1 << 10),
                ] {
                    if *bytes >= size && bytes % size == 0 {
                        return write!(f, "bench:{}{unit}", bytes / size);
                    }
                }
                write!(f, "bench:{bytes}B")
            }
        }
    }
}

/// The `(database, command)` pairs that build `seed`'s data, in the order they must run.
/// Generation is lazy, so a large benchmark seed never sits in memory as a whole.
pub fn commands(seed: &Seed) -> impl Iterator<Item = (String, RawDocumentBuf)> + Send + 'static {
    let source: Box<dyn Iterator<Item = (String, RawDocumentBuf)> + Send> = match *seed {
        Seed::None => Box::new(std::iter::empty()),
        // Built on first use, not when the iterator is made.
        Seed::Demo => Box::new(std::iter::once(()).flat_map(|()| demo::commands())),
        Seed::Bench { bytes } => Box::new(bench::commands(bench::Amount::Bytes(bytes))),
        Seed::Docs { count } => Box::new(bench::commands(bench::Amount::Documents(count))),
        Seed::Single { bytes } => Box::new(bench::single_collection_commands(bytes)),
        Seed::Many { collections } => Box::new(many::commands(collections)),
    };
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("none", Seed::None),
            ("demo", Seed::Demo),
            (" Demo ", Seed::Demo),
            ("bench:1GiB", Seed::Bench { bytes: 1 << 30 }),
            ("bench:512MiB", Seed::Bench { bytes: 512 << 20 }),
            ("bench:64kib", Seed::Bench { bytes: 64 << 10 }),
            (
                "bench:2GB",
                Seed::Bench {
                    bytes: 2_000_000_000,
                },
            ),
            ("bench:1500", Seed::Bench { bytes: 1500 }),
            ("bench:1500B", Seed::Bench { bytes: 1500 }),
            ("bench:100000docs", Seed::Docs { count: 100_000 }),
            ("bench:1 doc", Seed::Docs { count: 1 }),
            (
                "many:10000",
                Seed::Many {
                    collections: 10_000,
                },
            ),
            ("single:2GiB", Seed::Single { bytes: 2 << 30 }),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Seed>(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(matches!(
            "full".parse::<Seed>(),
            Err(SeedParseError::Unknown(_))
        ));
        assert!(matches!(
            "bench:".parse::<Seed>(),
            Err(SeedParseError::BadSize(_))
        ));
        assert!(matches!(
            "bench:1.5GiB".parse::<Seed>(),
            Err(SeedParseError::BadSize(_))
        ));
        assert!(matches!(
            "bench:10PB".parse::<Seed>(),
            Err(SeedParseError::BadSize(_))
        ));
        assert!(matches!(
            "bench:0MiB".parse::<Seed>(),
            Err(SeedParseError::OutOfRange(_))
        ));
        assert!(matches!(
            "bench:0docs".parse::<Seed>(),
            Err(SeedParseError::OutOfRange(_))
        ));
        assert!(matches!(
            "bench:99999999999TiB".parse::<Seed>(),
            Err(SeedParseError::OutOfRange(_))
        ));
        let message = "bench:lots".parse::<Seed>().unwrap_err().to_string();
        assert!(
            message.contains("bench:lots") && message.contains("GiB"),
            "{message}"
        );
    }

    #[test]
    fn display_round_trips() {
        for seed in [
            Seed::None,
            Seed::Demo,
            Seed::Bench { bytes: 1 << 30 },
            Seed::Bench { bytes: 3 << 20 },
            Seed::Bench { bytes: 1536 },
            Seed::Bench { bytes: 1001 },
            Seed::Docs { count: 7 },
            Seed::Many { collections: 3 },
            Seed::Single { bytes: 1 << 30 },
        ] {
            assert_eq!(seed.to_string().parse::<Seed>(), Ok(seed));
        }
        assert_eq!(Seed::Bench { bytes: 512 << 20 }.to_string(), "bench:512MiB");
        assert_eq!(Seed::Bench { bytes: 1001 }.to_string(), "bench:1001B");
    }

    #[test]
    fn none_yields_nothing() {
        assert_eq!(commands(&Seed::None).count(), 0);
    }
}
