//! HL7 v2.5 messages as SS-MIX2 stores them: bytes → UTF-8 segments → fields, with JAHIS conventions.
//!
//! Pipeline (see `docs/decisions/0001-hl7v2-parsing.md` for why this is our own code, not `hl7-parser`):
//! 1. strip MLLP framing bytes (a leading 0x0B, trailing 0x1C — every file of the real SS-MIX2 sample
//!    ends with CR 0x1C);
//! 2. split the raw **bytes** into segments on CR, LF or CRLF (0x0D/0x0A never occur inside
//!    ISO-2022-JP, Shift_JIS or UTF-8 multi-byte sequences), recording non-CR terminators as warnings
//!    (HL7 v2.5 §2.5.2 and SS-MIX2 require CR);
//! 3. pick the charset from MSH-18 (HL7 table 0211: `ISO IR87` → ISO-2022-JP, `UNICODE UTF-8`, or a
//!    per-source override, see [`Charset`]);
//! 4. decode each segment **separately** with a fresh decoder so one broken kanji run (a sender that
//!    forgot `ESC ( B`) cannot corrupt the segments after it — and decode *before* splitting fields,
//!    because JIS X 0208 byte pairs contain the delimiter bytes `| ^ ~ \ &`;
//! 5. split fields/repetitions/components/subcomponents on the decoded text; unescape values
//!    ([`unescape`], HL7 v2.5 §2.7) only when a value is read.
//!
//! Errors: [`DecodeError`] when the bytes are not an HL7 v2 message at all; everything recoverable is a
//! [`DecodeWarning`] carried with the [`Message`].

mod escape;

pub use escape::unescape;

use std::borrow::Cow;
use std::fmt;

/// Character set of a message (HL7 v2.5 MSH-18, table 0211).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// Decide from MSH-18; when MSH-18 is empty: ISO-2022-JP if the bytes contain ESC sequences
    /// (reported as a warning), else UTF-8.
    #[default]
    Auto,
    /// ISO-2022-JP (JIS X 0208 via `ESC $ B`; MSH-18 `ISO IR87`) — the SS-MIX2 standard encoding.
    Iso2022Jp,
    /// UTF-8 (MSH-18 `UNICODE UTF-8`).
    Utf8,
    /// Shift_JIS / Windows-31J (not in table 0211, but sent by some Japanese systems as `SJIS`).
    ShiftJis,
}

impl Charset {
    fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            Charset::Iso2022Jp => encoding_rs::ISO_2022_JP,
            Charset::ShiftJis => encoding_rs::SHIFT_JIS,
            Charset::Utf8 | Charset::Auto => encoding_rs::UTF_8,
        }
    }

    /// Parses a CLI / config name: `auto`, `iso-2022-jp`, `utf-8`, `shift_jis` (case-insensitive).
    /// Returns `None` for anything else.
    pub fn from_name(name: &str) -> Option<Charset> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Some(Charset::Auto),
            "iso-2022-jp" | "iso2022jp" | "jis" => Some(Charset::Iso2022Jp),
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "shift-jis" | "sjis" | "cp932" | "windows-31j" => Some(Charset::ShiftJis),
            _ => None,
        }
    }
}

/// Options for [`Message::parse`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Charset override for a source that mislabels MSH-18; [`Charset::Auto`] trusts MSH-18.
    pub charset: Charset,
}

/// The message could not be read as HL7 v2 at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input has no segments (empty or only framing / whitespace).
    #[error("empty message: no segments")]
    Empty,
    /// The first segment is not `MSH` (e.g. binary junk). `found` is a printable rendering of the
    /// first bytes.
    #[error("not an HL7 v2 message: first segment is {found:?}, expected \"MSH\"")]
    NotHl7 {
        /// Up to 8 leading bytes, non-printable ones as `\xNN`.
        found: String,
    },
    /// MSH-1/MSH-2 (field separator and encoding characters) are missing or malformed.
    #[error("MSH-1/MSH-2 encoding characters are malformed: {0}")]
    BadEncodingCharacters(String),
}

/// A recoverable deviation found while decoding (the message is still usable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeWarning {
    /// 0-based segment index (MSH = 0) the warning refers to, if any.
    pub segment: Option<usize>,
    /// What is wrong.
    pub kind: WarningKind,
}

