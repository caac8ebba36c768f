//! `nightdump estimate`: what a nightly backup of a deployment will cost, before it runs.
//!
//! It reads the sizes the server reports (as the backup's discovery does), compresses a
//! sample of the largest collection to measure the data's own compression ratio, and works
//! out, from per-core throughput measured by `scripts/bench`, the duration, peak memory,
//! stored size and cost of one run at several Lambda memory sizes, and whether one Lambda
//! run (15 minutes, less the 30% the deadline alarm keeps in reserve) holds it.

use std::io::Write;
use std::time::Instant;

use bson::{doc, RawDocumentBuf};
use serde::Serialize;

use crate::backup::compress::Compressor;
use crate::error::{Error, Result};
use crate::namespace::NamespaceFilter;
use crate::sink::{FinishWrite, Stored};
use crate::source::{Source, SourceOptions};

/// gzip level 6 on one core of the reference machine (`scripts/bench`, 512 MiB of BSON:
/// 8.1 s on one thread, 4.0 s on two): MiB of BSON per second per core.
pub const MIB_PER_SECOND_PER_CORE: f64 = 63.0;
/// Reading from the server on the reference machine: far above compression, so compression
/// is the bound; a remote server may be slower, which `--drain-mib-s` accounts for.
pub const DRAIN_MIB_PER_SECOND: f64 = 590.0;
/// Lambda allots one vCPU per 1,769 MB of memory, up to 6.
pub const MB_PER_VCPU: f64 = 1769.0;
/// Lambda's arm64 price per GB-second (us-east-1, 2026).
pub const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda's longest run, and the share of it the deadline alarm lets a run use.
pub const LAMBDA_SECONDS: f64 = 900.0;
pub const SAFE_SHARE: f64 = 0.7;
/// Memory the pipeline holds besides the upload's parts (readers, writer, buffers), from the
/// peak RSS `scripts/bench` measures at 1 and 4 GiB.
pub const BASE_MEMORY_MIB: f64 = 80.0;
/// The memory sizes shown.
pub const MEMORY_SIZES_MB: [u32; 5] = [1024, 1769, 3008, 5307, 10240];
/// The template's `MemorySize` default: one whole vCPU. A backup is bound by compression,
/// whose throughput follows the vCPUs Lambda allots, so a GiB costs the same GB-seconds at
/// any size up to there, and below it every run is throttled: 1,769 MB holds 1.7 times the
/// data of 1,024 MB in the same deadline for the same price per GiB. The pipeline itself
/// needs under 300 MiB at any database size (`BASE_MEMORY_MIB` plus three parts).
pub const TEMPLATE_MEMORY_MB: u32 = 1769;
/// Bytes of the largest collection sampled for the compression ratio.
const SAMPLE_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub target: String,
    pub collections: usize,
    pub documents: u64,
    /// BSON bytes the server reports (documents × average size).
    pub bson_bytes: u64,
    /// Compressed size of the sample over its BSON size (1.0 without a sample).
    pub compression_ratio: f64,
    pub sampled_bytes: u64,
    pub stored_bytes: u64,
    pub runs: Vec<LambdaRun>,
    /// The smallest memory size whose run fits, if any does.
    pub fits_at_mb: Option<u32>,
    /// What to do: the Lambda size to use, or the task engine.
    pub advice: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LambdaRun {
    pub memory_mb: u32,
    pub vcpus: f64,
    pub seconds: f64,
    pub peak_memory_mib: f64,
    pub fits: bool,
    pub cost_per_run_usd: f64,
    pub cost_per_month_usd: f64,
}

/// The figures for `bson_bytes` of data compressing to `ratio`, at each memory size.
pub fn runs(bson_bytes: u64, ratio: f64, drain_mib_s: f64) -> Vec<LambdaRun> {
    let mib = bson_bytes as f64 / f64::from(1u32 << 20);
    let stored = (bson_bytes as f64 * ratio) as u64;
    let part = crate::store::first_part_size(
        crate::store::DEFAULT_PART_SIZE,
        Some(stored),
        crate::store::MAX_PARTS,
    ) as f64
        / f64::from(1u32 << 20);
    MEMORY_SIZES_MB
        .iter()
        .map(|&memory_mb| {
            let vcpus = (f64::from(memory_mb) / MB_PER_VCPU).min(6.0);
            let compress = MIB_PER_SECOND_PER_CORE * vcpus;
            // Start-up, the secret, listing and the manifest: a few seconds whatever the size.
            let seconds = 5.0 + mib / compress.min(drain_mib_s);
            let peak_memory_mib = BASE_MEMORY_MIB + 3.0 * part + vcpus.ceil();
            let gb_seconds = seconds * f64::from(memory_mb) / 1024.0;
            let cost = gb_seconds * PRICE_PER_GB_SECOND;
            LambdaRun {
                memory_mb,
                vcpus: (vcpus * 100.0).round() / 100.0,
                seconds: seconds.round(),
                peak_memory_mib: peak_memory_mib.round(),
                fits: seconds <= LAMBDA_SECONDS * SAFE_SHARE
                    && peak_memory_mib < f64::from(memory_mb),
                cost_per_run_usd: (cost * 10_000.0).round() / 10_000.0,
                cost_per_month_usd: (cost * 30.0 * 100.0).round() / 100.0,
            }
        })
        .collect()
}

