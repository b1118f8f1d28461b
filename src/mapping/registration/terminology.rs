//! The Tobiume-net choice lists (選択肢) as Rust enums, and the FHIR R4 CodeSystems / ValueSets built
//! from them.
//!
//! Every list is one enum declared with [`choice!`]: a stable, lower-case ASCII **code** (what the simple
//! registration JSON carries and what goes into `Coding.code`) and a **Japanese display** (what
//! Tobiume-net shows, `Coding.display`). The enum is the single source of truth: the JSON files in
//! `profiles/tobiume/CodeSystem-*.json` / `ValueSet-*.json` are exactly [`code_systems`] /
//! [`value_sets`] (the `registration_profiles` test fails when they drift; `TOBIUME_BLESS=1` rewrites
//! them).
//!
//! The lists follow the Tobiume-net plus registration form as described in `docs/domain.md` §1.1 (the
//! live form's exact wording is not public; displays use the terms of 介護保険法, 身体障害者福祉法,
//! 「認知症高齢者の日常生活自立度判定基準」 and JP Core where one exists).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use super::{CODE_SYSTEM_BASE, VALUE_SET_BASE};

/// One Tobiume-net choice list: a closed set of codes with Japanese displays, published as a FHIR R4
/// CodeSystem (`<base>/CodeSystem/<CS_ID>`) with an all-codes ValueSet (`<base>/ValueSet/<CS_ID>`).
pub trait Choice: Sized + Copy + 'static {
    /// CodeSystem id, e.g. `care-level` (also the last URL segment).
    const CS_ID: &'static str;
    /// CodeSystem title (Japanese), e.g. `介護保険 要介護度`.
    const TITLE: &'static str;
    /// What the list is, for `CodeSystem.description`.
    const DESCRIPTION: &'static str;
    /// Every value, in the order the form shows them.
    const ALL: &'static [Self];
    /// The stable code, e.g. `care-3`.
    fn code(self) -> &'static str;
    /// The Japanese display, e.g. `要介護3`.
    fn display(self) -> &'static str;
    /// The value for `code`, or `None` for an unknown code (case-sensitive).
    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }
    /// The CodeSystem canonical URL, `<base>/CodeSystem/<CS_ID>`.
    fn system() -> String {
        format!("{CODE_SYSTEM_BASE}/{}", Self::CS_ID)
    }
    /// A FHIR `Coding` `{system, code, display}` for this value.
    fn coding(self) -> Value {
        json!({ "system": Self::system(), "code": self.code(), "display": self.display() })
    }
}

/// Declares a [`Choice`] enum with serde as its code string.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident, $id:literal, $title:literal, $desc:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal : $display:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $code, "` — ", $display)]
                $(#[$vmeta])*
                $variant,
            )+
        }
        impl Choice for $name {
            const CS_ID: &'static str = $id;
            const TITLE: &'static str = $title;
            const DESCRIPTION: &'static str = $desc;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }
            fn display(self) -> &'static str {
                match self { $($name::$variant => $display),+ }
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$name as Choice>::from_code(&code).ok_or_else(|| {
                    serde::de::Error::custom(concat!("unknown code for ", $id))
                })
            }
        }
    };
}

choice! {
    /// The summary section (Tobiume-net plus view group) an item belongs to (`docs/domain.md` §1.1).
    /// Emergency mode (救急モード) shows [`Section::in_emergency_mode`] sections; multi-disciplinary mode
    /// (多職種連携モード) shows all.
    Section, "summary-section", "とびうめネット 患者基本情報の区分", "The groups of the Tobiume-net patient basic information, as shown in the emergency (救急モード) and multi-disciplinary (多職種連携モード) views." {
        Registration = "registration" : "患者基本情報",
        Prescriptions = "prescriptions" : "処方",
        ContraindicatedDrugs = "contraindicated-drugs" : "禁忌薬",
        MainDiagnoses = "main-diagnoses" : "主な病名",
        History = "history" : "病名・病歴等",
        Allergies = "allergies" : "アレルギー",
        CurrentTreatment = "current-treatment" : "現在の医療・処置",
        EmergencyCareWishes = "emergency-care-wishes" : "搬送先病院に希望する医療",
        PatientWishes = "patient-wishes" : "患者の意向",
        Remarks = "remarks" : "備考",
        Adl = "adl" : "日常生活状態",
        Disability = "disability" : "障害者医療",
        LongTermCare = "long-term-care" : "介護保険",
        Impairments = "impairments" : "障害情報",
        Dementia = "dementia" : "認知自立度",
        Behaviour = "behaviour" : "行動の特徴",
    }
}

