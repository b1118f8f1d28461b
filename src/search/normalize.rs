//! Japanese-aware string folding — being written.

/// Folds `s` for string search comparison (see module docs).
pub fn fold_ja(s: &str) -> String {
    s.to_lowercase()
}
