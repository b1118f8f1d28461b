//! FHIR operations (`$name`, FHIR R4 §3.1.0.14 / `operations.html`), one submodule each.
//!
//! | route | operation |
//! |---|---|
//! | `POST /fhir/Patient/$register` | [`register`]: the simple registration JSON (Tobiume-net 患者基本情報) → JP Core resources, de-duplicated |
//! | `GET /fhir/Patient/{id}/$summary`, `GET /fhir/Patient/$summary?identifier=` | [`summary`]: emergency / multi-disciplinary summary (IPS-shaped document Bundle) |
//! | `POST /fhir/Patient/$match` | [`match_`]: FHIR R4 Patient `$match` / IHE PDQm ITI-119, scored and graded |
//! | `POST /fhir/Organization/{id}/$suspend`, `…/$resume` | [`suspend`]: the secretariat suspends / resumes a facility |
//!
//! Like every handler they read through `access::read_resources` and write through `access::write`.

pub mod match_;
pub mod register;
pub mod summary;
pub mod suspend;