/// Kinds of [`DecodeWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// Segments were terminated by LF (or CRLF) instead of CR (HL7 v2.5 §2.5.2; SS-MIX2 requires CR).
    NonCrSegmentTerminator(&'static str),
    /// Bytes that are not valid in the charset were replaced by U+FFFD in this segment.
    UndecodableBytes {
        /// The charset used.
        charset: Charset,
    },
    /// MSH-18 names JIS X 0212 (`ISO IR159`), which cannot be decoded; its characters become U+FFFD.
    Jisx0212Unsupported,
    /// MSH-18 was empty or unknown, the charset was inferred from the bytes.
    CharsetInferred {
        /// The MSH-18 text as sent.
        msh18: String,
        /// The charset used.
        used: Charset,
    },
    /// A segment does not start with a valid 3-character segment ID and was skipped.
    InvalidSegmentId,
}

impl fmt::Display for DecodeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.segment {
            write!(f, "segment {i}: ")?;
        }
        match &self.kind {
            WarningKind::NonCrSegmentTerminator(t) => {
                write!(f, "segments terminated by {t}, HL7 v2 / SS-MIX2 require CR")
            }
            WarningKind::UndecodableBytes { charset } => {
                write!(f, "bytes not valid in {charset:?} replaced by U+FFFD")
            }
            WarningKind::Jisx0212Unsupported => {
                write!(f, "MSH-18 declares JIS X 0212 (ISO IR159), which cannot be decoded")
            }
            WarningKind::CharsetInferred { msh18, used } => {
                write!(f, "MSH-18 {msh18:?} does not name a supported charset; decoded as {used:?}")
            }
            WarningKind::InvalidSegmentId => write!(f, "invalid segment ID, segment skipped"),
        }
    }
}

/// Delimiters from MSH-1 and MSH-2 (HL7 v2.5 §2.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), normally `|`.
    pub field: char,
    /// Component separator, normally `^`.
    pub component: char,
    /// Repetition separator, normally `~`.
    pub repetition: char,
    /// Escape character, normally `\`.
    pub escape: char,
    /// Subcomponent separator, normally `&`.
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' }
    }
}

#[derive(Debug, Clone)]
struct SegmentIndex {
    /// Byte range of the segment text in `Message::text`.
    start: u32,
    end: u32,
    /// Range into `Message::fields` of this segment's field bounds (field 0 = segment ID).
    first_field: u32,
    field_count: u32,
}

/// A decoded HL7 v2 message: UTF-8 text plus segment and field offsets. Cheap to query; values are
/// borrowed and unescaped lazily.
#[derive(Debug, Clone)]
pub struct Message {
    text: String,
    segments: Vec<SegmentIndex>,
    fields: Vec<(u32, u32)>,
    delimiters: Delimiters,
    charset: Charset,
    warnings: Vec<DecodeWarning>,
}

impl Message {
    /// Decodes and parses one HL7 v2 message from raw bytes (one SS-MIX2 file).
    ///
    /// Input: the file bytes (ISO-2022-JP, UTF-8 or Shift_JIS; CR, LF or CRLF terminators; optional
    /// MLLP framing bytes). Output: the message with its [`DecodeWarning`]s.
    /// Errors: [`DecodeError::Empty`], [`DecodeError::NotHl7`], [`DecodeError::BadEncodingCharacters`].
    /// Never panics (fuzzed: `fuzz/fuzz_targets/ssmix2_pipeline.rs`).
    pub fn parse(bytes: &[u8], opts: &DecodeOptions) -> Result<Message, DecodeError> {
        let bytes = strip_framing(bytes);
        let (raw_segments, terminator) = split_segments(bytes);
        let first = raw_segments.first().ok_or(DecodeError::Empty)?;
        if !first.starts_with(b"MSH") {
            return Err(DecodeError::NotHl7 { found: printable_prefix(first) });
        }
        let mut warnings = Vec::new();
        if let Some(t) = terminator {
            warnings.push(DecodeWarning { segment: None, kind: WarningKind::NonCrSegmentTerminator(t) });
        }

        // MSH-1 / MSH-2 are ASCII by definition.
        if first.len() < 8 {
            return Err(DecodeError::BadEncodingCharacters(format!(
                "MSH segment too short ({} bytes)",
                first.len()
            )));
        }
        let delimiters = read_delimiters(&first[3..8])?;

        let charset = resolve_charset(first, delimiters, opts.charset, &mut warnings);
        let encoding = charset.encoding();

        let total: usize = raw_segments.iter().map(|s| s.len() + 1).sum();
        let mut text = String::with_capacity(total + total / 2);
        let mut segments = Vec::with_capacity(raw_segments.len());
        let mut fields = Vec::with_capacity(raw_segments.len() * 12);
        for (i, raw) in raw_segments.iter().enumerate() {
            let start = text.len();
            decode_segment(raw, encoding, charset, &mut text, i, &mut warnings);
            let seg_text = &text[start..];
            if !valid_segment_id(seg_text, delimiters.field) {
                warnings.push(DecodeWarning { segment: Some(i), kind: WarningKind::InvalidSegmentId });
                text.truncate(start);
                continue;
            }
            let first_field = fields.len() as u32;
            let mut field_start = start;
            for (off, ch) in seg_text.char_indices() {
                if ch == delimiters.field {
                    fields.push((field_start as u32, (start + off) as u32));
                    field_start = start + off + ch.len_utf8();
                }
            }
            fields.push((field_start as u32, text.len() as u32));
            segments.push(SegmentIndex {
                start: start as u32,
                end: text.len() as u32,
                first_field,
                field_count: fields.len() as u32 - first_field,
            });
            text.push('\r');
        }
        if segments.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(Message { text, segments, fields, delimiters, charset, warnings })
    }

