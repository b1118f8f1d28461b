//! The SearchParameter registry: which parameters exist for which resource type, their types,
//! targets and (lazily parsed, cached) FHIRPath expressions.
//!
//! Sources, in load order (later definitions with the same `code` and `base` replace earlier):
//! 1. the official FHIR R4 4.0.1 `search-parameters.json` Bundle (CC0), embedded from
//!    `conformance/searchparameters/search-parameters.json`;
//! 2. the gateway's own SearchParameters embedded from `conformance/searchparameters/`
//!    (currently the 8 JP Core 1.1.2 parameters: `jp-kana-sort`, `jp-insured-personnumber`, …);
//! 3. optionally, SearchParameter JSON added at run time ([`Registry::add_json`],
//!    [`Registry::load_dir`]).
//!
//! Spec: FHIR R4 `searchparameter.html`, `search.html#all` (parameters for all resources).

use super::ParamType;
use crate::fhirpath::{self, BinOp, Compiled, Expr, FhirPathError};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

const R4_BUNDLE: &str = include_str!("../../conformance/searchparameters/search-parameters.json");

/// Gateway-own SearchParameters, embedded (file name, JSON).
const GATEWAY_OWN: &[(&str, &str)] = &[
    (
        "SearchParameter-jp-coverage-insuredpersonnumber-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-coverage-insuredpersonnumber-sp.json"),
    ),
    (
        "SearchParameter-jp-coverage-insuredpersonsubnumber-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-coverage-insuredpersonsubnumber-sp.json"),
    ),
    (
        "SearchParameter-jp-coverage-insuredpersonsymbol-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-coverage-insuredpersonsymbol-sp.json"),
    ),
    (
        "SearchParameter-jp-medicationrequest-start-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-medicationrequest-start-sp.json"),
    ),
    (
        "SearchParameter-jp-organization-insuranceorganizationcategory-sp.json",
        include_str!(
            "../../conformance/searchparameters/SearchParameter-jp-organization-insuranceorganizationcategory-sp.json"
        ),
    ),
    (
        "SearchParameter-jp-organization-insuranceorganizationno-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-organization-insuranceorganizationno-sp.json"),
    ),
    (
        "SearchParameter-jp-organization-prefectureno-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-organization-prefectureno-sp.json"),
    ),
    (
        "SearchParameter-jp-patient-kanasort-sp.json",
        include_str!("../../conformance/searchparameters/SearchParameter-jp-patient-kanasort-sp.json"),
    ),
];

/// The 147 concrete resource types of FHIR R4 4.0.1.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment",
    "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
    "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry",
    "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression",
    "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition",
    "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
    "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest",
    "DocumentReference", "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest",
    "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable",
    "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
    "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy",
    "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide",
    "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure",
    "MeasureReport", "Media", "Medication", "MedicationAdministration", "MedicationDispense",
    "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
    "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "MessageDefinition", "MessageHeader", "MolecularSequence",
    "NamingSystem", "NutritionOrder", "Observation", "ObservationDefinition", "OperationDefinition",
    "OperationOutcome", "Organization", "OrganizationAffiliation", "Parameters", "Patient",
    "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner",
    "PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse",
    "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition",
    "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule",
    "SearchParameter", "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition",
    "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
    "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
    "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
    "VisionPrescription",
];

/// One component of a composite SearchParameter (`SearchParameter.component`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Canonical URL of the component's SearchParameter.
    pub definition: String,
    /// FHIRPath relative to the composite's expression result.
    pub expression: String,
}

/// One SearchParameter definition (the fields search needs).
/// Spec: FHIR R4 `searchparameter.html`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParamDef {
    /// `SearchParameter.url` (canonical), e.g. `http://hl7.org/fhir/SearchParameter/Patient-name`.
    pub url: String,
    /// `SearchParameter.code` — the name used in URLs (`name`, `_id`).
    pub code: String,
    /// `SearchParameter.type`.
    pub param_type: ParamType,
    /// `SearchParameter.base` — resource types (or `Resource` / `DomainResource`).
    pub base: Vec<String>,
    /// `SearchParameter.target` — allowed target types of a `reference` parameter.
    pub target: Vec<String>,
    /// `SearchParameter.expression` — FHIRPath text; `None` for `_text`, `_content`, `_query`.
    pub expression: Option<String>,
    /// `SearchParameter.component` for composites.
    pub components: Vec<Component>,
}

