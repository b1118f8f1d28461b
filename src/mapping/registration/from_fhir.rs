//! FHIR R4 resources → registration: the inverse of [`super::to_fhir`].
//!
//! Input: the resources of one patient (e.g. what `to_fhir` produced, a search result or a transaction
//! Bundle's entries), in any order. The Patient is the one with a Tobiume-net card id
//! ([`super::CARD_ID_SYSTEM`]); other resources are recognised by their Tobiume-net profile (or, for
//! Observations, the [`RegistrationItem`] code) and must refer to that Patient. Resources of other
//! kinds (lab results, SS-MIX2 data, …) are ignored. Referenced Organizations/Practitioners are looked
//! up among the input by `Type/id`. Repeated items are ordered by the number at the end of their id
//! (`…-diagnosis-2`), then by input order.

use std::collections::HashMap;

use serde_json::Value;

use super::terminology::*;
use super::*;

type R<T> = Result<T, RegistrationError>;

/// A FHIRPath-style location inside a resource (`Condition.extension('item-meta').extension[0]`), kept
/// as a shared chain of segments and rendered only when an error names it: reading a registration
/// walks thousands of positions and reports almost none.
#[derive(Clone)]
struct Path<'a>(std::rc::Rc<PathNode<'a>>);

struct PathNode<'a> {
    parent: Option<Path<'a>>,
    seg: Seg<'a>,
}

enum Seg<'a> {
    Root(&'a str),
    Key(&'a str),
    Index(usize),
    Ext(&'a str),
}

impl<'a> Path<'a> {
    fn root(rtype: &'a str) -> Path<'a> {
        Path(std::rc::Rc::new(PathNode { parent: None, seg: Seg::Root(rtype) }))
    }
    fn child(&self, seg: Seg<'a>) -> Path<'a> {
        Path(std::rc::Rc::new(PathNode { parent: Some(self.clone()), seg }))
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.0.parent {
            write!(f, "{p}")?;
        }
        match &self.0.seg {
            Seg::Root(t) => f.write_str(t),
            Seg::Key(k) => write!(f, ".{k}"),
            Seg::Index(i) => write!(f, "[{i}]"),
            Seg::Ext(short) => write!(f, ".extension('{short}')"),
        }
    }
}

/// A position inside one resource: `Type/id`, a FHIRPath-style path and the value there (if any).
#[derive(Clone)]
struct Cur<'a> {
    res: &'a str,
    path: Path<'a>,
    v: Option<&'a Value>,
}

impl<'a> Cur<'a> {
    fn root(res: &'a str, rtype: &'a str, v: &'a Value) -> Self {
        Cur {
            res,
            path: Path::root(rtype),
            v: Some(v),
        }
    }
    fn get(&self, key: &'a str) -> Cur<'a> {
        Cur {
            res: self.res,
            path: self.path.child(Seg::Key(key)),
            v: self.v.and_then(|v| v.get(key)).filter(|v| !v.is_null()),
        }
    }
    fn missing(&self) -> RegistrationError {
        RegistrationError::Missing {
            resource: self.res.to_string(),
            path: self.path.to_string(),
        }
    }
    fn invalid(&self, message: &str) -> RegistrationError {
        RegistrationError::Invalid {
            resource: self.res.to_string(),
            path: self.path.to_string(),
            message: message.to_string(),
        }
    }
    fn present(&self) -> bool {
        self.v.is_some()
    }
    /// Array elements (missing → none; a non-array → error).
    fn items(&self) -> R<Vec<Cur<'a>>> {
        match self.v {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| Cur {
                    res: self.res,
                    path: self.path.child(Seg::Index(i)),
                    v: Some(v),
                })
                .collect()),
            Some(_) => Err(self.invalid("must be an array")),
        }
    }
    fn first(&self) -> R<Cur<'a>> {
        Ok(self.items()?.into_iter().next().unwrap_or(Cur {
            res: self.res,
            path: self.path.child(Seg::Index(0)),
            v: None,
        }))
    }
    /// Optional string (empty → `None`).
    fn str(&self) -> R<Option<&'a str>> {
        match self.v {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid("must be a string")),
        }
    }
    fn string(&self) -> R<Option<String>> {
        Ok(self.str()?.map(str::to_string))
    }
    fn req_str(&self) -> R<&'a str> {
        self.str()?.ok_or_else(|| self.missing())
    }
    /// The extension with `url` among this element's `extension`.
    fn ext(&self, url: &'a str) -> R<Cur<'a>> {
        let short = url.rsplit('/').next().unwrap_or(url);
        for e in self.get("extension").items()? {
            if e.get("url").str()? == Some(url) {
                return Ok(Cur {
                    res: self.res,
                    path: self.path.child(Seg::Ext(short)),
                    v: e.v,
                });
            }
        }
        Ok(Cur {
            res: self.res,
            path: self.path.child(Seg::Ext(short)),
            v: None,
        })
    }
    /// The codings of a CodeableConcept with `system`.
    fn code_in(&self, system: &str) -> R<Option<(Cur<'a>, &'a str)>> {
        for c in self.get("coding").items()? {
            if c.get("system").str()? == Some(system) {
                let code = c.get("code").req_str()?;
                return Ok(Some((c, code)));
            }
        }
        Ok(None)
    }
    /// A [`Choice`] value from this CodeableConcept's coding in the choice's system (required).
    fn choice<C: Choice>(&self) -> R<C> {
        let (c, code) = self
            .code_in(&C::system())?
            .ok_or_else(|| RegistrationError::Missing {
                resource: self.res.to_string(),
                path: format!("{}.coding('{}')", self.path, C::CS_ID),
            })?;
        C::from_code(code).ok_or_else(|| c.get("code").invalid("unknown code"))
    }
    /// The item's [`ItemMeta`] from the item-meta extension on this element (required).
    fn meta(&self) -> R<ItemMeta> {
        let e = self.ext(ext::ITEM_META)?;
        if !e.present() {
            return Err(e.missing());
        }
        let mut last = None;
        let mut author = None;
        let mut facility = None;
        for sub in e.get("extension").items()? {
            match sub.get("url").str()? {
                Some("lastUpdated") => last = Some(sub.get("valueDateTime")),
                Some("author") => author = Some(sub.get("valueString")),
                Some("authorFacility") => facility = Some(sub.get("valueString")),
                _ => {}
            }
        }
        let sub_missing = |name: &str| RegistrationError::Missing {
            resource: self.res.to_string(),
            path: format!("{}.extension('{name}')", e.path),
        };
        let last = last.ok_or_else(|| sub_missing("lastUpdated"))?;
        let last_updated =
            DateTime::new(last.req_str()?).ok_or_else(|| last.invalid("not a FHIR dateTime"))?;
        let author = author
            .ok_or_else(|| sub_missing("author"))?
            .req_str()?
            .to_string();
        let facility = match facility {
            Some(f) => f.string()?,
            None => None,
        };
        Ok(ItemMeta {
            last_updated,
            author: Author {
                name: author,
                facility,
            },
        })
    }
    fn date(&self) -> R<Option<Date>> {
        match self.str()? {
            None => Ok(None),
            Some(s) => Date::new(s)
                .map(Some)
                .ok_or_else(|| self.invalid("not a FHIR date")),
        }
    }
    fn note(&self) -> R<Option<String>> {
        self.get("note").first()?.get("text").string()
    }
}

