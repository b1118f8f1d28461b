//! SearchParameter registry — being written.
use super::ParamType;

/// One SearchParameter definition.
#[derive(Debug)]
pub struct SearchParamDef {
    /// `SearchParameter.url`
    pub url: String,
    /// `SearchParameter.code`
    pub code: String,
    /// `SearchParameter.type`
    pub param_type: ParamType,
    /// `SearchParameter.base`
    pub base: Vec<String>,
    /// `SearchParameter.target`
    pub target: Vec<String>,
    /// `SearchParameter.expression`
    pub expression: Option<String>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Registry {}

impl Registry {
    /// Looks up a parameter.
    pub fn get(&self, _resource_type: &str, _code: &str) -> Option<&SearchParamDef> {
        None
    }
}
