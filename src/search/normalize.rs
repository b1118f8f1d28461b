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
/// 6. kana size and rare kana (old receipt computers had no small half-width kana): `ッ`, `ァィゥェォ`,
///    `ヮヵヶ` become large; large `ヤユヨ` after an *i*-column kana become small (`シヨウ` →
///    `ショウ`, `キヤ` → `キャ`); `ヲヰヱヂヅ` become `オイエジズ` (same sound);
/// 7. **long vowels** (phonetic equivalence of name readings): a kana that only lengthens the
///    preceding syllable — `ー` (written, or a dash from rule 5) or a vowel kana — becomes that
///    column's canonical vowel: *a* `ア`, *i* `イ`, *u* `ウ`, *e* `イ` (`ケイコ` = `ケーコ` = `ケエコ`),
///    *o* `ウ` (`ユウコ` = `ユーコ`, `ショウヘイ` = `ショーヘイ`, `オオノ` = `オーノ` → `オウノ`). After
///    such a vowel the next one is kept (`サトウ ウメ` = `サトーウメ` = `サトウウメ`); a removed space
///    also ends the syllable; a `ー` with no syllable before it stays `ー`.
///
/// So `かんじゃ たろう`, `ｶﾝｼﾞｬ ﾀﾛｰ`, `カンジャ　タロウ`, `カンジヤタロオ` all fold to `カンジャタロウ`.
/// Kanji are unchanged (`患者 太郎` → `患者太郎`).
///
/// Properties: idempotent (`fold_ja(fold_ja(s)) == fold_ja(s)`), and each output character depends
/// only on the input up to it, so the string search's starts-with stays meaningful. Changing these
/// rules changes the stored index form: a database indexed with an older `fold_ja` must be
/// re-indexed (resources re-written) for the new equivalences to hold on old data.
/// Never fails; allocation: one `String`.
pub fn fold_ja(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut st = Syllable::None;
    if s.is_ascii() {
        for c in s.chars() {
            push_folded(c.to_ascii_lowercase(), &mut out, &mut st);
        }
        return out;
    }
    for c in s.nfkc() {
        if is_latin_with_marks(c) {
            for d in std::iter::once(c)
                .nfd()
                .filter(|d| !('\u{300}'..='\u{36f}').contains(d))
            {
                for l in d.to_lowercase() {
                    push_folded(l, &mut out, &mut st);
                }
            }
        } else {
            for l in c.to_lowercase() {
                push_folded(l, &mut out, &mut st);
            }
        }
    }
    out
}

/// The vowel of the last katakana syllable pushed (for the long-vowel rule), or `None`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syllable {
    None,
    A,
    I,
    U,
    E,
    O,
}

fn is_latin_with_marks(c: char) -> bool {
    matches!(c, '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}')
}

fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30a1}'..='\u{30fa}' | '\u{30fc}'..='\u{30fe}')
}

/// Small → large kana and the rare kana merged with their common sound (rule 6, context-free part).
fn enlarge(c: char) -> char {
    match c {
        'ァ' => 'ア',
        'ィ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' => 'エ',
        'ォ' => 'オ',
        'ッ' => 'ツ',
        'ヮ' => 'ワ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        'ヲ' => 'オ',
        'ヰ' => 'イ',
        'ヱ' => 'エ',
        'ヂ' => 'ジ',
        'ヅ' => 'ズ',
        other => other,
    }
}

/// The vowel (column) of a katakana letter; `None` for `ン`, `ー`, marks and non-kana.
fn vowel_of(c: char) -> Syllable {
    use Syllable::*;
    match c {
        'ア' | 'カ' | 'ガ' | 'サ' | 'ザ' | 'タ' | 'ダ' | 'ナ' | 'ハ' | 'バ' | 'パ' | 'マ'
        | 'ヤ' | 'ャ' | 'ラ' | 'ワ' | 'ヷ' => A,
        'イ' | 'キ' | 'ギ' | 'シ' | 'ジ' | 'チ' | 'ニ' | 'ヒ' | 'ビ' | 'ピ' | 'ミ' | 'リ'
        | 'ヸ' => I,
        'ウ' | 'ク' | 'グ' | 'ス' | 'ズ' | 'ツ' | 'ヌ' | 'フ' | 'ブ' | 'プ' | 'ム' | 'ユ'
        | 'ュ' | 'ル' | 'ヴ' => U,
        'エ' | 'ケ' | 'ゲ' | 'セ' | 'ゼ' | 'テ' | 'デ' | 'ネ' | 'ヘ' | 'ベ' | 'ペ' | 'メ'
        | 'レ' | 'ヹ' => E,
        'オ' | 'コ' | 'ゴ' | 'ソ' | 'ゾ' | 'ト' | 'ド' | 'ノ' | 'ホ' | 'ボ' | 'ポ' | 'モ'
        | 'ヨ' | 'ョ' | 'ロ' | 'ヺ' => O,
        _ => None,
    }
}