impl Section {
    /// `true` for the sections of 救急モード: registration (incl. the emergency referral hospital),
    /// prescriptions, contraindicated drugs, main diagnoses, history, allergies, current treatment and
    /// wishes for emergency care (`docs/domain.md` §1.1).
    pub fn in_emergency_mode(self) -> bool {
        matches!(
            self,
            Section::Registration
                | Section::Prescriptions
                | Section::ContraindicatedDrugs
                | Section::MainDiagnoses
                | Section::History
                | Section::Allergies
                | Section::CurrentTreatment
                | Section::EmergencyCareWishes
        )
    }

    /// Always `true`: 多職種連携モード shows every section.
    pub fn in_multidisciplinary_mode(self) -> bool {
        true
    }
}

choice! {
    /// Every registered item of `docs/domain.md` §1.1; used as `Observation.code` of the observation
    /// items and in error messages. Each item has its own last-updated date and author.
    RegistrationItem, "registration-item", "とびうめネット 患者基本情報の項目", "Every item of the Tobiume-net patient basic information (患者基本情報), each with its own last-updated date and author." {
        NameKanji = "name-kanji" : "氏名（漢字）",
        NameKana = "name-kana" : "氏名（カナ）",
        BirthDate = "birth-date" : "生年月日",
        Sex = "sex" : "性別",
        Address = "address" : "住所",
        Phone = "phone" : "電話番号",
        RegisteringClinic = "registering-clinic" : "登録医療機関",
        EmergencyReferralHospital = "emergency-referral-hospital" : "緊急時紹介先医療機関",
        Insurance = "insurance" : "保険（記号・番号）",
        ResidenceType = "residence-type" : "居住形態",
        CareFacility = "care-facility" : "入所施設",
        EmergencyContact = "emergency-contact" : "緊急連絡先",
        AttendingDoctor = "attending-doctor" : "主治医",
        VisitingNurseStation = "visiting-nurse-station" : "訪問看護ステーション",
        VisitingNurse = "visiting-nurse" : "訪問看護師",
        HomeCareSupportOffice = "home-care-support-office" : "居宅介護支援事業所",
        CareManager = "care-manager" : "介護支援専門員（ケアマネジャー）",
        MainDiagnosis = "main-diagnosis" : "主な病名",
        History = "history" : "病名・病歴等",
        Prescription = "prescription" : "処方",
        PrescriptionText = "prescription-text" : "処方（自由記載）",
        ContraindicatedDrug = "contraindicated-drug" : "禁忌薬",
        Allergy = "allergy" : "アレルギー",
        CurrentTreatment = "current-treatment" : "現在の医療・処置",
        AdlEating = "adl-eating" : "食事",
        AdlFeedingRoute = "adl-feeding-route" : "栄養摂取経路",
        AdlFoodForm = "adl-food-form" : "食事形態",
        AdlExcretion = "adl-excretion" : "排泄",
        AdlMobility = "adl-mobility" : "移動",
        AdlBreathing = "adl-breathing" : "呼吸",
        PhysicalDisability = "physical-disability" : "身体障害者手帳（等級）",
        MentalDisability = "mental-disability" : "精神障害者保健福祉手帳（等級）",
        RehabilitationCertificate = "rehabilitation-certificate" : "療育手帳（判定）",
        CareLevel = "care-level" : "介護保険（要介護度）",
        Impairment = "impairment" : "障害情報",
        DementiaLevel = "dementia-level" : "認知症高齢者の日常生活自立度",
        HdsR = "hds-r" : "改訂長谷川式簡易知能評価スケール（HDS-R）",
        Mmse = "mmse" : "MMSE（Mini-Mental State Examination）",
        Behaviour = "behaviour" : "行動の特徴",
        EmergencyCareWishes = "emergency-care-wishes" : "搬送先病院に希望する医療",
        Acp = "acp" : "ACP（人生会議）の記録",
        InformationWishes = "information-wishes" : "患者の意向（情報の取扱い）",
        Remarks = "remarks" : "備考",
    }
}

