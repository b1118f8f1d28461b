//! HL7 v2.5 §2.7 escape sequences in text data.

use super::Delimiters;
use std::borrow::Cow;

/// Resolves HL7 escape sequences in a decoded value (HL7 v2.5 §2.7.1–§2.7.5).
///
/// * `\F\ \S\ \T\ \R\ \E\` → the field, component, subcomponent, repetition and escape characters
///   declared in MSH-1/MSH-2 (shown here with the default `\` escape);
/// * `\Xhh…\` → the bytes `hh…` interpreted as UTF-8 (or, if not valid UTF-8, as Latin-1);
/// * `\H\ \N\` (highlighting), `\.br\`-style formatting commands, `\Cxxyy\` / `\Mxxyyzz\` (charset
///   switches) and `\Zxx\` (locally defined) pass through unchanged, escapes included;
/// * an unterminated or unknown escape is kept literally.
///
/// Operates on `&str` positions of the ASCII escape character only, so multi-byte text before or
/// after an escape is never split (the defect the reference notes measured in `hl7-parser`).
/// Returns the input borrowed when it contains no escape character.
pub fn unescape<'a>(raw: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let esc = d.escape;
    if !raw.contains(esc) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            // Unterminated: keep the remainder literally.
            out.push_str(&rest[start..]);
            return Cow::Owned(out);
        };
        let body = &after[..end];
        let consumed = start + esc.len_utf8() + end + esc.len_utf8();
        match body {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            b if b.len() > 1 && b.starts_with('X') && b.len() % 2 == 1 && b[1..].bytes().all(|c| c.is_ascii_hexdigit()) => {
                let bytes: Vec<u8> = b.as_bytes()[1..]
                    .chunks(2)
                    .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
                    .collect();
                match String::from_utf8(bytes) {
                    Ok(s) => out.push_str(&s),
                    Err(e) => out.extend(e.into_bytes().into_iter().map(char::from)),
                }
            }
            _ => {
                // \H\ \N\ \.br\ \Cxxyy\ \Mxxyyzz\ \Zxx\ and unknown: pass through verbatim.
                out.push_str(&rest[start..consumed]);
            }
        }
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    #[test]
    fn standard_escapes() {
        assert_eq!(unescape(r"a\F\b\S\c\T\d\R\e\E\f", &d()), "a|b^c&d~e\\f");
        assert_eq!(unescape(r"\X0D0A\", &d()), "\r\n");
        assert_eq!(unescape(r"\XE697A5\", &d()), "日");
        assert_eq!(unescape(r"\H\bold\N\", &d()), r"\H\bold\N\");
        assert_eq!(unescape(r"line\.br\next", &d()), r"line\.br\next");
        assert!(matches!(unescape("plain", &d()), Cow::Borrowed("plain")));
    }

    #[test]
    fn japanese_text_before_escape_does_not_panic() {
        assert_eq!(unescape("備考\\F\\テスト\\S\\値", &d()), "備考|テスト^値");
        assert_eq!(unescape("未終了\\F", &d()), "未終了\\F");
        assert_eq!(unescape("\\", &d()), "\\");
        assert_eq!(unescape("\\X\\", &d()), "\\X\\");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = unescape(&s, &d());
        }

        #[test]
        fn text_without_escape_char_is_unchanged(s in "[^\\\\]*") {
            prop_assert_eq!(unescape(&s, &d()), s.as_str());
        }
    }
}
