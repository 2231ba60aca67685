//! Helpers for pages of rows that every driver shares.

use super::Rows;

/// The least key above every key that starts with `prefix` (none if there is none).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Visit `items` front to back (or, `reverse`, back to front) until `f` says false.
pub fn visit_in_order<I: DoubleEndedIterator, E>(
    items: I,
    reverse: bool,
    mut f: impl FnMut(I::Item) -> Result<bool, E>,
) -> Result<(), E> {
    if reverse {
        for item in items.rev() {
            if !f(item)? {
                break;
            }
        }
    } else {
        for item in items {
            if !f(item)? {
                break;
            }
        }
    }
    Ok(())
}

/// Merge `more` into `out` (each in key order, ascending or descending as `reverse`
/// says, at most `limit` rows): in order, one row per key — `out`'s where both hold
/// one — at most `limit`.
pub fn merge_rows(out: &mut Rows, more: Rows, reverse: bool, limit: usize) {
    if more.is_empty() {
        return;
    }
    out.extend(more);
    // Stable: of equal keys, `out`'s comes first and the dedup keeps it.
    sort_rows(out, reverse);
    out.dedup_by(|later, first| later.0 == first.0);
    out.truncate(limit);
}

/// Rows in key order, ascending or descending.
pub fn sort_rows(rows: &mut Rows, reverse: bool) {
    if reverse {
        rows.sort_by(|a, b| b.0.cmp(&a.0));
    } else {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
}