impl RegistrationItem {
    /// The summary section the item is shown in.
    pub fn section(self) -> Section {
        use RegistrationItem::*;
        match self {
            NameKanji
            | NameKana
            | BirthDate
            | Sex
            | Address
            | Phone
            | RegisteringClinic
            | EmergencyReferralHospital
            | Insurance
            | ResidenceType
            | CareFacility
            | EmergencyContact
            | AttendingDoctor
            | VisitingNurseStation
            | VisitingNurse
            | HomeCareSupportOffice
            | CareManager => Section::Registration,
            MainDiagnosis => Section::MainDiagnoses,
            History => Section::History,
            Prescription | PrescriptionText => Section::Prescriptions,
            ContraindicatedDrug => Section::ContraindicatedDrugs,
            Allergy => Section::Allergies,
            CurrentTreatment => Section::CurrentTreatment,
            AdlEating | AdlFeedingRoute | AdlFoodForm | AdlExcretion | AdlMobility
            | AdlBreathing => Section::Adl,
            PhysicalDisability | MentalDisability | RehabilitationCertificate => {
                Section::Disability
            }
            CareLevel => Section::LongTermCare,
            Impairment => Section::Impairments,
            DementiaLevel | HdsR | Mmse => Section::Dementia,
            Behaviour => Section::Behaviour,
            EmergencyCareWishes | Acp => Section::EmergencyCareWishes,
            InformationWishes => Section::PatientWishes,
            Remarks => Section::Remarks,
        }
    }
}

choice! {
    /// アレルギー: the allergy check boxes of the form.
    AllergyKind, "allergy-kind", "とびうめネット アレルギー区分", "The allergy choices of the Tobiume-net form (unknown / iodine / food / asthma / metal / other)." {
        Unknown = "unknown" : "不明",
        Iodine = "iodine" : "ヨード",
        Food = "food" : "食物",
        Asthma = "asthma" : "喘息",
        Metal = "metal" : "金属",
        Other = "other" : "その他",
    }
}

choice! {
    /// 現在の医療・処置: the current-treatment check boxes of the form.
    TreatmentKind, "current-treatment", "とびうめネット 現在の医療・処置", "The current-treatment choices of the Tobiume-net form (unknown / pacemaker / implanted metal / stoma / dialysis / other)." {
        Unknown = "unknown" : "不明",
        Pacemaker = "pacemaker" : "ペースメーカー",
        ImplantedMetal = "implanted-metal" : "体内金属",
        Stoma = "stoma" : "ストーマ（人工肛門・人工膀胱）",
        Dialysis = "dialysis" : "透析",
        Other = "other" : "その他",
    }
}

impl TreatmentKind {
    /// `true` for treatments that are an implanted device (Device + DeviceUseStatement); the others are
    /// Procedures.
    pub fn is_device(self) -> bool {
        matches!(
            self,
            TreatmentKind::Pacemaker | TreatmentKind::ImplantedMetal
        )
    }
}

choice! {
    /// ADL assistance level (食事・排泄・移動).
    AssistanceLevel, "adl-assistance-level", "とびうめネット ADL 介助の程度", "Level of assistance for eating, excretion and mobility (independent / supervised / partial / full assistance)." {
        Independent = "independent" : "自立",
        Supervised = "supervised" : "見守り",
        PartialAssistance = "partial-assistance" : "一部介助",
        FullAssistance = "full-assistance" : "全介助",
    }
}

choice! {
    /// 栄養摂取経路 (feeding route).
    FeedingRoute, "adl-feeding-route", "とびうめネット 栄養摂取経路", "Feeding route." {
        Oral = "oral" : "経口",
        NasogastricTube = "nasogastric-tube" : "経鼻経管栄養",
        Gastrostomy = "gastrostomy" : "胃ろう",
        Jejunostomy = "jejunostomy" : "腸ろう",
        CentralVenous = "central-venous" : "中心静脈栄養",
        PeripheralVenous = "peripheral-venous" : "末梢点滴",
    }
}

choice! {
    /// 食事形態 (food form).
    FoodForm, "adl-food-form", "とびうめネット 食事形態", "Food form." {
        Regular = "regular" : "普通食",
        Soft = "soft" : "軟菜食",
        Minced = "minced" : "きざみ食",
        Pureed = "pureed" : "ミキサー食",
        Jelly = "jelly" : "ゼリー食",
        Liquid = "liquid" : "流動食",
        NothingByMouth = "nothing-by-mouth" : "経口摂取なし",
    }
}