/// One input resource.
struct Res<'a> {
    v: &'a Value,
    rtype: &'a str,
    key: String,
    profiles: Vec<&'a str>,
    index: usize,
}

impl<'a> Res<'a> {
    fn cur(&'a self) -> Cur<'a> {
        Cur::root(&self.key, self.rtype, self.v)
    }
    fn has_profile(&self, p: &str) -> bool {
        self.profiles.iter().any(|x| x.split('|').next() == Some(p))
    }
    /// Sort key: the number at the end of the id, then the input position.
    fn order(&self) -> (usize, usize) {
        let id = self.v.get("id").and_then(Value::as_str).unwrap_or("");
        let n = id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        (n, self.index)
    }
}

struct Ctx<'a> {
    by_key: HashMap<String, &'a Res<'a>>,
    patient_key: String,
}

impl<'a> Ctx<'a> {
    /// Resolves a Reference to `rtype` among the input.
    fn resolve(&self, r: &Cur<'a>, rtype: &str) -> R<&'a Res<'a>> {
        let rf = r.get("reference");
        let s = rf.req_str()?;
        let tail = tail_ref(s);
        if !tail.starts_with(&format!("{rtype}/")) {
            return Err(rf.invalid(&format!("must reference a {rtype}")));
        }
        self.by_key
            .get(tail)
            .copied()
            .ok_or_else(|| rf.invalid("referenced resource is not in the input"))
    }
    /// Checks that `r` (subject / patient / beneficiary) references the registration's Patient.
    fn is_patient(&self, r: &Cur<'a>) -> R<bool> {
        match r.get("reference").str()? {
            None => Ok(false),
            Some(s) => Ok(tail_ref(s) == self.patient_key),
        }
    }
}

