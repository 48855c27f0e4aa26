//! Helpers shared by the hand-rolled (non-criterion) bench binaries.

/// The median; for an even count, the mean of the two middle values.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

/// An unsigned setting from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this bench should run: `cargo bench -- <filter>` passes the
/// filter to every bench binary, and only a filter naming `bench` (or none)
/// selects it.
pub fn selected(bench: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .all(|f| bench.contains(f.as_str()))
}