choice! {
    /// 呼吸 (breathing).
    Breathing, "adl-breathing", "とびうめネット 呼吸", "Breathing support." {
        Spontaneous = "spontaneous" : "自発呼吸（補助なし）",
        HomeOxygen = "home-oxygen" : "在宅酸素療法",
        Tracheostomy = "tracheostomy" : "気管切開",
        NonInvasiveVentilation = "non-invasive-ventilation" : "非侵襲的陽圧換気（NPPV）",
        InvasiveVentilation = "invasive-ventilation" : "人工呼吸器（侵襲的）",
    }
}

choice! {
    /// 介護保険 要介護度 (long-term care insurance level, 介護保険法第7条).
    CareLevel, "care-level", "介護保険 要介護度", "Long-term care insurance certification level (要支援1–2 / 要介護1–5), or applying / none / unknown." {
        Support1 = "support-1" : "要支援1",
        Support2 = "support-2" : "要支援2",
        Care1 = "care-1" : "要介護1",
        Care2 = "care-2" : "要介護2",
        Care3 = "care-3" : "要介護3",
        Care4 = "care-4" : "要介護4",
        Care5 = "care-5" : "要介護5",
        Applying = "applying" : "申請中",
        None = "none" : "なし（非該当・未申請）",
        Unknown = "unknown" : "不明",
    }
}

choice! {
    /// 認知症高齢者の日常生活自立度 (MHLW 判定基準, 平成18年老発0403003号).
    DementiaLevel, "dementia-independence-level", "認知症高齢者の日常生活自立度", "Independence level of daily living for elderly people with dementia (自立, Ⅰ, Ⅱa, Ⅱb, Ⅲa, Ⅲb, Ⅳ, M)." {
        Independent = "independent" : "自立",
        I = "1" : "Ⅰ",
        IIa = "2a" : "Ⅱa",
        IIb = "2b" : "Ⅱb",
        IIIa = "3a" : "Ⅲa",
        IIIb = "3b" : "Ⅲb",
        IV = "4" : "Ⅳ",
        M = "m" : "M",
    }
}

choice! {
    /// 居住形態 (residence type).
    ResidenceType, "residence-type", "とびうめネット 居住形態", "Where and how the patient lives." {
        HomeAlone = "home-alone" : "自宅（独居）",
        HomeWithOthers = "home-with-others" : "自宅（同居者あり）",
        SeniorHousing = "senior-housing" : "サービス付き高齢者向け住宅・有料老人ホーム",
        GroupHome = "group-home" : "グループホーム",
        CareFacility = "care-facility" : "介護保険施設（特別養護老人ホーム・介護老人保健施設等）",
        Hospital = "hospital" : "病院（入院中）",
        Other = "other" : "その他",
    }
}

choice! {
    /// 搬送先病院に希望する医療 (wishes for emergency care).
    EmergencyCareWish, "emergency-care-wish", "とびうめネット 搬送先病院に希望する医療", "The patient's wishes for care at the emergency hospital (advance directive choices)." {
        Undecided = "undecided" : "未定",
        FullTreatment = "full-treatment" : "可能な限りの救命処置を希望する",
        NoCpr = "no-cpr" : "心肺蘇生を希望しない",
        NoIntubationVentilation = "no-intubation-ventilation" : "気管挿管・人工呼吸器を希望しない",
        NoTubeFeeding = "no-tube-feeding" : "経管栄養・胃ろうを希望しない",
        NoDialysis = "no-dialysis" : "透析を希望しない",
        ComfortCareOnly = "comfort-care-only" : "苦痛緩和のみを希望する",
        NoTransport = "no-transport" : "救急搬送を希望しない（在宅での看取りを希望する）",
        Other = "other" : "その他",
    }
}

impl EmergencyCareWish {
    /// `deny` for refusals (`no-…`), `permit` otherwise (Consent.provision.type, FHIR R4 §Consent).
    pub fn provision_type(self) -> &'static str {
        match self {
            EmergencyCareWish::NoCpr
            | EmergencyCareWish::NoIntubationVentilation
            | EmergencyCareWish::NoTubeFeeding
            | EmergencyCareWish::NoDialysis
            | EmergencyCareWish::NoTransport => "deny",
            _ => "permit",
        }
    }
}

choice! {
    /// 身体障害者手帳の等級 (身体障害者福祉法施行規則 別表第5号, 1–6級).
    PhysicalDisabilityGrade, "physical-disability-grade", "身体障害者手帳 等級", "Grade of the physical disability certificate (身体障害者手帳)." {
        Grade1 = "1" : "1級",
        Grade2 = "2" : "2級",
        Grade3 = "3" : "3級",
        Grade4 = "4" : "4級",
        Grade5 = "5" : "5級",
        Grade6 = "6" : "6級",
    }
}