/// `Type/id` at the end of a literal reference (relative or absolute, without `_history`).
fn tail_ref(s: &str) -> &str {
    let s = s.split("/_history/").next().unwrap_or(s);
    let mut parts = s.rsplitn(3, '/');
    let id = parts.next().unwrap_or("");
    let t = parts.next().unwrap_or("");
    let len = t.len() + 1 + id.len();
    if t.is_empty() || len > s.len() {
        s
    } else {
        &s[s.len() - len..]
    }
}

fn sorted<T>(mut v: Vec<((usize, usize), T)>) -> Vec<T> {
    v.sort_by_key(|(k, _)| *k);
    v.into_iter().map(|(_, t)| t).collect()
}

fn set_once<T>(slot: &mut Option<T>, value: T, at: &Cur) -> R<()> {
    if slot.is_some() {
        return Err(at.invalid("the item occurs more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn person_name(n: &Cur) -> R<PersonName> {
    let family = n.get("family").string()?;
    let given = n.get("given").first()?.string()?;
    match family {
        Some(family) => Ok(PersonName { family, given }),
        None => {
            let text = n.get("text").req_str()?;
            let mut parts = text.splitn(2, [' ', '\u{3000}']);
            let family = parts.next().unwrap_or("").to_string();
            let given = parts
                .next()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty());
            Ok(PersonName { family, given })
        }
    }
}

fn phone_of(t: &Cur) -> R<Option<Phone>> {
    if t.get("system").str()?.is_some_and(|s| s != "phone") {
        return Ok(None);
    }
    let number = t.get("value").req_str()?.to_string();
    let use_ = match t.get("use").str()? {
        None => PhoneUse::Home,
        Some(u) => PhoneUse::from_code(u)
            .ok_or_else(|| t.get("use").invalid("unsupported ContactPoint.use"))?,
    };
    Ok(Some(Phone { number, use_ }))
}

fn facility(res: &Res, preferred_system: &str) -> R<Facility> {
    let c = res.cur();
    let name = c.get("name").req_str()?.to_string();
    let mut code = None;
    for id in c.get("identifier").items()? {
        let v = id.get("value").string()?;
        if id.get("system").str()? == Some(preferred_system) {
            code = v;
            break;
        }
        if code.is_none() {
            code = v;
        }
    }
    let mut phone = None;
    for t in c.get("telecom").items()? {
        if t.get("system").str()? == Some("phone") {
            phone = t.get("value").string()?;
            break;
        }
    }
    let address = c.get("address").first()?.get("text").string()?;
    Ok(Facility {
        name,
        code,
        phone,
        address,
    })
}

fn professional(res: &Res) -> R<Professional> {
    let c = res.cur();
    let mut name = None;
    let mut kana = None;
    for n in c.get("name").items()? {
        let rep = n
            .ext("http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation")?
            .get("valueCode")
            .str()?;
        let text = match n.get("text").string()? {
            Some(t) => t,
            None => {
                let p = person_name(&n)?;
                match p.given {
                    Some(g) => format!("{} {g}", p.family),
                    None => p.family,
                }
            }
        };
        match rep {
            Some("SYL") => kana = kana.or(Some(text)),
            _ => name = name.or(Some(text)),
        }
    }
    let name = name.ok_or_else(|| c.get("name").missing())?;
    let mut phone = None;
    for t in c.get("telecom").items()? {
        if t.get("system").str()? == Some("phone") {
            phone = t.get("value").string()?;
            break;
        }
    }
    Ok(Professional {
        name,
        name_kana: kana,
        phone,
    })
}

fn decode_text(att: &Cur) -> R<String> {
    let data = att.get("data");
    let bytes = base64::decode(data.req_str()?).ok_or_else(|| data.invalid("not base64"))?;
    String::from_utf8(bytes).map_err(|_| data.invalid("not UTF-8 text"))
}

/// Maps the resources of one patient back to a [`Registration`].
///
/// Input: FHIR R4 resources as JSON (any order). Output: the registration, valid per
/// [`Registration::validate`]. Errors: [`RegistrationError::Missing`] / [`RegistrationError::Invalid`]
/// naming the resource (`Type/id`) and the FHIRPath-style location (e.g. `Patient.birthDate`,
/// `Condition.extension('item-meta')`); no Patient with a card id, several of them, an item resource
/// referring to another patient, an unresolvable reference, an unknown code, a bad date or a missing
/// item-meta extension are errors; [`RegistrationError::InvalidModel`] if the result breaks a model
/// rule (e.g. 6 main diagnoses). Never panics.
pub fn from_fhir(resources: &[Value]) -> Result<Registration, RegistrationError> {
    let all: Vec<Res> = resources
        .iter()
        .enumerate()
        .filter_map(|(index, v)| {
            let rtype = v.get("resourceType")?.as_str()?;
            let id = v.get("id").and_then(Value::as_str).unwrap_or("");
            let profiles = v
                .pointer("/meta/profile")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(Res {
                v,
                rtype,
                key: format!("{rtype}/{id}"),
                profiles,
                index,
            })
        })
        .collect();

    // ---- the Patient --------------------------------------------------------------------------------
    let mut patient = None;
    let mut card = None;
    for r in all.iter().filter(|r| r.rtype == "Patient") {
        for ident in r.cur().get("identifier").items()? {
            if ident.get("system").str()? == Some(CARD_ID_SYSTEM) {
                let v = ident.get("value");
                let c = CardId::new(v.req_str()?)
                    .ok_or_else(|| v.invalid("not a Tobiume-net card id"))?;
                if patient.is_some() {
                    return Err(RegistrationError::Invalid {
                        resource: r.key.clone(),
                        path: "Patient".into(),
                        message: "more than one Patient with a Tobiume-net card id in the input"
                            .into(),
                    });
                }
                patient = Some(r);
                card = Some(c);
                break;
            }
        }
    }
    let (Some(patient), Some(card_id)) = (patient, card) else {
        return Err(RegistrationError::Missing {
            resource: "Patient".into(),
            path:
                "Patient.identifier.where(system='http://tobiume-gateway.local/fhir/sid/card-id')"
                    .into(),
        });
    };
    let cx = Ctx {
        by_key: all.iter().map(|r| (r.key.clone(), r)).collect(),
        patient_key: patient.key.clone(),
    };
    let p = patient.cur();

    let mut kanji = None;
    let mut kana = None;
    for n in p.get("name").items()? {
        let rep = n
            .ext("http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation")?
            .get("valueCode");
        match rep.str()? {
            Some("IDE") => set_once(&mut kanji, Item::new(person_name(&n)?, n.meta()?), &n)?,
            Some("SYL") => set_once(&mut kana, Item::new(person_name(&n)?, n.meta()?), &n)?,
            _ => {}
        }
    }
    let name_kanji = kanji.ok_or_else(|| RegistrationError::Missing {
        resource: patient.key.clone(),
        path: "Patient.name(IDE)".into(),
    })?;
    let name_kana = kana.ok_or_else(|| RegistrationError::Missing {
        resource: patient.key.clone(),
        path: "Patient.name(SYL)".into(),
    })?;
    let bd = p.get("birthDate");
    let birth_date = Item::new(
        bd.date()?.ok_or_else(|| bd.missing())?,
        p.get("_birthDate").meta()?,
    );
    let g = p.get("gender");
    let sex = Item::new(
        Sex::from_code(g.req_str()?).ok_or_else(|| g.invalid("unknown gender"))?,
        p.get("_gender").meta()?,
    );
    let address = match p.get("address").items()?.into_iter().next() {
        None => None,
        Some(a) => {
            let text = match a.get("text").string()? {
                Some(t) => t,
                None => {
                    let mut t = String::new();
                    for k in ["state", "city"] {
                        t.push_str(a.get(k).str()?.unwrap_or(""));
                    }
                    for l in a.get("line").items()? {
                        t.push_str(l.str()?.unwrap_or(""));
                    }
                    if t.is_empty() {
                        return Err(a.get("text").missing());
                    }
                    t
                }
            };
            Some(Item::new(
                Address {
                    postal_code: a.get("postalCode").string()?,
                    text,
                },
                a.meta()?,
            ))
        }
    };
    let mut phones = Vec::new();
    for t in p.get("telecom").items()? {
        if let Some(ph) = phone_of(&t)? {
            phones.push(Item::new(ph, t.meta()?));
        }
    }
    let mut emergency_contacts = Vec::new();
    for c in p.get("contact").items()? {
        let mut is_emergency = false;
        let mut relationship = None;
        let mut relationship_text = None;
        for rel in c.get("relationship").items()? {
            if rel
                .code_in("http://terminology.hl7.org/CodeSystem/v2-0131")?
                .is_some_and(|(_, code)| code == "C")
            {
                is_emergency = true;
            }
            if let Some((cd, code)) = rel.code_in(&Relationship::system())? {
                relationship = Some(
                    Relationship::from_code(code)
                        .ok_or_else(|| cd.get("code").invalid("unknown code"))?,
                );
                relationship_text = rel.get("text").string()?;
            }
        }
        if !is_emergency {
            continue;
        }
        let name = match c.get("name").get("text").string()? {
            Some(t) => t,
            None => {
                let n = person_name(&c.get("name"))?;
                n.given
                    .map(|g| format!("{} {g}", n.family))
                    .unwrap_or(n.family)
            }
        };
        let mut cphones = Vec::new();
        for t in c.get("telecom").items()? {
            if let Some(ph) = phone_of(&t)? {
                cphones.push(ph);
            }
        }
        emergency_contacts.push(Item::new(
            EmergencyContact {
                name,
                relationship: relationship.unwrap_or(Relationship::Other),
                relationship_text,
                phones: cphones,
            },
            c.meta()?,
        ));
    }
    let mo = p.get("managingOrganization");
    if !mo.present() {
        return Err(mo.missing());
    }
    let registering_clinic = Item::new(
        facility(cx.resolve(&mo, "Organization")?, MEDICAL_INSTITUTION_SYSTEM)?,
        mo.meta()?,
    );
    let org_ext = |url: &str, system: &str| -> R<Option<Item<Facility>>> {
        let e = p.ext(url)?;
        if !e.present() {
            return Ok(None);
        }
        let vr = e.get("valueReference");
        if !vr.present() {
            return Err(vr.missing());
        }
        Ok(Some(Item::new(
            facility(cx.resolve(&vr, "Organization")?, system)?,
            vr.meta()?,
        )))
    };
    let emergency_referral_hospital =
        org_ext(ext::EMERGENCY_REFERRAL_HOSPITAL, MEDICAL_INSTITUTION_SYSTEM)?;
    let care_facility = org_ext(ext::CARE_FACILITY, LTC_PROVIDER_SYSTEM)?;

    let mut reg = Registration {
        card_id,
        demographics: Demographics {
            name_kanji,
            name_kana,
            birth_date,
            sex,
            address,
            phones,
        },
        registration: RegistrationInfo {
            registering_clinic,
            emergency_referral_hospital,
            insurance: None,
            residence_type: None,
            care_facility,
            emergency_contacts,
            attending_doctor: None,
            visiting_nurse_station: None,
            visiting_nurse: None,
            home_care_support_office: None,
            care_manager: None,
        },
        main_diagnoses: Vec::new(),
        history: None,
        prescriptions: Vec::new(),
        prescription_text: None,
        contraindicated_drugs: Vec::new(),
        allergies: Vec::new(),
        current_treatments: Vec::new(),
        adl: Adl::default(),
        disability: Disability::default(),
        care_level: None,
        impairments: Vec::new(),
        dementia: Dementia::default(),
        behaviour: None,
        emergency_care_wishes: None,
        acp: None,
        information_wishes: None,
        remarks: None,
    };

    let mut diagnoses = Vec::new();
    let mut prescriptions = Vec::new();
    let mut contraindicated = Vec::new();
    let mut allergies = Vec::new();
    let mut treatments = Vec::new();
    let mut impairments = Vec::new();
    let item_system = RegistrationItem::system();

    for r in &all {
        let c = r.cur();
        let subject = match r.rtype {
            "CareTeam"
            | "Observation"
            | "Condition"
            | "MedicationStatement"
            | "DeviceUseStatement"
            | "Procedure" => c.get("subject"),
            "AllergyIntolerance" | "Consent" => c.get("patient"),
            "Coverage" => c.get("beneficiary"),
            _ => continue,
        };
        // Only Tobiume-net resources (by profile, or an Observation with a registration-item code).
        let ours = r
            .profiles
            .iter()
            .any(|p| profile::ALL.contains(&p.split('|').next().unwrap_or("")));
        let obs_item = if r.rtype == "Observation" {
            c.get("code").code_in(&item_system)?
        } else {
            None
        };
        if !ours && obs_item.is_none() {
            continue;
        }
        if !cx.is_patient(&subject)? {
            return Err(subject.invalid("must reference the registration's Patient"));
        }
        match r.rtype {
            "CareTeam" => {
                let ri = &mut reg.registration;
                for part in c.get("participant").items()? {
                    let mut role = None;
                    for rc in part.get("role").items()? {
                        if rc.code_in(&CareTeamRole::system())?.is_some() {
                            role = Some(rc.choice::<CareTeamRole>()?);
                        }
                    }
                    let Some(role) = role else { continue };
                    let m = part.get("member");
                    let meta = part.meta()?;
                    match role {
                        CareTeamRole::AttendingDoctor => set_once(
                            &mut ri.attending_doctor,
                            Item::new(professional(cx.resolve(&m, "Practitioner")?)?, meta),
                            &part,
                        )?,
                        CareTeamRole::VisitingNurse => set_once(
                            &mut ri.visiting_nurse,
                            Item::new(professional(cx.resolve(&m, "Practitioner")?)?, meta),
                            &part,
                        )?,
                        CareTeamRole::CareManager => set_once(
                            &mut ri.care_manager,
                            Item::new(professional(cx.resolve(&m, "Practitioner")?)?, meta),
                            &part,
                        )?,
                        CareTeamRole::VisitingNurseStation => set_once(
                            &mut ri.visiting_nurse_station,
                            Item::new(
                                facility(
                                    cx.resolve(&m, "Organization")?,
                                    MEDICAL_INSTITUTION_SYSTEM,
                                )?,
                                meta,
                            ),
                            &part,
                        )?,
                        CareTeamRole::HomeCareSupportOffice => set_once(
                            &mut ri.home_care_support_office,
                            Item::new(
                                facility(cx.resolve(&m, "Organization")?, LTC_PROVIDER_SYSTEM)?,
                                meta,
                            ),
                            &part,
                        )?,
                    }
                }
            }
            "Coverage" => {
                let sym = c.ext("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol")?;
                let num = c.ext("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber")?;
                let sub = c.ext("http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber")?;
                let number = num.get("valueString").req_str()?.to_string();
                let mut insurer_number = None;
                for py in c.get("payor").items()? {
                    let idn = py.get("identifier");
                    if idn.get("system").str()? == Some(INSURER_NUMBER_SYSTEM) {
                        insurer_number = idn.get("value").string()?;
                    }
                }
                let ins = Insurance {
                    insurer_number,
                    symbol: sym.get("valueString").string()?,
                    number,
                    branch: sub.get("valueString").string()?,
                };
                set_once(
                    &mut reg.registration.insurance,
                    Item::new(ins, c.meta()?),
                    &c,
                )?;
            }
            "Condition" => {
                let code = c.get("code");
                let name = match code.get("text").string()? {
                    Some(t) => t,
                    None => code
                        .get("coding")
                        .first()?
                        .get("display")
                        .req_str()?
                        .to_string(),
                };
                let mut dcode = None;
                for cd in code.get("coding").items()? {
                    if let Some(sys) = cd
                        .get("system")
                        .str()?
                        .and_then(DiseaseCodeSystem::from_uri)
                    {
                        dcode = Some(DiseaseCode {
                            system: sys,
                            code: cd.get("code").req_str()?.to_string(),
                        });
                        break;
                    }
                }
                let onset = c.get("onsetDateTime").date()?;
                diagnoses.push((
                    r.order(),
                    Item::new(
                        Diagnosis {
                            name,
                            code: dcode,
                            onset,
                        },
                        c.meta()?,
                    ),
                ));
            }
            "MedicationStatement" => {
                let mc = c.get("medicationCodeableConcept");
                if mc
                    .code_in(&item_system)?
                    .is_some_and(|(_, code)| code == RegistrationItem::PrescriptionText.code())
                {
                    let text = mc.get("text").req_str()?.to_string();
                    set_once(&mut reg.prescription_text, Item::new(text, c.meta()?), &c)?;
                    continue;
                }
                let drug = match mc.get("text").string()? {
                    Some(t) => t,
                    None => mc
                        .get("coding")
                        .first()?
                        .get("display")
                        .req_str()?
                        .to_string(),
                };
                let mut dcode = None;
                for cd in mc.get("coding").items()? {
                    if let Some(sys) = cd.get("system").str()?.and_then(DrugCodeSystem::from_uri) {
                        dcode = Some(DrugCode {
                            system: sys,
                            code: cd.get("code").req_str()?.to_string(),
                        });
                        break;
                    }
                }
                let dosage = c.get("dosage").first()?.get("text").string()?;
                prescriptions.push((
                    r.order(),
                    Item::new(
                        Prescription {
                            drug,
                            code: dcode,
                            dosage,
                        },
                        c.meta()?,
                    ),
                ));
            }
            "AllergyIntolerance" => {
                let code = c.get("code");
                if r.has_profile(profile::ALLERGY)
                    || code.code_in(&AllergyKind::system())?.is_some()
                {
                    let kind = code.choice::<AllergyKind>()?;
                    allergies.push((
                        r.order(),
                        Item::new(
                            Allergy {
                                kind,
                                detail: code.get("text").string()?,
                            },
                            c.meta()?,
                        ),
                    ));
                } else if r.has_profile(profile::CONTRAINDICATED_DRUG) {
                    let drug = match code.get("text").string()? {
                        Some(t) => t,
                        None => code
                            .get("coding")
                            .first()?
                            .get("display")
                            .req_str()?
                            .to_string(),
                    };
                    let mut dcode = None;
                    for cd in code.get("coding").items()? {
                        if let Some(sys) =
                            cd.get("system").str()?.and_then(DrugCodeSystem::from_uri)
                        {
                            dcode = Some(DrugCode {
                                system: sys,
                                code: cd.get("code").req_str()?.to_string(),
                            });
                            break;
                        }
                    }
                    let reason = c.note()?;
                    contraindicated.push((
                        r.order(),
                        Item::new(
                            ContraindicatedDrug {
                                drug,
                                code: dcode,
                                reason,
                            },
                            c.meta()?,
                        ),
                    ));
                }
            }
            "DeviceUseStatement" => {
                let dev = cx.resolve(&c.get("device"), "Device")?;
                let ty = dev.cur().get("type");
                let kind = ty.choice::<TreatmentKind>()?;
                treatments.push((
                    r.order(),
                    Item::new(
                        CurrentTreatment {
                            kind,
                            detail: ty.get("text").string()?,
                        },
                        c.meta()?,
                    ),
                ));
            }
            "Procedure" => {
                let code = c.get("code");
                let kind = code.choice::<TreatmentKind>()?;
                treatments.push((
                    r.order(),
                    Item::new(
                        CurrentTreatment {
                            kind,
                            detail: code.get("text").string()?,
                        },
                        c.meta()?,
                    ),
                ));
            }
            "Consent" => {
                if r.has_profile(profile::CONSENT_EMERGENCY_CARE) {
                    if c.ext(ext::ITEM_META)?.present() {
                        let mut wishes = Vec::new();
                        for pv in c.get("provision").get("provision").items()? {
                            for code in pv.get("code").items()? {
                                wishes.push(code.choice::<EmergencyCareWish>()?);
                            }
                        }
                        set_once(
                            &mut reg.emergency_care_wishes,
                            Item::new(wishes, c.meta()?),
                            &c,
                        )?;
                    }
                    let att = c.get("sourceAttachment");
                    if att.present() {
                        set_once(
                            &mut reg.acp,
                            Item::new(decode_text(&att)?, att.meta()?),
                            &att,
                        )?;
                    }
                } else if r.has_profile(profile::CONSENT_INFORMATION) {
                    let mut sharing = None;
                    for cat in c.get("category").items()? {
                        if cat.code_in(&InformationSharing::system())?.is_some() {
                            sharing = Some(cat.choice::<InformationSharing>()?);
                        }
                    }
                    let att = c.get("sourceAttachment");
                    let text = if att.present() {
                        Some(decode_text(&att)?)
                    } else {
                        None
                    };
                    set_once(
                        &mut reg.information_wishes,
                        Item::new(InformationWishes { sharing, text }, c.meta()?),
                        &c,
                    )?;
                }
            }
            "Observation" => {
                let Some((coding, code)) = obs_item else {
                    continue;
                };
                let item = RegistrationItem::from_code(code)
                    .ok_or_else(|| coding.get("code").invalid("unknown code"))?;
                let meta = c.meta()?;
                let value = c.get("valueCodeableConcept");
                use RegistrationItem as I;
                match item {
                    I::ResidenceType => set_once(
                        &mut reg.registration.residence_type,
                        Item::new(value.choice()?, meta),
                        &c,
                    )?,
                    I::History => set_once(
                        &mut reg.history,
                        Item::new(c.get("valueString").req_str()?.to_string(), meta),
                        &c,
                    )?,
                    I::Remarks => set_once(
                        &mut reg.remarks,
                        Item::new(c.get("valueString").req_str()?.to_string(), meta),
                        &c,
                    )?,
                    I::AdlEating => set_once(
                        &mut reg.adl.eating,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::AdlFeedingRoute => set_once(
                        &mut reg.adl.feeding_route,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::AdlFoodForm => set_once(
                        &mut reg.adl.food_form,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::AdlExcretion => set_once(
                        &mut reg.adl.excretion,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::AdlMobility => set_once(
                        &mut reg.adl.mobility,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::AdlBreathing => set_once(
                        &mut reg.adl.breathing,
                        Item::new(
                            Assessment {
                                level: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                        &c,
                    )?,
                    I::PhysicalDisability => set_once(
                        &mut reg.disability.physical,
                        Item::new(value.choice()?, meta),
                        &c,
                    )?,
                    I::MentalDisability => set_once(
                        &mut reg.disability.mental,
                        Item::new(value.choice()?, meta),
                        &c,
                    )?,
                    I::RehabilitationCertificate => set_once(
                        &mut reg.disability.rehabilitation,
                        Item::new(value.choice()?, meta),
                        &c,
                    )?,
                    I::CareLevel => {
                        set_once(&mut reg.care_level, Item::new(value.choice()?, meta), &c)?
                    }
                    I::Impairment => impairments.push((
                        r.order(),
                        Item::new(
                            Impairment {
                                kind: value.choice()?,
                                note: c.note()?,
                            },
                            meta,
                        ),
                    )),
                    I::DementiaLevel => set_once(
                        &mut reg.dementia.level,
                        Item::new(value.choice()?, meta),
                        &c,
                    )?,
                    I::HdsR | I::Mmse => {
                        let q = c.get("valueQuantity").get("value");
                        let score = match q.v {
                            None => return Err(q.missing()),
                            Some(n) => n
                                .as_u64()
                                .filter(|s| *s <= u64::from(MAX_COGNITIVE_SCORE))
                                .ok_or_else(|| q.invalid("must be an integer 0-30"))?,
                        };
                        let s = CognitiveScore {
                            score: score as u8,
                            date: c.get("effectiveDateTime").date()?,
                        };
                        let slot = if item == I::HdsR {
                            &mut reg.dementia.hds_r
                        } else {
                            &mut reg.dementia.mmse
                        };
                        set_once(slot, Item::new(s, meta), &c)?;
                    }
                    I::Behaviour => {
                        let mut traits = Vec::new();
                        for comp in c.get("component").items()? {
                            traits.push(comp.get("code").choice::<BehaviourTrait>()?);
                        }
                        set_once(
                            &mut reg.behaviour,
                            Item::new(
                                Behaviour {
                                    traits,
                                    note: c.note()?,
                                },
                                meta,
                            ),
                            &c,
                        )?;
                    }
                    _ => return Err(coding.get("code").invalid("not an Observation item")),
                }
            }
            _ => {}
        }
    }
    reg.main_diagnoses = sorted(diagnoses);
    reg.prescriptions = sorted(prescriptions);
    reg.contraindicated_drugs = sorted(contraindicated);
    reg.allergies = sorted(allergies);
    reg.current_treatments = sorted(treatments);
    reg.impairments = sorted(impairments);
    match reg.validate() {
        Ok(()) => Ok(reg),
        Err(mut errs) => Err(errs.swap_remove(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_refs() {
        assert_eq!(tail_ref("Patient/x"), "Patient/x");
        assert_eq!(tail_ref("http://h/fhir/Patient/x"), "Patient/x");
        assert_eq!(tail_ref("Patient/x/_history/2"), "Patient/x");
        assert_eq!(tail_ref("x"), "x");
    }

    #[test]
    fn lazy_paths_render_like_fhirpath() {
        let v = serde_json::json!({"extension": [{"url": "http://x/item-meta"}],
            "code": {"coding": [{"system": "a"}, {"system": "b", "code": 7}]}});
        let root = Cur::root("Condition/c1", "Condition", &v);
        let coding = root.get("code").get("coding").items().unwrap();
        let err = coding[1].get("code").invalid("must be a string");
        match err {
            RegistrationError::Invalid { resource, path, .. } => {
                assert_eq!(resource, "Condition/c1");
                assert_eq!(path, "Condition.code.coding[1].code");
            }
            other => panic!("{other:?}"),
        }
        let meta = root.ext("http://x/item-meta").unwrap();
        assert!(meta.present());
        match meta.get("extension").first().unwrap().missing() {
            RegistrationError::Missing { path, .. } => {
                assert_eq!(path, "Condition.extension('item-meta').extension[0]")
            }
            other => panic!("{other:?}"),
        }
    }
}
