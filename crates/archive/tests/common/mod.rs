//! The reference archives written by real mongodump releases, shared by the test files.

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Where the reference archives written by real mongodump releases are: `NIGHTDUMP_FIXTURES`,
/// or `shared/fixtures/mongodump` beside the repository.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::env::var_os("NIGHTDUMP_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/mongodump")
        })
}

/// Whether the reference fixtures are there. When they are not, a test that needs them says
/// so in one line and passes without running, unless `NIGHTDUMP_REQUIRE_FIXTURES=1` (CI),
/// which makes their absence a failure.
pub fn fixtures_present(test: &str) -> bool {
    let dir = fixtures_dir();
    if dir.is_dir() {
        return true;
    }
    if std::env::var_os("NIGHTDUMP_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!(
            "{test}: the reference mongodump fixtures are required (NIGHTDUMP_REQUIRE_FIXTURES=1) but {} does not exist: set NIGHTDUMP_FIXTURES",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no reference mongodump fixtures at {} (set NIGHTDUMP_FIXTURES)",
        dir.display()
    );
    false
}