choice! {
    /// 精神障害者保健福祉手帳の等級 (1–3級).
    MentalDisabilityGrade, "mental-disability-grade", "精神障害者保健福祉手帳 等級", "Grade of the mental disability certificate (精神障害者保健福祉手帳)." {
        Grade1 = "1" : "1級",
        Grade2 = "2" : "2級",
        Grade3 = "3" : "3級",
    }
}

choice! {
    /// 療育手帳の障害程度 (Fukuoka prefecture: A 重度, B1 中度, B2 軽度).
    RehabilitationGrade, "rehabilitation-certificate-grade", "療育手帳 障害の程度", "Grade of the rehabilitation certificate for intellectual disability (療育手帳), Fukuoka prefecture's A / B1 / B2." {
        A = "a" : "A（重度）",
        B1 = "b1" : "B1（中度）",
        B2 = "b2" : "B2（軽度）",
    }
}

choice! {
    /// 障害情報 (impairments).
    ImpairmentKind, "impairment", "とびうめネット 障害情報", "Impairments relevant to care (swallowing, visual, motor, hearing, speech)." {
        Swallowing = "swallowing" : "嚥下障害",
        Visual = "visual" : "視覚障害",
        Motor = "motor" : "運動障害（麻痺等）",
        Hearing = "hearing" : "聴覚障害",
        Speech = "speech" : "言語障害",
    }
}

choice! {
    /// 行動の特徴 (behaviour).
    BehaviourTrait, "behaviour", "とびうめネット 行動の特徴", "Behavioural features relevant to care (BPSD and similar)." {
        Wandering = "wandering" : "徘徊",
        Aggression = "aggression" : "暴言・暴力",
        CareRefusal = "care-refusal" : "介護への抵抗",
        DayNightReversal = "day-night-reversal" : "昼夜逆転",
        Agitation = "agitation" : "不穏・興奮",
        DelusionHallucination = "delusion-hallucination" : "妄想・幻覚",
        Pica = "pica" : "異食",
        UnhygienicBehaviour = "unhygienic-behaviour" : "不潔行為",
        Repetition = "repetition" : "同じ話・行動の繰り返し",
    }
}

choice! {
    /// 緊急連絡先の続柄 (relationship of an emergency contact).
    Relationship, "contact-relationship", "とびうめネット 緊急連絡先の続柄", "Relationship of an emergency contact to the patient." {
        Spouse = "spouse" : "配偶者",
        Child = "child" : "子",
        ChildInLaw = "child-in-law" : "子の配偶者",
        Parent = "parent" : "親",
        Sibling = "sibling" : "兄弟姉妹",
        Grandchild = "grandchild" : "孫",
        OtherRelative = "other-relative" : "その他の親族",
        Guardian = "guardian" : "成年後見人",
        Friend = "friend" : "知人・友人",
        Other = "other" : "その他",
    }
}

choice! {
    /// Roles in the patient's care team (CareTeam.participant.role).
    CareTeamRole, "care-team-role", "とびうめネット ケアチームの役割", "Roles of the members of the patient's care team (多職種連携)." {
        AttendingDoctor = "attending-doctor" : "主治医",
        VisitingNurseStation = "visiting-nurse-station" : "訪問看護ステーション",
        VisitingNurse = "visiting-nurse" : "訪問看護師",
        HomeCareSupportOffice = "home-care-support-office" : "居宅介護支援事業所",
        CareManager = "care-manager" : "介護支援専門員（ケアマネジャー）",
    }
}

choice! {
    /// 患者の意向: with whom the patient wishes the information to be shared.
    InformationSharing, "information-sharing", "とびうめネット 情報共有に関する患者の意向", "The patient's wish about who may view the registered information." {
        AllParticipants = "all-participants" : "とびうめネット参加施設での閲覧を希望する",
        CareTeamOnly = "care-team-only" : "ケアチーム（かかりつけ医・多職種）内のみでの共有を希望する",
        EmergencyOnly = "emergency-only" : "救急時のみの閲覧を希望する",
    }
}