    /// All segments in order (MSH first).
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        (0..self.segments.len()).map(move |i| self.segment_at(i))
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Always `false`: a parsed message has at least its MSH segment.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segment at 0-based position `i` (MSH = 0). Panics never: `i` beyond the end is clamped to
    /// the MSH segment — use [`Message::len`] to bound loops.
    pub fn segment_at(&self, i: usize) -> Segment<'_> {
        let idx = &self.segments[i.min(self.segments.len() - 1)];
        Segment { msg: self, idx, position: i.min(self.segments.len() - 1) }
    }

    /// The first segment with this ID (e.g. `"PID"`), if any.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments().find(|s| s.id() == id)
    }

    /// The MSH segment.
    pub fn msh(&self) -> Segment<'_> {
        self.segment_at(0)
    }

    /// MSH-9 message type as (message code, trigger event, message structure), e.g.
    /// `("ADT", "A08", "ADT_A01")`; missing parts are empty strings.
    pub fn message_type(&self) -> (&str, &str, &str) {
        let f = self.msh().field(9);
        (f.comp(1).raw(), f.comp(2).raw(), f.comp(3).raw())
    }

    /// The delimiters declared in MSH-1/MSH-2.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The charset the message was decoded with.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Recoverable deviations found while decoding.
    pub fn warnings(&self) -> &[DecodeWarning] {
        &self.warnings
    }

    /// The whole decoded message, segments separated by CR (still HL7-escaped).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// One segment of a [`Message`].
#[derive(Clone, Copy)]
pub struct Segment<'m> {
    msg: &'m Message,
    idx: &'m SegmentIndex,
    position: usize,
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segment({:?})", self.raw())
    }
}

impl<'m> Segment<'m> {
    /// The segment ID, e.g. `"PID"`.
    pub fn id(&self) -> &'m str {
        let (s, e) = self.msg.fields[self.idx.first_field as usize];
        &self.msg.text[s as usize..e as usize]
    }

    /// 0-based position of the segment in the message (MSH = 0), for error locations and logical ids.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The raw (escaped) segment text without terminator.
    pub fn raw(&self) -> &'m str {
        &self.msg.text[self.idx.start as usize..self.idx.end as usize]
    }

    /// Field `n` (1-based, HL7 numbering: `PID-5` is `field(5)`). For MSH, `field(1)` is the field
    /// separator and `field(2)` the encoding characters, as in the standard. A missing field is empty.
    pub fn field(&self, n: usize) -> Value<'m> {
        let d = self.msg.delimiters;
        let is_msh = self.id() == "MSH";
        let raw: &'m str = if is_msh {
            match n {
                0 => "",
                1 => {
                    // MSH-1 is the field separator character itself (always ASCII in practice).
                    let s = self.idx.start as usize + 3;
                    self.msg.text.get(s..s + d.field.len_utf8()).unwrap_or("")
                }
                _ => self.field_raw(n - 1),
            }
        } else {
            self.field_raw(n)
        };
        Value { raw, d, level: Level::Field }
    }

    /// Number of fields present (the last non-missing field's number).
    pub fn field_count(&self) -> usize {
        let n = self.idx.field_count as usize - 1;
        if self.id() == "MSH" {
            n + 1
        } else {
            n
        }
    }

    fn field_raw(&self, i: usize) -> &'m str {
        if i >= self.idx.field_count as usize {
            return "";
        }
        let (s, e) = self.msg.fields[self.idx.first_field as usize + i];
        &self.msg.text[s as usize..e as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Field,
    Repetition,
    Component,
    Subcomponent,
}

