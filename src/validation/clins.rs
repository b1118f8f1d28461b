//! JP-CLINS submission rules that the published 1.5.2 snapshot package does not carry.
//!
//! The package `jp-clins.r4-1.5.2-snap.tgz` is redistributed unmodified (CC BY-ND), so rules that the
//! JP-CLINS IG states in its FSH sources (`input/fsh/invariants/InvariantsRules.fsh`) and uses for its own
//! deliberately invalid examples, but that did not make it into the built StructureDefinitions, are kept
//! here, each with its upstream key and text, and applied as invariants of the named profile.
//!
//! | key | profile | upstream |
//! |---|---|---|
//! | `needs-localCode-observation-laboresult` (R6021) | `JP_Observation_LabResult_eCS` | InvariantsRules.fsh; `Observation-ErrorExample-ObsLabo-eGFR` ("【ローカルコードなし】") |

use std::sync::LazyLock;

use crate::fhirpath::{self, Expr};

/// One supplementary invariant.
#[derive(Debug)]
pub struct Rule {
    /// Canonical URL of the profile it belongs to (without version).
    pub profile: &'static str,
    /// Upstream invariant key.
    pub key: &'static str,
    /// Upstream human text.
    pub human: &'static str,
    /// Parsed FHIRPath (evaluated on the resource).
    pub expr: Expr,
}

const RAW: &[(&str, &str, &str, &str)] = &[(
    "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS",
    "needs-localCode-observation-laboresult",
    "R6021:observation.code.codingには、ローカルコード記述が必須である。（system=\"http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS\")",
    "code.coding.where(system ='http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS').exists()",
)];

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    RAW.iter()
        .filter_map(|(profile, key, human, x)| Some(Rule { profile, key, human, expr: fhirpath::parse(x).ok()? }))
        .collect()
});

/// The supplementary rules of profile `url` (`|version` ignored).
pub fn rules_for(url: &str) -> impl Iterator<Item = &'static Rule> + '_ {
    let bare = url.split('|').next().unwrap_or(url);
    RULES.iter().filter(move |r| r.profile == bare)
}