/// One CodeSystem definition, as published (see [`code_systems`]).
#[derive(Debug, Clone)]
pub struct CodeSystemDef {
    /// CodeSystem id and last URL segment.
    pub id: &'static str,
    /// Japanese title.
    pub title: &'static str,
    /// Description.
    pub description: &'static str,
    /// `(code, display)` in form order.
    pub concepts: Vec<(&'static str, &'static str)>,
}

fn def<T: Choice>() -> CodeSystemDef {
    CodeSystemDef {
        id: T::CS_ID,
        title: T::TITLE,
        description: T::DESCRIPTION,
        concepts: T::ALL.iter().map(|c| (c.code(), c.display())).collect(),
    }
}

/// Every Tobiume-net choice list, in a fixed order.
pub fn definitions() -> Vec<CodeSystemDef> {
    vec![
        def::<Section>(),
        def::<RegistrationItem>(),
        def::<AllergyKind>(),
        def::<TreatmentKind>(),
        def::<AssistanceLevel>(),
        def::<FeedingRoute>(),
        def::<FoodForm>(),
        def::<Breathing>(),
        def::<CareLevel>(),
        def::<DementiaLevel>(),
        def::<ResidenceType>(),
        def::<EmergencyCareWish>(),
        def::<PhysicalDisabilityGrade>(),
        def::<MentalDisabilityGrade>(),
        def::<RehabilitationGrade>(),
        def::<ImpairmentKind>(),
        def::<BehaviourTrait>(),
        def::<Relationship>(),
        def::<CareTeamRole>(),
        def::<InformationSharing>(),
    ]
}

/// The publication metadata shared by every Tobiume-net conformance resource.
pub(crate) const PUBLISHER: &str = "福岡県医師会 とびうめネット (tobiume-gateway)";
/// Version of the Tobiume-net conformance resources.
pub(crate) const VERSION: &str = "0.1.0";
/// Date of the Tobiume-net conformance resources.
pub(crate) const DATE: &str = "2026-11-21";

fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Every choice list as a FHIR R4 `CodeSystem` (status `active`, `content` `complete`,
/// `caseSensitive` true, `valueSet` = the matching all-codes ValueSet, `language` `ja`).
pub fn code_systems() -> Vec<Value> {
    definitions()
        .into_iter()
        .map(|d| {
            json!({
                "resourceType": "CodeSystem",
                "id": d.id,
                "language": "ja",
                "url": format!("{CODE_SYSTEM_BASE}/{}", d.id),
                "version": VERSION,
                "name": format!("Tobiume{}", pascal(d.id)),
                "title": d.title,
                "status": "active",
                "experimental": false,
                "date": DATE,
                "publisher": PUBLISHER,
                "description": d.description,
                "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "JP"}]}],
                "caseSensitive": true,
                "valueSet": format!("{VALUE_SET_BASE}/{}", d.id),
                "content": "complete",
                "count": d.concepts.len(),
                "concept": d.concepts.iter().map(|(c, disp)| json!({"code": c, "display": disp})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// One all-codes FHIR R4 `ValueSet` per choice list (`compose.include.system` = the CodeSystem).
pub fn value_sets() -> Vec<Value> {
    definitions()
        .into_iter()
        .map(|d| {
            json!({
                "resourceType": "ValueSet",
                "id": d.id,
                "language": "ja",
                "url": format!("{VALUE_SET_BASE}/{}", d.id),
                "version": VERSION,
                "name": format!("Tobiume{}VS", pascal(d.id)),
                "title": d.title,
                "status": "active",
                "experimental": false,
                "date": DATE,
                "publisher": PUBLISHER,
                "description": format!("All codes of {CODE_SYSTEM_BASE}/{}. {}", d.id, d.description),
                "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "JP"}]}],
                "compose": {"include": [{"system": format!("{CODE_SYSTEM_BASE}/{}", d.id)}]},
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_roundtrip() {
        for d in definitions() {
            let mut seen = std::collections::HashSet::new();
            for (c, disp) in &d.concepts {
                assert!(seen.insert(*c), "{}: duplicate {c}", d.id);
                assert!(!disp.is_empty());
            }
        }
        assert_eq!(CareLevel::from_code("care-3"), Some(CareLevel::Care3));
        assert_eq!(DementiaLevel::IIa.display(), "Ⅱa");
        assert_eq!(
            serde_json::to_value(CareLevel::Support1).unwrap(),
            json!("support-1")
        );
        assert!(serde_json::from_value::<CareLevel>(json!("care-9")).is_err());
    }
}