/// A field, repetition, component or subcomponent value (borrowed, still escaped). Navigation is
/// 1-based as in HL7 (`PID-5[2].1` = `field(5).rep(2).comp(1)`); asking for a missing part gives an
/// empty value, never an error. A component asked of a field with repetitions is taken from the first
/// repetition (and likewise down the levels).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<'m> {
    raw: &'m str,
    d: Delimiters,
    level: Level,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw)
    }
}

impl<'m> Value<'m> {
    /// The raw (escaped) text of this value.
    pub fn raw(&self) -> &'m str {
        self.raw
    }

    /// `true` when the value is empty (HL7 "not present"). The HL7 null `""` is not empty here; see
    /// [`Value::is_null`].
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `true` for the explicit HL7 null `""` (delete the value in the receiver).
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    /// The unescaped text (HL7 v2.5 §2.7 escape sequences resolved, see [`unescape`]), with surrounding
    /// whitespace (incl. U+3000) trimmed. Borrowed when nothing needed unescaping.
    pub fn text(&self) -> Cow<'m, str> {
        let t = unescape(self.raw, &self.d);
        match t {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => {
                let trimmed = o.trim();
                if trimmed.len() == o.len() {
                    Cow::Owned(o)
                } else {
                    Cow::Owned(trimmed.to_string())
                }
            }
        }
    }

    /// The unescaped text, or `None` when empty after trimming.
    pub fn opt(&self) -> Option<Cow<'m, str>> {
        let t = self.text();
        if t.is_empty() {
            None
        } else {
            Some(t)
        }
    }

    /// Repetition `n` (1-based) of a field.
    pub fn rep(&self, n: usize) -> Value<'m> {
        self.child(Level::Repetition, self.d.repetition, n)
    }

    /// All repetitions of a field (one, possibly empty, for a field without `~`).
    pub fn reps(&self) -> impl Iterator<Item = Value<'m>> + 'm {
        let d = self.d;
        self.raw.split(d.repetition).map(move |r| Value { raw: r, d, level: Level::Repetition })
    }

    /// Component `n` (1-based).
    pub fn comp(&self, n: usize) -> Value<'m> {
        let base = if self.level < Level::Repetition { self.rep(1) } else { *self };
        base.child(Level::Component, self.d.component, n)
    }

    /// Subcomponent `n` (1-based).
    pub fn sub(&self, n: usize) -> Value<'m> {
        let base = if self.level < Level::Component { self.comp(1) } else { *self };
        base.child(Level::Subcomponent, self.d.subcomponent, n)
    }

    fn child(&self, level: Level, sep: char, n: usize) -> Value<'m> {
        if n == 0 || self.level >= level {
            return Value { raw: if n == 1 { self.raw } else { "" }, d: self.d, level };
        }
        let raw = self.raw.split(sep).nth(n - 1).unwrap_or("");
        Value { raw, d: self.d, level }
    }
}

