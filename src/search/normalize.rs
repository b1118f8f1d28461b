//! Japanese-aware folding for `string` search (FHIR R4 `search.html#string`: "case- and
//! accent-insensitive, starts-with"), extended for Japanese names as used in regional health
//! networks (kanji / hiragana / full- and half-width katakana; family and given name written with
//! or without a space).

use unicode_normalization::UnicodeNormalization;

/// Folds `s` to the comparison form used by the string index and string queries.
///
/// Input: any text. Output: the folded text, in this order:
/// 1. Unicode NFKC (half-width `ｶﾝｼﾞｬ` → `カンジャ`, full-width `ＡＢＣ１` → `ABC1`);
/// 2. lower case (Unicode), and Latin accents removed (`É` → `e`);
/// 3. hiragana → katakana (`かんじゃ` → `カンジャ`, `ゝゞ` → `ヽヾ`);
/// 4. all white space removed (ASCII, U+3000 ideographic space, …) and the katakana middle dot
///    `・` removed (both only separate name parts);
/// 5. dash-like characters (`-`, `‐`, `‑`, `‒`, `–`, `—`, `―`, `−`, `－`, `ｰ`, `ー`) after a
///    katakana letter become the long-vowel mark `ー` (U+30FC); elsewhere they become `-`.
///
/// So `かんじゃ たろう`, `ｶﾝｼﾞｬ ﾀﾛｳ`, `カンジャ　タロウ`, `カンジャタロウ` all fold to `カンジャタロウ`.
/// Kanji are unchanged (`患者 太郎` → `患者太郎`). Small kana are *not* enlarged.
/// Never fails; allocation: one `String`.
pub fn fold_ja(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    if s.is_ascii() {
        for c in s.chars() {
            push_folded(c.to_ascii_lowercase(), &mut out);
        }
        return out;
    }
    for c in s.nfkc() {
        if is_latin_with_marks(c) {
            for d in std::iter::once(c).nfd().filter(|d| !('\u{300}'..='\u{36f}').contains(d)) {
                for l in d.to_lowercase() {
                    push_folded(l, &mut out);
                }
            }
        } else {
            for l in c.to_lowercase() {
                push_folded(l, &mut out);
            }
        }
    }
    out
}

fn is_latin_with_marks(c: char) -> bool {
    matches!(c, '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}')
}

fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30a1}'..='\u{30fa}' | '\u{30fc}'..='\u{30fe}')
}

fn push_folded(c: char, out: &mut String) {
    if c.is_whitespace() || c == '\u{30fb}' {
        return;
    }
    let c = match c {
        '\u{3041}'..='\u{3096}' | '\u{309d}' | '\u{309e}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{ff0d}' | '\u{ff70}' | '\u{30fc}' => {
            if out.chars().next_back().is_some_and(is_katakana) {
                '\u{30fc}'
            } else {
                '-'
            }
        }
        other => other,
    };
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::fold_ja;

    #[test]
    fn kana_forms_fold_together() {
        for s in ["かんじゃ たろう", "ｶﾝｼﾞｬ ﾀﾛｳ", "カンジャ　タロウ", "カンジャタロウ", " カンジャ タロウ "] {
            assert_eq!(fold_ja(s), "カンジャタロウ", "{s}");
        }
        assert_eq!(fold_ja("かんじゃ"), "カンジャ");
        assert_eq!(fold_ja("患者 太郎"), "患者太郎");
        assert_eq!(fold_ja("患者　太郎"), "患者太郎");
    }

    #[test]
    fn long_vowel_and_latin() {
        assert_eq!(fold_ja("ヨーコ"), fold_ja("ヨ－コ"));
        assert_eq!(fold_ja("ﾖｰｺ"), "ヨーコ");
        assert_eq!(fold_ja("よ‐こ"), "ヨーコ");
        assert_eq!(fold_ja("Smith-Jones"), "smith-jones");
        assert_eq!(fold_ja("Ｐｅｔｅｒ"), "peter");
        assert_eq!(fold_ja("Chalmers"), "chalmers");
        assert_eq!(fold_ja("Éric Müller"), "ericmuller");
        assert_eq!(fold_ja("ジョン・スミス"), "ジョンスミス");
        assert_eq!(fold_ja(""), "");
    }
}