/// The canonical vowel when `c` after a syllable with vowel `prev` only lengthens it (rule 7).
fn lengthened(prev: Syllable, c: char) -> Option<char> {
    use Syllable::*;
    match (prev, c) {
        (A, 'ア' | 'ー') => Some('ア'),
        (I, 'イ' | 'ー') | (E, 'エ' | 'イ' | 'ー') => Some('イ'),
        (U, 'ウ' | 'ー') | (O, 'オ' | 'ウ' | 'ー') => Some('ウ'),
        _ => Option::None,
    }
}

fn push_folded(c: char, out: &mut String, st: &mut Syllable) {
    if c.is_whitespace() || c == '\u{30fb}' {
        *st = Syllable::None;
        return;
    }
    let c = match c {
        '\u{3041}'..='\u{3096}' | '\u{309d}' | '\u{309e}' => {
            char::from_u32(c as u32 + 0x60).unwrap_or(c)
        }
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{ff0d}' | '\u{ff70}' | '\u{30fc}' => {
            if out.chars().next_back().is_some_and(is_katakana) {
                '\u{30fc}'
            } else {
                '-'
            }
        }
        other => other,
    };
    let mut c = enlarge(c);
    if let Some(v) = lengthened(*st, c) {
        *st = Syllable::None;
        out.push(v);
        return;
    }
    if *st == Syllable::I {
        c = match c {
            'ヤ' => 'ャ',
            'ユ' => 'ュ',
            'ヨ' => 'ョ',
            other => other,
        };
    }
    *st = vowel_of(c);
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::fold_ja;

    #[test]
    fn kana_forms_fold_together() {
        for s in [
            "かんじゃ たろう",
            "ｶﾝｼﾞｬ ﾀﾛｳ",
            "カンジャ　タロウ",
            "カンジャタロウ",
            " カンジャ タロウ ",
        ] {
            assert_eq!(fold_ja(s), "カンジャタロウ", "{s}");
        }
        assert_eq!(fold_ja("かんじゃ"), "カンジャ");
        assert_eq!(fold_ja("患者 太郎"), "患者太郎");
        assert_eq!(fold_ja("患者　太郎"), "患者太郎");
    }

    #[test]
    fn long_vowel_and_latin() {
        assert_eq!(fold_ja("ヨーコ"), fold_ja("ヨ－コ"));
        assert_eq!(fold_ja("ﾖｰｺ"), "ヨウコ");
        assert_eq!(fold_ja("よ‐こ"), "ヨウコ");
        assert_eq!(fold_ja("Smith-Jones"), "smith-jones");
        assert_eq!(fold_ja("Ｐｅｔｅｒ"), "peter");
        assert_eq!(fold_ja("Chalmers"), "chalmers");
        assert_eq!(fold_ja("Éric Müller"), "ericmuller");
        assert_eq!(fold_ja("ジョン・スミス"), "ジョンスミス");
        assert_eq!(fold_ja(""), "");
    }

    #[test]
    fn long_vowel_spellings_meet() {
        for (a, b) in [
            ("ユウコ", "ユーコ"),
            ("ショウヘイ", "ショーヘイ"),
            ("ショウヘイ", "ショーヘー"),
            ("オオノ", "オーノ"),
            ("ケイコ", "ケーコ"),
            ("ケイコ", "ケエコ"),
            ("サトウ", "サトオ"),
            ("サトウ ウメ", "サトーウメ"),
            ("サトウウメ", "さとう　うめ"),
            ("ｼｮｳﾍｲ", "しょーへい"),
            ("ｼﾖｳﾍｲ", "ショウヘイ"),
            ("キッタ", "キツタ"),
            ("ツヅキ", "ツズキ"),
            ("ユウコ", "ﾕｰｺ"),
            ("オオノ", "ｵｵﾉ"),
        ] {
            assert_eq!(fold_ja(a), fold_ja(b), "{a} / {b}");
        }
        assert_eq!(fold_ja("ユーコ"), "ユウコ");
        assert_eq!(fold_ja("オーノ"), "オウノ");
        assert_eq!(fold_ja("ショーヘー"), "ショウヘイ");
        assert_eq!(fold_ja("カンジャ タロウ"), "カンジャタロウ");
        assert_eq!(fold_ja("ンー"), "ンー");
        // different names stay different
        for (a, b) in [
            ("キヨコ", "キョウコ"),
            ("ユウコ", "ユキコ"),
            ("オノ", "オオノ"),
            ("サトウ", "サイトウ"),
        ] {
            assert_ne!(fold_ja(a), fold_ja(b), "{a} / {b}");
        }
    }

    #[test]
    fn idempotent_and_prefix_closed() {
        for s in [
            "ショーヘイ",
            "ｼﾖｳﾍｲ",
            "サトウ ウメ",
            "オオノ",
            "かんじゃ たろう",
            "アアア",
            "ンー",
            "ケエエ",
            "患者 太郎",
            "Éric",
        ] {
            let f = fold_ja(s);
            assert_eq!(fold_ja(&f), f, "{s}");
            let chars: Vec<char> = s.chars().collect();
            for i in 0..chars.len() {
                let p: String = chars[..i].iter().collect();
                // half-width voiced marks compose with the next character, so skip cuts before them
                if chars[i] == 'ﾞ' || chars[i] == 'ﾟ' {
                    continue;
                }
                assert!(f.starts_with(&fold_ja(&p)), "{s} prefix {p}");
            }
        }
    }
}