/// A definition bound to one resource type, with its expression compiled on first use.
#[derive(Debug)]
struct Bound {
    def: Arc<SearchParamDef>,
    /// The resource type this binding is for (`Patient`, or `Resource` / `DomainResource`).
    base: String,
    compiled: OnceLock<Result<Option<Compiled>, FhirPathError>>,
}

impl Bound {
    fn compiled(&self) -> Result<Option<&Compiled>, &FhirPathError> {
        self.compiled
            .get_or_init(|| compile_for(&self.def, &self.base).map(|e| e.map(Compiled::new)))
            .as_ref()
            .map(Option::as_ref)
    }

    fn expression(&self) -> Result<Option<&Expr>, &FhirPathError> {
        self.compiled().map(|c| c.map(Compiled::expr))
    }

    fn param(&self) -> BoundParam<'_> {
        let compiled = self.compiled().ok().flatten();
        BoundParam { def: &self.def, expression: compiled.map(Compiled::expr), compiled }
    }
}

/// Parses the expression and keeps only the `|` branches that apply to `base` (for multi-base
/// definitions like `clinical-patient` whose expression is a union over many types).
fn compile_for(def: &SearchParamDef, base: &str) -> Result<Option<Expr>, FhirPathError> {
    let Some(src) = def.expression.as_deref() else { return Ok(None) };
    let full = fhirpath::parse(src)?;
    if def.base.len() <= 1 {
        return Ok(Some(full));
    }
    let keep: Vec<&Expr> = full
        .union_branches()
        .into_iter()
        .filter(|b| match b.root_type() {
            Some(t) => t == base || t == "Resource" || t == "DomainResource",
            None => true,
        })
        .collect();
    let mut it = keep.into_iter().cloned();
    let Some(first) = it.next() else { return Ok(None) };
    Ok(Some(it.fold(first, |acc, e| Expr::Binary(BinOp::Union, Box::new(acc), Box::new(e)))))
}

/// A search parameter as it applies to one resource type: the definition and the compiled
/// expression branch for that type.
#[derive(Debug, Clone, Copy)]
pub struct BoundParam<'r> {
    /// The definition.
    pub def: &'r SearchParamDef,
    /// The FHIRPath to evaluate on resources of the type; `None` when the definition has no
    /// expression (`_text`, `_content`), no branch applies, or it failed to parse (see
    /// [`Registry::compile_all`]).
    pub expression: Option<&'r Expr>,
    /// The same expression with its direct navigation plan when it has one ([`Compiled`]); `Some`
    /// exactly when `expression` is. Extraction evaluates this.
    pub compiled: Option<&'r Compiled>,
}

/// Errors from loading SearchParameter definitions.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The JSON is malformed or not a SearchParameter / Bundle of SearchParameters.
    #[error("invalid SearchParameter JSON in {source_name}: {message}")]
    Invalid { source_name: String, message: String },
    /// `SearchParameter.type` is not a known search parameter type.
    #[error("SearchParameter {url}: unknown type `{ty}`")]
    UnknownType { url: String, ty: String },
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
}

/// One JSON document: a SearchParameter, or a Bundle whose entries are SearchParameters. A single
/// struct so the (2 MB) R4 bundle is scanned exactly once.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpIn {
    resource_type: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    code: String,
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    base: Vec<String>,
    #[serde(default)]
    target: Vec<String>,
    expression: Option<String>,
    #[serde(default)]
    component: Vec<CompIn>,
    #[serde(default)]
    entry: Vec<EntryIn>,
}
#[derive(Deserialize)]
struct EntryIn {
    resource: Option<SpIn>,
}
#[derive(Deserialize)]
struct CompIn {
    definition: String,
    expression: String,
}

/// All search parameters known to the server, by resource type and code.
///
/// Cheap to build (JSON scan only, ~1,400 definitions; expressions are parsed on first use and
/// cached), `Sync`: build once at start and share (`Arc<Registry>`).
#[derive(Debug, Default)]
pub struct Registry {
    /// resource type (incl. `Resource`, `DomainResource`) → code → binding
    types: HashMap<String, HashMap<String, Arc<Bound>>>,
    /// url → definition (for composite components)
    by_url: HashMap<String, Arc<SearchParamDef>>,
    /// resource type → its applicable bindings sorted by code ([`Registry::params_sorted`]), built on
    /// first use and dropped whenever a definition is added.
    sorted: RwLock<HashMap<String, ParamList>>,
}

/// The parameters applicable to one resource type, sorted by code (each code once): a cheap clone of a
/// shared list. Iterate with [`ParamList::iter`].
#[derive(Debug, Clone)]
pub struct ParamList(Arc<[Arc<Bound>]>);