fn strip_framing(mut bytes: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = bytes.split_first() {
        if b == 0x0B || b == b'\r' || b == b'\n' || b == 0xEF && rest.starts_with(&[0xBB, 0xBF]) {
            bytes = if b == 0xEF { &rest[2..] } else { rest };
        } else {
            break;
        }
    }
    while let Some((&b, rest)) = bytes.split_last() {
        if b == 0x1C || b == b'\r' || b == b'\n' || b == 0 {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

/// Splits on CR, LF or CRLF; returns the non-empty segments and, if any terminator was not a bare CR,
/// its name.
fn split_segments(bytes: &[u8]) -> (Vec<&[u8]>, Option<&'static str>) {
    let mut out = Vec::with_capacity(bytes.len() / 40 + 1);
    let mut saw_lf = false;
    let mut saw_crlf = false;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                if start < i {
                    out.push(&bytes[start..i]);
                }
                if bytes.get(i + 1) == Some(&b'\n') {
                    saw_crlf = true;
                    i += 1;
                }
                start = i + 1;
            }
            b'\n' => {
                saw_lf = true;
                if start < i {
                    out.push(&bytes[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        out.push(&bytes[start..]);
    }
    let term = if saw_lf { Some("LF") } else if saw_crlf { Some("CRLF") } else { None };
    (out, term)
}

fn printable_prefix(b: &[u8]) -> String {
    b.iter()
        .take(8)
        .map(|&c| if (0x20..0x7F).contains(&c) { (c as char).to_string() } else { format!("\\x{c:02X}") })
        .collect()
}

fn read_delimiters(b: &[u8]) -> Result<Delimiters, DecodeError> {
    // b = MSH-1 + the four MSH-2 characters, e.g. `|^~\&`.
    let ok = b.iter().all(|c| c.is_ascii_graphic());
    let mut uniq = b.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    if !ok || uniq.len() != 5 || b.iter().any(|c| c.is_ascii_alphanumeric()) {
        return Err(DecodeError::BadEncodingCharacters(printable_prefix(b)));
    }
    Ok(Delimiters {
        field: b[0] as char,
        component: b[1] as char,
        repetition: b[2] as char,
        escape: b[3] as char,
        subcomponent: b[4] as char,
    })
}

fn resolve_charset(
    msh: &[u8],
    d: Delimiters,
    requested: Charset,
    warnings: &mut Vec<DecodeWarning>,
) -> Charset {
    if requested != Charset::Auto {
        return requested;
    }
    let has_esc = msh.contains(&0x1B);
    // Read MSH-18 from the MSH segment decoded on its own (kanji in MSH-3..17 may hide delimiter bytes).
    let msh_text: Cow<str> = if has_esc {
        encoding_rs::ISO_2022_JP.decode_without_bom_handling(msh).0
    } else {
        String::from_utf8_lossy(msh)
    };
    let msh18 = msh_text.split(d.field).nth(17).unwrap_or("").to_string();
    let norm: String =
        msh18.chars().filter(|c| !c.is_whitespace() && *c != '_' && *c != '-').collect::<String>().to_ascii_uppercase();
    let mut found = None;
    for rep in norm.split(d.repetition) {
        let cs = match rep {
            "" | "ASCII" | "ISOIR6" => None,
            r if r.contains("IR87") || r.contains("IR159") || r.contains("IR13") || r.contains("2022") => {
                if r.contains("IR159") {
                    warnings.push(DecodeWarning { segment: Some(0), kind: WarningKind::Jisx0212Unsupported });
                }
                Some(Charset::Iso2022Jp)
            }
            r if r.contains("UTF8") => Some(Charset::Utf8),
            r if r.contains("SJIS") || r.contains("SHIFTJIS") || r.contains("CP932") => Some(Charset::ShiftJis),
            _ => None,
        };
        if cs.is_some() {
            found = cs;
            break;
        }
    }
    match found {
        Some(cs) => cs,
        None => {
            // Empty or unknown MSH-18: infer. ESC anywhere → ISO-2022-JP (7-bit with escapes).
            let used = if has_esc { Charset::Iso2022Jp } else { Charset::Utf8 };
            if !norm.replace(d.repetition, "").is_empty() || has_esc {
                warnings.push(DecodeWarning {
                    segment: Some(0),
                    kind: WarningKind::CharsetInferred { msh18: msh18.clone(), used },
                });
            }
            used
        }
    }
}

fn decode_segment(
    raw: &[u8],
    encoding: &'static encoding_rs::Encoding,
    charset: Charset,
    out: &mut String,
    index: usize,
    warnings: &mut Vec<DecodeWarning>,
) {
    // Fast path: pure ASCII (no ESC, no 8-bit bytes) is identical in every supported charset.
    if raw.iter().all(|&b| b < 0x80 && b != 0x1B) {
        // Safe: all bytes are ASCII.
        out.push_str(std::str::from_utf8(raw).unwrap_or(""));
        return;
    }
    let mut decoder = encoding.new_decoder_without_bom_handling();
    out.reserve(decoder.max_utf8_buffer_length(raw.len()).unwrap_or(raw.len() * 3));
    let (_, _, had_errors) = decoder.decode_to_string(raw, out, true);
    if had_errors {
        warnings.push(DecodeWarning { segment: Some(index), kind: WarningKind::UndecodableBytes { charset } });
    }
}

fn valid_segment_id(seg: &str, field_sep: char) -> bool {
    let id = seg.split(field_sep).next().unwrap_or("");
    id.len() == 3
        && id.as_bytes()[0].is_ascii_uppercase()
        && id.as_bytes()[1..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jis(s: &str) -> Vec<u8> {
        let (b, _, _) = encoding_rs::ISO_2022_JP.encode(s);
        b.into_owned()
    }

    const MSH: &str = "MSH|^~\\&|HIS|SEND|GW|RCV|20111220224447||ADT^A08^ADT_A01|1|P|2.5||||||~ISO IR87||ISO 2022-1994";

    #[test]
    fn decodes_iso2022jp_per_segment_and_splits_after_decoding() {
        let msg = format!("{MSH}\rPID|0001||9999013||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M\r");
        let mut bytes = jis(&msg);
        bytes.push(0x1C);
        let m = Message::parse(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(m.charset(), Charset::Iso2022Jp);
        assert!(m.warnings().is_empty(), "{:?}", m.warnings());
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.field(5).rep(1).comp(1).text(), "患者");
        assert_eq!(pid.field(5).rep(2).comp(2).text(), "タロウ");
        assert_eq!(pid.field(5).rep(2).comp(8).text(), "P");
        assert_eq!(pid.field(7).text(), "19480405");
        assert_eq!(m.message_type(), ("ADT", "A08", "ADT_A01"));
        assert_eq!(m.msh().field(1).raw(), "|");
        assert_eq!(m.msh().field(2).raw(), "^~\\&");
        assert_eq!(m.msh().field(3).raw(), "HIS");
    }

    #[test]
    fn broken_kanji_run_does_not_corrupt_later_segments() {
        let mut bytes = jis(&format!("{MSH}\r"));
        // A segment that enters kanji mode and never returns to ASCII, followed by a good segment.
        bytes.extend_from_slice(b"NTE|1||\x1b$B3N3");
        bytes.push(b'\r');
        bytes.extend_from_slice(&jis("PID|0001||1||山田^太郎\r"));
        let m = Message::parse(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(m.segment("PID").unwrap().field(5).comp(1).text(), "山田");
        assert!(m.warnings().iter().any(|w| w.segment == Some(1)));
    }

    #[test]
    fn lf_terminators_are_accepted_with_a_warning() {
        let m = Message::parse(format!("{MSH}\nPID|1\n").as_bytes(), &DecodeOptions::default()).unwrap();
        assert_eq!(m.len(), 2);
        assert!(matches!(m.warnings()[0].kind, WarningKind::NonCrSegmentTerminator("LF")));
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        assert!(matches!(
            Message::parse(&[0xFB, 0xFC], &DecodeOptions::default()),
            Err(DecodeError::NotHl7 { .. })
        ));
        assert_eq!(Message::parse(b"\x0b\x1c\r", &DecodeOptions::default()).unwrap_err(), DecodeError::Empty);
        assert!(Message::parse(b"MSH|", &DecodeOptions::default()).is_err());
        assert!(Message::parse(b"MSH|^^^^", &DecodeOptions::default()).is_err());
    }

    #[test]
    fn navigation_of_missing_parts_is_empty() {
        let m = Message::parse(format!("{MSH}\rAL1\r").as_bytes(), &DecodeOptions::default()).unwrap();
        let al1 = m.segment("AL1").unwrap();
        assert!(al1.field(3).comp(2).sub(1).is_empty());
        assert!(al1.field(0).raw() == "AL1");
        assert!(m.segment("ZZZ").is_none());
    }

    #[test]
    fn shift_jis_override() {
        let (b, _, _) = encoding_rs::SHIFT_JIS.encode("MSH|^~\\&|A||||||ADT^A08|1|P|2.5\rPID|1||1||表^示\r");
        let m = Message::parse(&b, &DecodeOptions { charset: Charset::ShiftJis }).unwrap();
        assert_eq!(m.segment("PID").unwrap().field(5).comp(1).text(), "表");
    }
}
