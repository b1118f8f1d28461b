//! Search query parsing — being written.
use super::{Handling, Registry, SearchError, SearchQuery};

/// Parses URL-decoded search parameters (lenient handling).
pub fn parse(registry: &Registry, resource_type: &str, params: &[(String, String)]) -> Result<SearchQuery, SearchError> {
    parse_with_handling(registry, resource_type, params, Handling::Lenient)
}

/// Parses URL-decoded search parameters with the given handling.
pub fn parse_with_handling(_registry: &Registry, resource_type: &str, _params: &[(String, String)], _h: Handling) -> Result<SearchQuery, SearchError> {
    Err(SearchError::UnknownResourceType(resource_type.to_string()))
}