pub async fn estimate(
    options: &SourceOptions,
    filter: &NamespaceFilter,
    drain_mib_s: f64,
) -> Result<Estimate> {
    let source = Source::connect(options).await?;
    let plans = crate::source::discover(&source, filter).await?;
    let size =
        |p: &crate::source::CollectionPlan| crate::backup::reported_bytes(std::slice::from_ref(p));
    let bson_bytes = crate::backup::reported_bytes(&plans);
    let documents = plans.iter().map(|p| p.estimated_documents).sum();
    let largest = plans
        .iter()
        .filter(|p| p.is_user_data())
        .max_by_key(|p| size(p));
    let (ratio, sampled) = match largest {
        Some(p) => sample_ratio(&source, &p.db, &p.data_collection).await?,
        None => (1.0, 0),
    };
    let runs = runs(bson_bytes, ratio, drain_mib_s);
    let fits_at_mb = runs.iter().find(|r| r.fits).map(|r| r.memory_mb);
    let advice = match runs.iter().find(|r| r.fits) {
        Some(r) => format!(
            "fits one Lambda run at {} MB ({} s of the {} s the deadline alarm allows); the template's default is {} MB",
            r.memory_mb,
            r.seconds,
            LAMBDA_SECONDS * SAFE_SHARE,
            TEMPLATE_MEMORY_MB
        ),
        None => "does not fit one Lambda run (15 minutes) at any memory size: run the backup where there is no deadline (the CLI on a server, or a container task; see docs/scaling.md)".into(),
    };
    Ok(Estimate {
        target: source.target().to_string(),
        collections: plans.iter().filter(|p| p.is_user_data()).count(),
        documents,
        bson_bytes,
        compression_ratio: (ratio * 1000.0).round() / 1000.0,
        sampled_bytes: sampled,
        stored_bytes: (bson_bytes as f64 * ratio) as u64,
        runs,
        fits_at_mb,
        advice,
    })
}

/// Compresses the first documents of a collection (up to 8 MiB) at the backup's level:
/// compressed over raw size, and the bytes sampled.
async fn sample_ratio(source: &Source, db: &str, coll: &str) -> Result<(f64, u64)> {
    let mut cursor = source
        .client
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .await
        .map_err(|e| source.error(&format!("find on {db}.{coll}"), &e))?;
    let mut sample = Vec::with_capacity(SAMPLE_BYTES);
    while sample.len() < SAMPLE_BYTES {
        match cursor.advance().await {
            Ok(true) => sample.extend_from_slice(cursor.current().as_bytes()),
            Ok(false) => break,
            Err(e) => return Err(source.error(&format!("find on {db}.{coll}"), &e)),
        }
    }
    if sample.is_empty() {
        return Ok((1.0, 0));
    }
    let counted = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64)> {
        let started = Instant::now();
        let mut gz = Compressor::new(Box::new(Count(0)), 6, 1)?;
        gz.write_all(&sample)?;
        let stored = gz.finish()?.finish_stream()?;
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "compressed the sample"
        );
        Ok((sample.len() as u64, stored.size))
    })
    .await
    .map_err(|e| Error::Internal(format!("the sample's compression crashed: {e}")))?
    .map_err(|e| Error::Internal(format!("compressing the sample failed: {e}")))?;
    let (raw, compressed) = counted;
    Ok((compressed as f64 / raw as f64, raw))
}

/// Counts what it is given.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FinishWrite for Count {
    fn finish_stream(self: Box<Self>) -> std::io::Result<Stored> {
        Ok(Stored {
            size: self.0,
            sha256: [0; 32],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_memory_is_a_whole_vcpu_at_the_price_per_gib_of_less() {
        assert_eq!(f64::from(TEMPLATE_MEMORY_MB), MB_PER_VCPU);
        let at = |runs: &[LambdaRun], mb: u32| runs.iter().find(|r| r.memory_mb == mb).cloned();
        let gib = 10u64 << 30;
        let r = runs(gib, 0.3, DRAIN_MIB_PER_SECOND);
        let (small, default) = (at(&r, 1024).unwrap(), at(&r, TEMPLATE_MEMORY_MB).unwrap());
        let gb_s = |r: &LambdaRun| r.seconds * f64::from(r.memory_mb) / 1024.0;
        // The same GB-seconds (within the few seconds of start-up) for 10 GiB...
        assert!(
            (gb_s(&default) / gb_s(&small) - 1.0).abs() < 0.05,
            "{small:?} {default:?}"
        );
        // ...done in 58% of the time, so the deadline holds 1.7 times the data.
        assert!(
            default.seconds < small.seconds * 0.6,
            "{small:?} {default:?}"
        );
        assert!(default.peak_memory_mib < 300.0, "{default:?}");
    }

    #[test]
    fn small_databases_fit_at_the_default_and_huge_ones_nowhere() {
        let small = runs(2 << 30, 0.3, DRAIN_MIB_PER_SECOND);
        assert!(small.iter().all(|r| r.fits), "{small:?}");
        // 2 GiB at 0.58 vCPU: about a minute, well inside the 630 s allowed.
        assert!(small[0].seconds < 120.0, "{:?}", small[0]);
        let huge = runs(1 << 40, 0.3, DRAIN_MIB_PER_SECOND);
        assert!(huge.iter().all(|r| !r.fits), "{huge:?}");
        // More memory means more cores: never slower.
        assert!(huge.windows(2).all(|w| w[1].seconds <= w[0].seconds));
        // 40 GiB fits only with several cores.
        let mid = runs(40 << 30, 0.3, DRAIN_MIB_PER_SECOND);
        assert!(!mid[0].fits && mid.last().unwrap().fits, "{mid:?}");
    }
}
