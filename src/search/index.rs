//! Search index extraction — being written.
use super::{IndexEntry, Registry};

/// Extracts all search-index entries of `resource` (of `resource_type`).
pub fn extract(_registry: &Registry, _resource_type: &str, _resource: &serde_json::Value) -> Vec<IndexEntry> {
    Vec::new()
}