impl ParamList {
    /// The parameters in code order, with their compiled expressions (parsed on first use).
    pub fn iter(&self) -> impl Iterator<Item = BoundParam<'_>> {
        self.0.iter().map(|b| b.param())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the type has no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Registry {
    /// An empty registry (tests / custom setups).
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The official FHIR R4 parameters plus the gateway's own (JP Core) — what the server uses.
    ///
    /// Output: the registry. Errors: none at run time (the embedded JSON is checked by tests);
    /// a malformed embedded file would be skipped, never panic.
    pub fn standard() -> Registry {
        let mut r = Registry::r4();
        for (name, text) in GATEWAY_OWN {
            // embedded and tested; an error here cannot happen at run time
            let _ = r.add_json_str(name, text);
        }
        r
    }

    /// Only the official FHIR R4 4.0.1 parameters.
    pub fn r4() -> Registry {
        let mut r = Registry::default();
        let _ = r.add_json_str("search-parameters.json", R4_BUNDLE);
        r
    }

    /// Adds a SearchParameter resource or a Bundle of them, given as JSON text.
    ///
    /// Input: `source_name` (for error messages), `text`. Output: number of definitions added.
    /// Errors: [`RegistryError::Invalid`] (not JSON / not a SearchParameter),
    /// [`RegistryError::UnknownType`]. Definitions with the same (`base`, `code`) replace older.
    pub fn add_json_str(&mut self, source_name: &str, text: &str) -> Result<usize, RegistryError> {
        let invalid = |m: String| RegistryError::Invalid { source_name: source_name.into(), message: m };
        let doc: SpIn = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let sps: Vec<SpIn> = match doc.resource_type.as_str() {
            "Bundle" => doc.entry.into_iter().filter_map(|e| e.resource).collect(),
            "SearchParameter" => vec![doc],
            other => return Err(invalid(format!("resourceType is {other}, expected SearchParameter or Bundle"))),
        };
        let mut n = 0;
        for sp in sps {
            if sp.resource_type != "SearchParameter" {
                continue;
            }
            if sp.code.is_empty() || sp.base.is_empty() {
                return Err(invalid(format!("SearchParameter {} has no code or base", sp.url)));
            }
            let param_type = ParamType::from_code(&sp.ty)
                .ok_or_else(|| RegistryError::UnknownType { url: sp.url.clone(), ty: sp.ty.clone() })?;
            let def = Arc::new(SearchParamDef {
                url: sp.url,
                code: sp.code,
                param_type,
                base: sp.base,
                target: sp.target,
                expression: sp.expression,
                components: sp
                    .component
                    .into_iter()
                    .map(|c| Component { definition: c.definition, expression: c.expression })
                    .collect(),
            });
            self.insert(def);
            n += 1;
        }
        Ok(n)
    }

    /// Adds a SearchParameter (or Bundle) given as a parsed JSON value; see [`Self::add_json_str`].
    pub fn add_json(&mut self, value: &serde_json::Value) -> Result<usize, RegistryError> {
        self.add_json_str("value", &value.to_string())
    }

    /// Adds every `*.json` file of `dir` (SearchParameter or Bundle). Output: definitions added.
    /// Errors: [`RegistryError::Io`] for unreadable directories/files, plus those of
    /// [`Self::add_json_str`].
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, RegistryError> {
        let io = |p: &Path, e: std::io::Error| RegistryError::Io { path: p.display().to_string(), message: e.to_string() };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut n = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| io(&f, e))?;
            n += self.add_json_str(&f.display().to_string(), &text)?;
        }
        Ok(n)
    }

    fn insert(&mut self, def: Arc<SearchParamDef>) {
        self.by_url.insert(def.url.clone(), def.clone());
        for base in &def.base {
            self.types.entry(base.clone()).or_default().insert(
                def.code.clone(),
                Arc::new(Bound { def: def.clone(), base: base.clone(), compiled: OnceLock::new() }),
            );
        }
        self.sorted.get_mut().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether `resource_type` is a FHIR R4 resource type or has parameters registered.
    pub fn is_resource_type(&self, resource_type: &str) -> bool {
        (R4_RESOURCE_TYPES.contains(&resource_type) || self.types.contains_key(resource_type))
            && resource_type != "Resource"
            && resource_type != "DomainResource"
    }

    fn is_domain_resource(resource_type: &str) -> bool {
        !matches!(resource_type, "Bundle" | "Binary" | "Parameters")
    }

    fn bound(&self, resource_type: &str, code: &str) -> Option<&Bound> {
        self.types
            .get(resource_type)
            .and_then(|m| m.get(code))
            .map(|b| &**b)
            .or_else(|| {
                Self::is_domain_resource(resource_type)
                    .then(|| self.types.get("DomainResource").and_then(|m| m.get(code)))
                    .flatten()
                    .map(|b| &**b)
            })
            .or_else(|| self.types.get("Resource").and_then(|m| m.get(code)).map(|b| &**b))
    }

    /// Looks up parameter `code` for `resource_type`, including the parameters defined on
    /// `Resource` (`_id`, `_lastUpdated`, `_profile`, `_tag`, `_security`, `_source`, …) and
    /// `DomainResource` (`_text`). Output: the definition, or `None` if unknown.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParamDef> {
        self.bound(resource_type, code).map(|b| &*b.def)
    }

    /// Like [`Self::get`] with the compiled expression for `resource_type` (parsed on first use).
    pub fn get_bound(&self, resource_type: &str, code: &str) -> Option<BoundParam<'_>> {
        self.bound(resource_type, code).map(Bound::param)
    }

    /// A definition by canonical URL (used for composite components).
    pub fn by_url(&self, url: &str) -> Option<&SearchParamDef> {
        self.by_url.get(url).map(|d| &**d)
    }

    /// Every parameter applicable to `resource_type` (own, `DomainResource`, `Resource`), with
    /// compiled expressions. Order is unspecified. For the code-sorted list see [`Self::params_sorted`].
    pub fn params_for(&self, resource_type: &str) -> Vec<BoundParam<'_>> {
        self.bindings_for(resource_type)
            .into_iter()
            .map(|b| b.param())
            .collect()
    }

    /// The bindings applicable to `resource_type`: its own, then `DomainResource`'s (for domain
    /// resources) and `Resource`'s that it does not override (each code once).
    fn bindings_for(&self, resource_type: &str) -> Vec<&Arc<Bound>> {
        let mut out = Vec::new();
        let mut push = |t: &str, skip: &dyn Fn(&str) -> bool| {
            if let Some(m) = self.types.get(t) {
                for (code, b) in m {
                    if !skip(code) {
                        out.push(b);
                    }
                }
            }
        };
        let own = self.types.get(resource_type);
        let has_own = |c: &str| own.is_some_and(|m| m.contains_key(c));
        push(resource_type, &|_| false);
        if Self::is_domain_resource(resource_type) {
            push("DomainResource", &has_own);
        }
        let dom = self.types.get("DomainResource");
        push("Resource", &|c| has_own(c) || (Self::is_domain_resource(resource_type) && dom.is_some_and(|m| m.contains_key(c))));
        out
    }

    /// The parameters applicable to `resource_type` (as [`Self::params_for`]) sorted by code — the
    /// order search-index extraction interns (type, parameter) keys in. Built once per type and shared
    /// (a clone is one reference count), so the per-resource extraction neither collects nor sorts.
    pub fn params_sorted(&self, resource_type: &str) -> ParamList {
        if let Some(l) = self.sorted.read().unwrap_or_else(|p| p.into_inner()).get(resource_type) {
            return l.clone();
        }
        let mut v: Vec<Arc<Bound>> = self.bindings_for(resource_type).into_iter().cloned().collect();
        v.sort_unstable_by(|a, b| a.def.code.cmp(&b.def.code));
        let list = ParamList(v.into());
        let mut w = self.sorted.write().unwrap_or_else(|p| p.into_inner());
        // an unknown type name (from input) is not cached: the map stays bounded by the registry's types
        if self.is_resource_type(resource_type) {
            w.insert(resource_type.to_string(), list.clone());
        }
        list
    }

    /// Codes of every parameter applicable to `resource_type` (for CapabilityStatement), sorted.
    pub fn codes_for(&self, resource_type: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self.params_for(resource_type).into_iter().map(|p| p.def.code.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Parses every expression now (instead of lazily). Output: `(total, failures)` where each
    /// failure is `(resource type, code, error)`. Use at start-up checks / tests.
    pub fn compile_all(&self) -> (usize, Vec<(String, String, FhirPathError)>) {
        let mut total = 0;
        let mut failed = Vec::new();
        for (ty, m) in &self.types {
            for (code, b) in m {
                if b.def.expression.is_none() {
                    continue;
                }
                total += 1;
                if let Err(e) = b.expression() {
                    failed.push((ty.clone(), code.clone(), e.clone()));
                }
            }
        }
        (total, failed)
    }

    /// Number of (resource type, code) bindings.
    pub fn len(&self) -> usize {
        self.types.values().map(HashMap::len).sum()
    }

    /// Whether the registry has no parameters.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_multi_base_lookup() {
        let r = Registry::standard();
        assert_eq!(r.get("Patient", "_id").unwrap().param_type, ParamType::Token);
        assert_eq!(r.get("Observation", "_lastUpdated").unwrap().param_type, ParamType::Date);
        for c in ["_profile", "_tag", "_security", "_source"] {
            assert!(r.get("Encounter", c).is_some(), "{c}");
        }
        let p = r.get_bound("Condition", "patient").unwrap();
        assert_eq!(p.def.param_type, ParamType::Reference);
        let e = p.expression.unwrap();
        assert_eq!(e.union_branches().len(), 1, "{e:?}");
        assert_eq!(e.root_type(), Some("Condition"));
        assert!(r.get("Patient", "jp-kana-sort").is_some());
        assert!(r.get("Patient", "nope").is_none());
        assert!(r.is_resource_type("Binary"));
        assert!(!r.is_resource_type("Resource"));
        let codes = r.codes_for("Patient");
        assert!(codes.contains(&"name") && codes.contains(&"_id") && codes.contains(&"phonetic"));
    }

    /// The cached code-sorted list is `params_for` sorted by code, for every type, and a definition
    /// added later is in it (the cache is dropped on insert).
    #[test]
    fn params_sorted_is_params_for_by_code() {
        let mut r = Registry::standard();
        for t in R4_RESOURCE_TYPES.iter().copied().chain(["NotAType"]) {
            let mut want: Vec<(&str, Option<*const Expr>)> =
                r.params_for(t).iter().map(|p| (p.def.code.as_str(), p.expression.map(|e| e as *const Expr))).collect();
            want.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for _ in 0..2 {
                let got = r.params_sorted(t);
                let got: Vec<_> = got.iter().map(|p| (p.def.code.as_str(), p.expression.map(|e| e as *const Expr))).collect();
                assert_eq!(got, want, "{t}");
            }
        }
        assert!(r.params_sorted("Patient").iter().all(|p| p.def.code != "aaa-custom"));
        let sp = r#"{"resourceType":"SearchParameter","url":"http://example.org/sp","code":"aaa-custom","type":"token","base":["Patient"],"expression":"Patient.gender"}"#;
        assert_eq!(r.add_json_str("t", sp).unwrap(), 1);
        let list = r.params_sorted("Patient");
        let added = list.iter().find(|p| p.def.code == "aaa-custom").expect("the added parameter is listed");
        assert!(added.expression.is_some());
        assert!(list.iter().zip(list.iter().skip(1)).all(|(a, b)| a.def.code < b.def.code), "sorted, each code once");
    }

    /// The parameters search-index extraction evaluates on the gateway's SS-MIX2 resources run as
    /// direct navigation plans, nearly all parameters of those types do (`fhirpath::Compiled`).
    #[test]
    fn common_parameters_have_plans() {
        let r = Registry::standard();
        for (t, code) in [
            ("Patient", "name"),
            ("Patient", "birthdate"),
            ("Observation", "code"),
            ("Observation", "patient"),
            ("Observation", "value-quantity"),
            ("Observation", "date"),
            ("Condition", "patient"),
            ("MedicationRequest", "medication"),
            ("Patient", "_id"),
        ] {
            let p = r.get_bound(t, code).unwrap();
            assert!(p.compiled.is_some_and(|c| c.has_plan()), "{t}.{code}: {:?}", p.expression);
        }
        for t in ["Patient", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Encounter"] {
            let list = r.params_sorted(t);
            let with = list.iter().filter(|p| p.compiled.is_some_and(|c| c.has_plan())).count();
            let total = list.iter().filter(|p| p.compiled.is_some()).count();
            eprintln!("{t}: {with} of {total} expressions with a plan");
            assert!(with * 10 >= total * 8, "{t}: {with} of {total}");
        }
    }

    #[test]
    fn every_expression_compiles() {
        let r = Registry::standard();
        let (total, failed) = r.compile_all();
        assert!(total > 1700, "{total}");
        assert!(failed.is_empty(), "{failed:?}");
    }

    #[test]
    #[ignore = "timing; run with --ignored --nocapture"]
    fn build_time() {
        let t = std::time::Instant::now();
        let r = Registry::standard();
        let build = t.elapsed();
        let t = std::time::Instant::now();
        let _ = r.compile_all();
        eprintln!("registry build {build:?}, compile all {:?}", t.elapsed());
    }
}
