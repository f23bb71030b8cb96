//! Benchmark (being written).

use std::path::Path;

use super::EngineArgs;

/// Runs the benchmark and returns Markdown.
pub fn run(_args: &EngineArgs, _image: &Path, _runs: usize) -> anyhow::Result<String> {
    Ok(String::new())
}
